"""Training, evaluation and the Sec. 3 studies of notebook 05 (He & Yang, Kaggle keypoints).

The models come from :mod:`lmklib.models.kaggle`, the data from :mod:`.data` (a
:class:`~.data.KeypointData` of :class:`~lmklib.data.faces.FaceCrops` splits, points in pixels
of the 96x96 frame). Every network trains through :func:`lmklib.train.fit` (:func:`_fit`):
:func:`train_regressor` for the MLP and the CNN, :func:`train_refiner` for the cascade's second
stage. :func:`run_config` trains and tests one configuration, :func:`ablation_arms` lists the
runs of the report's Sec. 3.1-3.4 claims, :func:`run_study` trains them (each distinct
configuration once) and :func:`run_cascade` adds the second stage. Sizes come from the
smoke/quick/paper :data:`PROFILES`. :func:`model_card` and :func:`load_predictor` take a trained
CNN or cascade out of the report and back (:class:`lmklib.landmarker.Landmarker`).
"""

from __future__ import annotations

import time

import pandas as pd
import torch
from torch import nn

from ...data.schemes import KAGGLE15
from ...data.transforms import augment_batch
from ...metrics import rmse
from ...models.kaggle import (MODELS, CascadeCNN, Normalisation, PatchRefiner, init_weights,
                             masked_mse)

#: Where each data source's faces are cut from, for a model card (see :func:`model_card`).
BOX_POLICIES = {
    "300w": ("a square box around the face's 68 iBUG-300W landmarks: their tight box made square "
             "on its longer side about its centre (x0, y0, x1, y1, image pixels, pixel centres "
             "at integers); the crop adds 7.5 % a side (scale 1.15) itself. The training boxes "
             "were this box jittered as a detector's would be (side x U(0.95, 1.05), centre "
             "moved by U(-0.05, 0.05) x the crop side in x and y, seeded); the test_predictions "
             "table gives each held-out face's exact box"),
    "kaggle": ("the whole 96x96 frame of a Kaggle image, (-0.5, -0.5, 95.5, 95.5): the "
               "competition's images are the face crops the model reads; on another image, a "
               "square box that frames the face as Kaggle's images do"),
    "synthetic": ("the whole 96x96 frame of a rendered face, (-0.5, -0.5, 95.5, 95.5): the "
                  "renderer's images are the crops the model reads"),
}

# --------------------------------------------------------------------------- profiles
#: Rotation/scale/shift augmentation of every training batch (:func:`lmklib.data.transforms.random_similarity`), on top
#: of the flips (our choice; the report is silent). Measured once at 1 thread on the 300-W build
#: (1,710 training faces, cnn_small, Adam 1e-3, 35 cosine epochs): held-out RMSE 3.41 px without
#: it, 3.10 px with it (cascade 2.84 -> 2.59 px); 3e-4 for 20 epochs had stopped near 4.7 px.
SIMILARITY = dict(angle=15.0, scale=(0.9, 1.1), shift=0.05)

#: Sizes per profile. ``epochs`` trains the main MLP and CNN, ``ablation_epochs`` every ablation
#: run (on ``ablation_cnn``), ``refiner_epochs`` the cascade's second stage; ``init_seeds`` is
#: the number of seeds per arm of the Xavier-vs-He study; ``dropout`` is the probability of the
#: "with dropout" arm (the other runs use none: at CPU budgets of a few hundred steps dropout 0.5
#: before a regression output only slows learning, which the dropout study measures). The report
#: gives no schedule, so "paper" is our choice of a long GPU run.
PROFILES: dict[str, dict] = {
    "smoke": dict(mlp="mlp_tiny", cnn="cnn_tiny", ablation_cnn="cnn_tiny", refiner="refiner_tiny",
                  epochs=1, ablation_epochs=1, refiner_epochs=1, init_seeds=2, batch_size=16,
                  lr=1e-3, dropout=0.5, max_train=32, max_eval=16, n_synthetic=64,
                  similarity=SIMILARITY),
    "quick": dict(mlp="mlp", cnn="cnn_small", ablation_cnn="cnn_small", refiner="refiner",
                  epochs=35, ablation_epochs=8, refiner_epochs=10, init_seeds=3, batch_size=32,
                  lr=1e-3, dropout=0.5, max_train=None, max_eval=None, n_synthetic=1500,
                  similarity=SIMILARITY),
    "paper": dict(mlp="mlp", cnn="cnn", ablation_cnn="cnn", refiner="refiner",
                  epochs=300, ablation_epochs=300, refiner_epochs=150, init_seeds=5,
                  batch_size=32, lr=1e-3, dropout=0.5, max_train=None, max_eval=None,
                  n_synthetic=7000, similarity=SIMILARITY),
}


