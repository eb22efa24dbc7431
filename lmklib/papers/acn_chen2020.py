"""Experiments of Chen et al. 2020 (ACN): profiles, data recipe, training and evaluation.

Used by ``notebooks/03_acn.ipynb``; the models live in :mod:`lmklib.models.acn`,
:mod:`lmklib.models.cpm` and :mod:`lmklib.models.acn_bitpacked`. Every face set is a
:class:`~lmklib.data.faces.FaceCrops` built by :func:`~lmklib.data.faces.load_face_crops`.

Data conventions
----------------
* 5-point faces (Table 2): the face box is cropped square (``CropPolicy(39, "L")``: ``CropToBox``,
  the torch resampler) to a 39x39 grayscale image, decoded once into the on-disk cache. Targets
  are the crop-pixel coordinates divided by 39; predictions are mapped back to the original image
  and scored there with NME normalised by the width of the data's own face box
  (``norm="bbox_width"``, the protocol of Sun et al. whose data and boxes these are; the paper
  calls it "face size").
* Sets without CUHK-like detector boxes (BioID, 300-W, AFLW2000-3D; CelebA where a box is
  missing) get a square box placed on their ground-truth 5 points with the CUHK training boxes'
  geometry (:func:`~lmklib.data.geometry.fit_box_geometry` with ``side="max"``,
  ``stat="median"``, then :func:`~lmklib.data.geometry.boxes_from_points`).
* 300-W (Tables 3-4): the ``300w_subset`` images are already 256x256 face crops; they are
  resized whole to ``cpm.size`` (``CropPolicy(size, "RGB", box="image")``) and scored in that
  resized frame with the inter-ocular (outer eye corners) NME.
* Subsets of a profile (``n_train`` ...) are drawn with :func:`keep_indices` (seed 0), before
  anything is decoded.
"""

from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from .. import metrics
from ..data import heatmaps
from ..data.faces import CropPolicy, FaceCrops, load_face_crops
from ..data.geometry import BoxGeometry
from ..models.acn import KERNEL_STRUCTURES, acn_net, amplitude_loss, make_optimizer, mse_loss
from ..models.cpm import CPM, cpm_loss, decode_heatmaps
from ..train import fit

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
def keep_indices(n_total: int, n: int | None) -> np.ndarray | None:
    """The records a profile keeps: ``n`` of ``n_total`` drawn without replacement with seed 0
    (the same faces in every run), sorted; None keeps all.

    This is ``rng(0).choice``, not :func:`lmklib.data.faces.fixed_subset` (a permutation draw,
    other faces): the ACN notebook drew its subsets this way before the shared data layer
    existed, and keeps the draws so that its numbers do not change."""
    if n is None or n >= n_total:
        return None
    return np.sort(np.random.default_rng(0).choice(n_total, n, replace=False))


def cuhk_crops(root: str | Path, split: str, n: int | None = None, size: int = 39) -> FaceCrops:
    """CUHK 5-point faces (``root`` = the ``cuhk_5pt`` folder), decoded once into the cache.
    ``split``: ``train``/``test`` (the clean protocol) or ``train_official``/``test_official``
    (see :mod:`lmklib.data.formats.cuhk`)."""
    from ..data.formats.cuhk import CUHK5Point

    ds = CUHK5Point(root, split, image_mode="L")
    return load_face_crops(ds, CropPolicy(size, "L"),
                           name=f"LFW+Webface {split} ({ds.protocol} protocol)",
                           indices=keep_indices(len(ds), n))


def synthetic_crops(n: int, seed: int, size: int = 39) -> FaceCrops:
    """Synthetic 5-point gray faces (96x96 renders, yaw up to 40 degrees) cropped like the CUHK
    faces; used when the CUHK data are absent. Decoded in memory (the renderer is the decoder)."""
    from ..data.synthetic import SyntheticFaces

    ds = SyntheticFaces(n, size=96, scheme="cuhk5", seed=seed, grayscale=True, max_yaw=40)
    return load_face_crops(ds, CropPolicy(size, "L"), name=f"synthetic (seed {seed})",
                           note="synthetic faces: the CUHK data were not found", cache=False)


def five_point_crops(dataset, name: str, geometry: BoxGeometry | None = None,
                     n: int | None = None, size: int = 39, note: str = "",
                     replace_boxes: bool = True) -> FaceCrops:
    """Crop any 5-point (or 68-point, converted with :func:`ibug68_to_cuhk5`)
    ``LandmarkDataset`` like the training faces.

    With ``geometry`` the face boxes are placed on the ground-truth 5 points
    (:func:`~lmklib.data.geometry.boxes_from_points`): all of them if ``replace_boxes`` (sets
    without a detector box in the CUHK convention, ``box="points"``), else only where a record
    has no box (``box="points_if_missing"``). Without it the data's own boxes are cropped."""
    from ..data.schemes import CUHK5, ibug68_to_cuhk5

    converted = False
    for r in dataset.records:
        if r.landmarks.shape[0] == 68:
            r.landmarks = ibug68_to_cuhk5(r.landmarks)
            converted = True
    if converted:
        dataset.scheme = CUHK5
    box = "data" if geometry is None else ("points" if replace_boxes else "points_if_missing")
    policy = CropPolicy(size, "L", box=box, geometry=geometry)
    return load_face_crops(dataset, policy, name=name, note=note,
                           indices=keep_indices(len(dataset), n))


