"""Experiments of Chen et al. 2020 (ACN): profiles, data, training and evaluation.

Used by ``notebooks/03_acn.ipynb``; the models live in :mod:`lmklib.models.acn`,
:mod:`lmklib.models.cpm` and :mod:`lmklib.models.acn_bitpacked`.

Data conventions
----------------
* 5-point faces (Table 2): the face box is cropped square (``CropToBox``) and resized to a
  39x39 grayscale image, decoded once into the on-disk cache (:class:`CachedDataset`). Targets
  are the crop-pixel coordinates divided by 39; predictions are mapped back to the original image
  and scored there with NME normalised by the width of the data's own face box
  (``norm="bbox_width"``, the protocol of Sun et al. whose data and boxes these are; the paper
  calls it "face size").
* 300-W (Tables 3-4): the ``300w_subset`` images are already 256x256 face crops; they are
  resized to ``cpm.size`` and scored with the inter-ocular (outer eye corners) NME.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from . import metrics
from .models.acn import (KERNEL_STRUCTURES, acn_net, amplitude_loss, make_optimizer, mse_loss)
from .models.cpm import CPM, cpm_loss, decode_heatmaps, gaussian_heatmaps
from .train import fit

MODELS = {"cnn": "full-precision CNN", "acn": "ACN", "acn1bit": "1-bit ACN", "xnor": "XNOR-Net"}

PROFILES: dict[str, dict[str, Any]] = {
    # every piece runs, on a few hundred faces, in seconds
    "smoke": dict(n_train=192, n_test=128, epochs=1, batch_size=64, eta1=1e-3, eta2=1e-3,
                  theta=5e-4, dropout=0.2, structures=("20-40-60-80",), threads=1,
                  cpm=dict(size=32, n_train=48, n_test=32, epochs=1, batch_size=16,
                           vgg_widths=(4, 4, 8, 8), stage_channels=8, stages=2, stage_kernel=3,
                           optimizer="adam", lr=1e-3, milestones=(), sigma=1.0),
                  bench=dict(batch=16, repeats=1), cross_n=32),
    # 2 CPU cores, < 15 minutes for everything: a few thousand faces, few epochs, larger lr
    "quick": dict(n_train=6000, n_test=None, epochs=2, batch_size=16, eta1=2e-3, eta2=2e-3,
                  theta=5e-4, dropout=0.2, structures=tuple(KERNEL_STRUCTURES), threads=None,
                  cpm=dict(size=64, n_train=None, n_test=None, epochs=4, batch_size=16,
                           vgg_widths=(8, 8, 16, 16), stage_channels=24, stages=2,
                           stage_kernel=3, optimizer="adam", lr=2e-3, milestones=(), sigma=1.5),
                  bench=dict(batch=64, repeats=5), cross_n=None),
    # the paper's settings (Section 4.2); a GPU job
    "paper": dict(n_train=None, n_test=None, epochs=1600, batch_size=64, eta1=1e-4, eta2=1e-4,
                  theta=5e-4, dropout=0.5, structures=tuple(KERNEL_STRUCTURES), threads=None,
                  cpm=dict(size=256, n_train=None, n_test=None, epochs=40, batch_size=8,
                           vgg_widths=(64, 64, 128, 128), stage_channels=128, stages=3,
                           stage_kernel=7, optimizer="sgd", lr=5e-5, milestones=(20, 30),
                           sigma=2.0),
                  bench=dict(batch=64, repeats=20), cross_n=None),
}
"""Sizes per profile. ``n_* = None`` = the whole split. The batch size and dropout rate are not
given by the paper (our choice). Quick raises Adam's rates from 1e-4 to 2e-3 and uses small batches
because it trains 2 epochs instead of 1600; on a fixed budget more faces beat more epochs (2,400
faces x 5 epochs stayed at the mean-shape error, 8 %)."""


def resolve_profile(profile: str) -> dict[str, Any]:
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {list(PROFILES)}, got {profile!r}")
    return copy.deepcopy(PROFILES[profile])


# --------------------------------------------------------------------------- face crops
@dataclass
class FaceCrops:
    """Faces cropped to ``size`` x ``size``.

    images: uint8 ``[N, C, S, S]``; points: ``[N, K, 2]`` crop pixels; affines: ``[N, 2, 3]``
    original image -> crop; gt: ``[N, K, 2]`` original pixels; boxes: ``[N, 4]`` original face
    boxes (x0, y0, x1, y1); paths: the source image of each face.
    """

    name: str
    images: np.ndarray
    points: np.ndarray
    affines: np.ndarray
    gt: np.ndarray
    boxes: np.ndarray
    paths: list[str] = field(default_factory=list)
    note: str = ""

    def __len__(self) -> int:
        return len(self.images)

    def subset(self, idx) -> "FaceCrops":
        idx = np.asarray(idx)
        return FaceCrops(self.name, self.images[idx], self.points[idx], self.affines[idx],
                         self.gt[idx], self.boxes[idx], [self.paths[i] for i in idx], self.note)


def _keep(dataset, n: int | None):
    """Keep a fixed random subset of ``n`` records (seed 0: the same faces in every run) before
    anything is decoded, so a small profile caches only what it uses."""
    if n is not None and n < len(dataset):
        keep = np.sort(np.random.default_rng(0).choice(len(dataset), n, replace=False))
        dataset.records = [dataset.records[i] for i in keep]
    return dataset


def _from_cache(cache, name: str, note: str = "") -> FaceCrops:
    a, meta = cache.arrays, cache._meta
    gt = np.stack([np.asarray(r.landmarks) for r in cache.dataset.records])
    return FaceCrops(name, np.array(a["image"]), np.array(a["landmarks"], np.float64),
                     np.array(a["affine"]), gt, cache.dataset.boxes_array(),
                     [m.get("path", "") for m in meta], note)


def cuhk_crops(root: str | Path, split: str, n: int | None = None, size: int = 39) -> FaceCrops:
    """CUHK 5-point faces (``root`` = the ``cuhk_5pt`` folder), decoded once into the cache."""
    from .data.cache import CachedDataset
    from .data.formats.cuhk import CUHK5Point
    from .data.transforms import CropToBox

    ds = _keep(CUHK5Point(root, split, image_mode="L"), n)
    cache = CachedDataset(ds, pre_transform=CropToBox(size))
    return _from_cache(cache, f"LFW+Webface {split}")


def synthetic_crops(n: int, seed: int, size: int = 39) -> FaceCrops:
    """Synthetic 5-point gray faces (used when the CUHK data are absent)."""
    from .data.synthetic import SyntheticFaces
    from .data.transforms import CropToBox

    ds = SyntheticFaces(n, size=96, scheme="cuhk5", seed=seed, grayscale=True, max_yaw=40)
    crop = CropToBox(size)
    samples = [crop(ds[i]) for i in range(n)]
    return FaceCrops(f"synthetic (seed {seed})", np.stack([s["image"].numpy() for s in samples]),
                     np.stack([s["landmarks"].numpy() for s in samples]).astype(np.float64),
                     np.stack([s["meta"]["affine"] for s in samples]), ds.landmarks_array(),
                     ds.boxes_array(), [s["meta"]["path"] for s in samples],
                     "synthetic faces: the CUHK data were not found")


def box_geometry(crops: FaceCrops) -> np.ndarray:
    """How a data set's face boxes sit on its 5 points: the medians of ``(box centre - points
    centre) / s`` (x, y) and ``box side / s``, with ``s`` = the larger side of the points' box."""
    p5, b = crops.gt, crops.boxes
    lo, hi = p5.min(1), p5.max(1)
    c5, s5 = (lo + hi) / 2, (hi - lo).max(1)
    cb, sb = (b[:, :2] + b[:, 2:]) / 2, np.maximum(b[:, 2] - b[:, 0], b[:, 3] - b[:, 1])
    return np.median(np.c_[(cb - c5) / s5[:, None], sb / s5], axis=0)


