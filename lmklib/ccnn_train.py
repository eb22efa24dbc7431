"""Data, training and evaluation of the CCNN cascade (Duan et al. 2021, Sections 3.3 and 4.1).

Faces are decoded once into a :class:`FaceCache`: every face resampled to a canonical
``size x size`` image covering the face box plus a margin (box units ``[-margin, 1 + margin]``),
its points in box units. All crops (stage-1 regions, stage-2/3 windows, with the rotation/flip
augmentation and shake composed in) are then cut on the fly by one ``grid_sample`` per batch, so
the 60,000 augmented faces of Section 4.1 are never materialised.

Training (Section 3.3): per-net loss Eq. 6 (N = the net's points, see :func:`stage_loss`) on window-relative targets
(Eq. 6, summed over the nets of a stage, which are independent), SGD with L2 on the weights,
learning rate 5e-3 times 0.9 every 100 iterations; stages trained in order, the nets of a stage
together through the batched :class:`~lmklib.models.ccnn.NetGroup`. Training windows of stage k
are centred on stage k-1's predictions for the (augmented) training face, plus shake.

Sizes per run live in :data:`PROFILES` (``smoke`` / ``quick`` / ``paper``).
"""

from __future__ import annotations

import hashlib
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
import torch.nn.functional as F

from .data.schemes import CUHK5
from .models.ccnn import (CCNN, CCNNConfig, STAGE1_POINTS, apply_affine, augmentation_affine,
                          canonical_frame, to_window)

# (rotation in degrees, horizontal flip): 10,000 faces -> 60,000 (Section 4.1)
AUGMENTATIONS: tuple[tuple[float, bool], ...] = (
    (0.0, False), (-15.0, False), (12.0, False), (0.0, True), (-15.0, True), (12.0, True))

PROFILES: dict[str, dict[str, Any]] = {
    # n_train/n_test: faces (None = all 10,000 / 3,466); iters: SGD iterations per stage (the two
    # stage-1 ablation runs, windows- and shake-, get iters[1] too); 100 iterations = one "epoch"
    # = one learning-rate decay step. n_cross: faces per cross-dataset set (None = all).
    # loss_n: what N counts in Eq. 6 ("points" or "outputs"; see stage_loss).
    "smoke": dict(n_train=120, n_test=60, cache_size=64, margin=0.25, batch=16,
                  iters={1: 10, 2: 10, 3: 10}, augment=True, momentum=0.9,
                  weight_decay=5e-4, loss_n="points", n_cross=20, n_synthetic=(120, 60)),
    "quick": dict(n_train=None, n_test=None, cache_size=80, margin=0.25, batch=64,
                  iters={1: 1000, 2: 800, 3: 800}, augment=True, momentum=0.9,
                  weight_decay=5e-4, loss_n="points", n_cross=None, n_synthetic=(3000, 1000)),
    "paper": dict(n_train=None, n_test=None, cache_size=96, margin=0.25, batch=64,
                  iters={1: 10000, 2: 6000, 3: 6000}, augment=True, momentum=0.9,
                  weight_decay=5e-4, loss_n="points", n_cross=None, n_synthetic=(10000, 3466)),
}
BASE_LR = 5e-3          # Section 3.3
LR_DECAY = 0.9          # "every 100 iterations, the learning rate decays to 90%"
DECAY_EVERY = 100


