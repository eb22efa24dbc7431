"""Where things live: the data root, the reports folder, the repository root.

The data root is, in order of precedence: an explicit argument, ``$LMK_DATA_ROOT``, then the
project's own ``data/`` folder. Nothing is ever downloaded. Only the implicit default may be
absent: a root someone named and mistyped must not quietly turn a real-data run into a run on
synthetic faces (:func:`data_root` with ``must_exist=True``).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
FIXTURES_DIR = PACKAGE_DIR / "fixtures"
PAPER_VALUES_DIR = PACKAGE_DIR / "papers" / "paper_values"


def data_root(path: str | os.PathLike | None = None, *, must_exist: bool = False) -> Path:
    """Return the data root: ``path`` if given, else ``$LMK_DATA_ROOT``, else ``<repo>/data``.

    With ``must_exist``, a root given explicitly (``path`` or ``$LMK_DATA_ROOT``) that is not a
    folder raises ``FileNotFoundError`` (``NotADirectoryError`` for a file); the default
    ``<repo>/data`` may be absent, since an empty checkout runs on synthetic faces by design.
    """
    if path is not None and str(path) != "":
        source, root = "data root", Path(path).expanduser().resolve()
    elif os.environ.get("LMK_DATA_ROOT"):
        source, root = "$LMK_DATA_ROOT", Path(os.environ["LMK_DATA_ROOT"]).expanduser().resolve()
    else:
        return REPO_ROOT / "data"
    if must_exist and not root.is_dir():
        if root.exists():
            raise NotADirectoryError(f"{source} {root} is a file, not a folder")
        raise FileNotFoundError(f"{source} {root} does not exist (the datasets' parent folder; "
                                "see data/README.md)")
    return root


def reports_root(path: str | os.PathLike | None = None) -> Path:
    """Return the reports folder: ``path``, else ``$LMK_REPORTS_ROOT``, else ``<repo>/reports``."""
    if path is not None and str(path) != "":
        return Path(path).expanduser().resolve()
    env = os.environ.get("LMK_REPORTS_ROOT")
    return Path(env).expanduser().resolve() if env else REPO_ROOT / "reports"


def cache_root() -> Path:
    """Folder for decoded-sample caches: ``$LMK_CACHE_DIR`` or ``<repo>/.cache``."""
    env = os.environ.get("LMK_CACHE_DIR")
    return Path(env).expanduser().resolve() if env else REPO_ROOT / ".cache"


def git_commit() -> dict:
    """``{"commit": HEAD's hash, "dirty": uncommitted changes to tracked files}`` of the
    repository this package runs from (None values outside a git checkout)."""
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=REPO_ROOT, capture_output=True, text=True,
                              timeout=10).stdout.strip()
    try:
        return {"commit": git("rev-parse", "HEAD") or None,
                "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}
    except (OSError, subprocess.SubprocessError):
        return {"commit": None, "dirty": None}
