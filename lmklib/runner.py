"""Run the paper notebooks headlessly with papermill and keep ``reports/`` consistent.

Each notebook runs into a temporary folder ``reports/.tmp-<name>-<pid>-<random>/``
(``$LMK_REPORT_DIR`` points the notebook's :mod:`lmklib.reports` calls there). Only when every
cell succeeded is the folder completed with ``manifest.json`` and swapped in for
``reports/<name>/``; a failing notebook leaves its previous report untouched, its executed copy
goes to ``reports/_failed/<name>/``, and the other notebooks still run.

Several runs may share one reports folder: the swap, the ``_failed`` move and the index are done
under an exclusive lock on ``reports/.lock``, and the swap exchanges the two folders atomically,
so ``reports/<name>/`` is never missing. Temporary folders carry the pid of the run that made
them; a later run removes those whose process is gone (a killed run leaves no trace for long).
Everything a user can get wrong (notebook names, parameters, the data root, the reports folder)
is checked before anything is created.
"""

from __future__ import annotations

import ctypes
import datetime as _dt
import errno
import fcntl
import json
import logging
import os
import platform
import re
import secrets
import shutil
import signal
import sys
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from .paths import (REPO_ROOT, data_root as resolve_data_root, git_commit,
                    reports_root as resolve_reports_root)
from .reports import (GENERATED, atomic_write_json, atomic_write_text, data_kind,
                      dataframe_to_markdown)
from .widgets import HEADLESS_ENV

NOTEBOOKS_DIR = REPO_ROOT / "notebooks"
PROFILES = ("smoke", "quick", "paper")
#: Seconds one cell may run before the run fails (a hung kernel must not stall CI for hours);
#: the paper profile's GPU cells may run for hours, so it has no limit.
CELL_TIMEOUT: dict[str, int | None] = {"smoke": 900, "quick": 3600, "paper": None}
#: The kernel shares our stderr: without this, every run starts with its "running over TCP"
#: warning, and a run stopped with Ctrl-C ends in the kernel's traceback of the shutdown. What a
#: cell does is in the executed notebook; how a run failed is in its error.
_QUIET_KERNEL = ["--IPKernelApp.log_level=CRITICAL"]
#: The lock file that serialises swaps, ``_failed`` moves and index writes of concurrent runs.
LOCK_FILE = ".lock"
#: ``.tmp-<name>-<pid>-<8 hex>`` / ``.old-...``: a run's staging folders (the suffix is optional
#: for folders left by older versions, which used the pid alone).
_STAGING = re.compile(r"^\.(?P<kind>tmp|old)-(?P<name>.+?)-(?P<pid>\d+)(?:-[0-9a-f]{8})?$")
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


def _check_profile(profile: str) -> None:
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {list(PROFILES)}, got {profile!r}")


def list_notebooks(folder: Path = NOTEBOOKS_DIR) -> list[Path]:
    """The runnable notebooks: ``notebooks/*.ipynb``, sorted by name.

    None is an error, not an empty run: a mistyped ``--notebooks`` or an installed package
    (which carries no notebooks) would otherwise "succeed" having reproduced nothing.
    """
    folder = Path(folder)
    found = sorted(p for p in folder.glob("*.ipynb") if not p.name.startswith("."))
    if not found:
        where = "does not exist" if not folder.is_dir() else "holds no *.ipynb"
        raise FileNotFoundError(f"no notebooks: {folder} {where} (run from a checkout of the "
                                "repository or pass --notebooks FOLDER)")
    return found


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


def route_parameters(paths: list[Path], params: dict[str, Any]) -> dict[Path, dict[str, Any]]:
    """Which of ``params`` goes to which notebook: each to the notebooks that declare it.

    A parameter that no selected notebook declares is a typo and raises ``ValueError`` before
    anything runs; one that only some declare (``threads``, ``protocol``) is not an error, since
    ``lmk reproduce -p threads=1`` means "wherever that applies".
    """
    declared = {p: set(notebook_parameters(p)) for p in paths}
    nowhere = sorted(k for k in params if not any(k in d for d in declared.values()))
    if nowhere:
        known = sorted(set().union(*declared.values()))
        raise ValueError(f"no selected notebook declares parameter {', '.join(nowhere)} "
                         f"(selected: {', '.join(p.stem for p in paths)}; their parameters: "
                         f"{', '.join(known)})")
    return {p: {k: v for k, v in params.items() if k in declared[p]} for p in paths}


