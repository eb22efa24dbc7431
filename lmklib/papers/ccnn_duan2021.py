"""Library side of ``notebooks/01_ccnn.ipynb``: the CCNN cascade of Duan, Wang & Wu (2021),
its profiles, data recipe, training (Section 3.3) and evaluation (Section 4).

Data. Faces are a :class:`~lmklib.data.faces.FaceCrops`, decoded and cropped once (through the
shared on-disk cache) under :func:`crop_policy`: every face box plus ``margin`` on each side
(box units ``[-margin, 1 + margin]``) resampled with Pillow to a ``size x size`` RGB image. The
cascade works in *face-box units* (:mod:`lmklib.models.ccnn`); :func:`gt_box_units`,
:func:`frames`, :func:`absolute`, :func:`to_pixels` and :func:`gt_pixels` are that view of a
FaceCrops. All crops of the cascade (stage-1 regions, stage-2/3 windows, with the rotation/flip
augmentation and shake composed in) are then cut on the fly by one ``grid_sample`` per batch,
so the 60,000 augmented faces of Section 4.1 are never materialised.

Training (Section 3.3): per-net loss Eq. 6 (N = the net's points, see :func:`stage_loss`) on
window-relative targets (summed over the nets of a stage, which are independent), L2 on the
weights; the paper's schedule (SGD, 5e-3 times 0.9 every 100 iterations) is ``schedule="paper"``,
the profiles use Adam one-cycle because the paper's effectively stops learning after ~3,000
iterations, before it converges (see :func:`make_optimizer`); stages trained in order, the
nets of a stage together through the batched :class:`~lmklib.models.ccnn.NetGroup`. Training
windows of stage k are centred on stage k-1's predictions for the (augmented) training face,
plus shake.

Sizes per run live in :data:`PROFILES` (``smoke`` / ``quick`` / ``paper``).
"""

from __future__ import annotations

import os
import time
from dataclasses import replace
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ..data.faces import CropPolicy, FaceCrops, fixed_subset, load_face_crops
from ..data.geometry import BoxGeometry, box_affine, fit_box_geometry
from ..data.schemes import CUHK5
from ..models.ccnn import (CCNN, CCNNConfig, STAGE1_POINTS, apply_affine, augmentation_affine,
                           canonical_frame, to_window)

# (rotation in degrees, horizontal flip): 10,000 faces -> 60,000 (Section 4.1)
AUGMENTATIONS: tuple[tuple[float, bool], ...] = (
    (0.0, False), (-15.0, False), (12.0, False), (0.0, True), (-15.0, True), (12.0, True))

PROFILES: dict[str, dict[str, Any]] = {
    # n_train/n_test: faces (None = all); iters: iterations per stage of the main cascade;
    # ablation_iters: stage-1 iterations of each Fig. 5/6 ablation run (fewer: the headline is the
    # main cascade). 100 iterations = one "epoch" of lmklib.train.fit (and one decay step of the
    # paper schedule). schedule: "onecycle" (Adam, one-cycle to lr, what the profiles use) or
    # "paper" (SGD 5e-3 x 0.9 every 100 iterations; see make_optimizer). shake_std: the training
    # shake of the main cascade (box units; the paper's N(0, 1e-4) is paper_shake_std = 0.01,
    # also run in the ablation). window_extent / windows: Eq. 5 (see CCNNConfig).
    # extent_ablation_iters: stage-2/3 iterations of a retrain under the other Eq. 5 reading
    # ("full") on the same stage 1 (None: only the window coverage is measured).
    # n_cross: faces per cross-dataset set (None = all). loss_n: what N counts in Eq. 6.
    "smoke": dict(n_train=120, n_test=60, cache_size=64, margin=0.25, batch=16,
                  iters={1: 10, 2: 10, 3: 10}, ablation_iters=10,
                  extent_ablation_iters={2: 10, 3: 10}, augment=True,
                  schedule="onecycle", lr=2e-3, momentum=0.9, weight_decay=5e-4,
                  shake_std=0.03, paper_shake_std=0.01, window_extent="half",
                  windows={2: (0.16, 0.18), 3: (0.08, 0.09)},
                  loss_n="points", n_cross=20, n_synthetic=(120, 60)),
    "quick": dict(n_train=None, n_test=None, cache_size=80, margin=0.25, batch=64,
                  iters={1: 1000, 2: 600, 3: 600}, ablation_iters=300,
                  extent_ablation_iters=None, augment=True,
                  schedule="onecycle", lr=2e-3, momentum=0.9, weight_decay=5e-4,
                  shake_std=0.03, paper_shake_std=0.01, window_extent="half",
                  windows={2: (0.16, 0.18), 3: (0.08, 0.09)},
                  loss_n="points", n_cross=None, n_synthetic=(3000, 1000)),
    "paper": dict(n_train=None, n_test=None, cache_size=96, margin=0.25, batch=64,
                  iters={1: 10000, 2: 6000, 3: 6000}, ablation_iters=3000,
                  extent_ablation_iters={2: 3000, 3: 3000}, augment=True,
                  schedule="onecycle", lr=2e-3, momentum=0.9, weight_decay=5e-4,
                  shake_std=0.03, paper_shake_std=0.01, window_extent="half",
                  windows={2: (0.16, 0.18), 3: (0.08, 0.09)},
                  loss_n="points", n_cross=None, n_synthetic=(10000, 3466)),
}
SCHEDULES = ("onecycle", "paper")
BASE_LR = 5e-3          # Section 3.3
LR_DECAY = 0.9          # "every 100 iterations, the learning rate decays to 90%"
DECAY_EVERY = 100
W300_FOLDERS = ("afw", "helen/trainset", "helen/testset", "lfpw/trainset", "lfpw/testset", "ibug")


