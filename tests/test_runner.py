"""The papermill runner: reports written, failures isolated, old reports kept."""

import json
import sys

import nbformat
import pytest

from lmklib import cli, runner

pytestmark = pytest.mark.slow

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
    index = (reports_dir / "README.md").read_text()
    assert "## a_good" in index and "| answer | 45 |" in index and "figures/line.png" in index


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
        runner.run_notebook(notebooks / "a_good.ipynb", reports_root=tmp_path, params={"epochs": 3},
                            progress=False)


def test_list_shows_parameters(notebooks, capsys):
    assert cli.main(["list", "--notebooks", str(notebooks)]) == 0
    out = capsys.readouterr().out
    assert "a_good" in out and "profile" in out and "smoke|quick|paper" in out


def test_dead_kernel_names_the_running_cell(notebooks, tmp_path):
    notebook(notebooks / "c_dies.ipynb", "import os\nos._exit(1)")
    result = runner.run_notebook(notebooks / "c_dies.ipynb", reports_root=tmp_path, progress=False)
    assert not result.ok
    assert "c_dies: cell 2 (`import os`)" in result.error and "Dead" in result.error