def package_versions() -> dict[str, str | None]:
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            out[name] = None
    return out


#: SIMD levels that change which CPU kernels torch and oneDNN run, best first.
_SIMD = ("avx512f", "avx2", "avx", "sse4_2")


def cpu(cpuinfo: str | None = None) -> dict[str, Any]:
    """The processor a report was computed on: ``model`` (``/proc/cpuinfo``'s model name, else
    ``platform.processor()``), ``simd`` (the best of :data:`_SIMD` its flags list, None when
    unknown) and ``count``. A seed gives the same numbers run after run on one machine, but
    oneDNN picks its convolution kernels by the instruction set (one convolution's output
    changes under ``ONEDNN_MAX_CPU_ISA=AVX2`` on an AVX-512 host), so trained networks drift
    from one processor to another (04_sd_hrnet quick at one commit: S-HRNet 5.57 % on an
    earlier host, 5.48 % on an AVX-512 AMD EPYC); the manifest says which one it was.
    ``cpuinfo``: the file's text (tests)."""
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text(errors="replace")
        except OSError:
            cpuinfo = ""
    fields: dict[str, str] = {}
    for line in cpuinfo.splitlines():
        key, sep, value = line.partition(":")
        if sep:
            fields.setdefault(key.strip(), value.strip())
    flags = set(fields.get("flags", "").split())
    return {"model": fields.get("model name") or platform.processor() or None,
            "simd": next((f for f in _SIMD if f in flags), None), "count": os.cpu_count()}


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


# --------------------------------------------------------------------------- the reports folder
def prepare_reports_root(path: str | Path | None = None) -> Path:
    """The reports folder, created if needed and checked writable (by creating its lock file),
    with the staging folders of dead runs cleared away (:func:`clean_stale`)."""
    root = resolve_reports_root(path)
    try:
        root.mkdir(parents=True, exist_ok=True)
        (root / LOCK_FILE).touch()
    except OSError as e:   # the same type (PermissionError, ...), a message naming the folder
        raise type(e)(f"reports folder {root} is not writable: {e.strerror or e}") from None
    clean_stale(root)
    return root


@contextmanager
def reports_lock(root: Path) -> Iterator[None]:
    """Hold the exclusive lock of a reports folder. ``flock`` locks belong to the open file, so
    the kernel drops them when a run dies: a killed run never leaves the folder locked."""
    with open(Path(root) / LOCK_FILE, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


def _staging(root: Path, kind: str, name: str) -> Path:
    """A staging folder name no other run (process, or run of this process) can hold."""
    return root / f".{kind}-{name}-{os.getpid()}-{secrets.token_hex(4)}"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:   # someone else's process: alive
        return True
    return True


def clean_stale(root: Path) -> list[Path]:
    """Remove the ``.tmp-*`` / ``.old-*`` folders whose run (the pid in the name) is gone.

    An ``.old-<name>-*`` folder whose ``<name>/`` is missing is the previous report of a run
    killed in the middle of a non-atomic swap: it is put back rather than deleted. Returns the
    folders removed or restored.
    """
    done = []
    with reports_lock(root):
        for folder in sorted(root.iterdir()):
            m = _STAGING.match(folder.name)
            if m is None or not folder.is_dir() or _pid_alive(int(m["pid"])):
                continue
            final = root / m["name"]
            if m["kind"] == "old" and not final.exists():
                folder.rename(final)
            else:
                shutil.rmtree(folder, ignore_errors=True)
            done.append(folder)
    return done


def _exchange(a: Path, b: Path) -> bool:
    """Swap two existing paths atomically (Linux ``renameat2(RENAME_EXCHANGE)``); ``False`` where
    the system or file system cannot."""
    try:
        renameat2 = ctypes.CDLL(None, use_errno=True).renameat2
    except (OSError, AttributeError):
        return False
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p,
                          ctypes.c_uint]
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def swap_in(tmp: Path, final: Path) -> None:
    """Make the complete report ``tmp`` the report ``final``, under the folder's lock.

    The old report ends up at ``tmp`` (the caller removes it). ``final`` is never missing: the
    two folders are exchanged atomically, or, where that is unsupported, renamed via an
    ``.old-*`` folder that :func:`clean_stale` restores if the run dies in between. A report that
    succeeds also clears the notebook's ``_failed/<name>/`` copy, which is then out of date.
    """
    with reports_lock(final.parent):
        if not final.exists():
            tmp.rename(final)
        elif not _exchange(tmp, final):
            old = _staging(final.parent, "old", final.name)
            final.rename(old)
            tmp.rename(final)
            old.rename(tmp)
        shutil.rmtree(final.parent / "_failed" / final.name, ignore_errors=True)


