"""Experiments of Sun, Shao, Xia & Fu (Fast DHM): profiles, data recipe, training, evaluation.

Used by ``notebooks/02_fast_dhm.ipynb``; the models live in :mod:`lmklib.models.fast_dhm`, the
3D shape model in :mod:`lmklib.data.formats.bfm`, the 300W-LP-style profiling in
:mod:`lmklib.data.profiling` and the 3D diffusion heat maps in
:func:`lmklib.data.heatmaps.diffusion_heatmaps`.

Data conventions
----------------
* **Crops.** Every face is cut square around the tight box of its 68 ground-truth points
  ("the detected bounding box of each face is computed by ground-truth landmarks", Sec. IV-A),
  enlarged ``scale`` times about its centre, and resized to ``size`` (``CropPolicy(size, "RGB",
  box="data", scale=scale)``; AFLW2000-3D and 300-W have no detector box, so ``"data"`` is the
  tight box of the points). The same framing is used for training and test faces.
* **Targets.** Points in crop pixels divided by ``size`` (the paper's "normalized coordinates");
  the loss is the squared Frobenius norm of the shape error, averaged over the batch.
* **Paper protocol** (no AFLW2000-3D in training): the 300-W training faces of the data root
  (2,012 here), their 300W-LP-style profiled copies (each face turned to every ``yaws`` angle,
  :func:`lmklib.data.profiling.profile_faces`), and synthetic faces up to 90 degrees of yaw, each
  source a profile setting. Test: all 2,000 AFLW2000-3D faces with the original ``pt3d_68``
  points and with the re-annotation of Bulat et al.; the 554-face 300-W common subset.
* **NME** (Sec. IV-A): mean point-to-point error / sqrt(w h) of the ground-truth points' tight box
  (each annotation scored against its own box), binned by the ground-truth |yaw| into [0, 30],
  (30, 60], (60, 90] (the 7 faces beyond 90 degrees in the last bin, as 3DDFA's protocol does);
  "mean" is the mean of the three bin means (Table I's convention: 2.57, 3.60, 5.88 -> 4.01),
  "all" the plain mean over faces. 300-W: inter-ocular (outer eye corners) NME.
* **Cross-validation** (ours, labelled so): 5 folds over AFLW2000-3D itself (fixed permutation,
  seed 0), each fold's model trained on the other four.
"""

from __future__ import annotations

import copy
import io
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from .. import metrics
from ..data import heatmaps
from ..data.faces import CropPolicy, FaceCrops, fixed_subset, load_face_crops
from ..data.geometry import apply_affine, boxes_from_points, crop_batch
from ..data.schemes import IBUG68
from ..data.transforms import augment_batch, standardise
from ..models.fast_dhm import DHMNet, FastDHM
from ..profile import count_parameters, latency
from ..train import channels_last, fit, make_scheduler

PAPER = "fast_dhm_sun"

#: Random rotation (degrees), scale and shift (fraction of the side) of the training batches
#: (our choice; the paper trains on 61,225 300W-LP faces and does not mention augmentation).
SIMILARITY = dict(angle=20.0, scale=(0.93, 1.07), shift=0.04)