def get_profile(name: str) -> dict[str, Any]:
    """A copy of one entry of :data:`PROFILES`; unknown names raise ``ValueError``."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; valid: {sorted(PROFILES)}")
    return {k: (dict(v) if isinstance(v, dict) else v) for k, v in PROFILES[name].items()}


# --------------------------------------------------------------------------- face cache
@dataclass
class FaceCache:
    """Faces resampled to canonical images, with their points in box units.

    Attributes:
        images: ``[N, 3, S, S]`` uint8, covering box units ``[-margin, 1 + margin]``.
        points: ``[N, 5, 2]`` float32 ground truth in box units (CUHK order).
        boxes: ``[N, 4]`` float32 face boxes ``(x0, y0, x1, y1)``, original pixels.
        image_hw: ``[N, 2]`` original image (height, width), pixels.
        source: a label (``"cuhk_5pt/test"``, ``"synthetic"``, ...).
    """

    images: torch.Tensor
    points: torch.Tensor
    boxes: torch.Tensor
    image_hw: torch.Tensor
    margin: float
    source: str = ""
    names: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.images)

    @property
    def size(self) -> int:
        return int(self.images.shape[-1])

    def frames(self, n: int | None = None) -> torch.Tensor:
        """Frames ``[n, 4]`` of the canonical images (see ``sample_windows``)."""
        return canonical_frame(self.size, self.margin).expand(n or len(self), 4)

    def absolute(self) -> torch.Tensor:
        """``[N, 4]`` box in image-normalised units ``(x0/W, y0/H, w/W, h/H)`` (windows-)."""
        b, hw = self.boxes, self.image_hw.float()
        return torch.stack([b[:, 0] / hw[:, 1], b[:, 1] / hw[:, 0],
                            (b[:, 2] - b[:, 0]) / hw[:, 1], (b[:, 3] - b[:, 1]) / hw[:, 0]], 1)

    def to_pixels(self, points: torch.Tensor | np.ndarray) -> np.ndarray:
        """Box-unit points ``[N, K, 2]`` -> original image pixels."""
        p = torch.as_tensor(points, dtype=torch.float64)
        b = self.boxes.double()
        wh = (b[:, 2:] - b[:, :2])[:, None]
        return (b[:, None, :2] + p * wh).numpy()

    def gt_pixels(self) -> np.ndarray:
        return self.to_pixels(self.points)

    def subset(self, idx: Sequence[int]) -> "FaceCache":
        idx = torch.as_tensor(np.asarray(idx), dtype=torch.long)
        return FaceCache(self.images[idx], self.points[idx], self.boxes[idx], self.image_hw[idx],
                         self.margin, self.source, [self.names[i] for i in idx.tolist()]
                         if self.names else [])


def _pil_canonical(path: Path, box: np.ndarray, size: int, margin: float) -> tuple[np.ndarray, tuple]:
    """Decode one image and resample its face box (+ margin) to ``size x size`` RGB."""
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB")
        hw = (im.height, im.width)
        x0, y0, x1, y1 = [float(v) for v in box]
        w, h = x1 - x0, y1 - y0
        step = w * (1 + 2 * margin) / size             # source pixels per output pixel
        k = max(1, int(step // 1.5))                   # pre-shrink big faces (no aliasing)
        if k > 1:
            im = im.reduce(k)
        # PIL samples output pixel i at input edge-coordinate a (i + 0.5) + c; pixel centres are
        # at integers in lmklib, so input edge = centre + 0.5 (and / k after the reduction).
        ax, ay = w * (1 + 2 * margin) / size / k, h * (1 + 2 * margin) / size / k
        cx, cy = (x0 - w * margin + 0.5) / k, (y0 - h * margin + 0.5) / k
        out = im.transform((size, size), Image.AFFINE, (ax, 0, cx, 0, ay, cy),
                           resample=Image.BILINEAR, fillcolor=(0, 0, 0))
        return np.asarray(out, dtype=np.uint8).transpose(2, 0, 1), hw


def cache_records(records: Sequence, source: str, size: int, margin: float,
                  boxes: np.ndarray | None = None, points: np.ndarray | None = None) -> FaceCache:
    """Decode ``records`` (:class:`lmklib.data.sample.Record`) into a :class:`FaceCache`.

    ``boxes``/``points`` override the records' own (e.g. 5 points derived from 68).
    """
    n = len(records)
    images = np.zeros((n, 3, size, size), np.uint8)
    hws = np.zeros((n, 2), np.int64)
    bx = np.stack([r.box for r in records]) if boxes is None else np.asarray(boxes, np.float64)
    pts = np.stack([r.landmarks for r in records]) if points is None else np.asarray(points)
    for i, r in enumerate(records):
        images[i], hws[i] = _pil_canonical(r.image_path, bx[i], size, margin)
    wh = (bx[:, 2:] - bx[:, :2])[:, None]
    box_units = (pts - bx[:, None, :2]) / wh
    return FaceCache(torch.from_numpy(images), torch.as_tensor(box_units, dtype=torch.float32),
                     torch.as_tensor(bx, dtype=torch.float32), torch.from_numpy(hws), margin,
                     source, [str(r.image_path) for r in records])


def _cached(key: str, build) -> FaceCache:
    """Memoise a FaceCache on disk under ``$LMK_CACHE_DIR/ccnn`` (tensors only, weights_only)."""
    from .paths import cache_root
    from .train import load_checkpoint, save_checkpoint

    path = cache_root() / "ccnn" / f"{hashlib.sha1(key.encode()).hexdigest()[:16]}.pt"
    if path.is_file():
        try:
            s = load_checkpoint(path)
            return FaceCache(s["images"], s["points"], s["boxes"], s["image_hw"],
                             float(s["margin"]), str(key.split("|")[0]), [])
        except (ValueError, KeyError):
            pass
    fc = build()
    save_checkpoint(path, {"images": fc.images, "points": fc.points, "boxes": fc.boxes,
                           "image_hw": fc.image_hw, "margin": fc.margin})
    return fc


def subset_indices(n_total: int, n: int | None, seed: int = 0) -> np.ndarray:
    """``n`` of ``n_total`` indices, a fixed random subset (sorted); all when ``n`` is None."""
    if n is None or n >= n_total:
        return np.arange(n_total)
    return np.sort(np.random.default_rng(seed).permutation(n_total)[:n])


def load_cuhk(root: str | os.PathLike, split: str, n: int | None, size: int, margin: float,
              use_cache: bool = True) -> FaceCache:
    """The CUHK 5-point split (a fixed random subset of ``n`` faces) as a :class:`FaceCache`."""
    from .data.formats.cuhk import CUHK5Point

    ds = CUHK5Point(root, split)
    idx = subset_indices(len(ds), n)
    source = f"cuhk_5pt/{split}"

    def build() -> FaceCache:
        return cache_records([ds.records[i] for i in idx], source, size, margin)

    fc = _cached(f"{source}|{Path(root).resolve()}|{len(idx)}|{size}|{margin}", build) \
        if use_cache else build()
    fc.source, fc.names = source, [str(ds.records[i].image_path) for i in idx]
    return fc


def load_synthetic(n: int, size: int, margin: float, seed: int = 0) -> FaceCache:
    """Synthetic 5-point faces (``lmklib.data.synthetic``, scheme ``cuhk5``) as a FaceCache."""
    from .data.synthetic import generate
    from .models.ccnn import sample_windows

    d = generate(n, size=96, seed=seed, scheme="cuhk5")
    imgs = torch.as_tensor(d["images"])
    imgs = imgs[..., None].expand(*imgs.shape, 3) if imgs.dim() == 3 else imgs
    imgs = imgs[..., :3].expand(*imgs.shape[:3], 3) if imgs.shape[-1] == 1 else imgs
    imgs = imgs.permute(0, 3, 1, 2).contiguous()
    boxes = torch.as_tensor(d["boxes"], dtype=torch.float32)
    fr = torch.stack([boxes[:, 0], boxes[:, 1], boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]], 1)
    win = torch.tensor([[[0.5, 0.5]]]), torch.tensor([[[1 + 2 * margin] * 2]])
    canon = sample_windows(imgs, fr, win[0].expand(n, 1, 2), win[1].expand(n, 1, 2), size)[:, 0]
    pts = torch.as_tensor(d["landmarks"], dtype=torch.float32)
    box_units = (pts - boxes[:, None, :2]) / (boxes[:, None, 2:] - boxes[:, None, :2])
    hw = torch.tensor([[imgs.shape[2], imgs.shape[3]]]).expand(n, 2).clone()
    return FaceCache(canon.round().clamp(0, 255).to(torch.uint8), box_units, boxes, hw, margin,
                     "synthetic")


# --------------------------------------------------------------------------- augmentation
def augment_batch(cache: FaceCache, faces: torch.Tensor, augs: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Affines ``[B, 2, 3]`` and augmented ground truth ``[B, 5, 2]`` (box units; a flip also
    swaps left/right point indices) for faces ``faces`` under ``AUGMENTATIONS[augs]``."""
    table = torch.tensor(AUGMENTATIONS, dtype=torch.float32)[augs]
    affine = augmentation_affine(table[:, 0], table[:, 1])
    gt = apply_affine(cache.points[faces], affine)
    flipped = table[:, 1].bool()
    if flipped.any():
        gt[flipped] = gt[flipped][:, list(CUHK5.flip_perm)]
    return affine, gt


