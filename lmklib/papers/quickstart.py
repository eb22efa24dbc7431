"""Library side of ``notebooks/00_quickstart.ipynb``: find the datasets, evaluate the mean-shape
baseline, and show on synthetic faces that a small CNN learns what the baseline cannot.

A dataset found is described by a plain dict (``name``, ``train``, ``test``, ``norm``,
``source``, ``note``): the two splits are :class:`~lmklib.data.sample.LandmarkDataset` s, since
the baseline needs only their annotations (no image is decoded for it).
"""

from __future__ import annotations

import shutil
import tempfile
import weakref
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from .. import metrics
from ..models.baseline import MeanShape, SimpleCNN, pixels_to_unit, unit_to_pixels

PROFILES: dict[str, dict[str, Any]] = {
    # max_test: faces per real test set (None = all); synthetic sizes and CNN epochs.
    "smoke": dict(max_test=300, synth_train=600, synth_test=200, synth_size=64, epochs=2,
                  batch_size=64, lr=3e-3, threads=2),
    "quick": dict(max_test=None, synth_train=5000, synth_test=500, synth_size=64, epochs=15,
                  batch_size=64, lr=3e-3, threads=2),
    "paper": dict(max_test=None, synth_train=20000, synth_test=2000, synth_size=64, epochs=40,
                  batch_size=64, lr=3e-3, threads=8),
}


def get_profile(name: str) -> dict[str, Any]:
    if name not in PROFILES:
        raise ValueError(f"profile must be one of {sorted(PROFILES)}, got {name!r}")
    return dict(PROFILES[name])


def _split_pair(name: str, train, test, norm: str, source: str, note: str = "") -> dict[str, Any]:
    """One dataset of the quickstart: its fitting and testing splits and the normalisation its
    papers use (``source`` is ``"real"`` or ``"fixture"``)."""
    return {"name": name, "train": train, "test": test, "norm": norm, "source": source,
            "note": note}


def _find(root: Path, names: tuple[str, ...]) -> Path | None:
    return next((root / n for n in names if (root / n).is_dir()), None)


def available_datasets(root: str | Path) -> list[dict[str, Any]]:
    """The real datasets under ``root`` that the quickstart evaluates (CUHK 5-point, 300-W)."""
    from ..data.formats.cuhk import CUHK5Point
    from ..data.formats.w300 import W300

    root = Path(root)
    found = []
    cuhk = _find(root, ("cuhk_5pt", "cuhk", "CUHK"))
    if cuhk is not None and (cuhk / "trainImageList.txt").is_file():
        train, test = CUHK5Point(cuhk, "train"), CUHK5Point(cuhk, "test")
        found.append(_split_pair(
            "CUHK 5-point (LFW+Webface, clean protocol)", train, test, "bbox_width", "real",
            f"clean protocol (lmklib.data.formats.cuhk): train {len(train):,} = net_7876 + the 80 px "
            f"original LFW frames, test {len(test):,} net_7876 faces (the published 3,466 include "
            "1,439 LFW faces whose copy here does not match its labels); error over face-box "
            "width (Sun et al.)"))
    w300 = _find(root, ("300w", "300W", "300w_subset"))
    if w300 is not None:
        train, test = W300(w300, "train"), W300(w300, "common")
        if len(train) and len(test):
            note = (f"train = {'+'.join(train.present)} ({len(train)}); test = "
                    f"{'+'.join(test.present)} ({len(test)})")
            if test.missing:
                note += f"; missing from the common split: {', '.join(test.missing)}"
            found.append(_split_pair("300-W", train, test, "inter_ocular", "real", note))
    return found


class _TempFolder:
    """A temporary folder removed when the last object holding this handle is garbage-collected,
    or when the interpreter exits (``weakref.finalize`` runs at exit too)."""

    def __init__(self, prefix: str):
        self.path = Path(tempfile.mkdtemp(prefix=prefix))
        weakref.finalize(self, shutil.rmtree, self.path, ignore_errors=True)


