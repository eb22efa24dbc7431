"""Models and loss of He & Yang, *Facial Keypoints Detection Using Convolutional
Neural Network* (Tsinghua course report on the Kaggle Facial Keypoints Detection task).

Paper: ``shared/papers/kaggle_keypoints_he.txt``. The report sets up the task (15 keypoints on
96x96 grayscale faces, RMSE in pixels), argues for input/target normalisation (Sec. 3.1), ReLU
(Sec. 3.2), Xavier or He initialisation (Sec. 3.3, "without any noticeable difference") and
dropout (Sec. 3.4, empty), and names three models: a multilayer perceptron, a CNN and a
cascaded CNN. Its Network section is empty, so the layer sizes are ours, chosen as follows:

* :class:`MLP`: 9216 -> 100 -> 30, the one-hidden-layer baseline of the Kaggle tutorial era
  (Nouri, 2014) that the report's Lasagne-style pre-processing follows.
* :class:`KeypointCNN`: three conv+max-pool blocks (32 3x3, 64 2x2, 128 2x2) and two hidden
  fully connected layers of 500 units, ReLU everywhere except the linear output (Sec. 3.2),
  dropout on the hidden fully connected layers.
* :class:`CascadeCNN`: stage 1 is a trained :class:`KeypointCNN`; stage 2
  (:class:`PatchRefiner`) crops a ``patch x patch`` window around each first-stage estimate
  (bilinear sampling, in the 96x96 frame) and predicts that point's offset with its own small
  CNN (one group of a grouped convolution per point, as Sun et al. 2013 use one network per
  point).

Coordinates: points are ``(x, y)`` pixels, 0-based, pixel centres at integers; a network's
output is ``[N, 30]`` = 15 points flattened ``x0, y0, x1, y1, ...`` in *normalised* units
(:class:`Normalisation`). Missing targets are NaN and are ignored by :func:`masked_mse`, the
loss every model of the family is trained with.

Training, evaluation, profiles and data are in :mod:`lmklib.papers.kaggle_keypoints_he`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Callable

import torch
from torch import nn

from .layers import MaxPool2x2, extract_patches, group_linear, run_sequential

NUM_POINTS = 15
IMAGE_SIZE = 96
ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {
    "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh}


# --------------------------------------------------------------------------- normalisation
@dataclass(frozen=True)
class Normalisation:
    """Sec. 3.1: ``x = pixels / image_scale`` and ``y = (points - centre) / half``.

    The paper's values are ``image_scale = 256`` and ``centre = half = 48`` (half the 96-pixel
    side, so targets span [-1, 1]). :meth:`off` is the identity, for the "without" ablation.
    """

    image_scale: float = 256.0
    centre: float = IMAGE_SIZE / 2
    half: float = IMAGE_SIZE / 2

    @classmethod
    def paper(cls, size: int = IMAGE_SIZE) -> "Normalisation":
        return cls(256.0, size / 2, size / 2)

    @classmethod
    def off(cls) -> "Normalisation":
        return cls(1.0, 0.0, 1.0)

    def images(self, images: torch.Tensor) -> torch.Tensor:
        """uint8 or float pixels ``[N, 1, H, W]`` (0..255) -> float network input."""
        return images.float() / self.image_scale

    def points(self, points: torch.Tensor) -> torch.Tensor:
        """Pixels ``[N, K, 2]`` -> normalised targets ``[N, 2K]`` (NaN stays NaN)."""
        return ((points - self.centre) / self.half).reshape(points.shape[0], -1)

    def pixels(self, outputs: torch.Tensor) -> torch.Tensor:
        """Normalised outputs ``[N, 2K]`` -> pixels ``[N, K, 2]``."""
        return (outputs * self.half + self.centre).reshape(outputs.shape[0], -1, 2)


def masked_mse(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error over the finite entries of ``target`` (NaN = missing keypoint).

    Args:
        pred, target: same shape, e.g. ``[N, 30]``; ``target`` may hold NaN.
    Returns:
        scalar tensor; 0 (still differentiable) when no entry is finite.
    """
    if pred.shape != target.shape:
        raise ValueError(f"pred {list(pred.shape)} and target {list(target.shape)} differ")
    mask = torch.isfinite(target)
    diff = torch.where(mask, pred - torch.nan_to_num(target), torch.zeros_like(pred))
    return (diff ** 2).sum() / mask.sum().clamp(min=1)