def config_from_profile(profile: dict[str, Any], **overrides) -> CCNNConfig:
    """The :class:`CCNNConfig` of a profile (window extent and fractions, training shake), with
    ``overrides`` (e.g. ``relative=False`` for windows-)."""
    kw: dict[str, Any] = {}
    if "window_extent" in profile:
        kw["window_extent"] = profile["window_extent"]
    if "windows" in profile:
        kw["stage2_windows"] = tuple(profile["windows"][2])
        kw["stage3_windows"] = tuple(profile["windows"][3])
    if "shake_std" in profile:
        kw["shake_std"] = profile["shake_std"]
    return CCNNConfig(**(kw | overrides))


def get_profile(name: str) -> dict[str, Any]:
    """A copy of one entry of :data:`PROFILES`; unknown names raise ``ValueError``."""
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}; valid: {sorted(PROFILES)}")
    return {k: (dict(v) if isinstance(v, dict) else v) for k, v in PROFILES[name].items()}


# --------------------------------------------------------------------------- faces in box units
def crop_policy(size: int, margin: float) -> CropPolicy:
    """The CCNN crop: the face box (not made square; CUHK boxes are square to 2 %) plus
    ``margin`` box widths on each side, ``size x size`` RGB, Pillow-resampled."""
    return CropPolicy(size, "RGB", scale=1 + 2 * margin, square=False, resample="pil")


def margin(crops: FaceCrops) -> float:
    """The margin (box units on each side) of the crops: ``(policy.scale - 1) / 2``."""
    if crops.policy is None:
        raise ValueError(f"{crops.name or 'these crops'} have no CropPolicy: the CCNN needs one "
                         "to know the crops' margin")
    return (crops.policy.scale - 1) / 2


def _boxes32(crops: FaceCrops) -> torch.Tensor:
    """The face boxes in float32: the cascade has always stored them so, and its pixel
    conversions and error normalisation use these values (numbers kept bit for bit)."""
    return crops.boxes.float()


def gt_box_units(crops: FaceCrops, index: torch.Tensor | None = None) -> torch.Tensor:
    """Ground truth in face-box units ``[N, 5, 2]`` float32 (of faces ``index``, or all):
    ``((x - x0) / w, (y - y0) / h)``, computed in float64 and then rounded."""
    gt, b = (crops.gt, crops.boxes) if index is None else (crops.gt[index], crops.boxes[index])
    return ((gt - b[:, None, :2]) / (b[:, None, 2:] - b[:, None, :2])).float()


def frames(crops: FaceCrops, n: int | None = None) -> torch.Tensor:
    """Frames ``[n, 4]`` of the crops (see :func:`~lmklib.models.ccnn.sample_windows`)."""
    return canonical_frame(crops.size, margin(crops)).expand(n or len(crops), 4)


