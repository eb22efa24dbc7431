"""Experiments of Lin, Zheng, Zhao & Liang, SD-HRNet (Sensors 2023): profiles, data recipe,
training of the plain networks, evaluation. Slimming (Eq. 2, pruning) is in :mod:`.slimming`,
the triple knowledge distillation (Eq. 3-4) in :mod:`.distillation`; the networks in
:mod:`lmklib.models.hrnet`.

Used by ``notebooks/04_sd_hrnet.ipynb``.

Data conventions
----------------
* **Faces.** 300-W as the data root holds it: 2,012 training faces and the complete 554-face
  common subset (helen + lfpw test sets). Its images are already square face crops (1.6x the
  landmark box), so each is resized whole to ``size`` (``CropPolicy(size, "RGB", box="image")``,
  the same frame as ``03_acn``'s 300-W CPMs); the paper crops the provided boxes and resizes to
  256 x 256 (Sec. 4.3). Training batches are flipped (p = 0.5, the scheme's left/right swap),
  rotated by up to +-30 degrees and scaled by 1 +- 0.25 (Sec. 4.3), shifted by up to 5 % (ours).
* **Targets.** Gaussian heatmaps (``sigma`` heatmap pixels, peak 1) at ``size / 4``;
  the loss is Eq. 2's per-map mean squared error averaged over samples and landmarks (``"mse"``),
  or our ``"softmax_ce"`` (:func:`lmklib.data.heatmaps.heatmap_loss`).
* **Decoding** (``decode``, :func:`lmklib.data.heatmaps.decode_heatmaps`, mapped back to the
  crop): the HRNet lineage's argmax moved a quarter pixel towards the higher neighbour
  (``"quarter_offset"``, ``paper``), or for maps trained with the softmax cross-entropy the
  expectation of that softmax (``"soft_argmax"``, quick: measured on the quick supernet, 7.03 %
  with the quarter offset, 6.63 % with DARK, 6.47 % with the expectation).
* **Scores** (Sec. 4.2): NME normalised by the inter-ocular distance (outer eye corners, 0-based
  36/45), failure rate at 10 % (and 8 %), AUC at 10 %; ``metrics`` does all three.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from ... import metrics
from ...data import heatmaps
from ...data.faces import FaceCrops
from ...data.schemes import IBUG68, Scheme, get_scheme
from ...data.transforms import augment_batch, standardise
from ...models.hrnet import HRNet, hrnetv2_spec, supernet_spec
from ...train import channels_last, fit, make_scheduler

PAPER = "sd_hrnet_lin2023"

#: Sec. 4.3: 1 +- 0.25 scaling, +-30 degrees, flips; the shift is ours (the crops are fixed).
AUGMENT = dict(angle=30.0, scale=(0.75, 1.25), shift=0.05)

#: The distillation as the paper sets it on 300-W (Sec. 4.3: lambda1 = 4, lambda2 = 1), with a mask
#: on every student input: our literal reading of "the occluded images with a random-sized mask"
#: (Sec. 3.2). The mask sizes (sides 10-50 % of the image's) are ours; the paper gives none.
PAPER_KD_300W = dict(lambda1=4.0, lambda2=1.0, occlusion=dict(p=1.0, min_frac=0.1, max_frac=0.5))

_PAPER_WIDTHS = (18, 36, 72, 144)

PROFILES: dict[str, dict[str, Any]] = {
    # CI: seconds, synthetic or real faces, tiny networks
    "smoke": dict(
        size=32, n_train=48, n_test=32, seeds=(0,), sigma=1.0, loss="softmax_ce",
        decode="quarter_offset", batch_size=16, threads=None, device="cpu",
        supernet=dict(widths=(2, 4, 8, 16), stem=4, stages=4, units=1, last_units=None),
        teacher=dict(widths=(2, 4, 8, 16), stem=4, units=1, epochs=1, lr=2e-3,
                     schedule="onecycle", milestones=()),
        slim=dict(epochs=1, lr=2e-3, alpha_lr=1e-2, l1=5e-5, weight_decay=4e-5,
                  schedule="onecycle", milestones=(), threshold=0.0017, params_ratio=0.5),
        distill=dict(epochs=1, lr=1e-3, schedule="onecycle", milestones=(), **PAPER_KD_300W),
        kd_literal=True, table6=("teacher",), fig6=dict(supernets=("hrsupernet",), ratios=(0.5,)),
        fps_batches=(1, 4), fps_runs=2),
    # the default: under 20 minutes on two CPU cores, on 300-W
    "quick": dict(
        size=96, n_train=None, n_test=None, seeds=(0, 1), sigma=1.0, loss="softmax_ce",
        decode="soft_argmax", batch_size=16, threads=None, device="cpu",
        supernet=dict(widths=(16, 32, 64, 128), stem=16, stages=10, units=1, last_units=None),
        teacher=dict(widths=(16, 32, 64, 128), stem=32, units=1, epochs=6, lr=3e-3,
                     schedule="onecycle", milestones=()),
        slim=dict(epochs=8, lr=3e-3, alpha_lr=1e-2, l1=5e-4, weight_decay=4e-5,
                  schedule="onecycle", milestones=(), threshold=0.0017, params_ratio=0.30),
        distill=dict(epochs=4, lr=3e-3, lambda1=1.0, lambda2=1.0, schedule="onecycle",
                     milestones=(), occlusion=dict(p=0.25, min_frac=0.1, max_frac=0.3)),
        kd_literal=True, table6=("teacher",),
        fig6=dict(supernets=("hrsupernet",), ratios=(0.6, 0.3, 0.15)),
        fps_batches=(1, 8, 32, 128), fps_runs=5),
    # Sec. 4.3 on 300-W: a GPU job
    "paper": dict(
        size=256, n_train=None, n_test=None, seeds=(0, 1, 2, 3, 4), sigma=1.0, loss="mse",
        decode="quarter_offset", batch_size=16, threads=None, device="auto",
        supernet=dict(widths=_PAPER_WIDTHS, stem=64, stages=10, units=4, last_units=None),
        teacher=dict(widths=_PAPER_WIDTHS, stem=64, units=4, epochs=60, lr=1e-4,
                     schedule="multistep", milestones=(30, 50)),
        slim=dict(epochs=60, lr=1e-4, alpha_lr=1.8e-4, l1=5e-5, weight_decay=4e-5,
                  schedule="multistep", milestones=(40, 50), threshold=0.0017, params_ratio=None),
        distill=dict(epochs=60, lr=1e-4, schedule="multistep", milestones=(40, 50),
                     **PAPER_KD_300W),
        kd_literal=False, table6=("teacher", "teacher_peers"),
        fig6=dict(supernets=("hrsupernet", "hrnet", "hrsupernet_residual", "hrnet_residual"),
                  ratios=(0.6, 0.45, 0.3, 0.2, 0.1)),
        fps_batches=(1, 2, 4, 8, 16, 32, 64, 128), fps_runs=20),
}
"""Settings per profile.