def get_profile(name: str) -> dict:
    """A copy of ``PROFILES[name]``; an unknown name raises ``ValueError``."""
    if name not in PROFILES:
        raise ValueError(f"profile must be one of {list(PROFILES)}, got {name!r}")
    return dict(PROFILES[name])


# --------------------------------------------------------------------------- training
def augment(images: torch.Tensor, points: torch.Tensor, flip: bool,
            similarity: dict | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The training augmentation of every model here (:func:`lmklib.data.transforms.augment_batch`
    with Kaggle's left/right swap)."""
    return augment_batch(images, points, KAGGLE15.flip_perm if flip else None, similarity)


@torch.no_grad()
def predict(model: nn.Module, images: torch.Tensor, norm: Normalisation,
            batch_size: int = 256) -> torch.Tensor:
    """Pixel predictions ``[N, 15, 2]`` for uint8 images ``[N, 1, S, S]`` (eval mode)."""
    model.eval()
    return torch.cat([norm.pixels(model(norm.images(images[i:i + batch_size])))
                      for i in range(0, len(images), batch_size)])


def keypoint_rmse(pred: torch.Tensor, gt: torch.Tensor) -> dict:
    """Kaggle RMSE (pixels) overall and per keypoint, ignoring missing ground truth."""
    p, g = pred.numpy(), gt.numpy()
    per = {n: rmse(p[:, i:i + 1], g[:, i:i + 1]) for i, n in enumerate(KAGGLE15.names)}
    return {"rmse": rmse(p, g), "per_keypoint": per}


def _fit(model, data, epochs, batch_size, lr, seed, loss_fn, val_fn, desc, progress,
         optimizer="adam"):
    """Adam (or SGD with Nesterov momentum 0.9), cosine-annealed from ``lr``, on ``data.train``
    through :func:`lmklib.train.fit`. Returns the history with ``train_rmse`` (running, over the
    epoch's augmented batches, dropout on) and ``val_rmse``."""
    from torch.utils.data import DataLoader, TensorDataset

    from ...train import fit

    loader = DataLoader(TensorDataset(data.train.images, data.train.points),
                        batch_size=batch_size, shuffle=True, generator=torch.Generator())
    params = [p for p in model.parameters() if p.requires_grad]
    opt = (torch.optim.SGD(params, lr=lr, momentum=0.9, nesterov=True) if optimizer == "sgd"
           else torch.optim.Adam(params, lr=lr))
    # cosine decay to 0 over the run: short CPU profiles end at a converged low-lr point.
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(epochs, 1))
    hist = fit(model, loader, loss_fn, opt, epochs, scheduler=sched, val_fn=val_fn, seed=seed,
               desc=desc, progress=progress)
    hist["train_rmse"] = hist.pop("mse_px") ** 0.5
    return hist


def train_regressor(model: nn.Module, data, *, epochs: int, batch_size: int = 32,
                    lr: float = 3e-4, optimizer: str = "adam", norm: Normalisation | None = None,
                    flip: bool = True, similarity: dict | None = None, seed: int = 0,
                    progress: bool = False, desc: str = "train") -> pd.DataFrame:
    """Train a whole-face regressor (MLP or CNN) with the masked MSE on normalised targets.

    Args:
        data: a :class:`~.data.KeypointData` (train and val are used).
        norm: target/input scaling; ``Normalisation.paper()`` by default, ``.off()`` for raw.
        flip: horizontal-flip augmentation with Kaggle's left/right swap.
        similarity: keyword arguments of :func:`lmklib.data.transforms.random_similarity` (rotation, scale, shift
            augmentation), or None for none.
    Returns:
        per-epoch DataFrame (``epoch``, ``train_loss``, ``train_rmse``, ``val_rmse`` in pixels).
    """
    norm = norm or Normalisation.paper(data.train.images.shape[-1])

    def loss_fn(model, batch):
        images, points = batch
        images, points = augment(images, points, flip, similarity)
        loss = masked_mse(model(norm.images(images)), norm.points(points))
        return loss, {"mse_px": float(loss.detach()) * norm.half ** 2}

    def val_fn(model):
        return {"rmse": keypoint_rmse(predict(model, data.val.images, norm), data.val.points)["rmse"]}

    return _fit(model, data, epochs, batch_size, lr, seed, loss_fn, val_fn, desc, progress,
                optimizer)


def train_refiner(refiner_model: PatchRefiner, stage1: nn.Module, data, *, sigma: float,
                  epochs: int, batch_size: int = 32, lr: float = 3e-4, optimizer: str = "adam",
                  norm: Normalisation | None = None, flip: bool = True,
                  similarity: dict | None = None, seed: int = 0,
                  progress: bool = False) -> tuple[CascadeCNN, pd.DataFrame]:
    """Train the cascade's second stage with ``stage1`` frozen.

    Training windows are centred on the ground truth plus Gaussian noise of ``sigma`` pixels
    per coordinate (we pass stage 1's validation RMSE), so the refiner sees estimates as wrong
    as stage 1's; validation runs the whole cascade on stage 1's real estimates.
    Returns ``(cascade, history)``.
    """
    norm = norm or Normalisation.paper(data.train.images.shape[-1])
    for p in stage1.parameters():
        p.requires_grad_(False)
    cascade = CascadeCNN(stage1, refiner_model, norm)

    def loss_fn(model, batch):
        images, points = batch
        images, points = augment(images, points, flip, similarity)
        centres = points + sigma * torch.randn_like(points)
        refined = model(norm.images(images), centres)
        loss = masked_mse(norm.points(refined), norm.points(points))
        return loss, {"mse_px": float(loss.detach()) * norm.half ** 2}

    def val_fn(model):
        return {"rmse": keypoint_rmse(predict(cascade, data.val.images, norm), data.val.points)["rmse"]}

    stage1.eval()
    hist = _fit(refiner_model, data, epochs, batch_size, lr, seed, loss_fn, val_fn,
                "refiner", progress, optimizer)
    return cascade, hist


# --------------------------------------------------------------------------- experiments
def build(name: str, *, init: str = "he", seed: int = 0, **kw) -> nn.Module:
    """``MODELS[name](**kw)`` with seeded :func:`~lmklib.models.kaggle.init_weights`."""
    if name not in MODELS:
        raise ValueError(f"unknown model {name!r}; valid: {sorted(MODELS)}")
    torch.manual_seed(seed)
    return init_weights(MODELS[name](**kw), init)


def run_config(data, model: str, *, epochs: int, seed: int = 0, init: str = "he",
               activation: str = "relu", dropout: float = 0.0, normalise: bool = True,
               batch_size: int = 32, lr: float = 3e-4, optimizer: str = "adam",
               similarity: dict | None = None, progress: bool = False) -> dict:
    """Build, train and test one whole-face regressor. A run whose loss turns non-finite is
    reported with ``diverged=True`` and NaN errors rather than stopping the notebook.

    Returns a dict: ``model`` (trained), ``history``, ``test_rmse``, ``per_keypoint``,
    ``val_rmse`` (last epoch), ``diverged``, ``seconds``, and the settings.
    """
    size = data.train.images.shape[-1]
    norm = Normalisation.paper(size) if normalise else Normalisation.off()
    net = build(model, init=init, seed=seed, activation=activation, dropout=dropout)
    settings = dict(model=model, epochs=epochs, seed=seed, init=init, activation=activation,
                    dropout=dropout, normalise=normalise)
    t0 = time.perf_counter()
    try:
        hist = train_regressor(net, data, epochs=epochs, batch_size=batch_size, lr=lr,
                               optimizer=optimizer, norm=norm, similarity=similarity, seed=seed,
                               progress=progress, desc=model)
        scores, diverged = keypoint_rmse(predict(net, data.test.images, norm), data.test.points), False
    except FloatingPointError:
        hist, diverged = pd.DataFrame(columns=["epoch", "train_rmse", "val_rmse"]), True
        scores = {"rmse": float("nan"), "per_keypoint": {}}
    return dict(settings, net=net, norm=norm, history=hist, test_rmse=scores["rmse"],
                per_keypoint=scores["per_keypoint"], diverged=diverged,
                val_rmse=float(hist["val_rmse"].iloc[-1]) if len(hist) else float("nan"),
                seconds=time.perf_counter() - t0)


def ablation_arms(profile: dict, seed: int = 0) -> list[dict]:
    """Every (study, arm) run of the ablations, as :func:`run_config` keyword sets.

    Every arm starts from the base: normalised, ReLU, He, no dropout.
    Studies: ``normalisation`` (Sec. 3.1), ``activation`` (Sec. 3.2; ReLU vs sigmoid vs tanh,
    all with Xavier init, the init Glorot & Bengio analysed saturating units with),
    ``init`` (Sec. 3.3; Xavier vs He over ``init_seeds`` seeds), ``dropout`` (Sec. 3.4).
    Identical settings recur across studies and are trained once by :func:`run_study`.
    """
    base = dict(model=profile["ablation_cnn"], epochs=profile["ablation_epochs"], seed=seed,
                init="he", activation="relu", dropout=0.0, normalise=True)
    arms = [("normalisation", "with (x/256, (y-48)/48)", {}),
            ("normalisation", "without (raw 0-255, 0-96)", {"normalise": False})]
    arms += [("activation", a, {"activation": a, "init": "xavier"})
             for a in ("relu", "sigmoid", "tanh")]
    arms += [("init", i, {"init": i, "seed": seed + k})
             for k in range(profile["init_seeds"]) for i in ("xavier", "he")]
    arms += [("dropout", "no dropout", {}),
             ("dropout", f"dropout {profile['dropout']}", {"dropout": profile["dropout"]})]
    return [dict(study=s, arm=a, config={**base, **o}) for s, a, o in arms]


def run_study(data, arms: list[dict], *, batch_size: int = 32, lr: float = 3e-4,
              optimizer: str = "adam", similarity: dict | None = None,
              cache: dict | None = None, progress: bool = False) -> dict:
    """Train every arm (each distinct config once; ``cache`` maps a config to its result and
    can be shared with the main runs). Returns ``{(study, arm, seed): result}``."""
    cache = {} if cache is None else cache
    out = {}
    for a in arms:
        key = tuple(sorted(a["config"].items()))
        if key not in cache:
            cache[key] = run_config(data, **a["config"], batch_size=batch_size, lr=lr,
                                    optimizer=optimizer, similarity=similarity, progress=progress)
        out[(a["study"], a["arm"], a["config"]["seed"])] = cache[key]
    return out


def run_cascade(data, stage1: dict, refiner_name: str, *, epochs: int, seed: int = 0,
                batch_size: int = 32, lr: float = 3e-4, optimizer: str = "adam",
                similarity: dict | None = None, progress: bool = False) -> dict:
    """Train a cascade's second stage on top of a :func:`run_config` result ``stage1`` (its
    network frozen; training noise = its validation RMSE) and test the whole cascade.
    Returns a dict shaped like :func:`run_config`'s (``history`` = the second stage's epochs)."""
    t0 = time.perf_counter()
    ref = build(refiner_name, seed=seed)
    cascade, hist = train_refiner(ref, stage1["net"], data, sigma=stage1["val_rmse"],
                                  epochs=epochs, batch_size=batch_size, lr=lr,
                                  optimizer=optimizer, norm=stage1["norm"],
                                  similarity=similarity, seed=seed, progress=progress)
    scores = keypoint_rmse(predict(cascade, data.test.images, stage1["norm"]), data.test.points)
    return dict(model=f"{stage1['model']}+{refiner_name}", epochs=epochs, seed=seed,
                stage1={k: stage1[k] for k in ("model", "activation", "dropout")},
                refiner=refiner_name,
                net=cascade, norm=stage1["norm"], history=hist, test_rmse=scores["rmse"],
                per_keypoint=scores["per_keypoint"], diverged=False,
                val_rmse=float(hist["val_rmse"].iloc[-1]), sigma=stage1["val_rmse"],
                seconds=time.perf_counter() - t0)


# --------------------------------------------------------------------------- models out
def _spec(run: dict) -> dict:
    """How to rebuild a :func:`run_config` or :func:`run_cascade` network: ``{"architecture":
    <factory of lmklib.models.kaggle.MODELS, or "CascadeCNN">, "args": ...}``."""
    if "refiner" in run:
        return {"architecture": "CascadeCNN",
                "args": {"stage1": _spec(run["stage1"]),
                         "refiner": {"architecture": run["refiner"], "args": {}}}}
    return {"architecture": run["model"],
            "args": {"activation": run["activation"], "dropout": run["dropout"]}}


def _rebuild(spec: dict, norm: Normalisation) -> nn.Module:
    """The (untrained) network of :func:`_spec` ``spec``."""
    if spec["architecture"] == "CascadeCNN":
        return CascadeCNN(_rebuild(spec["args"]["stage1"], norm),
                          _rebuild(spec["args"]["refiner"], norm), norm)
    if spec["architecture"] not in MODELS:
        raise ValueError(f"unknown architecture {spec['architecture']!r}; valid: "
                         f"{sorted(MODELS)} and 'CascadeCNN'")
    return MODELS[spec["architecture"]](**spec["args"])


def model_card(run: dict, data) -> dict:
    """What :func:`lmklib.reports.save_model` stores beside a trained CNN (a :func:`run_config`
    result) or cascade (:func:`run_cascade`; its frozen first stage is inside its state dict), so
    that :class:`lmklib.landmarker.Landmarker` can rebuild it (:func:`load_predictor`) and cut a
    new face as the training faces were cut.

    ``crop`` is the training faces' :class:`~lmklib.data.faces.CropPolicy` (for the 300-W build
    :func:`~.data.crop_policy`; Kaggle's and synthetic rows are their own 96x96 frame);
    ``normalisation`` the model's :class:`~lmklib.models.kaggle.Normalisation`, which
    :func:`predict` applies; ``detector`` the calibration of OpenCV's face detector to the
    training boxes (:func:`lmklib.data.detect.calibrate_crops`; None without image files);
    ``test`` the held-out RMSE in pixels of the 96x96 crop. ``data``: the
    :class:`~.data.KeypointData` it was trained on."""
    from dataclasses import asdict

    from ...data.detect import calibrate_crops
    from ...data.faces import CropPolicy

    train = data.train
    policy = train.policy or CropPolicy(train.size, "L", box="image")
    calibration = calibrate_crops(train)
    spec = _spec(run)
    if spec["architecture"] == "CascadeCNN":
        title = f"Cascaded CNN ({run['model']}: CNN + per-point patch refiner)"
    else:
        title = f"CNN ({run['model']})"
    return {"title": title, "paper": "kaggle_keypoints_he", **spec, "scheme": KAGGLE15.name,
            "crop": asdict(policy), "normalisation": asdict(run["norm"]),
            "box_policy": BOX_POLICIES[data.source],
            "detector": calibration.to_dict() if calibration else None,
            "dataset": train.name, "data_source": data.source,
            "test": {"value": float(run["test_rmse"]), "unit": "px",
                     "norm": "none (pixels of the 96x96 crop)", "dataset": data.test.name}}


def load_predictor(card: dict, state: dict[str, torch.Tensor]):
    """The network of a model card (see :func:`model_card`) as ``FaceCrops -> [N, 15, 2]``
    image pixels: :func:`predict` with the card's normalisation, each face alone (so that a
    face's points do not depend on the faces run with it), mapped back with
    :meth:`~lmklib.data.faces.FaceCrops.to_image`."""
    from ...train import load_model_state

    norm = Normalisation(**card["normalisation"])
    net = _rebuild({"architecture": card["architecture"], "args": card["args"]}, norm)
    load_model_state(net, state, card.get("weights", "weights"))
    net.eval()
    size = card["crop"]["size"]

    def predictor(crops):
        if crops.size != size or crops.images.shape[1] != 1:
            raise ValueError(f"{card.get('name', 'model')} reads 1 x {size} x {size} gray crops, "
                             f"got {list(crops.images.shape[1:])}")
        return crops.to_image(predict(net, crops.images, norm, batch_size=1).numpy())

    return predictor