class IndexBatches:
    """Random batches of ``(face, augmentation)`` pairs, ``iters`` per epoch.

    ``generator`` is reseeded by :func:`lmklib.train.fit` at every epoch (exact resume).
    """

    def __init__(self, n_faces: int, n_augs: int, batch: int, iters: int):
        self.n_faces, self.n_augs, self.batch, self.iters = n_faces, n_augs, batch, iters
        self.generator = torch.Generator().manual_seed(0)

    def __len__(self) -> int:
        return self.iters

    def __iter__(self):
        total = self.n_faces * self.n_augs
        for _ in range(self.iters):
            flat = torch.randint(0, total, (self.batch,), generator=self.generator)
            yield {"face": flat // self.n_augs, "aug": flat % self.n_augs,
                   "seed": torch.randint(0, 2**31 - 1, (1,), generator=self.generator)}


# --------------------------------------------------------------------------- one stage
def stage_batch(model: CCNN, stage: int, cache: FaceCache, faces: torch.Tensor,
                augs: torch.Tensor, anchors: torch.Tensor | None, shake_std: float,
                generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs, targets and output mask of one batch for ``stage``.

    Returns ``crops [B, G, 3, n, n]``, ``targets [B, G, max_out]`` and ``mask [G, max_out]``
    (which outputs each net really has). ``anchors [B, 5, 2]``: previous stage's points.
    """
    affine, gt = augment_batch(cache, faces, augs)
    images, frames = cache.images[faces], cache.frames(len(faces))
    if stage == 1:
        crops, c, s = model.stage1_inputs(images, frames, affine, shake_std, generator)
        targets = torch.zeros(len(faces), 3, 10)
        for g, ids in enumerate(STAGE1_POINTS):
            p = gt[:, list(ids)]
            if model.config.relative:
                t = to_window(p, c[:, g:g + 1], s[:, g:g + 1])
            else:   # windows-: the image position, independent of the window (see notebook)
                a = cache.absolute()[faces]
                t = a[:, None, :2] + p * a[:, None, 2:]
            targets[:, g, :2 * len(ids)] = t.reshape(len(faces), -1)
    else:
        crops, c, s = model.local_inputs(stage, images, frames, anchors, affine, shake_std,
                                         generator)
        targets = to_window(gt.repeat(1, 2, 1), c, s)
    group = model.stage(stage)
    mask = torch.zeros(len(group), max(group.out_dims), dtype=torch.bool)
    for g, d in enumerate(group.out_dims):
        mask[g, :d] = True
    return crops, targets, mask


def stage_loss(out: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor,
               n: str = "points") -> torch.Tensor:
    """Eq. 6 without the L2 term (that is SGD's weight decay): per net, the batch mean of
    ``1/(2N) sum_i ||y_i - d_i||^2``; summed over the (independent) nets.

    ``n="points"`` (default): ``i`` runs over the net's N *points* (``||.||_2^2`` of a 2-D point,
    the natural reading of Eq. 6); ``n="outputs"``: over its 2N coordinates, which halves the loss
    and so the effective learning rate. The paper does not say which.
    """
    if n not in ("points", "outputs"):
        raise ValueError(f"n must be 'points' or 'outputs', got {n!r}")
    sq = ((out - targets) ** 2) * mask
    count = mask.sum(-1) / 2 if n == "points" else mask.sum(-1)
    per_net = sq.sum(-1) / (2 * count)                    # [B, G]
    return per_net.mean(0).sum()


def make_optimizer(group: torch.nn.Module, momentum: float, weight_decay: float
                   ) -> torch.optim.Optimizer:
    """SGD at 5e-3; L2 (Eq. 6's 1/2 eta ||W||^2) on the weights only, not the biases."""
    weights = [p for n, p in group.named_parameters() if not n.endswith("bias")]
    biases = [p for n, p in group.named_parameters() if n.endswith("bias")]
    return torch.optim.SGD([{"params": weights, "weight_decay": weight_decay},
                            {"params": biases, "weight_decay": 0.0}],
                           lr=BASE_LR, momentum=momentum)


def train_stage(model: CCNN, stage: int, cache: FaceCache, iters: int, batch: int,
                augment: bool = True, anchors: torch.Tensor | None = None, shake_std: float = 0.01,
                momentum: float = 0.9, weight_decay: float = 5e-4, seed: int = 0,
                progress: bool = False, batched: bool | None = None, loss_n: str = "points"):
    """Train the nets of one stage with :func:`lmklib.train.fit`; returns its history.

    ``anchors [N, A, 5, 2]``: the previous stage's points for every (face, augmentation).
    ``batched``: train through the grouped computation (True) or net by net (False); the
    gradients are the same. Default: net by net for stage 1 (PyTorch's grouped convolution
    backward on CPU is slower than three plain ones at 39x39), grouped for stages 2-3.
    """
    from .train import fit

    group = model.stage(stage)
    n_augs = len(AUGMENTATIONS) if augment else 1
    epochs = max(1, round(iters / DECAY_EVERY))
    loader = IndexBatches(len(cache), n_augs, batch, min(iters, DECAY_EVERY))
    use_batched = stage > 1 if batched is None else batched

    def loss_fn(_group, b):
        gen = torch.Generator().manual_seed(int(b["seed"]))
        anc = anchors[b["face"], b["aug"]] if anchors is not None else None
        with torch.no_grad():
            crops, targets, mask = stage_batch(model, stage, cache, b["face"], b["aug"], anc,
                                               shake_std, gen)
        out = _group(crops) if use_batched else _group.forward_each(crops)
        return stage_loss(out, targets, mask, loss_n)

    opt = make_optimizer(group, momentum, weight_decay)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=LR_DECAY)
    hist = fit(group, loader, loss_fn, opt, epochs, scheduler=sched, scheduler_step="epoch",
               seed=seed + 1000 * stage, progress=progress, desc=f"stage {stage}")
    hist.insert(0, "stage", stage)
    return hist


@torch.no_grad()
def predict_stage(model: CCNN, stage: int, cache: FaceCache, anchors: torch.Tensor | None = None,
                  augs: Sequence[int] = (0,), batch: int = 512) -> torch.Tensor:
    """Box-unit predictions ``[N, len(augs), 5, 2]`` of ``stage`` for every face under each
    augmentation (in that augmentation's frame). ``anchors [N, len(augs), 5, 2]``."""
    model.eval()
    out = torch.zeros(len(cache), len(augs), 5, 2)
    absolute = cache.absolute()
    for a_i, a in enumerate(augs):
        for start in range(0, len(cache), batch):
            faces = torch.arange(start, min(start + batch, len(cache)))
            aug_ids = torch.full_like(faces, a)
            affine, _ = augment_batch(cache, faces, aug_ids)
            images, frames = cache.images[faces], cache.frames(len(faces))
            if stage == 1:
                crops, c, s = model.stage1_inputs(images, frames, affine)
                out[faces, a_i] = model.decode_stage1(model.stage1(crops), c, s, absolute[faces])
            else:
                crops, c, s = model.local_inputs(stage, images, frames, anchors[faces, a_i], affine)
                out[faces, a_i] = model.decode_local(model.stage(stage)(crops), c, s)
    return out


def predict(model: CCNN, cache: FaceCache, stages: int = 3) -> list[torch.Tensor]:
    """Box-unit points ``[N, 5, 2]`` after each stage, for un-augmented faces."""
    preds = [predict_stage(model, 1, cache)]
    for k in range(2, stages + 1):
        preds.append(predict_stage(model, k, cache, anchors=preds[-1]))
    return [p[:, 0] for p in preds]


def train_ccnn(cache: FaceCache, profile: str | dict = "quick", config: CCNNConfig | None = None,
               stages: int = 3, seed: int = 0, shake_std: float | None = None,
               progress: bool = False, log=print) -> tuple[CCNN, "pd.DataFrame"]:
    """Train the cascade stage by stage on ``cache``; returns the model and the history.

    Args:
        profile: a :data:`PROFILES` name or dict (iterations, batch, augmentation, SGD).
        config: geometry (``relative=False`` for windows-); ``shake_std`` overrides its shake.
    """
    import pandas as pd

    p = get_profile(profile) if isinstance(profile, str) else dict(profile)
    torch.manual_seed(seed)
    model = CCNN(config or CCNNConfig())
    std = model.config.shake_std if shake_std is None else shake_std
    augs = list(range(len(AUGMENTATIONS) if p["augment"] else 1))
    hists, anchors = [], None
    for stage in range(1, stages + 1):
        t0 = time.perf_counter()
        hists.append(train_stage(model, stage, cache, p["iters"][stage], p["batch"], p["augment"],
                                 anchors, std, p["momentum"], p["weight_decay"], seed, progress,
                                 loss_n=p.get("loss_n", "points")))
        if stage < stages:   # the next stage's training windows sit on this stage's predictions
            anchors = predict_stage(model, stage, cache, anchors, augs)
        log(f"stage {stage}: {p['iters'][stage]} iterations in {time.perf_counter() - t0:.0f} s, "
            f"final loss {hists[-1]['train_loss'].iloc[-1]:.3g}")
    model.eval()
    return model, pd.concat(hists, ignore_index=True)


# --------------------------------------------------------------------------- evaluation
def stage_errors(model: CCNN, cache: FaceCache, stages: int = 3) -> dict[str, Any]:
    """Per-point and mean error (% of face-box width, Sun et al. 2013) after each stage.

    Returns ``{"points": [ [N,5,2] px per stage ], "per_point": [N_stages, 5] %,
    "mean": [N_stages] %, "per_face": [N_stages, N] %}``.
    """
    from .metrics import nme, per_landmark_error

    gt, boxes = cache.gt_pixels(), cache.boxes.numpy()
    out = {"points": [], "per_point": [], "mean": [], "per_face": []}
    for pred in predict(model, cache, stages):
        px = cache.to_pixels(pred)
        out["points"].append(px)
        out["per_point"].append(100 * per_landmark_error(px, gt, norm="bbox_width", boxes=boxes))
        out["per_face"].append(100 * nme(px, gt, norm="bbox_width", boxes=boxes, reduce="none"))
        out["mean"].append(100 * nme(px, gt, norm="bbox_width", boxes=boxes))
    out["per_point"] = np.array(out["per_point"])
    out["per_face"] = np.array(out["per_face"])
    out["mean"] = np.array(out["mean"])
    return out


# --------------------------------------------------------------------------- other datasets
def fit_box_model(cache: FaceCache) -> dict[str, float]:
    """How CUHK face boxes sit around the 5 points: with the points' tight box of mean side
    ``s`` and centre ``c``, box side = ``ratio * s`` and box centre = ``c + (dx, dy) * s`` (means
    over ``cache``). Used to give other datasets CUHK-like boxes."""
    gt = torch.as_tensor(cache.gt_pixels())
    lo, hi = gt.min(1).values, gt.max(1).values
    s = ((hi - lo).sum(1) / 2)
    b = cache.boxes.double()
    side = ((b[:, 2:] - b[:, :2]).sum(1) / 2)
    off = ((b[:, :2] + b[:, 2:]) / 2 - (lo + hi) / 2) / s[:, None]
    return {"ratio": float((side / s).mean()), "dx": float(off[:, 0].mean()),
            "dy": float(off[:, 1].mean())}


def boxes_from_points(points: np.ndarray, model: dict[str, float]) -> np.ndarray:
    """CUHK-like square face boxes ``[N, 4]`` for 5-point sets ``[N, 5, 2]`` (:func:`fit_box_model`)."""
    p = np.asarray(points, dtype=np.float64)
    lo, hi = p.min(1), p.max(1)
    s = (hi - lo).sum(1) / 2
    c = (lo + hi) / 2 + np.stack([model["dx"] * s, model["dy"] * s], 1)
    half = model["ratio"] * s / 2
    return np.stack([c[:, 0] - half, c[:, 1] - half, c[:, 0] + half, c[:, 1] + half], 1)


def cross_dataset_caches(data_root: str | os.PathLike, box_model: dict[str, float], size: int,
                         margin: float, n: int | None = None) -> dict[str, FaceCache]:
    """Every other real 68-point set under ``data_root``, reduced to the CUHK 5 points
    (:func:`lmklib.data.schemes.ibug68_to_cuhk5`) with CUHK-like boxes: the 300-W subset (one
    entry per sub-folder present) and AFLW2000-3D where both its folder and loader exist."""
    from .data.schemes import ibug68_to_cuhk5

    root, out = Path(data_root), {}
    sets = []
    w300 = next((root / d for d in ("300w", "300w_subset", "300W") if (root / d).is_dir()), None)
    if w300 is not None:
        from .data.formats.w300 import W300
        for sub in ("afw", "helen/trainset", "helen/testset", "lfpw/trainset", "lfpw/testset",
                    "ibug"):
            if (w300 / sub).is_dir():
                sets.append((f"300-W {sub}", lambda sub=sub: W300(w300, sub).records))
    aflw = next((root / d for d in ("aflw2000", "AFLW2000", "aflw2000_3d", "AFLW2000-3D")
                 if (root / d).is_dir()), None)
    if aflw is not None:
        try:
            from .data.formats.aflw2000 import AFLW2000  # type: ignore
            sets.append(("AFLW2000-3D", lambda: AFLW2000(aflw).records))
        except ImportError:
            pass
    for name, get in sets:
        records = get()
        records = [records[i] for i in subset_indices(len(records), n)]
        pts = ibug68_to_cuhk5(np.stack([r.landmarks for r in records]))
        keep = np.isfinite(pts).all((1, 2))
        records, pts = [r for r, k in zip(records, keep) if k], pts[keep]
        fc = cache_records(records, name, size, margin, boxes_from_points(pts, box_model), pts)
        out[name] = fc
    return out
