"""What a notebook writes into its report: figures, tables, headline numbers; all atomically.

A notebook calls :func:`init` once (after its parameters cell), then :func:`save_figure`,
:func:`save_table` and :func:`record`. Under ``lmk reproduce`` the runner points
``$LMK_REPORT_DIR`` at a temporary folder that replaces ``reports/<name>/`` only when the whole
notebook succeeded; run by hand, a notebook writes to ``reports/_scratch/<name>/`` so a complete
report is never half-overwritten.

Report layout::

    <name>.ipynb   executed notebook (written by the runner)
    figures/*.png  tables/*.csv + tables/*.md
    models/<m>.pt + models/<m>.json   trained weights (a state dict) and their model card
    results.json   {"notebook", "params", "results": {key: {value, unit, paper, ...}}}
    manifest.json  provenance (written by the runner)

Paper values are never typed into notebooks: they live in ``lmklib/papers/paper_values/<paper>.csv``
(columns ``key,value,unit,source,note``; ``source`` names the table or figure) and are fetched
with :func:`paper_value`.
"""

from __future__ import annotations

import json
import math
import os
import tempfile
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from .paths import PAPER_VALUES_DIR, reports_root

#: How a result's ``dataset`` text names a catalog dataset (case-insensitive regular expressions).
#: A text naming one that the data root does not hold is refused by :func:`record`: synthetic
#: faces must never be labelled as a real dataset.
DATASET_NAMES: dict[str, str] = {
    "cuhk_5pt": r"cuhk|lfw|webface",
    "300w": r"(?<!masked )(?<!masked_)(?<!masked-)\b300-?w\b(?![-_ ]?lp)|helen|lfpw|\bafw\b|ibug",
    "masked_300w": r"masked[ _-]?300-?w",
    "kaggle": r"kaggle(?![- ]format)",
    "cofw": r"cofw",
    "wflw": r"wflw",
    "aflw2000_3d": r"aflw2000",
    "300w_lp": r"300-?w[-_ ]?lp",
    "bioid": r"bioid",
    "celeba": r"celeba",
}
#: Words that declare a result computed on generated data, which is always accepted.
GENERATED = ("synthetic", "fixture")

_state: dict[str, Any] = {"dir": None, "name": None, "results": {}, "params": {}, "figures": {},
                         "tables": {}, "models": {}, "found": None}