def boxes_from_points(p5: np.ndarray, geometry: np.ndarray) -> np.ndarray:
    """Square face boxes ``[N, 4]`` placed on 5 points ``[N, 5, 2]`` with :func:`box_geometry`
    (an ideal detector with the training set's box convention)."""
    lo, hi = np.nanmin(p5, 1), np.nanmax(p5, 1)
    c5, s5 = (lo + hi) / 2, (hi - lo).max(1)
    c = c5 + geometry[:2] * s5[:, None]
    half = geometry[2] * s5[:, None] / 2
    return np.c_[c - half, c + half]


def five_point_crops(dataset, name: str, geometry: np.ndarray | None = None,
                     n: int | None = None, size: int = 39, note: str = "",
                     replace_boxes: bool = True) -> FaceCrops:
    """Crop any 5-point (or 68-point, converted) ``LandmarkDataset`` like the training faces.

    With ``geometry`` the face boxes are placed on the ground-truth 5 points
    (:func:`boxes_from_points`): all of them if ``replace_boxes`` (sets without a detector box
    in the CUHK convention), else only where a record has no box."""
    import hashlib

    from .data.cache import CachedDataset
    from .data.schemes import ibug68_to_cuhk5
    from .data.transforms import CropToBox

    _keep(dataset, n)
    for r in dataset.records:
        if r.landmarks.shape[0] == 68:
            r.landmarks = ibug68_to_cuhk5(r.landmarks)
    if geometry is not None:
        boxes = boxes_from_points(np.stack([r.landmarks for r in dataset.records]), geometry)
        for r, b in zip(dataset.records, boxes):
            if replace_boxes or r.box is None:
                r.box = b
    digest = hashlib.sha1(np.stack([r.box if r.box is not None else np.zeros(4)
                                    for r in dataset.records]).tobytes()).hexdigest()[:12]
    key = f"acn-{type(dataset).__name__}-{len(dataset)}-{size}-{digest}"
    cache = CachedDataset(dataset, key=key, pre_transform=CropToBox(size))
    return _from_cache(cache, name, note=note)


