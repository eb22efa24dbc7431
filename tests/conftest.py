"""Shared test fixtures."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import pytest

from lmklib.paths import REPO_ROOT


def _real_root() -> Path | None:
    env = os.environ.get("LMK_DATA_ROOT")
    for cand in ([Path(env)] if env else []) + [REPO_ROOT.parent / "shared" / "data"]:
        if cand.is_dir():
            return cand.resolve()
    return None


@pytest.fixture(scope="session")
def real_data_root() -> Path:
    """The folder holding the real data (``$LMK_DATA_ROOT`` or ``../shared/data``); skips if absent."""
    root = _real_root()
    if root is None:
        pytest.skip("real data not available (set LMK_DATA_ROOT or provide ../shared/data)")
    return root


@pytest.fixture(scope="session")
def cuhk_root(real_data_root: Path) -> Path:
    root = real_data_root / "cuhk_5pt"
    if not (root / "trainImageList.txt").is_file():
        pytest.skip(f"CUHK 5-point data not found under {real_data_root}")
    return root


@pytest.fixture(scope="session")
def w300_root(real_data_root: Path) -> Path:
    for name in ("300w", "300w_subset", "300W"):
        if (real_data_root / name).is_dir():
            return real_data_root / name
    pytest.skip(f"300-W data not found under {real_data_root}")


@pytest.fixture(autouse=True)
def _isolated_reports(tmp_path_factory, monkeypatch):
    """No test writes into the repository's reports/ or .cache/ by accident."""
    monkeypatch.setenv("LMK_REPORTS_ROOT", str(tmp_path_factory.mktemp("reports")))
    monkeypatch.setenv("LMK_CACHE_DIR", str(tmp_path_factory.mktemp("cache")))
    monkeypatch.delenv("LMK_REPORT_DIR", raising=False)


@pytest.fixture
def one_thread():
    """One torch thread for the test, restored afterwards: tiny (depthwise) convolutions crawl on
    two threads of a busy machine. Use with ``pytestmark = pytest.mark.usefixtures("one_thread")``."""
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(old)


@dataclass
class NotebookReport:
    """What a smoke run of a notebook left in its report folder."""

    folder: Path
    report: dict        # results.json: notebook, params, results, figures, tables
    figures: set[str]   # stems of figures/*.png
    tables: set[str]    # stems of tables/*.csv

    @property
    def results(self) -> dict:
        return self.report["results"]

    def expect(self, figures: set[str], tables: set[str], models: set[str]) -> "NotebookReport":
        """Assert that the run saved at least ``figures`` and ``tables``, and exactly ``models``,
        each as its state (``models/<name>.pt``) and its card (``models/<name>.json``)."""
        assert figures <= self.figures, figures - self.figures
        assert tables <= self.tables, tables - self.tables
        assert set(self.report["models"]) == models
        for suffix in ("pt", "json"):
            assert {p.stem for p in (self.folder / "models").glob(f"*.{suffix}")} == models, suffix
        return self


@pytest.fixture
def run_smoke_notebook():
    """``run(stem, reports_root, data_root=None)``: run ``notebooks/<stem>.ipynb`` in the smoke
    profile through the runner, fail with the runner's message if it fails, return its report."""
    import json

    from lmklib import runner

    def run(stem: str, reports_root: Path, data_root: Path | None = None) -> NotebookReport:
        result = runner.run_notebook(runner.NOTEBOOKS_DIR / f"{stem}.ipynb", profile="smoke",
                                     seed=0, data_root=data_root, reports_root=reports_root,
                                     progress=False)
        assert result.ok, result.error
        folder = Path(reports_root) / stem
        return NotebookReport(folder, json.loads((folder / "results.json").read_text()),
                              {p.stem for p in (folder / "figures").glob("*.png")},
                              {p.stem for p in (folder / "tables").glob("*.csv")})

    return run
