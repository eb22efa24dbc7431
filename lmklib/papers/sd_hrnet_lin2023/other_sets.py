"""Tables 3-5: the other test sets, run when the data root holds them.

* **Masked 300-W** (Table 3, test only): the 300-W-trained networks on its common, challenge and
  full subsets (:func:`masked_300w_rows`).
* **COFW** (Table 4) and **WFLW** (Table 5): the whole recipe on the set's own training faces
  (search, pruning, teacher, distillation: :func:`run_recipe`), scored on its test set and, for
  WFLW, on each attribute subset (pose, expression, illumination, make-up, occlusion, blur).

Each returns rows ``{dataset, subset, faces, method, nme, fr10, fr8, auc10, paper key}`` (scores
in %; the key of the paper's value, :func:`paper_key`), NME normalised by
the scheme's inter-ocular distance (COFW: points 8/9, WFLW: 60/72, as the HRNet lineage scores
them).
"""

from __future__ import annotations

from pathlib import Path

from ...data.catalog import get_entry
from ...data.formats.wflw import ATTRIBUTES
from . import (dataset_faces, fine_tune, inter_ocular_nme, make_supernet, make_teacher, predict,
               scheme_of, scores, train_plain)
from . import distillation, slimming

#: the splits of Masked 300-W, as Table 3 reports them
MASKED_300W_SPLITS = ("common", "challenge", "full")


#: the paper's table of each set (its values are ``<table>_<method>_<subset>`` in the CSV)
TABLES = {"masked_300w": "table3", "cofw": "table4", "wflw": "table5"}


def paper_key(name: str, method: str, subset: str) -> str:
    """The paper-values key of a row: ``paper_key("wflw", "SD-HRNet 1", "pose")`` ->
    ``"table5_sd_hrnet_1_pose"``; COFW's one test set is its ``nme`` column."""
    m = method.lower().replace("-", "_").replace(" ", "_")
    return f"{TABLES[name]}_{m}_{'nme' if name == 'cofw' else subset}"


def _rows(name: str, subset: str, faces, models: dict, cfg: dict) -> list[dict]:
    return [{"dataset": get_entry(name).title, "subset": subset, "faces": len(faces),
             "method": method, **scores(inter_ocular_nme(predict(m, faces, cfg), faces)),
             "paper key": paper_key(name, method, subset)}
            for method, m in models.items()]


def masked_300w_rows(folder: str | Path, models: dict, cfg: dict, n: int | None = None
                     ) -> list[dict]:
    """Table 3: ``models`` (``{method: network}``, trained on 300-W) on each Masked 300-W
    subset the folder holds (``n`` faces of each, all when None)."""
    out = []
    for split in MASKED_300W_SPLITS:
        try:
            faces = dataset_faces(folder, "masked_300w", split, cfg, n)
        except FileNotFoundError:            # a copy without the (IBUG) challenge faces
            continue
        if len(faces):
            out += _rows("masked_300w", split, faces, models, cfg)
    return out


def run_recipe(name: str, folder: str | Path, cfg: dict, seed: int = 0,
               n_train: int | None = None, n_test: int | None = None,
               progress: bool = False) -> tuple[list[dict], dict]:
    """Tables 4-5: search, prune, train the teacher, fine-tune the S-HRNet and distil on
    ``name``'s (``"cofw"`` or ``"wflw"``) training faces, as the notebook does on 300-W; score the
    HRSuperNet, the S-HRNet and both students on its test set (and WFLW's attribute subsets).
    Returns ``(rows, models)``."""
    if name not in ("cofw", "wflw"):
        raise ValueError(f"run_recipe: name must be 'cofw' or 'wflw', got {name!r}")
    train = dataset_faces(folder, name, "train", cfg, n_train)
    test = dataset_faces(folder, name, "test", cfg, n_test)
    k = scheme_of(train).num_points
    sup, _ = slimming.search(make_supernet(cfg, seed=seed, num_points=k), train, cfg, seed=seed,
                             desc=f"{name} search", progress=progress)
    threshold = slimming.profile_threshold(sup, cfg)
    teacher, _ = train_plain(make_teacher(cfg, seed=seed, num_points=k), train, cfg,
                             cfg["teacher"], seed=seed, desc=f"{name} teacher", progress=progress)
    plain, _ = fine_tune(slimming.slim(sup, threshold), train, cfg, seed=seed,
                         desc=f"{name} S-HRNet", progress=progress)
    pair, _ = distillation.distill(slimming.slim(sup, threshold), teacher, train, cfg, seed=seed,
                                   desc=f"{name} distillation", progress=progress)
    models = {"HRSuperNet": sup, "S-HRNet": plain, "SD-HRNet 1": pair.s1, "SD-HRNet 2": pair.s2}
    rows = _rows(name, "test", test, models, cfg)
    if name == "wflw":
        for attribute in ATTRIBUTES:
            subset = dataset_faces(folder, name, "test", cfg, n_test, subset=attribute)
            if len(subset):
                rows += _rows(name, attribute, subset, models, cfg)
    return rows, models
