"""Where things live: the data root, the reports folder, the repository root.

The data root is, in order of precedence: an explicit argument, ``$LMK_DATA_ROOT``, then the
project's own ``data/`` folder. Nothing is ever downloaded.
"""

from __future__ import annotations

import os
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
REPO_ROOT = PACKAGE_DIR.parent
FIXTURES_DIR = PACKAGE_DIR / "fixtures"
PAPER_VALUES_DIR = PACKAGE_DIR / "papers" / "paper_values"


def data_root(path: str | os.PathLike | None = None) -> Path:
    """Return the data root: ``path`` if given, else ``$LMK_DATA_ROOT``, else ``<repo>/data``."""
    if path is not None and str(path) != "":
        return Path(path).expanduser().resolve()
    env = os.environ.get("LMK_DATA_ROOT")
    if env:
        return Path(env).expanduser().resolve()
    return REPO_ROOT / "data"


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