def w300_five_point_crops(root: str | Path, geometry: np.ndarray, n: int | None = None,
                          size: int = 39) -> FaceCrops:
    """Every 300-W face under ``root`` as a 5-point face (eye centres, nose tip, mouth corners
    from the 68, :func:`ibug68_to_cuhk5`), boxed by :func:`boxes_from_points`."""
    from .data.formats.w300 import W300

    parts = [s for s in ("afw", "helen/trainset", "helen/testset", "lfpw/trainset",
                         "lfpw/testset", "ibug") if (Path(root) / s).is_dir()]
    ds = W300(root, "afw", image_mode="L")
    ds.records = [r for sub in parts for r in W300(root, sub).records]
    return five_point_crops(ds, f"300-W ({', '.join(parts)})", geometry, n, size,
                            "5 points derived from the 68; box placed on the ground-truth points "
                            "with the CUHK training boxes' geometry")


def standardise(images: np.ndarray) -> torch.Tensor:
    """uint8 ``[N, C, H, W]`` -> float32, each image to zero mean and unit standard deviation
    (our choice; the paper does not say; it removes the lighting differences of the web faces,
    worth ~0.6 % NME in the quick profile)."""
    x = torch.from_numpy(np.ascontiguousarray(images)).float()
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) / (x.std(dim=(1, 2, 3), keepdim=True) + 1.0)


# --------------------------------------------------------------------------- Table 2 runs
def _device(cfg: dict) -> str:
    """``cfg["device"]`` if set, else CUDA when present (the paper profile), else the CPU;
    trained models always come back on the CPU."""
    return cfg.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")