def _keep_failed(tmp: Path, root: Path, name: str) -> Path:
    """Move a failed run's folder to ``_failed/<name>/`` for inspection, replacing an older one."""
    failed = root / "_failed" / name
    with reports_lock(root):
        shutil.rmtree(failed, ignore_errors=True)
        failed.parent.mkdir(parents=True, exist_ok=True)
        tmp.rename(failed)
    return failed


# --------------------------------------------------------------------------- running
def run_notebook(path: str | Path, *, profile: str = "quick", seed: int = 0,
                 data_root: str | Path | None = None, reports_root: str | Path | None = None,
                 params: dict[str, Any] | None = None, progress: bool = True,
                 kernel_name: str = "python3") -> RunResult:
    """Execute one notebook with papermill and, on success, swap its report into place.

    Arguments are checked before anything is written: an unknown profile or parameter raises
    ``ValueError``, a data root given explicitly (here or in ``$LMK_DATA_ROOT``) that is not a
    folder ``FileNotFoundError``/``NotADirectoryError``, an unwritable reports folder
    ``OSError``. Whatever happens afterwards, the temporary folder does not outlive the call.
    """
    path = Path(path)
    _check_profile(profile)
    if not path.is_file():
        raise FileNotFoundError(f"notebook not found: {path}")
    name = path.stem
    declared = notebook_parameters(path)
    params = dict(params or {})
    unknown = sorted(set(params) - set(declared))
    if unknown:
        raise ValueError(f"{name}: unknown parameters {unknown}; it declares {sorted(declared)}")
    droot = resolve_data_root(params.pop("data_root", None) or data_root, must_exist=True)
    root = prepare_reports_root(reports_root)
    wanted = {"profile": profile, "seed": seed, "data_root": str(droot), **params}
    injected = {k: v for k, v in wanted.items() if k in declared}

    tmp = _staging(root, "tmp", name)
    try:
        (tmp / "figures").mkdir(parents=True)
        (tmp / "tables").mkdir()
        return _execute(path, tmp, root, droot, profile, seed, injected, progress, kernel_name)
    finally:   # swapped in, moved to _failed, or abandoned: nothing may stay behind
        shutil.rmtree(tmp, ignore_errors=True)


@contextmanager
def _quiet_after_ctrl_c() -> Iterator[None]:
    """Ctrl-C stops a run with ``KeyboardInterrupt`` as usual; but papermill then shuts the
    kernel down under the cell it was waiting for, and logs that cell's "Kernel died" error: noise
    about a stop the user asked for. From the signal on, papermill's logger is muted (until the
    run has unwound). Only the main thread, with Python's own SIGINT handler, is touched."""
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is not signal.default_int_handler):
        yield
        return
    log = logging.getLogger("papermill")
    was_disabled = log.disabled

    def on_sigint(signum, frame):
        log.disabled = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        log.disabled = was_disabled