PROFILES: dict[str, dict[str, Any]] = {
    # every piece runs, on a few dozen faces, in seconds
    "smoke": dict(size=32, scale=1.3, n_w300=48, yaws=(60,), pitch=10.0, n_synthetic=48,
                  synthetic_size=64, n_test=48, n_common=24, epochs=1, batch_size=16, lr=5e-3,
                  loss="point", schedule="onecycle", milestones=(), reset_lr=1e-5, flip=True,
                  similarity=SIMILARITY, steps=2, widths=(1, 2), rnn_widths=(1, 2),
                  n_short=64, short_epochs=1, short_batch=16,
                  dhm=dict(width=1, hidden=32, steps=2, n=32, epochs=1),
                  cv=dict(folds=2, n=48, epochs=1, start="paper_model", lr=1e-3), threads=1, bench=dict(runs=5)),
    # 2 CPU cores, < 15 minutes for the notebook
    "quick": dict(size=64, scale=1.3, n_w300=None, yaws=(20, 40, 60, 75, 85), pitch=10.0,
                  n_synthetic=0, synthetic_size=96, n_test=None, n_common=None, epochs=18,
                  batch_size=50, lr=5e-3, loss="point", schedule="onecycle", milestones=(),
                  reset_lr=1e-5, flip=True, similarity=SIMILARITY, steps=4, widths=(1, 2, 3, 4),
                  rnn_widths=(1, 2), n_short=3000, short_epochs=4, short_batch=16,
                  dhm=dict(width=1, hidden=256, steps=4, n=2000, epochs=3),
                  cv=dict(folds=5, n=None, epochs=4, start="paper_model", lr=1e-3), threads=None, bench=dict(runs=50)),
    # the paper's settings (Sec. IV-B); a GPU job
    "paper": dict(size=128, scale=1.3, n_w300=None, yaws=(15, 30, 45, 60, 75, 85), pitch=15.0,
                  n_synthetic=20000, synthetic_size=160, n_test=None, n_common=None, epochs=120,
                  batch_size=50, lr=5e-3, loss="frobenius", schedule="reset", milestones=(60,),
                  reset_lr=1e-5,
                  flip=True, similarity=SIMILARITY, steps=4, widths=(1, 2, 3, 4),
                  rnn_widths=(1, 2, 3), n_short=None, short_epochs=120, short_batch=50,
                  dhm=dict(width=2, hidden=256, steps=4, n=None, epochs=40),
                  cv=dict(folds=5, n=None, epochs=120, start="scratch", lr=5e-3), threads=None, bench=dict(runs=200)),
}
"""Sizes and settings per profile. ``n_* = None`` = the whole split.

``size``: input side (the paper gives 224 for DHM and no size for Fast DHM; 64 on two CPU cores);
``scale``: crop side / longer side of the points' box; ``yaws``: the target |yaw| of each
profiled copy of a 300-W face, ``pitch``: a random extra pitch up to this many degrees;
``n_synthetic``: synthetic faces (yaw up to 90) rendered at ``synthetic_size`` then cropped like
the rest; ``epochs``/``lr``/``schedule`` train Fast DHM and Fast DHM x2 on every training face
(Adam; the paper: 0.005 for 60 epochs, then "reset to 0.00001" for 60 more:
``schedule="reset"``, ``milestones=(60,)``); quick uses a one-cycle schedule peaking at the
paper's 0.005, and the notebook also trains the literal schedule (both numbers shown);
``loss``: ``"frobenius"`` (the paper's squared Frobenius norm of the shape error) or ``"point"``
(the mean point-to-point distance, the NME's own numerator): in quick the Frobenius loss learns
too slowly (measured, Fast DHM x1, 11k faces, 10 epochs: mean NME 8.39 % against 7.56 % with
``"point"``), and the notebook trains the literal loss beside it (both numbers shown);
``n_synthetic`` is 0 in quick: the 300-W faces profiled to five angles did better than three
angles plus 3,000 synthetic faces (6.44 % against 6.59 %, 24 epochs, x1);
``steps``: T of the fast recurrent module (the paper draws 4 states in Fig. 3);
``n_short``/``short_epochs``: the shorter runs that are compared with each other (the 3D-CNN
and 2D-RNN ablations, a Fast DHM trained the same way, the literal schedule, and the Figs. 7/8
sweeps over ``widths`` and ``rnn_widths``, the latter at width 2 as the paper's) train on a
fixed subset of ``n_short`` training faces, in batches of ``short_batch`` (16 in quick: at 4
epochs on 3,000 faces a batch of 50 ends at 14.5 % mean NME, 16 at 11.9 %); ``dhm``: the BMVC DHM (reduced VGG + vanilla RNN
on 3DMM parameters: ~6x a Fast DHM's training cost per face, so a subset ``n`` in quick);
``cv``: the cross-validation protocol on AFLW2000-3D: ``start="scratch"`` trains each fold's
model from random weights, ``"paper_model"`` fine-tunes the paper-protocol Fast DHM on the other
folds at ``lr`` (quick: from scratch, 5 epochs on 1,600 faces ended at 15.1 %: far too short to
say anything about the data; fine-tuning asks what real large-pose faces add)."""


