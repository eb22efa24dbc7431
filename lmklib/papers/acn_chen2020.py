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
* Subsets of a profile (``n_train`` ...) are drawn with
  :func:`~lmklib.data.faces.fixed_subset` (seed 0), before anything is decoded.
* Training (:func:`train_landmark_net`, :func:`train_cpm`) goes through :func:`lmklib.train.fit`
  with the augmentation of :func:`lmklib.data.transforms.augment_batch` (flips with the scheme's
  left/right swap, optionally a random similarity) applied to each batch.
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
from ..data.faces import CropPolicy, FaceCrops, fixed_subset, load_face_crops
from ..data.geometry import BoxGeometry
from ..data.schemes import CUHK5, IBUG68
from ..data.transforms import augment_batch, standardise
from ..models.acn import KERNEL_STRUCTURES, LandmarkNet, acn_net, amplitude_loss, make_optimizer, mse_loss
from ..models.cpm import CPM, cpm_loss, decode_heatmaps
from ..train import fit
from ..train import make_scheduler as _scheduler

MODELS = {"cnn": "full-precision CNN", "acn": "ACN", "acn1bit": "1-bit ACN", "xnor": "XNOR-Net"}

HEADLINE = "20-40-60-80"
"""The structure the paper discusses first (Figs. 3-7, the 300-W comparison's counterpart): the
quick profile gives it most of its budget."""

#: Random rotation (degrees), scale and shift (fraction of the side) of the 300-W training
#: batches in the quick profile (our choice: 2,012 faces, no pre-trained weights).
SIMILARITY_300W = dict(angle=15.0, scale=(0.9, 1.1), shift=0.05)