def _execute(path: Path, tmp: Path, root: Path, droot: Path, profile: str, seed: int,
             injected: dict[str, Any], progress: bool, kernel_name: str) -> RunResult:
    """Run the notebook into ``tmp``; on success write the manifest and swap it in."""
    import papermill as pm

    name = path.stem
    env_backup = {k: os.environ.get(k) for k in ("LMK_REPORT_DIR", "LMK_DATA_ROOT",
                                                  "LMK_REPORTS_ROOT", HEADLESS_ENV)}
    os.environ["LMK_REPORT_DIR"], os.environ["LMK_DATA_ROOT"] = str(tmp), str(droot)
    os.environ["LMK_REPORTS_ROOT"] = str(root)   # the other reports (06_peers reads their models)
    os.environ[HEADLESS_ENV] = "1"   # no front end: notebooks skip live widgets (lmklib.widgets)
    started, t0 = _dt.datetime.now(_dt.timezone.utc), time.perf_counter()
    try:
        with _quiet_after_ctrl_c():
            pm.execute_notebook(str(path), str(tmp / f"{name}.ipynb"), parameters=injected,
                                kernel_name=kernel_name, progress_bar=progress,
                                cwd=str(path.parent), log_output=False,
                                execution_timeout=CELL_TIMEOUT[profile],
                                extra_arguments=_QUIET_KERNEL if kernel_name == "python3" else [])
    except Exception as exc:  # papermill raises PapermillExecutionError for a failing cell
        message, cell = _failure(exc, tmp / f"{name}.ipynb")
        failed = _keep_failed(tmp, root, name)
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
        **git_commit(), "packages": package_versions(), "profile": profile, "seed": seed,
        "data_root": str(droot), "datasets_found": datasets_found(droot), "parameters": injected,
        "started": started.isoformat(timespec="seconds"),
        "finished": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "wall_seconds": round(seconds, 2), "platform": platform.platform(), "cpu": cpu()})
    swap_in(tmp, root / name)
    return RunResult(name, True, seconds, root / name, params=injected)


def reproduce(names: Iterable[str] | None = None, *, profile: str = "quick", seed: int = 0,
              data_root: str | Path | None = None, reports_root: str | Path | None = None,
              params: dict[str, Any] | None = None, progress: bool = True,
              notebooks_dir: str | Path | None = None) -> list[RunResult]:
    """Run every named notebook (all when ``names`` is empty), then rewrite ``reports/README.md``.

    Everything that would fail every notebook alike (names, parameters, data root, reports
    folder) raises before the first one runs. After that, a notebook's failure, whatever it is,
    is that notebook's result (``ok`` false, ``error`` one line) and the others still run.
    """
    from tqdm.auto import tqdm

    _check_profile(profile)
    paths = resolve_names(names, Path(notebooks_dir) if notebooks_dir else NOTEBOOKS_DIR)
    params = dict(params or {})
    data_root = params.pop("data_root", None) or data_root
    routed = route_parameters(paths, params)
    resolve_data_root(data_root, must_exist=True)
    root = prepare_reports_root(reports_root)
    results = []
    bar = tqdm(paths, desc="notebooks", unit="nb", disable=not progress)
    for path in bar:
        bar.set_postfix_str(path.stem)
        t0 = time.perf_counter()
        try:
            result = run_notebook(path, profile=profile, seed=seed, data_root=data_root,
                                  reports_root=root, params=routed[path], progress=progress)
        except Exception as exc:
            text = " ".join(str(exc).split())
            result = RunResult(path.stem, False, time.perf_counter() - t0,
                               error=f"{path.stem}: {type(exc).__name__}: {text}",
                               params=routed[path])
        results.append(result)
        if not result.ok:
            tqdm.write(f"FAILED {result.error}", file=sys.stderr)
    write_index(root)
    return results


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return "" if v is None else str(v)


def write_index(root: Path) -> Path:
    """Regenerate ``reports/README.md`` from every ``reports/<name>/results.json``, under the
    folder's lock: a concurrent run's swap cannot change the reports while they are read, and
    the last index written describes the last state."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    with reports_lock(root):
        return _write_index(root)


def _write_index(root: Path) -> Path:
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
