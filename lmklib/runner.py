"""Run the paper notebooks headlessly with papermill and keep ``reports/`` consistent.

Each notebook runs into a temporary folder ``reports/.tmp-<name>-<pid>/`` (``$LMK_REPORT_DIR``
points the notebook's :mod:`lmklib.reports` calls there). Only when every cell succeeded is the
folder completed with ``manifest.json`` and swapped in for ``reports/<name>/``; a failing notebook
leaves its previous report untouched, its executed copy goes to ``reports/_failed/<name>/``, and
the other notebooks still run.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable

from .paths import REPO_ROOT, data_root as resolve_data_root, reports_root as resolve_reports_root
from .reports import (GENERATED, atomic_write_json, atomic_write_text, data_kind,
                      dataframe_to_markdown)
from .widgets import HEADLESS_ENV

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
PROFILES = ("smoke", "quick", "paper")
#: Seconds one cell may run before the run fails (a hung kernel must not stall CI for hours);
#: the paper profile's GPU cells may run for hours, so it has no limit.
CELL_TIMEOUT: dict[str, int | None] = {"smoke": 900, "quick": 3600, "paper": None}
PACKAGES = ("lmklib", "torch", "torchvision", "numpy", "pandas", "matplotlib", "seaborn",
            "scikit-image", "scipy", "papermill", "ipywidgets", "nbformat")


@dataclass
class RunResult:
    """The outcome of one notebook run."""

    name: str
    ok: bool
    seconds: float
    report_dir: Path | None = None
    error: str = ""
    failed_cell: int | None = None
    params: dict[str, Any] = field(default_factory=dict)


def list_notebooks(folder: Path = NOTEBOOKS_DIR) -> list[Path]:
    """The runnable notebooks: ``notebooks/*.ipynb``, sorted by name."""
    return sorted(p for p in Path(folder).glob("*.ipynb") if not p.name.startswith("."))


def resolve_names(names: Iterable[str] | None, folder: Path = NOTEBOOKS_DIR) -> list[Path]:
    """Notebook paths for ``names`` (a stem, a unique prefix or a unique substring)."""
    available = list_notebooks(folder)
    if not names:
        return available
    chosen = []
    for name in names:
        stem = Path(name).stem
        exact = [p for p in available if p.stem == stem]
        hits = exact or [p for p in available if p.stem.startswith(stem)] \
            or [p for p in available if stem in p.stem]
        if len(hits) != 1:
            raise ValueError(f"notebook {name!r} matches {[p.stem for p in hits] or 'nothing'}; "
                             f"available: {[p.stem for p in available]}")
        chosen.append(hits[0])
    return chosen


def notebook_parameters(path: Path) -> dict[str, dict]:
    """The ``parameters`` cell of a notebook: name -> {default, type, help} (papermill)."""
    import papermill as pm

    return {k: {"default": v["default"], "type": v["inferred_type_name"], "help": v["help"]}
            for k, v in pm.inspect_notebook(str(path)).items()}


def _git_commit() -> dict[str, Any]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    try:
        return {"commit": git("rev-parse", "HEAD") or None,
                "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}


def package_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


def datasets_found(root: Path) -> dict[str, Any]:
    """Which datasets the data root holds (via the data catalog when available)."""
    try:
        from .data import catalog
    except ImportError:
        catalog = None
    if catalog is not None and hasattr(catalog, "present"):
        try:
            return catalog.present(root)
        except Exception as e:  # the manifest must not fail because of a catalog problem
            return {"error": f"catalog scan failed: {e}"}
    return {p.name: True for p in sorted(root.iterdir()) if p.is_dir()} if root.is_dir() else {}


def _failure(exc: BaseException, executed: Path) -> tuple[str, int | None]:
    """Describe a papermill failure by the cell's index *in the source notebook* (papermill's
    injected-parameters cell is not counted) and the cell's first line. A dead kernel carries no
    cell index: the last cell papermill started is named instead."""
    index = getattr(exc, "cell_index", None)
    ename, evalue = getattr(exc, "ename", type(exc).__name__), getattr(exc, "evalue", str(exc))
    try:
        import nbformat

        cells = [c for c in nbformat.read(executed, as_version=4).cells  # without papermill's
                 if "papermill-error-cell-tag" not in c.metadata.get("tags", [])]  # error banners
    except Exception:  # the description must not hide the original error
        cells = []
    if index is None:  # a dead kernel: the last cell papermill started is the one that was running
        started = [i for i, c in enumerate(cells)
                   if c.metadata.get("papermill", {}).get("status", "pending") != "pending"]
        index = started[-1] if started else None
    if index is None or index >= len(cells):
        where = "before any cell ran" if index is None else f"cell {index}"
        return f"{where}: {ename}: {evalue}", index
    injected = sum("injected-parameters" in c.metadata.get("tags", []) for c in cells[:index])
    first_line = next((ln for ln in cells[index].source.splitlines() if ln.strip()), "")
    return f"cell {index - injected} (`{first_line[:60]}`): {ename}: {evalue}", index - injected


def run_notebook(path: str | Path, *, profile: str = "quick", seed: int = 0,
                 data_root: str | Path | None = None, reports_root: str | Path | None = None,
                 params: dict[str, Any] | None = None, progress: bool = True,
                 kernel_name: str = "python3") -> RunResult:
    """Execute one notebook with papermill and, on success, swap its report into place."""
    import papermill as pm

    path = Path(path)
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {list(PROFILES)}, got {profile!r}")
    if not path.is_file():
        raise FileNotFoundError(f"notebook not found: {path}")
    name = path.stem
    root = resolve_reports_root(reports_root)
    droot = resolve_data_root(data_root)
    final, tmp = root / name, root / f".tmp-{name}-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    (tmp / "figures").mkdir(parents=True)
    (tmp / "tables").mkdir()

    declared = notebook_parameters(path)
    wanted = {"profile": profile, "seed": seed, "data_root": str(droot), **(params or {})}
    unknown = sorted(set(params or {}) - set(declared))
    if unknown:
        raise ValueError(f"{name}: unknown parameters {unknown}; it declares {sorted(declared)}")
    injected = {k: v for k, v in wanted.items() if k in declared}

    env_backup = {k: os.environ.get(k) for k in ("LMK_REPORT_DIR", "LMK_DATA_ROOT", HEADLESS_ENV)}
    os.environ["LMK_REPORT_DIR"], os.environ["LMK_DATA_ROOT"] = str(tmp), str(droot)
    os.environ[HEADLESS_ENV] = "1"   # no front end: notebooks skip live widgets (lmklib.widgets)
    started, t0 = _dt.datetime.now(_dt.timezone.utc), time.perf_counter()
    try:
        pm.execute_notebook(str(path), str(tmp / f"{name}.ipynb"), parameters=injected,
                            kernel_name=kernel_name, progress_bar=progress, cwd=str(path.parent),
                            log_output=False, execution_timeout=CELL_TIMEOUT[profile])
    except Exception as exc:  # papermill raises PapermillExecutionError for a failing cell
        message, cell = _failure(exc, tmp / f"{name}.ipynb")
        failed = root / "_failed" / name
        shutil.rmtree(failed, ignore_errors=True)
        failed.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(failed)
        return RunResult(name, False, time.perf_counter() - t0, failed,
                         f"{name}: {message} (executed copy: {failed / (name + '.ipynb')})",
                         cell, injected)
    finally:
        for k, v in env_backup.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    seconds = time.perf_counter() - t0
    atomic_write_json(tmp / "manifest.json", {
        "notebook": name, "source": str(path.relative_to(REPO_ROOT)) if path.is_relative_to(REPO_ROOT) else str(path),
        **_git_commit(), "packages": package_versions(), "profile": profile, "seed": seed,
        "data_root": str(droot), "datasets_found": datasets_found(droot), "parameters": injected,
        "started": started.isoformat(timespec="seconds"),
        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds": round(seconds, 2), "platform": platform.platform(),
        "cpu_count": os.cpu_count()})
    old = root / f".old-{name}-{os.getpid()}"
    if final.exists():
        final.rename(old)
    tmp.rename(final)
    shutil.rmtree(old, ignore_errors=True)
    return RunResult(name, True, seconds, final, params=injected)


def reproduce(names: Iterable[str] | None = None, *, profile: str = "quick", seed: int = 0,
              data_root: str | Path | None = None, reports_root: str | Path | None = None,
              params: dict[str, Any] | None = None, progress: bool = True,
              notebooks_dir: str | Path | None = None) -> list[RunResult]:
    """Run every named notebook (all when ``names`` is empty), then rewrite ``reports/README.md``.

    A failing notebook does not stop the others; check each result's ``ok``.
    """
    from tqdm.auto import tqdm

    paths = resolve_names(names, Path(notebooks_dir) if notebooks_dir else NOTEBOOKS_DIR)
    results = []
    bar = tqdm(paths, desc="notebooks", unit="nb", disable=not progress)
    for path in bar:
        bar.set_postfix_str(path.stem)
        result = run_notebook(path, profile=profile, seed=seed, data_root=data_root,
                              reports_root=reports_root, params=params, progress=progress)
        results.append(result)
        if not result.ok:
            tqdm.write(f"FAILED {result.error}", file=sys.stderr)
    write_index(resolve_reports_root(reports_root))
    return results


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def write_index(root: Path) -> Path:
    """Regenerate ``reports/README.md`` from every ``reports/<name>/results.json``."""
    lines = ["# Reports", "",
             "Generated by `lmk reproduce`; do not edit. Every value below was computed by the "
             "notebook named in its heading; paper values come from `lmklib/papers/paper_values/` and "
             "name the table or figure they were taken from.", ""]
    for res_file in sorted(root.glob("*/results.json")):
        folder = res_file.parent
        if folder.name.startswith((".", "_")):
            continue
        res = json.loads(res_file.read_text())
        manifest_file = folder / "manifest.json"
        man = json.loads(manifest_file.read_text()) if manifest_file.is_file() else {}
        lines += [f"## {folder.name}", "",
                  f"Profile `{man.get('profile', res.get('params', {}).get('profile', '?'))}`, "
                  f"seed {man.get('seed', '?')}, data root `{man.get('data_root', '?')}`, "
                  f"commit `{(man.get('commit') or '?')[:10]}`, "
                  f"{man.get('wall_seconds', '?')} s. "
                  f"[Executed notebook]({folder.name}/{folder.name}.ipynb)", ""]
        rows = []
        for key, r in res.get("results", {}).items():
            if not r.get("headline", True):
                continue
            paper = r.get("paper") or {}
            kind = r.get("data", data_kind(r.get("dataset", "")))
            shown = _fmt(paper.get("value"))
            if shown and kind in GENERATED:   # never beside the paper as if comparable
                shown = f"({shown}) {kind}: not comparable"
            rows.append({"quantity": key, "ours": _fmt(r.get("value")), "data": kind,
                         "paper": shown, "unit": r.get("unit", ""),
                         "paper source": paper.get("source", ""), "dataset": r.get("dataset", ""),
                         "normalisation": r.get("norm", ""), "profile": r.get("profile", ""),
                         "note": r.get("note", "")})
        if rows:
            import pandas as pd

            lines += [dataframe_to_markdown(pd.DataFrame(rows)), ""]
        figures = sorted((folder / "figures").glob("*.png"))
        if figures:
            lines += ["Figures: " + ", ".join(f"[{f.stem}]({folder.name}/figures/{f.name})"
                                              for f in figures), ""]
        tables = sorted((folder / "tables").glob("*.md"))
        if tables:
            lines += ["Tables: " + ", ".join(f"[{t.stem}]({folder.name}/tables/{t.name})"
                                             for t in tables), ""]
    return atomic_write_text(root / "README.md", "\n".join(lines) + "\n")
