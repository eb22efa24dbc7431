"""The papermill runner: reports written, failures isolated, old reports kept; requests checked
before anything is written; concurrent and killed runs never lose a report or leave folders."""

import json
import multiprocessing
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from lmklib import cli, runner

LMK = [sys.executable, "-m", "lmklib.cli"]

GOOD = '''
from lmklib import reports
import matplotlib
matplotlib.use("Agg")
import matplotlib.pyplot as plt
import pandas as pd
reports.init("{name}", profile=profile, seed=seed)
fig, ax = plt.subplots(); ax.plot([0, 1], [0, seed])
reports.save_figure(fig, "line", "a line")
reports.save_table(pd.DataFrame({{"a": [1.5, 2.0]}}), "numbers", "two numbers")
reports.record("answer", 6 * 7 + seed, unit="px", dataset="none", norm="none")
'''


def notebook(path, body, params="profile = 'quick'  # smoke|quick|paper\nseed = 0  # seed\n"):
    nb = nbformat.v4.new_notebook()
    p = nbformat.v4.new_code_cell(params)
    p.metadata["tags"] = ["parameters"]
    nb.cells = [nbformat.v4.new_markdown_cell("# test"), p, nbformat.v4.new_code_cell(body)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, path)


@pytest.fixture
def notebooks(tmp_path):
    folder = tmp_path / "nbs"
    folder.mkdir()
    notebook(folder / "a_good.ipynb", GOOD.format(name="a_good"))
    notebook(folder / "b_flaky.ipynb", GOOD.format(name="b_flaky"))
    return folder


@pytest.mark.slow
def test_reproduce_writes_reports_and_index(notebooks, tmp_path):
    reports_dir = tmp_path / "reports"
    rc = cli.main(["reproduce", "--notebooks", str(notebooks), "--reports", str(reports_dir),
                   "--profile", "smoke", "--seed", "3", "--no-progress"])
    assert rc == 0
    rep = reports_dir / "a_good"
    assert (rep / "a_good.ipynb").is_file()
    assert (rep / "figures" / "line.png").stat().st_size > 1000
    assert (rep / "tables" / "numbers.csv").read_text().splitlines() == ["a", "1.5", "2.0"]
    assert "| a |" in (rep / "tables" / "numbers.md").read_text()
    results = json.loads((rep / "results.json").read_text())
    assert results["results"]["answer"]["value"] == 45 and results["params"]["profile"] == "smoke"
    manifest = json.loads((rep / "manifest.json").read_text())
    assert manifest["profile"] == "smoke" and manifest["seed"] == 3
    assert manifest["packages"]["torch"] and manifest["wall_seconds"] > 0
    assert {"commit", "started", "finished", "data_root", "datasets_found"} <= set(manifest)
    assert manifest["cpu"]["count"] == os.cpu_count() and "simd" in manifest["cpu"]
    index = (reports_dir / "README.md").read_text()
    assert "## a_good" in index and "| answer | 45 |" in index and "figures/line.png" in index


@pytest.mark.slow
def test_failing_notebook_keeps_old_report_and_others_run(notebooks, tmp_path, capsys):
    reports_dir = tmp_path / "reports"
    args = ["reproduce", "--notebooks", str(notebooks), "--reports", str(reports_dir),
            "--profile", "smoke", "--no-progress"]
    assert cli.main(args) == 0
    old = (reports_dir / "b_flaky" / "results.json").read_text()

    notebook(notebooks / "b_flaky.ipynb", GOOD.format(name="b_flaky") + "\nraise RuntimeError('boom')")
    (reports_dir / "a_good" / "stale.txt").write_text("from the first run")
    rc = cli.main(args + ["--seed", "1"])
    assert rc != 0
    err = capsys.readouterr().err
    # notebook and cell (its index in the source notebook and its first line) are named
    assert "b_flaky: cell 2 (`from lmklib import reports`): RuntimeError: boom" in err
    # the broken notebook's previous complete report is untouched ...
    assert (reports_dir / "b_flaky" / "results.json").read_text() == old
    # ... its failed run is kept aside for inspection ...
    assert (reports_dir / "_failed" / "b_flaky" / "b_flaky.ipynb").is_file()
    # ... and the other notebook ran again, replacing its report whole.
    assert json.loads((reports_dir / "a_good" / "results.json").read_text())["results"]["answer"]["value"] == 43
    assert not (reports_dir / "a_good" / "stale.txt").exists()
    assert not list(reports_dir.glob(".tmp-*")) and not list(reports_dir.glob(".old-*"))