PROFILES: dict[str, dict[str, Any]] = {
    # every piece runs, on a few hundred faces, in seconds
    "smoke": dict(n_train=192, n_test=128, epochs=1, epochs_other=1, batch_size=64,
                  eta=dict(cnn=1e-3, acn=1e-3, acn1bit=1e-3), schedule="onecycle", flip=True,
                  theta=5e-4, dropout=0.2, structures=(HEADLINE,), threads=1,
                  cpm=dict(size=32, n_train=48, n_test=32, epochs=1, batch_size=16,
                           vgg_widths=(4, 4, 8, 8), stage_channels=8, stages=2, stage_kernel=3,
                           optimizer="adam", lr=dict(cnn=1e-3, xnor=1e-3, acn=1e-3, acn1bit=1e-3),
                           schedule="onecycle", milestones=(), sigma=1.0, loss="softmax_ce",
                           decode="soft_argmax", flip=True,
                           similarity=SIMILARITY_300W),
                  cpm_literal=("cnn",), bench=dict(batch=16, repeats=1), cross_n=32),
    # 2 CPU cores, < 15 minutes for the notebook: all faces; the headline structure 15 epochs,
    # the three others 3 (their columns are shorter runs, said in the notebook)
    "quick": dict(n_train=None, n_test=None, epochs=15, epochs_other=3, batch_size=64,
                  eta=dict(cnn=5e-3, acn=1e-2, acn1bit=1e-2), schedule="onecycle", flip=True,
                  theta=5e-4, dropout=0.0, structures=tuple(KERNEL_STRUCTURES), threads=None,
                  cpm=dict(size=64, n_train=None, n_test=None, epochs=12, batch_size=16,
                           vgg_widths=(16, 16, 32, 32), stage_channels=32, stages=2,
                           stage_kernel=3, optimizer="adam",
                           lr=dict(cnn=5e-3, xnor=1e-2, acn=5e-3, acn1bit=5e-3),
                           schedule="onecycle", milestones=(), sigma=1.0, loss="softmax_ce",
                           decode="soft_argmax", flip=True, similarity=SIMILARITY_300W),
                  cpm_literal=("cnn",), bench=dict(batch=64, repeats=5), cross_n=None),
    # the paper's settings (Section 4.2); a GPU job
    "paper": dict(n_train=None, n_test=None, epochs=1600, epochs_other=1600, batch_size=64,
                  eta=dict(cnn=1e-4, acn=1e-4, acn1bit=1e-4), schedule="constant", flip=False,
                  theta=5e-4, dropout=0.5, structures=tuple(KERNEL_STRUCTURES), threads=None,
                  cpm=dict(size=256, n_train=None, n_test=None, epochs=40, batch_size=8,
                           vgg_widths=(64, 64, 128, 128), stage_channels=128, stages=3,
                           stage_kernel=7, optimizer="sgd",
                           lr=dict(cnn=5e-5, xnor=5e-5, acn=5e-5, acn1bit=5e-5),
                           schedule="multistep", milestones=(20, 30), sigma=2.0, loss="mse",
                           decode="quarter_offset", flip=False,
                           similarity=dict(angle=0.0, scale=(0.9, 1.1), shift=0.05)),
                  cpm_literal=(), bench=dict(batch=64, repeats=20), cross_n=None),
}
"""Sizes and settings per profile. ``n_* = None`` = the whole split.

Table 2 (5 points): ``eta[mode]`` is both learning rates (Eqs. 10, 14; the paper sets both to
1e-4), ``schedule`` ``"constant"`` (the paper: Adam at a fixed rate for 1600 epochs) or
``"onecycle"`` (ours: warm-up then annealing over the run, per batch); ``epochs`` trains the
:data:`HEADLINE` structure, ``epochs_other`` the other three; ``flip`` mirrors a random half of
each batch (the paper does not mention augmentation; off in ``paper``). The batch size and the
dropout rate are not given by the paper. Quick uses the paper's dropout layer with rate 0: at 15
epochs the models underfit (train and test errors within 0.5 %), and dropout only slows them
(measured, ACN, one run each: 5.13 % at 0.2, 5.08 % at 0.1, 4.69 % at 0). The binary networks
take twice the CNN's rate: at 5e-3 ACN reached 5.14 %, at 1e-2 5.13 % (dropout 0.2); the CNN at
1e-2 without dropout stalled at 8.6 % (dead units), at 5e-3 it reaches 3.4 %.

Tables 3-4 (``cpm``): ``size`` is the input side (heatmaps ``size // 4``), ``lr[mode]`` the
rate of every parameter (XNOR-Net trains faster at twice the others' rate: 11.7 % against 13.9 %
at 5e-3, 12 epochs; ACN and 1-bit ACN do better at 5e-3: 8.1 / 9.7 % against 8.9 / 10.1 %),
``loss`` a
:func:`lmklib.data.heatmaps.heatmap_loss` kind, ``decode`` ``"quarter_offset"`` (CPM's argmax
with a quarter-pixel shift, :func:`lmklib.models.cpm.decode_heatmaps`) or ``"soft_argmax"`` (the
expectation of the softmax of each map, sub-pixel); ``schedule`` ``"multistep"`` (the paper: x0.5
at ``milestones``) or ``"onecycle"``; ``flip`` / ``similarity`` the batch augmentation (the paper
"randomly cropped and resized" its faces: a random scale and shift in ``paper``, our reading);
``cpm_literal`` lists the modes also trained with CPM's own MSE loss and argmax decoding (the
paper profile uses them throughout).
Quick at 64 px: with the paper's MSE loss a CPM sits near flat maps (an all-zero map scores
almost the trained loss; the binary CPMs collapsed above 80 % NME in earlier runs) and the
16x16 maps' argmax alone costs ~5 % NME; the softmax cross-entropy penalises a flat map by
log(256) and the soft-argmax reads the position between cells (measured, full-precision CPM, 12
epochs: MSE + argmax 8.8 %, softmax-CE + soft-argmax 8.0 %, with the wider widths 6.5 %)."""


def resolve_profile(profile: str) -> dict[str, Any]:
    if profile not in PROFILES:
        raise ValueError(f"profile must be one of {list(PROFILES)}, got {profile!r}")
    return copy.deepcopy(PROFILES[profile])


# --------------------------------------------------------------------------- face crops
def cuhk_crops(root: str | Path, split: str, n: int | None = None, size: int = 39) -> FaceCrops:
    """CUHK 5-point faces (``root`` = the ``cuhk_5pt`` folder), decoded once into the cache.
    ``split``: ``train``/``test`` (the clean protocol) or ``train_official``/``test_official``
    (see :mod:`lmklib.data.formats.cuhk`)."""
    from ..data.formats.cuhk import CUHK5Point

    ds = CUHK5Point(root, split, image_mode="L")
    return load_face_crops(ds, CropPolicy(size, "L"),
                           name=f"LFW+Webface {split} ({ds.protocol} protocol)",
                           indices=fixed_subset(len(ds), n))


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
                           indices=fixed_subset(len(dataset), n))


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


# --------------------------------------------------------------------------- Table 2 runs
def _device(cfg: dict) -> str:
    """``cfg["device"]`` if set, else CUDA when present (the paper profile), else the CPU;
    trained models always come back on the CPU."""
    return cfg.get("device") or ("cuda" if torch.cuda.is_available() else "cpu")