``size``: input side (heatmaps ``size / 4``; a multiple of 32). ``supernet``: the HRSuperNet's
``widths`` (paper 18/36/72/144), ``stem`` channels (64), ``stages`` (10), MBConvs per block
``units`` (4) and in the last stage ``last_units`` (None = ``units``, the paper's text; the
authors' 300-W config has none there). ``teacher``: HRNetV2 at ``widths`` (W18 in ``paper``)
with its own training settings (the HRNet facial code's Adam 1e-4, x0.1 at epochs 30 and 50).
``slim`` (Sec. 4.3, Eq. 2): Adam on the weights (``lr``, ``weight_decay``, ``schedule`` /
``milestones`` x0.1) alternating batch by batch with Adam on the alphas (``alpha_lr``), L1
weight ``l1``, pruning ``threshold``, or (``params_ratio`` not None) the threshold that keeps
that fraction of the supernet's parameters (:func:`.slimming.threshold_for_ratio`). ``distill`` (Eq. 4): the two students' fine-tuning from
the slimmed weights, ``lambda1`` (ensemble) and ``lambda2`` (teacher), ``occlusion`` the
masked-input rectangles (:func:`lmklib.data.transforms.random_occlusion`). ``kd_literal``: also
distil with :data:`PAPER_KD_300W` (where ``distill`` departs from it), so that the notebook shows
both numbers. ``table6``: the KD ablation rows trained besides "none" (the undistilled S-HRNet)
and the full scheme.
``fig6``: the supernets slimmed for Fig. 6 and the parameter fractions they are pruned to.

Quick is the paper's recipe scaled to two CPU cores: 96 px faces, a narrower supernet
(16/32/64/128, stem 16, one MBConv per block), a narrower teacher, a few epochs each with a
one-cycle schedule (Adam at the paper's 1e-4 for 60 epochs needs a GPU), the softmax
cross-entropy instead of the MSE (measured: the MSE-trained quick supernet ended at 29.7 % NME
after 10 epochs, worse than the mean shape's 16.9 %; with the cross-entropy 7.6 % after 8, and
6.6 % with these widths), the students' rate 3e-3 (at 1e-3 the S-HRNet's four epochs ended at
7.00 %, at 3e-3 6.52 %), the alpha rate raised (1e-2) and the threshold set by the paper's
parameter ratio (0.98 M of 3.27 M): in eight epochs no alpha gets near 0.0017 (measured: the
smallest ended at 0.011, the median at 0.75). And Eq. 2's lambda ten times the paper's (5e-4):
Adam scales each alpha's step by its gradient, so what counts is lambda against the heatmap
loss's gradient on the alphas, several times larger with the cross-entropy than with the MSE
(:func:`.slimming.alpha_gradient_rms`; 3.9x at initialisation here), in a search 7.5x shorter. At the paper's 5e-5 the alphas barely separate and
which operations the ratio keeps is close to arbitrary (measured by
``scripts/sd_hrnet_kd_study.py --slim-l1`` on 200 held-out training faces, 4 fine-tuning epochs:
22 of 132 operations kept, S-HRNet 7.85 %; at 5e-4, 53 kept, 6.04 %). The students distil with
the paper's lambda2 = 1 but lambda1 = 1, not 4, and masks on a quarter of their inputs with
sides up to 30 % (the paper gives neither rate nor size): with :data:`PAPER_KD_300W` the four
epochs leave them behind the S-HRNet fine-tuned alone (the same study, students 1 / 2: 7.06 /
7.12 % against 6.31 %; the paper's lambdas with these masks 6.41 / 6.39 %; these settings 6.23 /
6.20 %; over fine-tuning seeds 0-2 the S-HRNet 6.31 / 6.32 / 6.24 %, mean 6.29 %, and these settings'
six students 6.31 % on average; at eight epochs 5.75 % plain, 5.84 / 5.84 % with these settings:
level with the plain fine-tuning, not ahead of it). ``kd_literal`` trains the paper's setting
beside them. Quick runs two fine-tuning seeds (the paper five), so that the comparison of the
S-HRNet with the SD-HRNet rests on more than one draw: each seed adds 130-205 s on two cores
(two processors measured; on the slower, the S-HRNet 57 s and the distilled pair 146 s)."""


def resolve_profile(profile: str) -> dict[str, Any]:
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {list(PROFILES)}, got {profile!r}")
    return copy.deepcopy(PROFILES[profile])


def with_paper_kd(cfg: dict) -> dict[str, Any]:
    """``cfg`` with its distillation set as the paper sets it on 300-W (:data:`PAPER_KD_300W`)."""
    return {**cfg, "distill": {**cfg["distill"], **copy.deepcopy(PAPER_KD_300W)}}


def device(cfg: dict) -> str:
    d = cfg.get("device", "cpu")
    if d == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    return d


# --------------------------------------------------------------------------- data
def w300_faces(root: str | Path, split: str, cfg: dict, n: int | None = None) -> FaceCrops:
    """A 300-W split of the data root, each image resized whole to ``cfg["size"]``."""
    from ..acn_chen2020 import w300_faces as resized

    return resized(root, split, cfg["size"], n)


def synthetic_faces(n: int, cfg: dict, seed: int) -> FaceCrops:
    """``n`` synthetic 68-point faces at ``cfg["size"]`` (when the data root has no 300-W)."""
    from ..acn_chen2020 import synthetic_heatmap_faces

    return synthetic_heatmap_faces(n, cfg["size"], seed)


def dataset_faces(folder: str | Path, name: str, split: str, cfg: dict,
                  n: int | None = None, **loader_kw) -> FaceCrops:
    """Tables 3-5's other sets, from the catalog's loader: ``masked_300w`` (the 300-W layout:
    resized whole, like 300-W; a split missing one of its folders raises FileNotFoundError
    rather than pass for the whole split), ``cofw`` / ``wflw`` (the dataset's face boxes, made
    square and enlarged 1.25x as the HRNet lineage crops them, resized to ``size``).
    ``loader_kw`` go to the loader (WFLW's ``subset``)."""
    from ...data.catalog import get_entry
    from ...data.faces import CropPolicy, fixed_subset, load_face_crops

    entry = get_entry(name)
    if name == "masked_300w":
        loader_kw = {"image_mode": "RGB", "missing_ok": False, **loader_kw}
    ds = entry.loader_class()(folder, split=split, **loader_kw)
    pol = CropPolicy(cfg["size"], "RGB", box="image") if name == "masked_300w" else \
        CropPolicy(cfg["size"], "RGB", box="data", scale=1.25)
    subset = loader_kw.get("subset")
    label = f"{entry.title} {split}" + (f" ({subset})" if subset else "")
    return load_face_crops(ds, pol, name=label, indices=fixed_subset(len(ds), n))


def occluded_lower_face(faces: FaceCrops, seed: int = 0, fill: str = "noise") -> FaceCrops:
    """Our synthetic-occluder test set (a stand-in for Masked 300-W, which is not here): each
    face with a rectangle over its lower face -- from the nose bridge's lower end (point 29,
    0-based) to below the chin, across the jaw's width plus 5 % -- filled with uniform noise
    (``"noise"``) or a random grey (``"constant"``), seeded per set. Points are unchanged."""
    rng = np.random.default_rng(seed)
    imgs = faces.images.clone()
    pts = faces.points.numpy()
    n, c, h, w = imgs.shape
    for i in range(n):
        p = pts[i]
        x0, x1 = p[:17, 0].min(), p[:17, 0].max()
        pad = 0.05 * (x1 - x0)
        c0, c1 = int(max(0, np.floor(x0 - pad))), int(min(w, np.ceil(x1 + pad) + 1))
        r0, r1 = int(max(0, np.floor(p[29, 1]))), int(min(h, np.ceil(p[8, 1] + pad) + 1))
        if fill == "noise":
            patch = rng.integers(0, 256, (c, r1 - r0, c1 - c0))
        else:
            patch = np.full((c, 1, 1), int(rng.integers(0, 256)))
        imgs[i, :, r0:r1, c0:c1] = torch.from_numpy(np.broadcast_to(
            patch, (c, r1 - r0, c1 - c0)).astype(np.uint8))
    return FaceCrops.from_images(imgs, faces.gt, faces.boxes, policy=faces.policy,
                                 affines=faces.affines, name=f"{faces.name}, lower face occluded",
                                 paths=faces.paths, scheme=faces.scheme,
                                 note="ours: synthetic occluders over the lower face",
                                 image_hw=faces.image_hw)


# --------------------------------------------------------------------------- networks
def make_supernet(cfg: dict, unit: str = "mbconv", topology: str = "hrsupernet",
                  seed: int = 0, num_points: int = IBUG68.num_points) -> HRNet:
    """A supernet of the profile's widths: ``topology`` ``"hrsupernet"`` (ten four-branch
    stages) or ``"hrnet"`` (HRNetV2's stages, learnable alphas: Fig. 6's "HRNet"); ``unit``
    ``"mbconv"`` or ``"basic"`` (Fig. 6a's residual units). Seeded where it is built."""
    s = cfg["supernet"]
    torch.manual_seed(seed)
    if topology == "hrsupernet":
        spec = supernet_spec(s["widths"], s["stem"], s["stages"], s["units"], unit,
                             s["last_units"])
    elif topology == "hrnet":
        spec = hrnetv2_spec(s["widths"], s["stem"], s["units"], unit,
                            stem_unit="bottleneck" if unit == "basic" else "mbconv")
    else:
        raise ValueError(f"topology must be 'hrsupernet' or 'hrnet', got {topology!r}")
    return HRNet(spec, num_points, learn_alphas=True)


def make_teacher(cfg: dict, seed: int = 0, num_points: int = IBUG68.num_points) -> HRNet:
    """HRNetV2 (plain: alphas fixed at 1) at the profile's teacher widths (W18 in ``paper``)."""
    t = cfg["teacher"]
    torch.manual_seed(seed)
    return HRNet(hrnetv2_spec(t["widths"], t["stem"], t["units"]), num_points,
                 learn_alphas=False)


def targets(points: torch.Tensor, cfg: dict) -> torch.Tensor:
    """Gaussian heatmaps ``[N, 68, size/4, size/4]`` of crop-pixel points."""
    return heatmaps.gaussian_heatmaps(heatmaps.image_to_heatmap(points, 4), cfg["size"] // 4,
                                      cfg["sigma"])


def heatmap_criterion(pred: torch.Tensor, target: torch.Tensor, cfg: dict) -> torch.Tensor:
    """Eq. 2's first term (``"mse"``: the mean over samples, landmarks and pixels of the
    squared error) or our ``"softmax_ce"``."""
    return heatmaps.heatmap_loss(pred, target, cfg["loss"])


def loader(faces: FaceCrops, cfg: dict, seed: int) -> DataLoader:
    x, y = standardise(faces.images), faces.points.float()
    g = torch.Generator().manual_seed(seed)
    return DataLoader(TensorDataset(x, y), batch_size=cfg["batch_size"], shuffle=True,
                      generator=g)


def scheme_of(faces: FaceCrops) -> Scheme:
    """The landmark scheme of a face set (300-W's 68 points unless it says otherwise)."""
    return get_scheme(faces.scheme or IBUG68.name)


def augmented(batch, scheme: Scheme) -> tuple[torch.Tensor, torch.Tensor]:
    """A training batch flipped (``scheme``'s left/right swap), rotated, scaled and shifted
    (:data:`AUGMENT`)."""
    xb, yb = batch
    return augment_batch(xb, yb, scheme.flip_perm, AUGMENT)


def train_plain(model: HRNet, faces: FaceCrops, cfg: dict, settings: dict, seed: int = 0,
                desc: str = "", progress: bool = False, checkpoint=None):
    """Train a network on the heatmap loss alone (the teacher; the undistilled S-HRNet's
    fine-tuning) with Adam at ``settings["lr"]``. Returns ``(model, history)``."""
    dl, scheme = loader(faces, cfg, seed), scheme_of(faces)
    channels_last(model)
    opt = torch.optim.Adam(model.parameters(), lr=settings["lr"],
                           weight_decay=settings.get("weight_decay", 0.0))
    sched, when = make_scheduler(opt, settings["schedule"], settings["epochs"], len(dl),
                                 settings["milestones"], gamma=0.1)

    def loss_fn(m, batch):
        xb, yb = augmented(batch, scheme)
        return heatmap_criterion(m(xb), targets(yb, cfg), cfg)

    hist = fit(model, dl, loss_fn, opt, settings["epochs"], scheduler=sched, scheduler_step=when,
               seed=seed, progress=progress, desc=desc, device=device(cfg),
               checkpoint=checkpoint, tag=desc or None)
    return model.cpu().eval(), hist


def fine_tune(slimmed: HRNet, faces: FaceCrops, cfg: dict, seed: int = 0, desc: str = "",
              epochs: int | None = None, progress: bool = False, checkpoint=None):
    """The undistilled S-HRNet: the slimmed network fine-tuned on the heatmap loss alone, with
    the students' settings (``cfg["distill"]``: rate, epochs unless ``epochs`` is given,
    schedule) and no weight decay."""
    settings = {**cfg["distill"], "weight_decay": 0.0}
    if epochs is not None:
        settings["epochs"] = epochs
    return train_plain(slimmed, faces, cfg, settings, seed=seed, desc=desc, progress=progress,
                       checkpoint=checkpoint)


# --------------------------------------------------------------------------- evaluation
@torch.no_grad()
def predict_heatmaps(model, faces: FaceCrops, batch: int = 64) -> torch.Tensor:
    model.eval()
    return torch.cat([model(standardise(faces.images[i:i + batch]))
                      for i in range(0, len(faces), batch)])


def decode(maps: torch.Tensor, cfg: dict) -> np.ndarray:
    """Heatmaps -> crop-pixel points ``[N, K, 2]`` (float64) with ``cfg["decode"]``.

    Maps trained with the softmax cross-entropy (``cfg["loss"]``) are logits: they are turned
    into the distributions the loss fitted (a softmax over each map's pixels) first, so that
    DARK's Taylor step works on their log (the logits themselves); MSE maps are shifted to a
    maximum of 1 (the decoders read a map without a positive pixel as "no landmark"). Neither
    moves the argmax or the quarter-pixel step."""
    if cfg.get("loss") == "softmax_ce":
        maps = torch.softmax(maps.flatten(-2).float(), -1).unflatten(-1, maps.shape[-2:])
    else:
        maps = maps - maps.amax((-2, -1), keepdim=True) + 1.0
    p = heatmaps.decode_heatmaps(maps, cfg["decode"])
    return heatmaps.heatmap_to_image(p, 4).numpy().astype(np.float64)


def predict(model, faces: FaceCrops, cfg: dict) -> np.ndarray:
    """Crop-pixel predictions ``[N, 68, 2]``."""
    return decode(predict_heatmaps(model, faces), cfg)


def inter_ocular_nme(pred: np.ndarray, faces: FaceCrops) -> np.ndarray:
    """Per-face NME (a fraction) normalised by the outer-eye-corner distance, in the crop."""
    return metrics.nme(pred, faces.points, norm="inter_ocular", scheme=scheme_of(faces),
                       reduce="none")


def scores(errors: np.ndarray) -> dict[str, float]:
    """NME, failure rates at 10 % and 8 %, AUC at 10 % (all in %) of per-face errors."""
    e = np.asarray(errors, dtype=np.float64)
    return {"nme": 100 * float(np.mean(e)), "fr10": 100 * metrics.failure_rate(e, 0.10),
            "fr8": 100 * metrics.failure_rate(e, 0.08), "auc10": 100 * metrics.auc(e, 0.10)}


def mean_shape_errors(train: FaceCrops, test: FaceCrops) -> np.ndarray:
    """Per-face NME of the mean training shape in the resized frame (ignoring the image)."""
    from ..acn_chen2020 import mean_shape_nme

    return mean_shape_nme(train, test)


# --------------------------------------------------------------------------- trained models
def model_card(model: HRNet, title: str, train: FaceCrops, cfg: dict, test_nme: float,
               test_name: str, calibration=None) -> dict[str, Any]:
    """What :func:`lmklib.reports.save_model` stores beside a network of this notebook, so
    that :class:`lmklib.landmarker.Landmarker` can rebuild it (:func:`load_predictor`)."""
    from dataclasses import asdict

    from ...data.faces import CropPolicy

    # faces rendered at the crop size (synthetic) have no policy: the frame is the whole image
    policy = train.policy or CropPolicy(train.size, "RGB", box="image")
    return {"title": title, "paper": PAPER, "architecture": "hrnet", "args": dict(model.config),
            "decode": cfg["decode"], "scheme": scheme_of(train).name, "crop": asdict(policy),
            "preprocessing": "per-image zero mean, unit std (lmklib.data.transforms.standardise);"
                             f" heatmaps at 1/4 of the input decoded by {cfg['decode']}",
            "box_policy": ("the face's 300-W frame: the square crop the 300-W images are (the "
                           "face centred, about 1.6x its 68 points' box); the crop resizes it"),
            "detector": calibration.to_dict() if calibration else None,
            "dataset": train.name,
            "test": {"value": float(test_nme), "unit": "%", "norm": "inter_ocular",
                     "dataset": test_name}}


def load_predictor(card: dict[str, Any], state: dict[str, torch.Tensor]):
    """The network of a model card as ``FaceCrops -> [N, 68, 2]`` image pixels."""
    from ...train import load_model_state

    model = HRNet(**card["args"])
    load_model_state(model, state, card.get("weights", "weights"))
    model.eval()
    cfg = {"decode": card["decode"]}
    return lambda crops: crops.to_image(predict(model, crops, cfg))


# --------------------------------------------------------------------------- figures
def draw_architecture(spec: dict[str, Any], slimmed: dict[str, Any] | None,
                      alphas: dict[str, float] | None, ax) -> None:
    """Figs. 2/7: stages as columns, resolutions as rows (full resolution on top); a square per
    block of ``spec`` (grey when ``slimmed`` has no such block), a line per operation ``slimmed``
    keeps (width by ``|alpha|``). Stage 1 is the single block at column 1."""
    from matplotlib.patches import Rectangle

    from ...models.hrnet import op_name

    kept = slimmed or spec
    a = {k: abs(v) for k, v in (alphas or {}).items()}
    amax = max(a.values()) if a else 1.0
    nb = len(spec["widths"])
    ax.add_patch(Rectangle((1 - 0.2, -0.2), 0.4, 0.4, color="C0"))
    for s, (st, st_kept) in enumerate(zip(spec["stages"], kept["stages"])):
        col = s + 2
        for b, srcs in enumerate(st["inputs"]):
            if not srcs:
                continue
            alive = bool(st_kept["inputs"][b])
            ax.add_patch(Rectangle((col - 0.2, b - 0.2), 0.4, 0.4,
                                   color="C0" if alive else "0.85", zorder=3))
            for j in st_kept["inputs"][b]:
                w = 0.4 + 3.0 * a.get(op_name(col, b, j), amax) / amax
                ax.plot([col - 1 + 0.2, col - 0.2], [j, b], color="C1", lw=w, alpha=0.8, zorder=2)
    ax.set_xlim(0.5, len(spec["stages"]) + 1.5)
    ax.set_ylim(nb - 0.5, -0.5)
    ax.set_xticks(range(1, len(spec["stages"]) + 2))
    ax.set_yticks(range(nb), [f"1/{2 ** b} ({w} ch)" for b, w in enumerate(spec["widths"])])
    ax.set_xlabel("stage")