def test_unknown_notebook_and_parameter(notebooks, tmp_path):
    with pytest.raises(ValueError, match="matches nothing; available: .*a_good"):
        runner.resolve_names(["zzz"], notebooks)
    with pytest.raises(ValueError, match=r"unknown parameters \['epochs'\]"):
        runner.run_notebook(notebooks / "a_good.ipynb", reports_root=tmp_path / "r",
                            params={"epochs": 3}, progress=False)
    assert not (tmp_path / "r").exists()   # refused before anything was created


def test_list_shows_parameters(notebooks, capsys):
    assert cli.main(["list", "--notebooks", str(notebooks)]) == 0
    out = capsys.readouterr().out
    assert "a_good" in out and "profile" in out and "smoke|quick|paper" in out


@pytest.mark.slow
def test_dead_kernel_names_the_running_cell(notebooks, tmp_path):
    notebook(notebooks / "c_dies.ipynb", "import os\nos._exit(1)")
    result = runner.run_notebook(notebooks / "c_dies.ipynb", reports_root=tmp_path, progress=False)
    assert not result.ok
    assert "c_dies: cell 2 (`import os`)" in result.error and "Dead" in result.error


# --------------------------------------------------------------------------- helpers
def lmk(*args, **kwargs) -> subprocess.Popen:
    """``lmk`` as its own process (Ctrl-C, kills and pipes act on processes, not calls)."""
    return subprocess.Popen([*LMK, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=runner.REPO_ROOT, **kwargs)


def dead_pid() -> int:
    """The pid of a process that has exited (and been reaped)."""
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def fake_report(folder: Path, name: str, marker: str) -> Path:
    """A complete report (results, manifest, executed notebook) that says ``marker``."""
    (folder / "figures").mkdir(parents=True, exist_ok=True)
    (folder / "results.json").write_text(json.dumps({"notebook": name, "marker": marker,
                                                     "results": {}}))
    (folder / "manifest.json").write_text(json.dumps({"notebook": name, "marker": marker}))
    (folder / f"{name}.ipynb").write_text(nbformat.writes(nbformat.v4.new_notebook()))
    return folder


def staging(root: Path) -> list[str]:
    return sorted(p.name for p in [*root.glob(".tmp-*"), *root.glob(".old-*")])


def wait_for(predicate, timeout: float, proc: subprocess.Popen | None = None) -> None:
    t0 = time.monotonic()
    while not predicate():
        if proc is not None and proc.poll() is not None:
            raise AssertionError(f"lmk ended early: {proc.communicate()}")
        if time.monotonic() - t0 > timeout:
            raise AssertionError("timed out")
        time.sleep(0.05)


SLOW = GOOD + "\nimport time\ntime.sleep(60)\n"
THREADS = GOOD.format(name="c_threads") + "\nreports.record('threads', threads, dataset='none')\n"


# --------------------------------------------------------------------------- 3. no silent fallbacks
@pytest.mark.parametrize("kind", ["missing", "file", "env"])
def test_a_named_data_root_that_is_not_a_folder_is_an_error(notebooks, tmp_path, capsys,
                                                            monkeypatch, kind):
    """Not a run on synthetic faces that replaces the previous real-data report."""
    reports_dir = tmp_path / "reports"
    previous = fake_report(reports_dir / "a_good", "a_good", "real data")
    (tmp_path / "a_file").write_text("")
    args = ["reproduce", "--notebooks", str(notebooks), "--reports", str(reports_dir),
            "--no-progress"]
    if kind == "env":
        monkeypatch.setenv("LMK_DATA_ROOT", str(tmp_path / "nope"))
    else:
        args += ["--data-root", str(tmp_path / ("nope" if kind == "missing" else "a_file"))]
    assert cli.main(args) == 2
    err = capsys.readouterr().err
    expected = {"missing": f"data root {tmp_path / 'nope'} does not exist",
                "file": f"data root {tmp_path / 'a_file'} is a file, not a folder",
                "env": f"$LMK_DATA_ROOT {tmp_path / 'nope'} does not exist"}[kind]
    assert err.count("\n") == 1 and expected in err
    assert json.loads((previous / "results.json").read_text())["marker"] == "real data"
    assert sorted(p.name for p in reports_dir.iterdir()) == ["a_good"]   # nothing else written
    with pytest.raises((FileNotFoundError, NotADirectoryError), match=expected.split(" ", 1)[1]):
        runner.run_notebook(notebooks / "a_good.ipynb", reports_root=reports_dir,
                            data_root=None if kind == "env" else args[-1], progress=False)


def test_no_notebooks_is_an_error(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    for folder, why in [(tmp_path / "empty", "holds no *.ipynb"),
                        (tmp_path / "nowhere", "does not exist")]:
        assert cli.main(["reproduce", "--notebooks", str(folder), "--reports",
                         str(tmp_path / "r"), "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err.count("\n") == 1 and f"no notebooks: {folder} {why}" in err
        assert cli.main(["list", "--notebooks", str(folder)]) == 2
        assert f"no notebooks: {folder} {why}" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


# --------------------------------------------------------------------------- 4. parameters, leaks
def test_a_parameter_no_notebook_declares_is_refused_before_anything_is_created(notebooks,
                                                                               tmp_path, capsys):
    reports_dir = tmp_path / "reports"
    rc = cli.main(["reproduce", "--notebooks", str(notebooks), "--reports", str(reports_dir),
                   "-p", "nosuch=1", "--no-progress"])
    assert rc == 2
    err = capsys.readouterr().err
    assert err == ("lmk reproduce: error: no selected notebook declares parameter nosuch "
                   "(selected: a_good, b_flaky; their parameters: profile, seed)\n")
    assert not reports_dir.exists()


def test_route_parameters_sends_each_to_the_notebooks_that_declare_it(notebooks):
    notebook(notebooks / "c_threads.ipynb", THREADS,
             params="profile = 'quick'\nseed = 0\nthreads = 2  # torch threads\n")
    paths = runner.list_notebooks(notebooks)
    routed = runner.route_parameters(paths, {"threads": 1, "seed": 5})
    assert {p.stem: r for p, r in routed.items()} == {
        "a_good": {"seed": 5}, "b_flaky": {"seed": 5}, "c_threads": {"threads": 1, "seed": 5}}


@pytest.mark.slow
def test_a_parameter_some_notebooks_declare_goes_only_to_those(notebooks, tmp_path):
    notebook(notebooks / "c_threads.ipynb", THREADS,
             params="profile = 'quick'\nseed = 0\nthreads = 2  # torch threads\n")
    results = runner.reproduce(["a_good", "c_threads"], profile="smoke", notebooks_dir=notebooks,
                               reports_root=tmp_path, params={"threads": 1}, progress=False)
    assert [(r.name, r.ok) for r in results] == [("a_good", True), ("c_threads", True)]
    threads = json.loads((tmp_path / "c_threads" / "results.json").read_text())["results"]
    assert threads["threads"]["value"] == 1   # the notebook ran with it, not its default 2
    assert "threads" not in json.loads((tmp_path / "a_good" / "manifest.json").read_text())[
        "parameters"]


def test_any_failure_of_one_notebook_is_that_notebooks_failure(notebooks, tmp_path,
                                                               monkeypatch):
    """Not only a failing cell: an error anywhere in a notebook's run (here: writing its report)
    fails that notebook, cleans up after it, and the next one still runs."""
    def execute(path, tmp, root, *args):
        if path.stem == "a_good":
            raise OSError(28, "No space left on device")
        fake_report(tmp, path.stem, "ran")
        runner.swap_in(tmp, root / path.stem)
        return runner.RunResult(path.stem, True, 0.0, root / path.stem)

    monkeypatch.setattr(runner, "_execute", execute)
    results = runner.reproduce(profile="smoke", notebooks_dir=notebooks, reports_root=tmp_path,
                               progress=False)
    assert [(r.name, r.ok) for r in results] == [("a_good", False), ("b_flaky", True)]
    assert results[0].error == "a_good: OSError: [Errno 28] No space left on device"
    assert json.loads((tmp_path / "b_flaky" / "results.json").read_text())["marker"] == "ran"
    assert not (tmp_path / "a_good").exists() and staging(tmp_path) == []
    assert "## b_flaky" in (tmp_path / "README.md").read_text()


def test_staging_folders_of_dead_runs_are_removed_and_a_lost_report_restored(tmp_path):
    dead, alive = dead_pid(), os.getpid()
    fake_report(tmp_path / "kept", "kept", "current")
    names = {f".tmp-a_b-{dead}-0123abcd": "removed", f".tmp-a-b-{dead}": "removed",  # old style
             f".old-kept-{dead}-0123abcd": "removed",
             f".old-lost-{dead}-89abcdef": "restored",    # killed between the two renames
             f".tmp-a_b-{alive}-0123abcd": "kept", f".old-x-{alive}-0123abcd": "kept"}
    for name in names:
        fake_report(tmp_path / name, "x", name)
    (tmp_path / "_failed").mkdir()
    done = runner.clean_stale(tmp_path)
    assert sorted(p.name for p in done) == sorted(n for n, what in names.items() if what != "kept")
    assert staging(tmp_path) == sorted(n for n, what in names.items() if what == "kept")
    assert json.loads((tmp_path / "lost" / "results.json").read_text())["marker"] == \
        f".old-lost-{dead}-89abcdef"
    assert json.loads((tmp_path / "kept" / "results.json").read_text())["marker"] == "current"


def test_staging_names_are_unique_per_run(tmp_path):
    a, b = runner._staging(tmp_path, "tmp", "00_x"), runner._staging(tmp_path, "tmp", "00_x")
    assert a != b and a.name.startswith(f".tmp-00_x-{os.getpid()}-")
    assert runner._STAGING.match(a.name)["name"] == "00_x"


@pytest.mark.parametrize("atomic", [True, False])
def test_swap_replaces_the_report_and_clears_its_failed_copy(tmp_path, monkeypatch, atomic):
    if not atomic:   # systems without renameat2: two renames via an .old-* folder
        monkeypatch.setattr(runner, "_exchange", lambda a, b: False)
    fake_report(tmp_path / "nb", "nb", "old")
    fake_report(tmp_path / "_failed" / "nb", "nb", "failed last time")
    tmp = fake_report(runner._staging(tmp_path, "tmp", "nb"), "nb", "new")
    runner.swap_in(tmp, tmp_path / "nb")
    assert json.loads((tmp_path / "nb" / "results.json").read_text())["marker"] == "new"
    assert json.loads((tmp / "results.json").read_text())["marker"] == "old"   # caller removes
    assert not (tmp_path / "_failed" / "nb").exists() and not list(tmp_path.glob(".old-*"))


# --------------------------------------------------------------------------- 5. concurrent runs
def _swap_many(root: Path, tag: str, n: int) -> None:
    for i in range(n):
        tmp = fake_report(runner._staging(root, "tmp", "nb"), "nb", f"{tag}{i}")
        runner.swap_in(tmp, root / "nb")
        shutil.rmtree(tmp)


@pytest.mark.parametrize("atomic", [True, False])
def test_concurrent_swaps_never_fail_nor_lose_the_report(tmp_path, monkeypatch, atomic):
    """Two processes swapping reports into one folder (the race that ended in ``OSError
    [Errno 39] Directory not empty``). With the atomic exchange the report is never missing,
    not even for a reader that takes no lock."""
    if not atomic:
        monkeypatch.setattr(runner, "_exchange", lambda a, b: False)
    fake_report(tmp_path / "nb", "nb", "first")
    ctx = multiprocessing.get_context("fork")
    workers = [ctx.Process(target=_swap_many, args=(tmp_path, tag, 40)) for tag in "ab"]
    for w in workers:
        w.start()
    missing = 0
    while any(w.is_alive() for w in workers):
        missing += not (tmp_path / "nb" / "results.json").is_file()
    assert [w.exitcode for w in workers] == [0, 0]
    assert json.loads((tmp_path / "nb" / "results.json").read_text())["marker"] in {"a39", "b39"}
    assert staging(tmp_path) == []
    if atomic:
        assert missing == 0


@pytest.mark.slow
def test_two_reproduce_processes_into_one_reports_folder(notebooks, tmp_path):
    reports_dir = tmp_path / "reports"
    procs = [lmk("reproduce", "a_good", "--notebooks", notebooks, "--reports", reports_dir,
                 "--profile", "smoke", "--seed", seed, "--no-progress") for seed in (1, 2)]
    outs = [p.communicate(timeout=300) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    answer = json.loads((reports_dir / "a_good" / "results.json").read_text())
    assert answer["results"]["answer"]["value"] in (43, 44)
    assert (reports_dir / "a_good" / "manifest.json").is_file()
    assert staging(reports_dir) == [] and "## a_good" in (reports_dir / "README.md").read_text()


# --------------------------------------------------------------------------- 6. interrupted, killed
@pytest.mark.slow
def test_ctrl_c_exits_130_with_one_line_and_no_temporary_folder(notebooks, tmp_path):
    notebook(notebooks / "c_slow.ipynb", SLOW.format(name="c_slow"))
    reports_dir = tmp_path / "reports"
    previous = fake_report(reports_dir / "c_slow", "c_slow", "previous")
    # as a terminal's foreground job: SIGINT at its default (a suite started in the background
    # of a non-interactive shell ignores it, and lmk, rightly, keeps an ignored SIGINT ignored)
    proc = lmk("reproduce", "c_slow", "--notebooks", notebooks, "--reports", reports_dir,
               "--no-progress", preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    wait_for(lambda: list(reports_dir.glob(".tmp-c_slow-*/results.json")), 120, proc)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130 and err == "lmk: interrupted\n"
    assert staging(reports_dir) == []
    assert json.loads((previous / "results.json").read_text())["marker"] == "previous"


@pytest.mark.slow
def test_a_run_killed_in_a_cell_loses_nothing_and_the_rerun_completes(tmp_path):
    """Fault injection: ``lmk reproduce 00_quickstart`` (smoke) is SIGKILLed, with its kernel, a
    seeded random time into its cells; the previous complete report is there throughout, and a
    rerun replaces it with a complete one, removes the killed run's folder and leaves no fixture
    folder of its own behind."""
    psutil = pytest.importorskip("psutil")
    reports_dir, data, tmpdir = tmp_path / "reports", tmp_path / "empty_data", tmp_path / "tmp"
    data.mkdir()
    tmpdir.mkdir()
    env = {**os.environ, "TMPDIR": str(tmpdir)}   # where the kernels' fixture folders go
    previous = fake_report(reports_dir / "00_quickstart", "00_quickstart", "previous")
    args = ("reproduce", "00_quickstart", "--profile", "smoke", "--data-root", data,
            "--reports", reports_dir, "--no-progress")
    proc = lmk(*args, env=env)
    wait_for(lambda: list(reports_dir.glob(".tmp-00_quickstart-*/results.json")), 180, proc)
    deadline = time.monotonic() + random.Random(14).uniform(0.5, 4.0)
    while time.monotonic() < deadline:   # the report stays in place all along
        assert (previous / "results.json").is_file()
    kernel = psutil.Process(proc.pid).children(recursive=True)
    assert proc.poll() is None and kernel, "the run must still be in a cell when it is killed"
    for p in [psutil.Process(proc.pid), *kernel]:
        p.kill()
    proc.communicate()
    psutil.wait_procs(kernel, timeout=10)
    assert json.loads((previous / "results.json").read_text())["marker"] == "previous"
    assert len(list(reports_dir.glob(".tmp-00_quickstart-*"))) == 1   # what the kill left
    left_by_kill = set(tmpdir.glob("lmk-fixtures-*"))   # SIGKILL leaves no chance to clean up

    rerun = lmk(*args, env=env)
    out, err = rerun.communicate(timeout=600)
    assert rerun.returncode == 0, err
    report = json.loads((previous / "results.json").read_text())
    assert "marker" not in report and "synthetic_nme_cnn" in report["results"]
    manifest = json.loads((previous / "manifest.json").read_text())
    assert manifest["notebook"] == "00_quickstart" and manifest["profile"] == "smoke"
    executed = nbformat.read(previous / "00_quickstart.ipynb", as_version=4)
    assert all(c.metadata["papermill"]["status"] == "completed" for c in executed.cells)
    assert staging(reports_dir) == []
    assert set(tmpdir.glob("lmk-fixtures-*")) == left_by_kill


def test_cpu_reads_model_and_best_simd_level():
    text = ("processor\t: 0\nmodel name\t: AMD EPYC 9R14\nflags\t\t: fpu sse4_2 avx avx2 avx512f\n\n"
            "processor\t: 1\nmodel name\t: AMD EPYC 9R14\nflags\t\t: fpu sse4_2 avx avx2 avx512f\n")
    info = runner.cpu(text)
    assert info["model"] == "AMD EPYC 9R14" and info["simd"] == "avx512f"
    assert runner.cpu("model name : Old\nflags : fpu sse4_2 avx\n")["simd"] == "avx"
    assert runner.cpu("flags : fpu\n")["simd"] is None