def absolute(crops: FaceCrops) -> torch.Tensor:
    """``[N, 4]`` box in image-normalised units ``(x0/W, y0/H, w/W, h/H)`` (windows-)."""
    b, hw = _boxes32(crops), crops.image_hw.float()
    return torch.stack([b[:, 0] / hw[:, 1], b[:, 1] / hw[:, 0],
                        (b[:, 2] - b[:, 0]) / hw[:, 1], (b[:, 3] - b[:, 1]) / hw[:, 0]], 1)


def to_pixels(crops: FaceCrops, points: torch.Tensor | np.ndarray) -> np.ndarray:
    """Box-unit points ``[N, K, 2]`` -> original image pixels (float64)."""
    p = torch.as_tensor(points, dtype=torch.float64)
    b = _boxes32(crops).double()
    wh = (b[:, 2:] - b[:, :2])[:, None]
    return (b[:, None, :2] + p * wh).numpy()


def gt_pixels(crops: FaceCrops) -> np.ndarray:
    """The ground truth the cascade is scored against: :func:`gt_box_units` back in pixels."""
    return to_pixels(crops, gt_box_units(crops))


def load_cuhk(root: str | os.PathLike, split: str, n: int | None, size: int, margin: float,
              use_cache: bool = True) -> FaceCrops:
    """The CUHK 5-point split (a fixed random subset of ``n`` faces) as CCNN crops. ``split``:
    ``train``/``test`` (the clean protocol) or ``train_official``/``test_official`` (see
    :mod:`lmklib.data.formats.cuhk`)."""
    from ..data.formats.cuhk import CUHK5Point

    ds = CUHK5Point(root, split)
    return load_face_crops(ds, crop_policy(size, margin),
                           name=f"CUHK 5-point {split} ({ds.protocol} protocol)",
                           indices=fixed_subset(len(ds), n), cache=use_cache)


def load_synthetic(n: int, size: int, margin: float, seed: int = 0) -> FaceCrops:
    """Synthetic 5-point faces (:func:`lmklib.data.synthetic.generate`, scheme ``cuhk5``, 96 px)
    as CCNN crops: each face box plus ``margin`` cut bilinearly with
    :func:`~lmklib.models.ccnn.sample_windows` (no Pillow: the faces are in memory). The box
    units are computed in float32 from the generator's float32 points and boxes, as this path
    always has; ``gt`` holds them in pixels, so :func:`gt_box_units` gives them back exactly."""
    from ..data.synthetic import generate
    from ..models.ccnn import sample_windows

    d = generate(n, size=96, seed=seed, scheme="cuhk5")
    imgs = torch.as_tensor(d["images"])
    imgs = imgs[..., None].expand(*imgs.shape, 3) if imgs.dim() == 3 else imgs
    imgs = imgs[..., :3].expand(*imgs.shape[:3], 3) if imgs.shape[-1] == 1 else imgs
    imgs = imgs.permute(0, 3, 1, 2).contiguous()
    boxes = torch.as_tensor(d["boxes"], dtype=torch.float32)
    fr = torch.stack([boxes[:, 0], boxes[:, 1], boxes[:, 2] - boxes[:, 0],
                      boxes[:, 3] - boxes[:, 1]], 1)
    win = torch.tensor([[[0.5, 0.5]]]), torch.tensor([[[1 + 2 * margin] * 2]])
    canon = sample_windows(imgs, fr, win[0].expand(n, 1, 2), win[1].expand(n, 1, 2), size)[:, 0]
    pts = torch.as_tensor(d["landmarks"], dtype=torch.float32)
    units = (pts - boxes[:, None, :2]) / (boxes[:, None, 2:] - boxes[:, None, :2])
    b = boxes.double()
    gt = b[:, None, :2] + units.double() * (b[:, None, 2:] - b[:, None, :2])
    policy = CropPolicy(size, "RGB", scale=1 + 2 * margin, square=False)
    return FaceCrops.from_images(
        canon.round().clamp(0, 255).to(torch.uint8), gt.numpy(), b.numpy(), policy=policy,
        affines=box_affine(b.numpy(), size, scale=1 + 2 * margin, square=False),
        name="synthetic", scheme=CUHK5.name, image_hw=[[imgs.shape[2], imgs.shape[3]]] * n,
        note="synthetic faces (lmklib.data.synthetic): not comparable with the paper")