def train_landmark_net(structure: str, mode: str, train: FaceCrops, cfg: dict, seed: int = 0,
                       progress: bool = False):
    """Train one Table 2 network; returns ``(model, history DataFrame)``. History columns:
    ``train_loss`` (L_S + L_A), ``mse`` (L_S, Eq. 5), ``amp`` (L_A, Eq. 4), ``seconds``."""
    torch.manual_seed(seed)
    size = train.images.shape[-1]
    model = acn_net(structure, mode, input_size=size, dropout=cfg["dropout"], theta=cfg["theta"])
    x, y = standardise(train.images), torch.from_numpy(train.points / size).float()
    g = torch.Generator().manual_seed(seed)
    loader = DataLoader(TensorDataset(x, y), batch_size=cfg["batch_size"], shuffle=True,
                        generator=g)
    opt = make_optimizer(model, cfg["eta1"], cfg["eta2"])

    trace: list[float] = []

    def loss_fn(m, batch):
        xb, yb = batch
        ls = mse_loss(m(xb), yb)
        la = amplitude_loss(m)
        trace.append(float(ls.detach()))
        return ls + la, {"mse": trace[-1], "amp": float(la.detach())}

    hist = fit(model, loader, loss_fn, opt, cfg["epochs"], seed=seed, progress=progress,
               desc=f"{mode} {structure}", device=_device(cfg))
    hist.attrs["batch_mse"] = trace   # L_S of every training batch, for Fig. 3
    return model.cpu().eval(), hist


@torch.no_grad()
def predict_points(model: torch.nn.Module, crops: FaceCrops, batch: int = 512) -> np.ndarray:
    """Predictions ``[N, K, 2]`` in the original images' pixels."""
    from .data.transforms import invert_points

    model.eval()
    size = crops.images.shape[-1]
    out = [model(standardise(crops.images[i:i + batch])).numpy() * size
           for i in range(0, len(crops), batch)]
    p = np.concatenate(out).astype(np.float64)
    return np.stack([invert_points(p[i], crops.affines[i]) for i in range(len(p))])


def face_nme(pred: np.ndarray, crops: FaceCrops) -> np.ndarray:
    """Per-face NME ``[N]`` normalised by the face-box width (a fraction)."""
    return metrics.nme(pred, crops.gt, norm="bbox_width", boxes=crops.boxes, reduce="none")


def run_table2(train: FaceCrops, tests: dict[str, FaceCrops], cfg: dict, seed: int = 0,
               progress: bool = False):
    """Train CNN / ACN / 1-bit ACN for every structure of ``cfg["structures"]``.

    Returns ``(table, models, histories, errors)``: ``table`` a long DataFrame (structure, model,
    params, dataset, nme %, seconds); ``models[(structure, mode)]``; ``histories[...]`` per-epoch
    DataFrames; ``errors[(structure, mode, dataset)]`` per-face NME arrays.
    """
    import pandas as pd

    from .profile import count_parameters

    rows, models, hists, errors = [], {}, {}, {}
    for structure in cfg["structures"]:
        for mode in ("cnn", "acn", "acn1bit"):
            t0 = time.perf_counter()
            model, hist = train_landmark_net(structure, mode, train, cfg, seed, progress)
            secs = time.perf_counter() - t0
            models[structure, mode], hists[structure, mode] = model, hist
            for name, crops in tests.items():
                e = face_nme(predict_points(model, crops), crops)
                errors[structure, mode, name] = e
                rows.append({"structure": structure, "model": mode,
                             "params": count_parameters(model), "dataset": name,
                             "nme": 100 * float(np.nanmean(e)), "train_seconds": secs})
    return pd.DataFrame(rows), models, hists, errors


# --------------------------------------------------------------------------- 300-W (Tables 3-4)
@dataclass
class HeatmapFaces:
    """300-W faces resized to ``size``: images uint8 ``[N, 3, S, S]``, points ``[N, 68, 2]``."""

    name: str
    images: np.ndarray
    points: np.ndarray
    paths: list[str]


