"""Every report reproduces itself: each notebook in notebooks/ is run in the smoke profile as
``lmk reproduce`` runs it, and its executed copy (``<report>/<name>.ipynb``) is then re-executed
by nbval with the same seed, profile, data root and environment. Every text output must come
out the same, up to what ``tests/nbval_sanitize.cfg`` masks (measured times, the report folder,
dates, memory addresses, progress bars, widget ids). nbval leaves pictures (image/png) out of
the comparison; the numbers drawn in them are printed, tabled or recorded in other outputs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from lmklib import runner
from lmklib.widgets import HEADLESS_ENV

pytestmark = pytest.mark.slow
SANITIZE = Path(__file__).with_name("nbval_sanitize.cfg")
NOTEBOOKS = [p.stem for p in runner.list_notebooks()]


class SmokeRuns:
    """Smoke runs of the notebooks on the synthetic faces (an empty data root), each made once."""

    def __init__(self, root: Path):
        self.root, self.cache = root, root / "cache"
        (root / "no-data").mkdir()
        self.folders: dict[str, Path] = {}

    def report(self, stem: str) -> Path:
        """The report folder of ``notebooks/<stem>.ipynb``, run through the runner if needed."""
        if stem not in self.folders:
            with pytest.MonkeyPatch.context() as mp:
                mp.setenv("LMK_CACHE_DIR", str(self.cache))
                result = runner.run_notebook(runner.NOTEBOOKS_DIR / f"{stem}.ipynb",
                                             profile="smoke", seed=0,
                                             data_root=self.root / "no-data",
                                             reports_root=self.root / "reports", progress=False)
            assert result.ok, result.error
            self.folders[stem] = result.report_dir
        return self.folders[stem]


@pytest.fixture(scope="session")
def smoke_runs(tmp_path_factory) -> SmokeRuns:
    return SmokeRuns(tmp_path_factory.mktemp("nbval"))


def snapshot(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*"))
            if p.is_file()}


def rerun(folder: Path, tmp_path: Path, cache: Path) -> tuple[int, str, Path]:
    """Re-execute the executed notebook of a report folder with nbval, in the environment the
    runner gave it; returns nbval's exit status, its output and the scratch report folder."""
    manifest = json.loads((folder / "manifest.json").read_text())
    name = manifest["notebook"]
    # nbval starts its kernel in the notebook's folder and the notebook writes its figures and
    # tables again: both go to scratch folders, so the report itself is only read
    executed = tmp_path / f"{name}.ipynb"
    shutil.copy(folder / f"{name}.ipynb", executed)
    scratch = tmp_path / f".tmp-{name}-{os.getpid()}"   # named like the runner's (sanitized)
    (scratch / "figures").mkdir(parents=True)
    (scratch / "tables").mkdir()
    env = {**os.environ, "LMK_REPORT_DIR": str(scratch), "LMK_DATA_ROOT": manifest["data_root"],
           "LMK_REPORTS_ROOT": str(folder.parent), HEADLESS_ENV: "1", "LMK_CACHE_DIR": str(cache)}
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "no:cacheprovider", "-q", "--nbval",
         "--nbval-current-env", "--nbval-sanitize-with", str(SANITIZE),
         "--nbval-cell-timeout", str(runner.CELL_TIMEOUT["smoke"]), str(executed)],
        cwd=runner.NOTEBOOKS_DIR, env=env, capture_output=True, text=True, timeout=1800)
    return proc.returncode, proc.stdout + proc.stderr, scratch


@pytest.mark.parametrize("stem", NOTEBOOKS)
def test_rerunning_a_smoke_report_reproduces_its_outputs(stem, smoke_runs, tmp_path):
    folder = smoke_runs.report(stem)
    manifest = json.loads((folder / "manifest.json").read_text())
    assert (manifest["profile"], manifest["seed"]) == ("smoke", 0)
    before = snapshot(folder)
    rc, out, scratch = rerun(folder, tmp_path, smoke_runs.cache)
    assert rc == 0, f"{stem}: a re-run differs from its report\n{out[-6000:]}"
    cells = sum(c.cell_type == "code"
                for c in nbformat.read(folder / f"{stem}.ipynb", as_version=4).cells)
    assert f"{cells} passed" in out, out[-2000:]   # every cell ran and was compared
    assert snapshot(folder) == before
    assert json.loads((scratch / "results.json").read_text())["notebook"] == stem


def test_the_check_catches_an_unseeded_number_and_masks_a_timing(tmp_path):
    nb = nbformat.v4.new_notebook()
    params = nbformat.v4.new_code_cell("profile = 'quick'\nseed = 0")
    params.metadata["tags"] = ["parameters"]
    nb.cells = [params,
                nbformat.v4.new_code_cell("import random, time\n"
                                          "print(f'trained in {time.perf_counter():.2f} s')"),
                nbformat.v4.new_code_cell("random.seed(seed)\nprint(random.random())"),
                nbformat.v4.new_code_cell("import numpy as np\n"
                                          "print(np.random.default_rng().random())  # unseeded")]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3",
                                 "language": "python"}
    (tmp_path / "nbs").mkdir()
    nbformat.write(nb, tmp_path / "nbs" / "toy.ipynb")
    result = runner.run_notebook(tmp_path / "nbs" / "toy.ipynb", profile="smoke",
                                 data_root=tmp_path, reports_root=tmp_path / "reports",
                                 progress=False)
    assert result.ok, result.error
    (tmp_path / "rerun").mkdir()
    rc, out, _ = rerun(result.report_dir, tmp_path / "rerun", tmp_path / "cache")
    assert rc == 1
    # parameters, papermill's injected parameters, the timing and the seeded draw pass
    assert "1 failed, 4 passed" in out, out[-3000:]
    assert "Cell 4: Cell outputs differ" in out and "Cell 3:" not in out