# --------------------------------------------------------------------------- building blocks
class GroupLinear(nn.Module):
    """``groups`` independent linear layers: ``[N, groups, in]`` -> ``[N, groups, out]``
    (:func:`lmklib.models.layers.group_linear`)."""

    def __init__(self, groups: int, in_features: int, out_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.empty(groups, in_features, out_features))
        self.bias = nn.Parameter(torch.zeros(groups, out_features))
        nn.init.uniform_(self.weight, -1 / math.sqrt(in_features), 1 / math.sqrt(in_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return group_linear(x, self.weight, self.bias)


# --------------------------------------------------------------------------- models
def _fc_layers(width: int, hidden: tuple[int, ...], activation: str, dropout: float,
               num_points: int) -> list[nn.Module]:
    """Hidden fully connected layers (activation, then dropout if > 0) and the linear output of
    ``2 * num_points`` coordinates: the head the MLP and the CNN share."""
    layers: list[nn.Module] = []
    for h in hidden:
        layers += [nn.Linear(width, h), ACTIVATIONS[activation]()]
        if dropout > 0:
            layers.append(nn.Dropout(dropout))
        width = h
    return layers + [nn.Linear(width, 2 * num_points)]


class MLP(nn.Module):
    """Multilayer perceptron: flattened ``[N, 1, S, S]`` image -> hidden layers -> ``[N, 30]``.

    Args:
        image_size: input side S (96).
        hidden: widths of the hidden layers.
        activation: ``"relu"``, ``"sigmoid"`` or ``"tanh"`` (hidden layers only; output linear).
        dropout: dropout probability after each hidden layer (0 disables it).
    """

    def __init__(self, image_size: int = IMAGE_SIZE, hidden: tuple[int, ...] = (100,),
                 activation: str = "relu", dropout: float = 0.0, num_points: int = NUM_POINTS):
        super().__init__()
        self.net = nn.Sequential(nn.Flatten(), *_fc_layers(image_size * image_size, hidden,
                                                            activation, dropout, num_points))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return run_sequential(self.net, x)


class KeypointCNN(nn.Module):
    """Conv/max-pool blocks then fully connected layers: ``[N, 1, S, S]`` -> ``[N, 30]``.

    Args:
        channels, kernels: one conv layer (valid padding, stride 1) + 2x2 max-pool per entry.
        hidden: widths of the hidden fully connected layers.
        activation: ``"relu"`` | ``"sigmoid"`` | ``"tanh"`` for every layer but the output.
        dropout: dropout probability after each hidden fully connected layer.
    """

    def __init__(self, image_size: int = IMAGE_SIZE, channels: tuple[int, ...] = (32, 64, 128),
                 kernels: tuple[int, ...] = (3, 2, 2), hidden: tuple[int, ...] = (500, 500),
                 activation: str = "relu", dropout: float = 0.5, num_points: int = NUM_POINTS):
        super().__init__()
        if len(channels) != len(kernels):
            raise ValueError(f"channels {channels} and kernels {kernels} differ in length")
        layers: list[nn.Module] = []
        c, s = 1, image_size
        for out, k in zip(channels, kernels):
            layers += [nn.Conv2d(c, out, k), ACTIVATIONS[activation](), MaxPool2x2()]
            c, s = out, (s - k + 1) // 2
        if s < 1:
            raise ValueError(f"image_size {image_size} is too small for {len(channels)} blocks")
        layers += [nn.Flatten(), *_fc_layers(c * s * s, hidden, activation, dropout, num_points)]
        self.net = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return run_sequential(self.net, x)


class PatchRefiner(nn.Module):
    """Second cascade stage: one small CNN per point on a window around its current estimate.

    ``forward(images, centres)`` takes normalised images ``[N, 1, S, S]`` and pixel estimates
    ``[N, K, 2]`` and returns refined pixel estimates ``[N, K, 2]``. Each point has its own
    filters (grouped convolutions, ``groups = K``) and its own fully connected head
    (:class:`GroupLinear`); the predicted offset is in units of half a patch.
    """

    def __init__(self, patch: int = 24, channels: tuple[int, int] = (8, 16), hidden: int = 64,
                 activation: str = "relu", num_points: int = NUM_POINTS):
        super().__init__()
        k, (c1, c2) = num_points, channels
        self.patch, self.num_points = patch, num_points
        act = ACTIVATIONS[activation]
        self.features = nn.Sequential(
            nn.Conv2d(k, k * c1, 3, groups=k), act(), MaxPool2x2(),
            nn.Conv2d(k * c1, k * c2, 3, groups=k), act(), MaxPool2x2())
        s = ((patch - 2) // 2 - 2) // 2
        if s < 1:
            raise ValueError(f"patch {patch} is too small (needs >= 10 pixels)")
        self.head = nn.Sequential(GroupLinear(k, c2 * s * s, hidden), act(),
                                  GroupLinear(k, hidden, 2))

    def forward(self, images: torch.Tensor, centres: torch.Tensor) -> torch.Tensor:
        patches = extract_patches(images, centres, self.patch)             # [N, K, P, P]
        f = run_sequential(self.features, patches)                         # [N, K*c2, s, s]
        f = f.reshape(f.shape[0], self.num_points, -1)                     # per-point features
        return centres + self.head(f) * (self.patch / 2)


class CascadeCNN(nn.Module):
    """Stage 1 (a whole-face regressor) followed by a :class:`PatchRefiner`.

    Input and output follow the single-stage models (normalised images in, normalised ``[N, 30]``
    out), so the same evaluation code applies. ``norm`` converts stage-1 outputs to pixels.
    """

    def __init__(self, stage1: nn.Module, refiner: PatchRefiner, norm: Normalisation):
        super().__init__()
        self.stage1, self.refiner, self.norm = stage1, refiner, norm

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        first = self.norm.pixels(self.stage1(x))
        return self.norm.points(self.refiner(x, first))


# --------------------------------------------------------------------------- initialisation
def _fans(w: torch.Tensor, groups: int = 1) -> tuple[int, int]:
    """(fan_in, fan_out) of one group's weight, for linear, conv and GroupLinear weights."""
    if w.dim() == 2:                                   # nn.Linear: [out, in]
        return w.shape[1], w.shape[0]
    if w.dim() == 3:                                   # GroupLinear: [groups, in, out]
        return w.shape[1], w.shape[2]
    rf = w[0, 0].numel()                               # conv: [out, in/groups, kh, kw]
    return w.shape[1] * rf, w.shape[0] // groups * rf


def init_weights(model: nn.Module, scheme: str = "he") -> nn.Module:
    """Sec. 3.3: uniform on ``[-sqrt(3 Var), sqrt(3 Var)]`` with zero biases, where
    ``Var = 2 / (n_in + n_out)`` ("xavier", Glorot & Bengio 2010) or ``Var = 2 / n_in`` ("he",
    He et al. 2015); for convolutions ``n`` counts ``w x h`` inputs per channel."""
    if scheme not in ("he", "xavier"):
        raise ValueError(f"init scheme must be 'he' or 'xavier', got {scheme!r}")
    for m in model.modules():
        if isinstance(m, (nn.Linear, nn.Conv2d, GroupLinear)):
            fan_in, fan_out = _fans(m.weight, getattr(m, "groups", 1))
            var = 2.0 / fan_in if scheme == "he" else 2.0 / (fan_in + fan_out)
            bound = math.sqrt(3.0 * var)
            with torch.no_grad():
                m.weight.uniform_(-bound, bound)
                if m.bias is not None:
                    m.bias.zero_()
    return model


# --------------------------------------------------------------------------- factories
def mlp(**kw) -> MLP:
    """The MLP baseline: 9216 -> 100 -> 30 (924,730 parameters)."""
    return MLP(hidden=(100,), **kw)


def mlp_tiny(**kw) -> MLP:
    """Smoke-test MLP: 9216 -> 8 -> 30."""
    return MLP(hidden=(8,), **kw)


def cnn(**kw) -> KeypointCNN:
    """The CNN: conv 32@3x3, 64@2x2, 128@2x2 (each + 2x2 max-pool), FC 500, 500, 30."""
    return KeypointCNN(channels=(32, 64, 128), kernels=(3, 2, 2), hidden=(500, 500), **kw)


def cnn_small(**kw) -> KeypointCNN:
    """Half-width CNN for CPU ablations: conv 16/32/64, FC 256, 256."""
    return KeypointCNN(channels=(16, 32, 64), kernels=(3, 2, 2), hidden=(256, 256), **kw)


def cnn_tiny(**kw) -> KeypointCNN:
    """Smoke-test CNN: conv 4/8/8, FC 16."""
    return KeypointCNN(channels=(4, 8, 8), kernels=(3, 2, 2), hidden=(16,), **kw)


def refiner(**kw) -> PatchRefiner:
    """Cascade stage 2: 24x24 windows, 8/16 grouped conv channels per point, FC 64."""
    return PatchRefiner(patch=24, channels=(8, 16), hidden=64, **kw)


def refiner_tiny(**kw) -> PatchRefiner:
    """Smoke-test stage 2: 12x12 windows, 2/4 channels per point, FC 8."""
    return PatchRefiner(patch=12, channels=(2, 4), hidden=8, **kw)


MODELS: dict[str, Callable[..., nn.Module]] = {
    "mlp": mlp, "mlp_tiny": mlp_tiny, "cnn": cnn, "cnn_small": cnn_small,
    "cnn_tiny": cnn_tiny, "refiner": refiner, "refiner_tiny": refiner_tiny}