# --------------------------------------------------------------------------- augmentation
def augment_batch(crops: FaceCrops, faces: torch.Tensor, augs: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Affines ``[B, 2, 3]`` and augmented ground truth ``[B, 5, 2]`` (box units; a flip also
    swaps left/right point indices) for faces ``faces`` under ``AUGMENTATIONS[augs]``."""
    table = torch.tensor(AUGMENTATIONS, dtype=torch.float32)[augs]
    affine = augmentation_affine(table[:, 0], table[:, 1])
    gt = apply_affine(gt_box_units(crops, faces), affine)
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
def stage_batch(model: CCNN, stage: int, crops: FaceCrops, faces: torch.Tensor,
                augs: torch.Tensor, anchors: torch.Tensor | None, shake_std: float,
                generator: torch.Generator | None = None
                ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Inputs, targets and output mask of one batch for ``stage``.

    Returns ``inputs [B, G, 3, n, n]``, ``targets [B, G, max_out]`` and ``mask [G, max_out]``
    (which outputs each net really has). ``anchors [B, 5, 2]``: previous stage's points.
    """
    affine, gt = augment_batch(crops, faces, augs)
    images, fr = crops.images[faces], frames(crops, len(faces))
    if stage == 1:
        inputs, c, s = model.stage1_inputs(images, fr, affine, shake_std, generator)
        targets = torch.zeros(len(faces), 3, 10)
        for g, ids in enumerate(STAGE1_POINTS):
            p = gt[:, list(ids)]
            if model.config.relative:
                t = to_window(p, c[:, g:g + 1], s[:, g:g + 1])
            else:   # windows-: the image position, independent of the window (see notebook)
                a = absolute(crops)[faces]
                t = a[:, None, :2] + p * a[:, None, 2:]
            targets[:, g, :2 * len(ids)] = t.reshape(len(faces), -1)
    else:
        inputs, c, s = model.local_inputs(stage, images, fr, anchors, affine, shake_std,
                                          generator)
        targets = to_window(gt.repeat(1, 2, 1), c, s)
    group = model.stage(stage)
    mask = torch.zeros(len(group), max(group.out_dims), dtype=torch.bool)
    for g, d in enumerate(group.out_dims):
        mask[g, :d] = True
    return inputs, targets, mask


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


def make_optimizer(group: torch.nn.Module, momentum: float, weight_decay: float,
                   schedule: str = "paper", lr: float = BASE_LR, total_steps: int = 1
                   ) -> tuple[torch.optim.Optimizer, Any, str]:
    """Optimizer, learning-rate scheduler and when it steps (``"epoch"`` / ``"batch"``); L2
    (Eq. 6's 1/2 eta ||W||^2) as weight decay on the weights only, not the biases.

    ``schedule="paper"`` -- what Section 3.3 says: SGD at 5e-3 (``lr`` is ignored; momentum is
    our choice), times 0.9 every 100 iterations. Its learning rates sum to at most
    ``5e-3 * 100 / (1 - 0.9) = 5``: after 3,000 iterations the rate is 4 % of the start and
    only 0.2 of that sum is left, so training effectively stops there, whatever the stated
    iteration count (10,000 iterations end at 1e-7). It cannot converge from Xavier weights in
    that budget (stage 1 at 600 iterations: 7.6 % against 4.7 % with one-cycle, issue 10).

    ``schedule="onecycle"`` -- ours: Adam with a one-cycle schedule peaking at ``lr`` over
    ``total_steps`` iterations, stepped every batch.
    """
    if schedule not in SCHEDULES:
        raise ValueError(f"schedule must be one of {SCHEDULES}, got {schedule!r}")
    weights = [p for n, p in group.named_parameters() if not n.endswith("bias")]
    biases = [p for n, p in group.named_parameters() if n.endswith("bias")]
    groups = [{"params": weights, "weight_decay": weight_decay},
              {"params": biases, "weight_decay": 0.0}]
    if schedule == "paper":
        opt = torch.optim.SGD(groups, lr=BASE_LR, momentum=momentum)
        return opt, torch.optim.lr_scheduler.StepLR(opt, step_size=1, gamma=LR_DECAY), "epoch"
    opt = torch.optim.Adam(groups, lr=lr)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=max(1, total_steps))
    return opt, sched, "batch"