def w300_five_point_crops(root: str | Path, geometry: BoxGeometry, n: int | None = None,
                          size: int = 39) -> FaceCrops:
    """Every 300-W face under ``root`` as a 5-point face (eye centres, nose tip, mouth corners
    from the 68, :func:`ibug68_to_cuhk5`), boxed by :func:`boxes_from_points`."""
    from ..data.formats.w300 import W300

    parts = [s for s in ("afw", "helen/trainset", "helen/testset", "lfpw/trainset",
                         "lfpw/testset", "ibug") if (Path(root) / s).is_dir()]
    ds = W300(root, "afw", image_mode="L")
    ds.records = [r for sub in parts for r in W300(root, sub).records]
    return five_point_crops(ds, f"300-W ({', '.join(parts)})", geometry, n, size,
                            "5 points derived from the 68; box placed on the ground-truth points "
                            "with the CUHK training boxes' geometry")


def standardise(images) -> torch.Tensor:
    """uint8 ``[N, C, H, W]`` (tensor or array) -> float32, each image to zero mean and unit
    standard deviation (our choice; the paper does not say; it removes the lighting differences
    of the web faces, worth ~0.6 % NME in the quick profile)."""
    if not isinstance(images, torch.Tensor):
        images = torch.from_numpy(np.ascontiguousarray(images))
    x = images.float()
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
    size = train.size
    model = acn_net(structure, mode, input_size=size, dropout=cfg["dropout"], theta=cfg["theta"])
    # targets in units of the crop side, divided in float64 as they always were
    x, y = standardise(train.images), (train.points.double() / size).float()
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
    """Predictions ``[N, K, 2]`` in the original images' pixels (float64)."""
    model.eval()
    out = [model(standardise(crops.images[i:i + batch])).numpy() * crops.size
           for i in range(0, len(crops), batch)]
    return crops.to_image(np.concatenate(out).astype(np.float64))


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

    from ..profile import count_parameters

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
def w300_faces(root: str | Path, split: str, size: int, n: int | None = None) -> FaceCrops:
    """A 300-W split (the sub-folders present; see :class:`W300`), each image resized whole to
    ``size`` (``points`` are in that resized frame)."""
    from ..data.formats.w300 import W300

    ds = W300(root, split, image_mode="RGB")
    if len(ds) == 0:
        raise FileNotFoundError(f"300-W split {split!r}: none of its folders {ds.missing} under {root}")
    return load_face_crops(ds, CropPolicy(size, "RGB", box="image"),
                           name=f"300-W {split} ({', '.join(ds.present)})",
                           indices=keep_indices(len(ds), n))


def synthetic_heatmap_faces(n: int, size: int, seed: int) -> FaceCrops:
    """``n`` synthetic 68-point RGB faces rendered at ``size`` (the render is the crop)."""
    from ..data.synthetic import generate

    d = generate(n, size=size, seed=seed, scheme="ibug68")
    return FaceCrops.from_images(d["images"].transpose(0, 3, 1, 2), d["landmarks"], d["boxes"],
                                 name=f"synthetic 68-point (seed {seed})",
                                 paths=[f"synthetic/{i}" for i in range(n)], scheme="ibug68",
                                 note="synthetic faces: 300-W was not found")


def train_cpm(mode: str, train: FaceCrops, cfg: dict, seed: int = 0, progress: bool = False):
    """Train one CPM-style network (Tables 3-4); returns ``(model, history)``.

    Targets: :func:`lmklib.data.heatmaps.gaussian_heatmaps` of the points mapped to the
    stride-4 heatmap (``size // 4`` pixels, the CPM's output after two 2x poolings)."""
    torch.manual_seed(seed)
    c = cfg["cpm"]
    model = CPM(68, mode, tuple(c["vgg_widths"]), c["stage_channels"], c["stages"],
                c["stage_kernel"], in_channels=3, theta=cfg["theta"])
    hm = c["size"] // 4
    x = standardise(train.images)
    y = heatmaps.gaussian_heatmaps(heatmaps.image_to_heatmap(train.points.float(), 4), hm,
                                   c["sigma"])
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
def predict_cpm(model: CPM, faces: FaceCrops, batch: int = 64) -> np.ndarray:
    """Predictions ``[N, 68, 2]`` in the pixels of ``faces.images`` (float64)."""
    model.eval()
    out = [decode_heatmaps(model(standardise(faces.images[i:i + batch]))[-1]).numpy()
           for i in range(0, len(faces), batch)]
    return np.concatenate(out).astype(np.float64)


def inter_ocular_nme(pred: np.ndarray, faces: FaceCrops) -> np.ndarray:
    """Per-face NME ``[N]`` normalised by the outer-eye-corner distance (a fraction), scored in
    the frame of ``faces.images`` against ``faces.points``."""
    return metrics.nme(pred, faces.points, norm="inter_ocular", scheme="ibug68", reduce="none")


# --------------------------------------------------------------------------- the data root
AFLW2000_FOLDERS = ("AFLW2000", "aflw2000", "AFLW2000-3D", "aflw2000_3d")


def data_note(root: Path) -> dict[str, bool]:
    """Which of the paper's data sets the data root holds."""
    root = Path(root)
    return {"cuhk_5pt": (root / "cuhk_5pt" / "trainImageList.txt").is_file(),
            "300w": any((root / n).is_dir() for n in ("300w", "300w_subset", "300W")),
            "celeba": (root / "celeba").is_dir() or (root / "CelebA").is_dir(),
            "bioid": (root / "bioid").is_dir() or (root / "BioID").is_dir(),
            "aflw2000": any((root / n).is_dir() for n in AFLW2000_FOLDERS)}


def w300_root(root: Path) -> Path | None:
    for n in ("300w", "300w_subset", "300W"):
        if (Path(root) / n).is_dir():
            return Path(root) / n
    return None