def resolve_profile(profile: str) -> dict[str, Any]:
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {list(PROFILES)}, got {profile!r}")
    return copy.deepcopy(PROFILES[profile])


def _device(cfg: dict) -> str:
    """``cfg["device"]`` if set, else CUDA when present, else the CPU."""
    return cfg.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")


# --------------------------------------------------------------------------- the data root
def find(root: Path) -> dict[str, Path | None]:
    """The folders of the paper's data the data root holds (None where absent)."""
    root = Path(root)

    def first(*names):
        return next((root / n for n in names if (root / n).is_dir()), None)

    return {"aflw2000": first("aflw2000_3d", "AFLW2000", "AFLW2000-3D", "aflw2000"),
            "w300": first("300w_subset", "300w", "300W"),
            "bfm68": first("bfm68")}


def shape_model(root: Path):
    """The 3D shape prior: the 3DDFA bfm68 model where the data root has it, else the synthetic
    generator's own 68-point template (said in the notebook)."""
    from ..data.formats.bfm import load_bfm68, template_shape_model

    folder = find(root)["bfm68"]
    return load_bfm68(folder) if folder is not None else template_shape_model()


# --------------------------------------------------------------------------- face crops
def policy(cfg: dict) -> CropPolicy:
    """The crop of every face: the points' tight box, square, ``scale`` times, ``size`` px."""
    return CropPolicy(cfg["size"], "RGB", box="data", scale=cfg["scale"])


def aflw_faces(folder: Path, cfg: dict, n: int | None = None) -> tuple[FaceCrops, FaceCrops, np.ndarray]:
    """AFLW2000-3D: ``(original, reannotated, yaw degrees [N])``. Both sets are the same crops
    (framed on the original ``pt3d_68`` points); ``reannotated`` carries the re-annotated points
    of Bulat et al. as its ground truth."""
    from ..data.formats.aflw import AFLW2000_3D

    ds = AFLW2000_3D(folder)
    idx = fixed_subset(len(ds), n)
    yaws = ds.yaws()[idx]
    orig = load_face_crops(ds, policy(cfg), name="AFLW2000-3D (original pt3d_68)", indices=idx)
    re = AFLW2000_3D(folder, points="reannotated").landmarks_array()[idx]
    re_crops = replace(orig, gt=torch.as_tensor(re, dtype=torch.float64),
                       points=torch.as_tensor(apply_affine(re, orig.affines.numpy()), dtype=torch.float32),
                       mask=torch.ones(re.shape[:2], dtype=torch.bool),
                       name="AFLW2000-3D (re-annotated, Bulat et al.)")
    return orig, re_crops, yaws


def w300_faces(folder: Path, split: str, cfg: dict, n: int | None = None) -> FaceCrops:
    """A 300-W split of the data root, cropped like every other face."""
    from ..data.formats.w300 import W300

    ds = W300(folder, split, image_mode="RGB")
    if len(ds) == 0:
        raise FileNotFoundError(f"300-W split {split!r}: none of its folders {ds.missing} under {folder}")
    return load_face_crops(ds, policy(cfg), name=f"300-W {split} ({', '.join(ds.present)})",
                           indices=fixed_subset(len(ds), n))


def crop_arrays(images: np.ndarray, points: np.ndarray, cfg: dict, name: str, note: str = "",
                paths: Sequence[str] = ()) -> FaceCrops:
    """In-memory faces (``images [N, H, W, C]`` uint8, ``points [N, 68, 2]`` px) cropped with
    :func:`policy`'s geometry (one ``grid_sample`` per batch of 256)."""
    boxes = boxes_from_points(points)
    out, affs = [], []
    for i in range(0, len(images), 256):
        x = torch.from_numpy(np.ascontiguousarray(images[i:i + 256].transpose(0, 3, 1, 2))).float()
        c, a = crop_batch(x, boxes[i:i + 256], (cfg["size"], cfg["size"]), scale=cfg["scale"])
        out.append(c.round().clamp(0, 255).to(torch.uint8))
        affs.append(a)
    return FaceCrops.from_images(torch.cat(out), points, boxes, affines=np.concatenate(affs),
                                 name=name, paths=list(paths), scheme="ibug68", note=note,
                                 image_hw=[images.shape[1:3]] * len(images))