def paper_learning_rate(iteration: int) -> float:
    """The learning rate of the paper schedule at ``iteration`` (0-based):
    ``5e-3 * 0.9 ** (iteration // 100)``."""
    return BASE_LR * LR_DECAY ** (iteration // DECAY_EVERY)


def train_stage(model: CCNN, stage: int, crops: FaceCrops, iters: int, batch: int,
                augment: bool = True, anchors: torch.Tensor | None = None, shake_std: float = 0.01,
                momentum: float = 0.9, weight_decay: float = 5e-4, seed: int = 0,
                progress: bool = False, batched: bool | None = None, loss_n: str = "points",
                schedule: str = "paper", lr: float = BASE_LR):
    """Train the nets of one stage with :func:`lmklib.train.fit`; returns its history.

    ``schedule``, ``lr``: see :func:`make_optimizer` (one fit "epoch" = 100 iterations).

    ``anchors [N, A, 5, 2]``: the previous stage's points for every (face, augmentation).
    ``batched``: train through the grouped computation (True) or net by net (False); the
    gradients are the same. Default: net by net for stage 1 (PyTorch's grouped convolution
    backward on CPU is slower than three plain ones at 39x39), grouped for stages 2-3.
    """
    from ..train import fit

    group = model.stage(stage)
    n_augs = len(AUGMENTATIONS) if augment else 1
    epochs = max(1, round(iters / DECAY_EVERY))
    loader = IndexBatches(len(crops), n_augs, batch, min(iters, DECAY_EVERY))
    use_batched = stage > 1 if batched is None else batched

    def loss_fn(_group, b):
        gen = torch.Generator().manual_seed(int(b["seed"]))
        anc = anchors[b["face"], b["aug"]] if anchors is not None else None
        with torch.no_grad():
            inputs, targets, mask = stage_batch(model, stage, crops, b["face"], b["aug"], anc,
                                                shake_std, gen)
        out = _group(inputs) if use_batched else _group.forward_each(inputs)
        return stage_loss(out, targets, mask, loss_n)

    opt, sched, step = make_optimizer(group, momentum, weight_decay, schedule, lr,
                                      epochs * len(loader))
    hist = fit(group, loader, loss_fn, opt, epochs, scheduler=sched, scheduler_step=step,
               seed=seed + 1000 * stage, progress=progress, desc=f"stage {stage}")
    hist.insert(0, "stage", stage)
    return hist


@torch.no_grad()
def predict_stage(model: CCNN, stage: int, crops: FaceCrops, anchors: torch.Tensor | None = None,
                  augs: Sequence[int] = (0,), batch: int = 512, batched: bool = False
                  ) -> torch.Tensor:
    """Box-unit predictions ``[N, len(augs), 5, 2]`` of ``stage`` for every face under each
    augmentation (in that augmentation's frame). ``anchors [N, len(augs), 5, 2]``.

    ``batched=False`` (default) runs the nets one by one (:meth:`NetGroup.forward_each`), which
    on CPU is faster than the grouped path for these small nets (same outputs)."""
    model.eval()
    out = torch.zeros(len(crops), len(augs), 5, 2)
    boxes_abs = absolute(crops)
    for a_i, a in enumerate(augs):
        for start in range(0, len(crops), batch):
            faces = torch.arange(start, min(start + batch, len(crops)))
            aug_ids = torch.full_like(faces, a)
            affine, _ = augment_batch(crops, faces, aug_ids)
            images, fr = crops.images[faces], frames(crops, len(faces))
            group = model.stage(stage)
            run = group if batched else group.forward_each
            if stage == 1:
                inputs, c, s = model.stage1_inputs(images, fr, affine)
                out[faces, a_i] = model.decode_stage1(run(inputs), c, s, boxes_abs[faces])
            else:
                inputs, c, s = model.local_inputs(stage, images, fr, anchors[faces, a_i], affine)
                out[faces, a_i] = model.decode_local(run(inputs), c, s)
    return out


def predict(model: CCNN, crops: FaceCrops, stages: int = 3, batch: int = 512
            ) -> list[torch.Tensor]:
    """Box-unit points ``[N, 5, 2]`` after each stage, for un-augmented faces, ``batch`` faces
    per call. The float sums of a convolution depend on how many faces share the call (by
    ~1e-6 of a box width here), so ``batch=1`` is what a single face run alone gets, bit for
    bit (:class:`lmklib.landmarker.Landmarker` on one face)."""
    preds = [predict_stage(model, 1, crops, batch=batch)]
    for k in range(2, stages + 1):
        preds.append(predict_stage(model, k, crops, anchors=preds[-1], batch=batch))
    return [p[:, 0] for p in preds]


def train_ccnn(crops: FaceCrops, profile: str | dict = "quick", config: CCNNConfig | None = None,
               stages: int = 3, seed: int = 0, shake_std: float | None = None,
               progress: bool = False, log=print, reuse: CCNN | None = None,
               from_stage: int = 1) -> tuple[CCNN, "pd.DataFrame"]:
    """Train the cascade stage by stage on ``crops``; returns the model and the history.

    Each stage is one :func:`lmklib.train.fit` call (:func:`train_stage`). The loop over the
    stages stays here, specialised, because a cascade is not one model with one loss: every
    stage has its own nets, optimizer and learning-rate schedule, and between two stages the
    trained stage predicts, for every training face and augmentation, the anchors on which the
    next stage's training windows are centred.

    Args:
        profile: a :data:`PROFILES` name or dict (iterations, batch, augmentation, schedule,
            shake, windows).
        config: geometry (default: :func:`config_from_profile`; ``relative=False`` for
            windows-); ``shake_std`` overrides its shake.
        reuse, from_stage: copy stages ``1 .. from_stage - 1`` from the trained ``reuse`` (not
            trained again; their predictions give the anchors) and train the later ones, e.g.
            stages 2-3 under another window reading on the same stage 1.
    """
    import pandas as pd

    p = get_profile(profile) if isinstance(profile, str) else dict(profile)
    torch.manual_seed(seed)
    model = CCNN(config or config_from_profile(p))
    std = model.config.shake_std if shake_std is None else shake_std
    augs = list(range(len(AUGMENTATIONS) if p["augment"] else 1))
    hists, anchors = [], None
    if from_stage > 1 and reuse is None:
        raise ValueError("from_stage > 1 needs a trained model to reuse")
    for stage in range(1, from_stage):
        model.stage(stage).load_state_dict(reuse.stage(stage).state_dict())
        anchors = predict_stage(model, stage, crops, anchors, augs)
    for stage in range(from_stage, stages + 1):
        t0 = time.perf_counter()
        hists.append(train_stage(model, stage, crops, p["iters"][stage], p["batch"], p["augment"],
                                 anchors, std, p["momentum"], p["weight_decay"], seed, progress,
                                 loss_n=p.get("loss_n", "points"),
                                 schedule=p.get("schedule", "paper"), lr=p.get("lr", BASE_LR)))
        if stage < stages:   # the next stage's training windows sit on this stage's predictions
            anchors = predict_stage(model, stage, crops, anchors, augs)
        log(f"stage {stage}: {p['iters'][stage]} iterations in {time.perf_counter() - t0:.0f} s, "
            f"final loss {hists[-1]['train_loss'].iloc[-1]:.3g}")
    model.eval()
    return model, (pd.concat(hists, ignore_index=True) if hists else pd.DataFrame())


# --------------------------------------------------------------------------- evaluation
def stage_errors(model: CCNN, crops: FaceCrops, stages: int = 3) -> dict[str, Any]:
    """Per-point and mean error (% of face-box width, Sun et al. 2013) after each stage.

    Returns ``{"points": [ [N,5,2] px per stage ], "per_point": [N_stages, 5] %,
    "mean": [N_stages] %, "per_face": [N_stages, N] %}``.
    """
    from ..metrics import nme, per_landmark_error

    gt, boxes = gt_pixels(crops), _boxes32(crops).numpy()
    out = {"points": [], "per_point": [], "mean": [], "per_face": []}
    for pred in predict(model, crops, stages):
        px = to_pixels(crops, pred)
        out["points"].append(px)
        out["per_point"].append(100 * per_landmark_error(px, gt, norm="bbox_width", boxes=boxes))
        out["per_face"].append(100 * nme(px, gt, norm="bbox_width", boxes=boxes, reduce="none"))
        out["mean"].append(100 * nme(px, gt, norm="bbox_width", boxes=boxes))
    out["per_point"] = np.array(out["per_point"])
    out["per_face"] = np.array(out["per_face"])
    out["mean"] = np.array(out["mean"])
    return out


# --------------------------------------------------------------------------- the trained model
def model_card(model: CCNN, train: FaceCrops, test_nme: float, test_name: str) -> dict[str, Any]:
    """What :func:`lmklib.reports.save_model` stores beside the cascade's weights, so that
    :class:`lmklib.landmarker.Landmarker` can rebuild it (:func:`load_predictor`) and crop a
    new face as the training faces were cropped. ``test_nme``: the final-stage error (% of the
    box width) on ``test_name``."""
    from dataclasses import asdict

    from ..data.detect import calibrate_crops

    calibration = calibrate_crops(train)
    return {"title": "CCNN cascade (3 stages, 23 nets)", "paper": "ccnn_duan2021",
            "architecture": "CCNN", "args": asdict(model.config), "scheme": CUHK5.name,
            "crop": asdict(train.policy),
            "preprocessing": "each net's window cut from the crop (bilinear) and standardised to "
                             "zero mean, unit std (lmklib.models.ccnn.standardise)",
            "box_policy": "CUHK 5-point face boxes (x0, y0, x1, y1: the detector boxes of the "
                          "CUHK lists); the crop adds the margin itself",
            "detector": calibration.to_dict() if calibration else None,
            "dataset": train.name,
            "test": {"value": float(test_nme), "unit": "%", "norm": "bbox_width",
                     "dataset": test_name}}


def load_predictor(card: dict[str, Any], state: dict[str, torch.Tensor]):
    """The cascade of a model card (see :func:`model_card`) as ``FaceCrops -> [N, 5, 2]`` image
    pixels after stage 3: :func:`predict`, then :func:`to_pixels`, as :func:`stage_errors`."""
    from ..train import load_model_state

    model = CCNN(CCNNConfig(**card["args"]))
    load_model_state(model, state, card.get("weights", "weights"))
    model.eval()
    return lambda crops: to_pixels(crops, predict(model, crops)[-1])


# --------------------------------------------------------------------------- other datasets
def box_geometry(crops: FaceCrops) -> BoxGeometry:
    """How the face boxes of ``crops`` (CUHK) sit around their 5 points, to give other data sets
    CUHK-like boxes: :func:`~lmklib.data.geometry.fit_box_geometry` with the points' mean side
    and the mean over faces, measured on :func:`gt_pixels` and the float32 boxes."""
    return fit_box_geometry(gt_pixels(crops), _boxes32(crops).double().numpy(), side="mean",
                            stat="mean")


def cross_dataset_crops(data_root: str | os.PathLike, geometry: BoxGeometry, size: int,
                        margin: float, n: int | None = None) -> dict[str, FaceCrops]:
    """Every 300-W sub-folder under ``data_root`` (:data:`W300_FOLDERS`, those present), reduced
    to the CUHK 5 points (:func:`lmklib.data.schemes.ibug68_to_cuhk5`), with the square boxes
    ``geometry`` places on them (:func:`box_geometry` of the training set): CCNN crops of a
    fixed random subset of ``n`` faces per set, keyed ``"300-W <folder>"``."""
    from ..data.formats.w300 import W300
    from ..data.schemes import ibug68_to_cuhk5

    root, out = Path(data_root), {}
    w300 = next((root / d for d in ("300w", "300w_subset", "300W") if (root / d).is_dir()), None)
    if w300 is None:
        return out
    policy = replace(crop_policy(size, margin), box="points", geometry=geometry)
    for sub in W300_FOLDERS:
        if not (w300 / sub).is_dir():
            continue
        name = f"300-W {sub}"
        ds = W300(w300, sub)
        records = [ds.records[i] for i in fixed_subset(len(ds), n)]
        pts = ibug68_to_cuhk5(np.stack([r.landmarks for r in records]))
        keep = np.isfinite(pts).all((1, 2))
        ds.records = [replace(r, landmarks=p, visible=None)
                      for r, p, k in zip(records, pts, keep) if k]
        ds.scheme = CUHK5                    # the records now hold the CUHK 5 points
        out[name] = load_face_crops(ds, policy, name=name,
                                    note="5 points from 68; boxes placed on the points")
    return out