def train_landmark_net(structure: str, mode: str, train: FaceCrops, cfg: dict, seed: int = 0,
                       progress: bool = False, epochs: int | None = None):
    """Train one Table 2 network; returns ``(model, history DataFrame)``. History columns:
    ``train_loss`` (L_S + L_A), ``mse`` (L_S, Eq. 5), ``amp`` (L_A, Eq. 4), ``lr``, ``seconds``.

    ``epochs`` defaults to ``cfg["epochs"]`` for :data:`HEADLINE` and ``cfg["epochs_other"]``
    otherwise; both learning rates are ``cfg["eta"][mode]``."""
    torch.manual_seed(seed)
    size = train.size
    if epochs is None:
        epochs = cfg["epochs"] if structure == HEADLINE else cfg["epochs_other"]
    model = acn_net(structure, mode, input_size=size, dropout=cfg["dropout"], theta=cfg["theta"])
    x, y = standardise(train.images), train.points.float()
    g = torch.Generator().manual_seed(seed)
    loader = DataLoader(TensorDataset(x, y), batch_size=cfg["batch_size"], shuffle=True,
                        generator=g)
    eta = cfg["eta"][mode]
    opt = make_optimizer(model, eta, eta)
    sched, when = _scheduler(opt, cfg["schedule"], epochs, len(loader))
    flip = CUHK5.flip_perm if cfg["flip"] else None

    trace: list[float] = []

    def loss_fn(m, batch):
        xb, yb = augment_batch(*batch, flip, None)
        ls = mse_loss(m(xb), yb / size)          # targets in units of the crop side
        la = amplitude_loss(m)
        trace.append(float(ls.detach()))
        return ls + la, {"mse": trace[-1], "amp": float(la.detach())}

    hist = fit(model, loader, loss_fn, opt, epochs, scheduler=sched, scheduler_step=when,
               seed=seed, progress=progress, desc=f"{mode} {structure}", device=_device(cfg))
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
    params, dataset, nme %, epochs, seconds); ``models[(structure, mode)]``; ``histories[...]``
    per-epoch DataFrames; ``errors[(structure, mode, dataset)]`` per-face NME arrays.
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
                             "nme": 100 * float(np.nanmean(e)), "epochs": len(hist),
                             "train_seconds": secs})
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
                           indices=fixed_subset(len(ds), n))


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

    Targets: :func:`lmklib.data.heatmaps.gaussian_heatmaps` (sigma ``cpm.sigma``) of the
    augmented batch's points mapped to the stride-4 heatmap (``size // 4`` pixels, the CPM's
    output after two 2x poolings); loss ``cpm.loss`` summed over the stages, plus L_A."""
    torch.manual_seed(seed)
    c = cfg["cpm"]
    model = CPM(68, mode, tuple(c["vgg_widths"]), c["stage_channels"], c["stages"],
                c["stage_kernel"], in_channels=3, theta=cfg["theta"])
    hm = c["size"] // 4
    x, y = standardise(train.images), train.points.float()
    g = torch.Generator().manual_seed(seed)
    loader = DataLoader(TensorDataset(x, y), batch_size=c["batch_size"], shuffle=True, generator=g)
    opt = make_optimizer(model, c["lr"][mode], c["lr"][mode], kind=c["optimizer"])
    sched, when = _scheduler(opt, c["schedule"], c["epochs"], len(loader), c["milestones"])
    flip = IBUG68.flip_perm if c["flip"] else None

    def loss_fn(m, batch):
        xb, yb = augment_batch(*batch, flip, c["similarity"])
        target = heatmaps.gaussian_heatmaps(heatmaps.image_to_heatmap(yb, 4), hm, c["sigma"])
        ls = cpm_loss(m(xb), target, c["loss"])
        la = amplitude_loss(m)
        return ls + la, {"heatmap_loss": float(ls.detach()), "amp": float(la.detach())}

    hist = fit(model, loader, loss_fn, opt, c["epochs"], scheduler=sched, scheduler_step=when,
               seed=seed, progress=progress, desc=f"CPM {mode}", device=_device(cfg))
    return model.cpu().eval(), hist


DECODERS = ("quarter_offset", "soft_argmax")


@torch.no_grad()
def predict_cpm(model: CPM, faces: FaceCrops, decode: str = "quarter_offset",
                batch: int = 64) -> np.ndarray:
    """Predictions ``[N, 68, 2]`` in the pixels of ``faces.images`` (float64), decoded from the
    last stage: ``"quarter_offset"`` (:func:`lmklib.models.cpm.decode_heatmaps`) or
    ``"soft_argmax"`` (the expectation of ``softmax(map)``, for maps trained as logits)."""
    if decode not in DECODERS:
        raise ValueError(f"decode must be one of {DECODERS}, got {decode!r}")
    model.eval()
    out = []
    for i in range(0, len(faces), batch):
        h = model(standardise(faces.images[i:i + batch]))[-1]
        p = decode_heatmaps(h) if decode == "quarter_offset" else \
            heatmaps.heatmap_to_image(heatmaps.soft_argmax(h, beta=1.0), 4)
        out.append(p.numpy())
    return np.concatenate(out).astype(np.float64)


def inter_ocular_nme(pred: np.ndarray, faces: FaceCrops) -> np.ndarray:
    """Per-face NME ``[N]`` normalised by the outer-eye-corner distance (a fraction), scored in
    the frame of ``faces.images`` against ``faces.points``."""
    return metrics.nme(pred, faces.points, norm="inter_ocular", scheme="ibug68", reduce="none")


def mean_shape_nme(train: FaceCrops, test: FaceCrops) -> np.ndarray:
    """Per-face inter-ocular NME ``[N]`` of the mean training shape
    (:class:`~lmklib.models.baseline.MeanShape` in the whole-image frame, where every 300-W face
    is resized whole): the error a CPM that ignores the image would make."""
    from ..models.baseline import MeanShape

    frame = lambda n, side: np.tile([0.0, 0.0, side, side], (n, 1))  # noqa: E731
    model = MeanShape().fit(train.points.numpy(), frame(len(train), train.size))
    return inter_ocular_nme(model.predict(frame(len(test), test.size)), test)


# --------------------------------------------------------------------------- trained models
def model_card(model: torch.nn.Module, train: FaceCrops, test_nme: float, test_name: str,
               calibration=None, decode: str | None = None) -> dict[str, Any]:
    """What :func:`lmklib.reports.save_model` stores beside a Table 2 network
    (:class:`~lmklib.models.acn.LandmarkNet`, 5 points) or a 300-W CPM (68 points), so that
    :class:`lmklib.landmarker.Landmarker` can rebuild it (:func:`load_predictor`).
    ``test_nme``: % of the box width (Table 2) or of the inter-ocular distance (CPM);
    ``calibration``: :func:`lmklib.data.detect.calibrate_crops` of ``train`` (or None);
    ``decode``: the CPM's heatmap decoder."""
    from dataclasses import asdict

    args = dict(model.config)
    if isinstance(model, CPM):   # scheme: what the heads were trained on
        arch, scheme, norm = "cpm", IBUG68.name, "inter_ocular"
        title = f"CPM-style heatmap network ({MODELS[args['mode']]})"
        box = ("the face's 300-W frame: the square crop the 300-W images are (the face centred, "
               "about 1.3x its 68 points); the crop resizes the box, no margin added")
    else:
        arch, scheme, norm = "acn_net", CUHK5.name, "bbox_width"
        structure = "-".join(str(c) for c in args["channels"])
        title = f"Table 2 {structure} {MODELS[args['mode']]}"
        box = ("CUHK 5-point face boxes (x0, y0, x1, y1: the detector boxes of the CUHK "
               "lists); the crop is the box, made square, no margin")
    # faces rendered at the crop size (synthetic) have no policy: the frame is the face's box
    policy = train.policy or CropPolicy(train.size, "RGB" if train.images.shape[1] == 3 else "L",
                                        box="image")
    return {"title": title, "paper": "acn_chen2020", "architecture": arch, "args": args,
            "decode": decode, "scheme": scheme, "crop": asdict(policy),
            "preprocessing": "per-image zero mean, unit std (acn_chen2020.standardise)"
                             + (f"; heatmaps decoded by {decode}" if decode else ""),
            "box_policy": box, "detector": calibration.to_dict() if calibration else None,
            "dataset": train.name,
            "test": {"value": float(test_nme), "unit": "%", "norm": norm, "dataset": test_name}}


def load_predictor(card: dict[str, Any], state: dict[str, torch.Tensor]):
    """The network of a model card (see :func:`model_card`) as ``FaceCrops -> [N, K, 2]``
    image pixels: :func:`predict_points` or :func:`predict_cpm` (with the card's decoder)."""
    from ..train import load_model_state

    args = card["args"]
    if card["architecture"] == "cpm":
        model = CPM(**args)
        load_model_state(model, state, card.get("weights", "weights"))
        model.eval()
        return lambda crops: crops.to_image(predict_cpm(model, crops, card["decode"]))
    model = LandmarkNet(**args)
    load_model_state(model, state, card.get("weights", "weights"))
    model.eval()
    return lambda crops: predict_points(model, crops)


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