def profiled_faces(folder: Path, cfg: dict, model, seed: int = 0, frame: int = 128):
    """The 300-W training faces of the data root turned to every ``cfg["yaws"]`` angle
    (300W-LP-style, :func:`lmklib.data.profiling.profile_faces`, on the 256 px crops resized
    to ``frame``). Returns ``(FaceCrops, info)``: labels in the AFLW2000-3D convention (the
    rotated 3D shape's projection); ``info`` holds what :func:`profile_faces` returned plus the
    un-profiled ``originals`` ``[N, frame, frame, 3]``, their ``original_points``, the ``fit``
    and its mean re-projection error ``fit_error_percent`` (% of the inter-ocular distance)."""
    from ..data.formats.w300 import W300
    from ..data.profiling import fit_shape, profile_faces

    ds = W300(folder, "train", image_mode="RGB")
    whole = load_face_crops(ds, CropPolicy(frame, "RGB", box="image"), name="300-W train (whole)",
                            indices=fixed_subset(len(ds), cfg["n_w300"]))
    images = whole.images.permute(0, 2, 3, 1).numpy()
    points = whole.points.double().numpy()
    fit = fit_shape(points, model)
    err = metrics.nme(fit.project(), points, norm="inter_ocular", scheme="ibug68")
    prof = profile_faces(images, points, cfg["yaws"], model, pitch=cfg["pitch"], fit=fit, seed=seed)
    crops = crop_arrays(prof["images"], prof["points"], cfg,
                        name=f"300-W train profiled to |yaw| {tuple(cfg['yaws'])}",
                        paths=[f"{whole.paths[s]}#yaw{y:+.0f}" for s, y in zip(prof["source"], prof["yaw"])])
    return crops, {**prof, "originals": images, "original_points": points, "fit": fit,
                   "fit_error_percent": 100 * err}


def synthetic_faces(n: int, cfg: dict, seed: int) -> tuple[FaceCrops, np.ndarray]:
    """``n`` synthetic 68-point faces, yaw up to 90 degrees, rendered at ``synthetic_size`` and
    cropped like the real ones (their points are 3D-consistent: hidden points where they
    project, the AFLW2000-3D convention). Returns ``(faces, yaw degrees [N])``."""
    from ..data.synthetic import generate

    d = generate(n, size=cfg["synthetic_size"], seed=seed, scheme="ibug68", max_yaw=90.0,
                 max_pitch=20.0, max_roll=15.0, scale_range=(0.45, 0.6))
    return crop_arrays(d["images"], d["landmarks"].astype(np.float64), cfg,
                       name=f"synthetic 68-point, yaw up to 90 (seed {seed})",
                       paths=[f"synthetic/{seed}/{i}" for i in range(n)]), d["pose"][:, 0]


def training_tensors(sets: Sequence[FaceCrops]) -> tuple[torch.Tensor, torch.Tensor]:
    """Images uint8 ``[N, 3, S, S]`` and crop points ``[N, 68, 2]`` of several sets, stacked."""
    return (torch.cat([s.images for s in sets]), torch.cat([s.points.float() for s in sets]))


# --------------------------------------------------------------------------- priors
def mean_init(model, cfg: dict, points=None) -> tuple[np.ndarray, np.ndarray]:
    """The mean initialisation: the shape model's mean face, frontal, placed in the crop.
    With training ``points`` ``[N, 68, 2]`` (crop px) it is scaled and shifted onto their mean
    by least squares (the "mean shape" of the data, in 3D); without, its tight box is centred
    with its longer side ``size / scale``, as a face's points are framed. Returns ``(points
    [68, 2] crop px, posed 3D [68, 3] crop px)``."""
    s3 = model.mean.astype(np.float64) - model.mean.mean(0)
    if points is None:
        lo, hi = s3[:, :2].min(0), s3[:, :2].max(0)
        k = cfg["size"] / cfg["scale"] / (hi - lo).max()
        shift = (cfg["size"] - 1) / 2 - k * (lo + hi) / 2
    else:
        target = np.nanmean(np.asarray(points, dtype=np.float64), axis=0)
        a = s3[:, :2].reshape(-1)
        b = (target - target.mean(0)).reshape(-1)
        k = float(a @ b / (a @ a))
        shift = target.mean(0)
    posed = s3 * k
    posed[:, :2] += shift
    return posed[:, :2].copy(), posed