def w300_faces(root: str | Path, split: str, size: int, n: int | None = None) -> HeatmapFaces:
    """A 300-W split (the sub-folders present; see :class:`W300`) resized to ``size``."""
    from .data.cache import CachedDataset
    from .data.formats.w300 import W300
    from .data.transforms import Resize

    ds = W300(root, split, image_mode="RGB")
    if len(ds) == 0:
        raise FileNotFoundError(f"300-W split {split!r}: none of its folders {ds.missing} under {root}")
    cache = CachedDataset(_keep(ds, n), pre_transform=Resize(size))
    a = cache.arrays
    return HeatmapFaces(f"300-W {split} ({', '.join(ds.present)})", np.array(a["image"]),
                        np.array(a["landmarks"], np.float64), [m.get("path", "") for m in cache._meta])


def synthetic_heatmap_faces(n: int, size: int, seed: int) -> HeatmapFaces:
    from .data.synthetic import generate

    d = generate(n, size=size, seed=seed, scheme="ibug68")
    return HeatmapFaces(f"synthetic 68-point (seed {seed})", d["images"].transpose(0, 3, 1, 2),
                        d["landmarks"].astype(np.float64), [f"synthetic/{i}" for i in range(n)])


def train_cpm(mode: str, train: HeatmapFaces, cfg: dict, seed: int = 0, progress: bool = False):
    """Train one CPM-style network (Tables 3-4); returns ``(model, history)``."""
    torch.manual_seed(seed)
    c = cfg["cpm"]
    model = CPM(68, mode, tuple(c["vgg_widths"]), c["stage_channels"], c["stages"],
                c["stage_kernel"], in_channels=3, theta=cfg["theta"])
    hm = c["size"] // 4
    x = standardise(train.images)
    y = gaussian_heatmaps(torch.from_numpy(train.points).float(), hm, 4, c["sigma"])
    g = torch.Generator().manual_seed(seed)
    loader = DataLoader(TensorDataset(x, y), batch_size=c["batch_size"], shuffle=True, generator=g)
    opt = make_optimizer(model, c["lr"], c["lr"], kind=c["optimizer"])
    sched = torch.optim.lr_scheduler.MultiStepLR(opt, list(c["milestones"]), 0.5) \
        if c["milestones"] else None

    def loss_fn(m, batch):
        xb, yb = batch
        ls = cpm_loss(m(xb), yb)
        la = amplitude_loss(m)
        return ls + la, {"mse": float(ls.detach()), "amp": float(la.detach())}

    hist = fit(model, loader, loss_fn, opt, c["epochs"], scheduler=sched, seed=seed,
               progress=progress, desc=f"CPM {mode}", device=_device(cfg))
    return model.cpu().eval(), hist


@torch.no_grad()
def predict_cpm(model: CPM, faces: HeatmapFaces, batch: int = 64) -> np.ndarray:
    model.eval()
    out = [decode_heatmaps(model(standardise(faces.images[i:i + batch]))[-1]).numpy()
           for i in range(0, len(faces.images), batch)]
    return np.concatenate(out).astype(np.float64)


def inter_ocular_nme(pred: np.ndarray, faces: HeatmapFaces) -> np.ndarray:
    """Per-face NME ``[N]`` normalised by the outer-eye-corner distance (a fraction)."""
    return metrics.nme(pred, faces.points, norm="inter_ocular", scheme="ibug68", reduce="none")


def data_note(root: Path) -> dict[str, bool]:
    """Which of the paper's data sets the data root holds."""
    root = Path(root)
    return {"cuhk_5pt": (root / "cuhk_5pt" / "trainImageList.txt").is_file(),
            "300w": any((root / n).is_dir() for n in ("300w", "300w_subset", "300W")),
            "celeba": (root / "celeba").is_dir() or (root / "CelebA").is_dir(),
            "bioid": (root / "bioid").is_dir() or (root / "BioID").is_dir(),
            "aflw2000": any((root / n).is_dir() for n in AFLW2000_FOLDERS)}


AFLW2000_FOLDERS = ("AFLW2000", "aflw2000", "AFLW2000-3D", "aflw2000_3d")


def w300_root(root: Path) -> Path | None:
    for n in ("300w", "300w_subset", "300W"):
        if (Path(root) / n).is_dir():
            return Path(root) / n
    return None