def fixture_datasets(folder: str | Path | None = None) -> list[dict[str, Any]]:
    """Tiny CUHK and 300-W datasets written in their documented formats by
    :mod:`lmklib.data.fixtures` (the stand-in when no real data is present).

    Without ``folder`` they go to a temporary folder that is removed once no dataset refers to
    it any more, or at the latest when the process (the notebook's kernel) exits: the datasets
    decode their images lazily, so the folder must outlive this call, but not the run.
    """
    from ..data import fixtures
    from ..data.formats.cuhk import CUHK5Point
    from ..data.formats.w300 import W300

    owner = None if folder else _TempFolder("lmk-fixtures-")
    folder = Path(folder or owner.path)
    cuhk, w300 = folder / "cuhk_5pt", folder / "300w"
    fixtures.write_cuhk_fixture(cuhk, n_train=8, n_test=6)
    fixtures.write_300w_fixture(w300, n_per_folder=3)
    splits = [CUHK5Point(cuhk, "train"), CUHK5Point(cuhk, "test"), W300(w300, "train"),
              W300(w300, "common")]
    for split in splits:
        split.fixture_folder = owner   # keeps the folder alive exactly as long as the datasets
    return [_split_pair("CUHK 5-point fixture", *splits[:2], "bbox_width", "fixture",
                        "written by lmklib.data.fixtures"),
            _split_pair("300-W fixture", *splits[2:], "inter_ocular", "fixture",
                        "written by lmklib.data.fixtures")]


def evaluate_baseline(pair: dict[str, Any], max_test: int | None = None) -> dict[str, Any]:
    """Fit the mean shape on the train split, predict the test split (first ``max_test``)."""
    model = MeanShape().fit(pair["train"].landmarks_array(), pair["train"].boxes_array())
    gt, boxes = pair["test"].landmarks_array(), pair["test"].boxes_array()
    if max_test is not None:
        gt, boxes = gt[:max_test], boxes[:max_test]
    pred = model.predict(boxes)
    scheme = pair["test"].scheme
    per_face = metrics.nme(pred, gt, norm=pair["norm"], scheme=scheme, boxes=boxes, reduce="none")
    return {"dataset": pair["name"], "n_test": len(gt), "norm": pair["norm"], "per_face": per_face,
            "nme": float(np.nanmean(per_face)),
            "failure_rate_10": metrics.failure_rate(per_face, 0.10),
            "auc_10": metrics.auc(per_face, 0.10), "source": pair["source"], "note": pair["note"],
            "prediction": pred, "ground_truth": gt, "boxes": boxes}


def synthetic_split(n: int, size: int, seed: int, **kwargs) -> dict[str, np.ndarray]:
    """Synthetic 68-point faces (see :mod:`lmklib.data.synthetic`)."""
    from ..data.synthetic import generate

    return generate(n, size=size, seed=seed, scheme="ibug68", **kwargs)


def train_simple_cnn(train: dict[str, np.ndarray], epochs: int, batch_size: int, lr: float,
                     seed: int, threads: int = 2, progress: bool = True) -> tuple[SimpleCNN, Any]:
    """Train :class:`SimpleCNN` on generated faces: L1 loss on image-normalised coordinates,
    AdamW with a 5 % warm-up and cosine decay per batch, the head starting at the mean shape."""
    from torch.utils.data import DataLoader, TensorDataset

    from ..train import fit

    torch.set_num_threads(threads)
    images = torch.from_numpy(train["images"]).permute(0, 3, 1, 2).float() / 255
    size = images.shape[-1]
    targets = pixels_to_unit(torch.from_numpy(train["landmarks"]).float(), size)
    torch.manual_seed(seed)
    model = SimpleCNN(targets.shape[1], images.shape[1], size).start_from(targets.mean(0))
    loader = DataLoader(TensorDataset(images, targets), batch_size=batch_size, shuffle=True,
                        drop_last=True)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=epochs * len(loader),
                                                pct_start=0.05, anneal_strategy="cos")
    history = fit(model, loader, lambda m, b: (m(b[0]) - b[1]).abs().mean(), opt, epochs,
                  scheduler=sched, scheduler_step="batch", seed=seed, progress=progress,
                  desc="SimpleCNN")
    return model, history


@torch.no_grad()
def predict_simple_cnn(model: SimpleCNN, images: np.ndarray, batch_size: int = 256) -> np.ndarray:
    """Pixel predictions ``[N, K, 2]`` for ``[N, H, W, C]`` uint8 images."""
    model.eval()
    x = torch.from_numpy(images).permute(0, 3, 1, 2).float() / 255
    out = torch.cat([model(x[i:i + batch_size]) for i in range(0, len(x), batch_size)])
    return unit_to_pixels(out, x.shape[-1]).numpy()