def priors(model, cfg: dict, points=None) -> dict[str, torch.Tensor]:
    """The fixed input maps: ``"3d"`` the mean-initialisation DHM (Eq. 3, sigma 1 px) and
    ``"2d"`` the sum of the mean landmarks' 2D Gaussians (the 2D-RNN ablation), ``"mean"`` the
    mean points in normalised crop units (:func:`mean_init`, placed on ``points`` if given)."""
    p2, p3 = mean_init(model, cfg, points)
    s = cfg["size"]
    dhm = heatmaps.diffusion_heatmaps(torch.as_tensor(p2, dtype=torch.float32),
                                      torch.as_tensor(p3, dtype=torch.float32), s, sigma=1.0)
    flat = heatmaps.gaussian_heatmaps(torch.as_tensor(p2, dtype=torch.float32), s, 1.0).sum(0, keepdim=True)
    return {"3d": dhm.float(), "2d": flat.clamp(max=1.0).float(),
            "mean": torch.as_tensor(p2 / s, dtype=torch.float32), "posed": torch.as_tensor(p3)}


def make_fast_dhm(pri: dict, cfg: dict, width: int = 1, rnn_width: int = 1, steps: int | None = None,
                  prior: str = "3d", seed: int = 0) -> FastDHM:
    """Fast DHM x``width`` (``prior="3d"``), the 3D-CNN ablation (``steps=0``) or the 2D-RNN
    ablation (``prior="2d"``), initialised from ``seed``."""
    torch.manual_seed(seed)
    return FastDHM(prior=pri[prior], mean=pri["mean"], size=cfg["size"], width=width,
                   steps=cfg["steps"] if steps is None else steps, rnn_width=rnn_width)


def dhm_parameters(model, fits, pri: dict) -> tuple[np.ndarray, np.ndarray]:
    """``(param_mean, param_std)`` of DHMNet's 3DMM parameters (12 pose: the 3x4 camera
    ``[sR | t]`` in crop px, row-major, then identity and expression): the mean initialisation
    (``pri["posed"]``, :func:`mean_init`) and the spread of the training faces' fits."""
    p3 = pri["posed"].numpy()
    s3 = model.mean - model.mean.mean(0)
    k = float(np.linalg.norm(p3 - p3.mean(0)) / np.linalg.norm(s3))
    t = p3.mean(0) - k * model.mean.mean(0)
    pose0 = np.c_[k * np.eye(3), t].reshape(-1)
    sr = fits.scale[:, None, None] * fits.rotation
    pose = np.concatenate([sr, np.c_[fits.translation, np.zeros(len(sr))][:, :, None]], 2).reshape(len(sr), -1)
    mean = np.r_[pose0, np.zeros(model.n_id + model.n_exp)]
    std = np.r_[pose.std(0) + 1e-3 * k, fits.id.std(0) + 1e-6, fits.exp.std(0) + 1e-6]
    return mean.astype(np.float32), std.astype(np.float32)


def make_dhm(model, fits, pri: dict, cfg: dict, seed: int = 0) -> DHMNet:
    """The BMVC DHM on the shape model's bases (see :func:`dhm_parameters`), initialised from
    ``seed``."""
    mean, std = dhm_parameters(model, fits, pri)
    torch.manual_seed(seed)
    d = cfg["dhm"]
    t = lambda a: torch.as_tensor(np.asarray(a), dtype=torch.float32)  # noqa: E731
    return DHMNet(t(model.mean), t(model.id_basis), t(model.exp_basis), t(mean), t(std),
                  size=cfg["size"], width=d["width"], hidden=d["hidden"], steps=d["steps"])


# --------------------------------------------------------------------------- training
LOSSES = {"frobenius": "the squared Frobenius norm of the shape error (Sec. III-C), summed over "
                       "the 136 coordinates, averaged over faces",
          "point": "the mean point-to-point distance (the NME's numerator), averaged over faces"}