# --------------------------------------------------------------------------- atomic writes
def _umask() -> int:
    """The process's umask, read without changing it where Linux allows (``os.umask`` can only
    be read by setting it, which races with other threads creating files)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` via a temporary file in the same folder and an atomic rename:
    readers see the old file or the new one, never a partial one. The file gets the mode a plain
    ``open(path, "w")`` would give (0666 less the umask), not ``mkstemp``'s private 0600: reports
    are meant to be read by others."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, 0o666 & ~_umask())
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(_jsonable(obj), indent=2, sort_keys=False) + "\n")


def _jsonable(obj: Any) -> Any:
    """Convert numpy/torch scalars, paths and non-finite floats into JSON-safe values."""
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "item") and callable(obj.item) and getattr(obj, "ndim", 0) == 0:
        obj = obj.item()
    if isinstance(obj, float) and not math.isfinite(obj):
        return None
    if isinstance(obj, (str, int, float, bool)) or obj is None:
        return obj
    if hasattr(obj, "tolist"):
        return _jsonable(obj.tolist())
    return str(obj)


# --------------------------------------------------------------------------- paper values
@dataclass(frozen=True)
class PaperValue:
    """A number reported in a paper, with where it was reported."""

    paper: str
    key: str
    value: float
    unit: str
    source: str
    note: str = ""


@lru_cache(maxsize=None)
def paper_values(paper: str) -> dict[str, PaperValue]:
    """All values of ``lmklib/papers/paper_values/<paper>.csv`` by key."""
    import csv

    path = PAPER_VALUES_DIR / f"{paper}.csv"
    if not path.is_file():
        known = sorted(p.stem for p in PAPER_VALUES_DIR.glob("*.csv"))
        raise FileNotFoundError(f"no paper-value file {path}; known papers: {known}")
    out = {}
    with open(path, encoding="utf-8", newline="") as f:
        for lineno, row in enumerate(csv.DictReader(f), start=2):
            missing = {"key", "value", "unit", "source"} - {k for k, v in row.items() if v}
            if missing:
                raise ValueError(f"{path}, line {lineno}: missing {sorted(missing)}")
            out[row["key"]] = PaperValue(paper, row["key"], float(row["value"]), row["unit"],
                                         row["source"], row.get("note") or "")
    return out


def paper_value(paper: str, key: str) -> PaperValue:
    """One paper value; a missing key raises ``KeyError`` listing the valid keys."""
    values = paper_values(paper)
    if key not in values:
        raise KeyError(f"{paper}: no paper value {key!r}; valid: {sorted(values)}")
    return values[key]


# --------------------------------------------------------------------------- the report
def init(name: str, **params: Any) -> Path:
    """Start (or restart) the report of notebook ``name``; ``params`` are saved with it.

    Returns the folder being written: ``$LMK_REPORT_DIR`` under the runner, else
    ``reports/_scratch/<name>``.
    """
    env = os.environ.get("LMK_REPORT_DIR")
    folder = Path(env) if env else reports_root() / "_scratch" / name
    folder.mkdir(parents=True, exist_ok=True)
    _state.update(dir=folder, name=name, results={}, params=_jsonable(params), figures={}, tables={},
                  models={}, found=_datasets_found(params.get("data_root")))
    _flush()
    return folder


def _datasets_found(data_root: Any) -> dict[str, bool]:
    """``{catalog name: present}`` for the run's data root (the notebook's ``data_root``
    parameter, else ``$LMK_DATA_ROOT`` or ``data/``)."""
    from .data import catalog
    from .paths import data_root as resolve

    return {k: v is not None for k, v in catalog.present(resolve(data_root or None)).items()}


def data_kind(dataset: str) -> str:
    """``"synthetic"``, ``"fixture"``, ``"real"`` (names a catalog dataset) or ``""`` (neither,
    e.g. a timing's setting)."""
    import re

    low = dataset.lower()
    for word in GENERATED:
        if word in low:
            return word
    return "real" if any(re.search(p, low) for p in DATASET_NAMES.values()) else ""


def check_dataset(dataset: str, found: dict[str, bool] | None = None) -> None:
    """Raise ``ValueError`` if ``dataset`` names a catalog dataset that the run did not find
    (``found``: ``{catalog name: present}``; default: what :func:`init` saw). Texts that say
    ``synthetic`` or ``fixture`` are always accepted."""
    import re

    found = _state.get("found") if found is None else found
    if not dataset or found is None or data_kind(dataset) != "real":
        return
    missing = [k for k, p in DATASET_NAMES.items()
               if re.search(p, dataset.lower()) and not found.get(k, False)]
    if missing:
        raise ValueError(f"result dataset {dataset!r} names {', '.join(missing)}, which the data "
                         "root does not hold: a number computed on synthetic or fixture faces must "
                         "say so in its dataset (e.g. 'synthetic ...')")


def report_dir() -> Path:
    if _state["dir"] is None:
        raise RuntimeError("call lmklib.reports.init(name, **params) first")
    return _state["dir"]


def _flush() -> None:
    atomic_write_json(report_dir() / "results.json",
                      {"notebook": _state["name"], "params": _state["params"],
                       "results": _state["results"], "figures": _state["figures"],
                       "tables": _state["tables"], "models": _state["models"]})


def save_figure(fig, name: str, caption: str = "", dpi: int = 110) -> Path:
    """Save a matplotlib figure as ``figures/<name>.png`` (atomically) and return the path."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight")
    path = atomic_write_bytes(report_dir() / "figures" / f"{name}.png", buf.getvalue())
    _state["figures"][name] = caption
    _flush()
    return path


def save_table(df, name: str, caption: str = "", index: bool = False,
               floatfmt: str = ".4g") -> Path:
    """Save a DataFrame as ``tables/<name>.csv`` and ``tables/<name>.md``; returns the csv path."""
    folder = report_dir() / "tables"
    path = atomic_write_text(folder / f"{name}.csv", df.to_csv(index=index))
    md = (f"{caption}\n\n" if caption else "") + dataframe_to_markdown(df, index, floatfmt)
    atomic_write_text(folder / f"{name}.md", md + "\n")
    _state["tables"][name] = caption
    _flush()
    return path


MODEL_FORMAT = "lmklib-model/1"


def save_model(name: str, state_dict: dict, card: dict) -> Path:
    """Save a trained model as ``models/<name>.pt`` (its state dict, ``torch.save``; load it with
    ``torch.load(..., weights_only=True)``) and ``models/<name>.json``, its model card; both
    atomically, the weights first, so a card never points at missing or other weights.

    ``card`` says how to rebuild and use the model (see :mod:`lmklib.landmarker`): ``paper``
    (the :mod:`lmklib.papers` module that knows the architecture), ``architecture`` and ``args``,
    ``scheme``, ``crop`` (the :class:`~lmklib.data.faces.CropPolicy` fields), ``box_policy``,
    ``detector`` (a :class:`~lmklib.data.detect.DetectorCalibration` dict or None), ``dataset``
    and ``test`` (its headline number). The notebook, profile, seed, commit, the weights' file
    name and their SHA-256 are added here. Returns the card's path.
    """
    import hashlib
    import io

    import torch

    from .paths import git_commit

    buf = io.BytesIO()
    torch.save({k: v.detach().cpu() for k, v in state_dict.items()}, buf)
    data = buf.getvalue()
    folder = report_dir() / "models"
    atomic_write_bytes(folder / f"{name}.pt", data)
    full = {"format": MODEL_FORMAT, "name": name, "notebook": _state["name"], **card,
            "profile": _state["params"].get("profile", ""),
            "seed": _state["params"].get("seed"), **git_commit(),
            "weights": f"{name}.pt", "sha256": hashlib.sha256(data).hexdigest()}
    path = atomic_write_json(folder / f"{name}.json", full)
    _state["models"][name] = card.get("title", name)
    _flush()
    return path


def prediction_table(crops, points, root: str | os.PathLike | None = None):
    """A DataFrame of predictions: per face its image (relative to ``root`` where under it), its
    box ``box_x0 box_y0 box_x1 box_y1`` and the points ``x<i> y<i>`` (image pixels, ``points [N, K, 2]``) of a
    :class:`~lmklib.data.faces.FaceCrops`; what ``lmk predict`` on the same image and box must
    give again."""
    import numpy as np
    import pandas as pd

    p = np.asarray(points, dtype=np.float64)
    base = Path(root).resolve() if root else None
    names = [str(Path(q).resolve().relative_to(base)) if base and q and
             Path(q).resolve().is_relative_to(base) else q for q in (crops.paths or [""] * len(p))]
    table = pd.DataFrame({"image": names})
    for j, c in enumerate(("box_x0", "box_y0", "box_x1", "box_y1")):
        table[c] = crops.boxes[:, j].numpy()
    for k in range(p.shape[1]):
        table[f"x{k}"], table[f"y{k}"] = p[:, k, 0], p[:, k, 1]
    return table


def dataframe_to_markdown(df, index: bool = False, floatfmt: str = ".4g") -> str:
    """A GitHub-style markdown table (no `tabulate` dependency)."""
    frame = df.reset_index() if index else df

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return "" if math.isnan(v) else format(v, floatfmt)
        return str(v).replace("|", "\\|")

    header = "| " + " | ".join(str(c) for c in frame.columns) + " |"
    rule = "| " + " | ".join("---" for _ in frame.columns) + " |"
    rows = ["| " + " | ".join(fmt(v) for v in row) + " |" for row in frame.itertuples(index=False)]
    return "\n".join([header, rule, *rows])


def record(name: str, value: float, paper: PaperValue | None = None, unit: str = "",
           dataset: str = "", norm: str = "", headline: bool = True, note: str = "") -> dict:
    """Record one number of the report in ``results.json``.

    Args:
        name: a stable key, e.g. ``"nme_stage3"``.
        value: our measured value (computed, never typed in).
        paper: the paper's value for the same quantity, from :func:`paper_value`.
        unit: ``"%"``, ``"px"``, ``"ms"``, ...
        dataset, norm: what the number was measured on and how it was normalised. A dataset
            that names a real dataset the run did not find raises ``ValueError``
            (:func:`check_dataset`).
        headline: show it in ``reports/README.md``.
    """
    if paper is not None and not isinstance(paper, PaperValue):
        raise TypeError("paper must come from lmklib.reports.paper_value(paper, key) so that its "
                        "source travels with it; got " + type(paper).__name__)
    check_dataset(dataset)
    entry = {"value": _jsonable(value), "unit": unit or (paper.unit if paper else ""),
             "dataset": dataset, "data": data_kind(dataset), "norm": norm, "profile": _state["params"].get("profile", ""),
             "headline": headline, "note": note,
             "paper": asdict(paper) if paper is not None else None}
    _state["results"][name] = entry
    _flush()
    return entry


def with_unit(values, unit: str) -> list:
    """Measured values (timings, speed-ups) for display, each as ``"<3 digits> <unit>"`` (NaN kept):
    a displayed table keeps saved tables' plain numbers out of the text that a re-run compares,
    and ``tests/nbval_sanitize.cfg`` masks exactly this form. The number is right-aligned in 8
    characters: pandas sizes a column (and pads its header) by its widest value, so "0.0987 s"
    in one run and "0.105 s" in the next would move the header, which the mask cannot reach."""
    import pandas as pd

    return [v if pd.isna(v) else f"{f'{v:.3g}':>8} {unit}" for v in values]


def slug(text: str) -> str:
    """``"300-W (common)"`` -> ``"300_w_common"``: a safe file/key name."""
    import re

    return re.sub(r"[^a-z0-9]+", "_", text.lower()).strip("_")