def train_model(model: torch.nn.Module, images: torch.Tensor, points: torch.Tensor, cfg: dict,
                epochs: int, seed: int = 0, schedule: str | None = None, desc: str = "",
                progress: bool = False):
    """Train a landmark model (normalised crop coordinates out) with Adam at ``cfg["lr"]`` on
    the squared Frobenius norm of the shape error (Sec. III-C), batches flipped (the scheme's
    left/right swap) and moved by a random similarity. The weights train in channels-last memory
    (:func:`lmklib.train.channels_last`: 13-15 % off each step) and come back channels-first.
    Returns ``(model, history)``."""
    torch.manual_seed(seed)
    channels_last(model)
    x, y = standardise(images), points.float()
    g = torch.Generator().manual_seed(seed)
    loader = DataLoader(TensorDataset(x, y), batch_size=cfg["batch_size"], shuffle=True, generator=g)
    opt = torch.optim.Adam(model.parameters(), lr=cfg["lr"])
    sched, when = make_scheduler(opt, schedule or cfg["schedule"], epochs, len(loader),
                                 cfg["milestones"], reset_lr=cfg["reset_lr"])
    flip = IBUG68.flip_perm if cfg["flip"] else None
    s = float(cfg["size"])

    kind = cfg.get("loss", "frobenius")
    if kind not in LOSSES:
        raise ValueError(f"loss must be one of {list(LOSSES)}, got {kind!r}")

    def loss_fn(m, batch):
        xb, yb = augment_batch(*batch, flip, cfg["similarity"])
        d = m(xb) - yb / s
        if kind == "frobenius":
            return (d ** 2).sum((1, 2)).mean()
        return (d.pow(2).sum(-1) + 1e-12).sqrt().mean()

    hist = fit(model, loader, loss_fn, opt, epochs, scheduler=sched, scheduler_step=when,
               seed=seed, progress=progress, desc=desc, device=_device(cfg))
    return model.cpu().eval().to(memory_format=torch.contiguous_format), hist


@torch.no_grad()
def predict(model: torch.nn.Module, crops: FaceCrops, batch: int = 256) -> np.ndarray:
    """Points ``[N, 68, 2]`` in the faces' original image pixels (float64)."""
    model.eval()
    out = [model(standardise(crops.images[i:i + batch])).numpy() for i in range(0, len(crops), batch)]
    return crops.to_image(np.concatenate(out).astype(np.float64) * crops.size)


# --------------------------------------------------------------------------- evaluation
def box_nme(pred: np.ndarray, crops: FaceCrops) -> np.ndarray:
    """Per-face NME ``[N]`` (a fraction): mean point error / sqrt(w h) of the ground truth's
    tight box (Sec. IV-A)."""
    return metrics.nme(pred, crops.gt, norm="bbox", reduce="none")


def inter_ocular_nme(pred: np.ndarray, crops: FaceCrops) -> np.ndarray:
    """Per-face NME ``[N]`` normalised by the outer-eye-corner distance (300-W)."""
    return metrics.nme(pred, crops.gt, norm="inter_ocular", scheme="ibug68", reduce="none")


def yaw_row(errors: np.ndarray, yaws: np.ndarray) -> dict[str, float]:
    """Table I's columns in %: the three yaw bins, their mean, the plain mean over faces and the
    failure rate at 6 %."""
    b = metrics.yaw_binned_nme(errors, yaws)
    return {"0-30": 100 * b["0-30"], "30-60": 100 * b["30-60"], "60-90": 100 * b["60-90"],
            "mean": 100 * b["mean"], "all faces": 100 * b["all"],
            "failure % (6 %)": 100 * metrics.failure_rate(errors, 0.06)}


def mean_shape_errors(pri: dict, crops: FaceCrops) -> np.ndarray:
    """Per-face NME of the mean initialisation alone (no image): the floor to beat."""
    pts = np.broadcast_to(pri["mean"].numpy() * crops.size, crops.points.shape).astype(np.float64)
    return box_nme(crops.to_image(pts), crops)


def speed(model: torch.nn.Module, cfg: dict, runs: int | None = None) -> dict[str, float]:
    """One-core batch-1 CPU speed, parameters, stored size (the state dict as saved) and, when
    CUDA is present, batch-1 GPU speed (``gpu_fps``)."""
    x = torch.randn(1, 3, cfg["size"], cfg["size"])
    lat = latency(model, x, threads=1, warmup=5, runs=runs or cfg["bench"]["runs"])
    buf = io.BytesIO()
    torch.save(model.state_dict(), buf)
    out = {"cpu_fps": 1e3 / lat.median_ms, "cpu_ms": lat.median_ms,
           "params": count_parameters(model), "stored_bytes": len(buf.getvalue())}
    if torch.cuda.is_available():   # Table I's GPU column, batch 1, when a GPU is present
        gpu = latency(model, x, warmup=10, runs=runs or cfg["bench"]["runs"], device="cuda")
        out["gpu_fps"] = 1e3 / gpu.median_ms
    return out


def cross_validate(crops: FaceCrops, yaws: np.ndarray, pri: dict, cfg: dict, seed: int = 0,
                   start: torch.nn.Module | None = None, progress: bool = False
                   ) -> tuple[np.ndarray, list]:
    """Our protocol: ``cv.folds``-fold cross-validation of Fast DHM on AFLW2000-3D itself (a
    fixed permutation, seed 0). Each fold's model starts from a copy of ``start`` (e.g. the
    paper-protocol model: fine-tuning) or, without it, from scratch; it trains ``cv.epochs`` on
    the other folds at ``cv.lr`` (default the profile's rate). Returns the out-of-fold per-face
    NME ``[N]`` and each fold's history."""
    c = cfg["cv"]
    fold_cfg = {**cfg, "lr": c.get("lr", cfg["lr"])}
    perm = np.random.default_rng(0).permutation(len(crops))
    folds = np.array_split(perm, c["folds"])
    errors, hists = np.full(len(crops), np.nan), []
    for k, test_idx in enumerate(folds):
        tr = crops.subset(np.setdiff1d(perm, test_idx))
        model = copy.deepcopy(start) if start is not None else make_fast_dhm(pri, cfg, seed=seed + k)
        m, h = train_model(model, tr.images, tr.points, fold_cfg, c["epochs"], seed=seed + k,
                           desc=f"CV fold {k + 1}/{c['folds']}", progress=progress)
        te = crops.subset(test_idx)
        errors[test_idx] = box_nme(predict(m, te), te)
        hists.append(h)
    return errors, hists


# --------------------------------------------------------------------------- trained models
def model_card(model: torch.nn.Module, train_name: str, cfg: dict, test_nme: float,
               test_name: str, calibration=None) -> dict[str, Any]:
    """What :func:`lmklib.reports.save_model` stores beside a Fast DHM, so that
    :class:`lmklib.landmarker.Landmarker` can rebuild it (:func:`load_predictor`)."""
    from dataclasses import asdict

    arch = "fast_dhm" if isinstance(model, FastDHM) else "dhm"
    return {"title": f"Fast DHM x{model.config.get('width', 1)}" if arch == "fast_dhm" else "DHM",
            "paper": PAPER, "architecture": arch, "args": dict(model.config), "scheme": IBUG68.name,
            "crop": asdict(policy(cfg)),
            "preprocessing": "per-image zero mean, unit std (lmklib.data.transforms.standardise); "
                             "the mean-initialisation DHM is a buffer of the model",
            "box_policy": (f"the tight box of the face's 68 points, made square and enlarged "
                           f"{cfg['scale']}x (Sec. IV-A: boxes from ground-truth landmarks)"),
            "detector": calibration.to_dict() if calibration else None,
            "dataset": train_name,
            "test": {"value": float(test_nme), "unit": "%", "norm": "bbox (sqrt(w h)), mean of yaw bins",
                     "dataset": test_name}}


def load_predictor(card: dict[str, Any], state: dict[str, torch.Tensor]):
    """The network of a model card as ``FaceCrops -> [N, 68, 2]`` image pixels."""
    from ..train import load_model_state

    cls = FastDHM if card["architecture"] == "fast_dhm" else DHMNet
    model = cls(**card["args"])
    load_model_state(model, state, card.get("weights", "weights"))
    model.eval()
    return lambda crops: predict(model, crops)
