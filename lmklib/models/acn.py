"""Amplitude Convolutional Networks (ACN) and 1-bit ACN, with XNOR-Net as the baseline.

Chen, Zhang, Ma, Yue, Wang & Zhang, "Efficient Facial Landmark Localization Based on Binarized
Neural Networks", Electronics 9(8):1236, 2020 (called "the paper" below).
XNOR-Net: Rastegari et al., ECCV 2016.  Backbone: Sun, Wang & Tang, CVPR 2013 (level-1 net F1).

Layout: binarisation helpers -> :class:`AConv2d` -> :class:`XNORConv2d` -> the landmark backbone
:class:`LandmarkNet` -> the asynchronous optimiser (Eqs. 10, 14) -> memory accounting (Table 4).

Gradients of an ``AConv2d`` (layer index dropped, ``X_i`` = the i-th output filter
``[C_in, kh, kw]``, ``A`` = the layer's amplitude matrix of the same shape, ``A^`` = its mean
broadcast to that shape, ``D_i = sign(X_i)``, ``1`` = the indicator ``|X| <= 1``)::

    dL_S/dX_i = dL_S/dX^_i * A^ * 1                     (11)
    dL_A/dX_i = theta * (X_i - A^ (.) D_i)                (12)
    dL_S/dA   = sum_i dL_S/dX^_i (.) D_i                  (15)   (dA^/dA set to 1, as the paper)
    dL_A/dA   = -theta * sum_i (X_i - A^ (.) D_i) (.) D_i (16)

They come out of autograd with two small custom functions (:func:`sign_ste`,
:func:`amplitude_hat`); ``tests/models/test_acn.py`` checks them against hand-computed values.
"""

from __future__ import annotations

from typing import Iterable, Sequence

import torch
import torch.nn.functional as F
from torch import nn

from .layers import MaxPool2x2

MODES = ("cnn", "acn", "acn1bit", "xnor")
"""``cnn`` full precision; ``acn`` binary kernels (Eq. 3); ``acn1bit`` binary kernels and
activations; ``xnor`` XNOR-Net (binary kernels with per-filter scale, binary activations)."""


# --------------------------------------------------------------------------- binarisation
def binarize(x: torch.Tensor) -> torch.Tensor:
    """``sign`` with ``sign(0) = +1``, so that every value is exactly +-1 (what one bit stores)."""
    return torch.where(x >= 0, torch.ones_like(x), -torch.ones_like(x))


class _SignSTE(torch.autograd.Function):
    """sign forward; straight-through backward ``g * 1{|x| <= 1}`` (the indicator of Eq. 11,
    Courbariaux et al. / XNOR-Net)."""

    @staticmethod
    def forward(ctx, x):
        ctx.save_for_backward(x)
        return binarize(x)

    @staticmethod
    def backward(ctx, g):
        (x,) = ctx.saved_tensors
        return g * (x.abs() <= 1).to(g.dtype)


def sign_ste(x: torch.Tensor) -> torch.Tensor:
    """Binarise to +-1 with the straight-through estimator."""
    return _SignSTE.apply(x)


class _AmplitudeHat(torch.autograd.Function):
    """``A -> A^``: every element replaced by the mean of ``A``; backward is the identity
    (the paper's "dA^/dA is set to 1")."""

    @staticmethod
    def forward(ctx, a):
        return a.mean().expand_as(a).clone()

    @staticmethod
    def backward(ctx, g):
        return g


def amplitude_hat(a: torch.Tensor) -> torch.Tensor:
    """The forward amplitude ``A^`` (same shape as ``A``, all elements = mean(A))."""
    return _AmplitudeHat.apply(a)


# --------------------------------------------------------------------------- layers
class AConv2d(nn.Conv2d):
    """Amplitude convolution (Eqs. 3, 7, 8): ``conv(F, A^ (.) sign(X))``.

    Parameters: ``weight`` = the full-precision kernels X ``[C_out, C_in/groups, kh, kw]`` (only
    their signs are used at inference) and ``amplitude`` = A ``[C_in/groups, kh, kw]``, shared by
    the layer's filters, kept non-negative by :class:`AsyncAdam` (Eq. 14) and used at inference
    only through its mean.

    Args (beyond ``nn.Conv2d``'s):
        binarize_input: 1-bit ACN: binarise the input feature map to +-1 (STE) before convolving.
        theta: weight of this layer's amplitude loss (Eq. 4).
    """

    binary_weight_names = ("weight",)

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 bias: bool = True, binarize_input: bool = False, theta: float = 5e-4, **kw):
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, bias=bias, **kw)
        self.binarize_input, self.theta = binarize_input, theta
        # "Initialize X and A randomly": A starts at the mean |X| over the filters (X is random),
        # so A^ starts at the XNOR-Net scale and activations keep their magnitude.
        self.amplitude = nn.Parameter(self.weight.detach().abs().mean(0).clone())

    def binary_kernels(self) -> torch.Tensor:
        """``X^ = A^ (.) sign(X)`` ``[C_out, C_in/groups, kh, kw]``, differentiable (Eqs. 11, 15)."""
        return amplitude_hat(self.amplitude).unsqueeze(0) * sign_ste(self.weight)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.binarize_input:
            x = sign_ste(x)
        if torch.is_grad_enabled():
            return self._conv_forward(x, self.binary_kernels(), self.bias)
        # Inference: the same numbers as A^ * conv(x, D) + b. With +-1 inputs conv(x, D) is an
        # exact integer, which is what the XNOR/popcount path computes (acn_bitpacked.py).
        out = self._conv_forward(x, binarize(self.weight), None) * self.amplitude.mean()
        return out if self.bias is None else out + self.bias.view(1, -1, 1, 1)

    def amplitude_loss(self) -> torch.Tensor:
        """``theta/2 * sum_i ||X_i - A^ (.) D_i||^2`` (Eq. 4) for this layer; D is a constant."""
        d = binarize(self.weight.detach())
        a_hat = amplitude_hat(self.amplitude).unsqueeze(0)
        return 0.5 * self.theta * (self.weight - a_hat * d).pow(2).sum()

    def scale(self) -> float:
        """The single inference factor A^ of the layer."""
        return float(self.amplitude.detach().mean())

    def extra_repr(self) -> str:
        return super().extra_repr() + f", binarize_input={self.binarize_input}, theta={self.theta}"


class XNORConv2d(nn.Conv2d):
    """XNOR-Net convolution: ``(sign(I) * sign(W)) (.) K alpha``.

    ``alpha_i = mean|W_i|`` per output filter; with ``binarize_input`` the input is binarised and
    scaled by ``K = boxfilter(mean_c |I|)`` (Rastegari et al., Sec. 3.2). Gradients flow through
    ``alpha`` and the STE, as in the XNOR-Net paper.
    """

    binary_weight_names = ("weight",)

    def __init__(self, *args, binarize_input: bool = False, **kw):
        super().__init__(*args, **kw)
        self.binarize_input = binarize_input

    def binary_kernels(self) -> torch.Tensor:
        alpha = self.weight.abs().mean(dim=(1, 2, 3), keepdim=True)
        return alpha * sign_ste(self.weight)

    def input_scale(self, x: torch.Tensor) -> torch.Tensor:
        """K ``[N, 1, H_out, W_out]``: the box-filtered mean absolute input."""
        a = x.detach().abs().mean(1, keepdim=True)
        kh, kw = self.kernel_size
        box = torch.full((1, 1, kh, kw), 1.0 / (kh * kw), dtype=a.dtype, device=a.device)
        return F.conv2d(a, box, None, self.stride, self.padding, self.dilation)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        w = self.binary_kernels()
        if not self.binarize_input:
            return self._conv_forward(x, w, self.bias)
        k = self.input_scale(x)
        if torch.is_grad_enabled():
            out = self._conv_forward(sign_ste(x), w, None) * k
        else:  # integer conv of signs, then alpha and K: what the popcount path computes
            alpha = self.weight.abs().mean(dim=(1, 2, 3)).view(1, -1, 1, 1)
            out = self._conv_forward(binarize(x), binarize(self.weight), None) * alpha * k
        return out if self.bias is None else out + self.bias.view(1, -1, 1, 1)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", binarize_input={self.binarize_input}"


def make_conv(mode: str, in_channels: int, out_channels: int, kernel_size, padding=0,
              first: bool = False, theta: float = 5e-4) -> nn.Module:
    """One convolution of the given ``mode``; ``first`` = it reads the image (never binarised)."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    binary_act = mode in ("acn1bit", "xnor") and not first
    if mode == "cnn":
        return nn.Conv2d(in_channels, out_channels, kernel_size, padding=padding)
    if mode == "xnor":
        return XNORConv2d(in_channels, out_channels, kernel_size, padding=padding,
                          binarize_input=binary_act)
    return AConv2d(in_channels, out_channels, kernel_size, padding=padding,
                   binarize_input=binary_act, theta=theta)


def conv_unit(mode: str, cin: int, cout: int, kernel: int, padding=0, first: bool = False,
              theta: float = 5e-4) -> nn.Sequential:
    """``[BN] -> conv -> ReLU``. Binary-activation modes put a BatchNorm before the sign, as
    XNOR-Net does (its order BN -> BinActiv -> BinConv), so the sign sees a centred input; the
    paper binarises activations "as in [10, 11]" without giving the order."""
    layers: list[nn.Module] = []
    if mode in ("acn1bit", "xnor") and not first:
        layers.append(nn.BatchNorm2d(cin))
    layers += [make_conv(mode, cin, cout, kernel, padding, first, theta), nn.ReLU(inplace=True)]
    return nn.Sequential(*layers)


# --------------------------------------------------------------------------- the backbone
KERNEL_STRUCTURES: dict[str, tuple[int, ...]] = {
    "10-20-40-80": (10, 20, 40, 80),
    "20-40-60-80": (20, 40, 60, 80),
    "40-60-80-100": (40, 60, 80, 100),
    "20-20-40-40-60-60-80-80": (20, 20, 40, 40, 60, 60, 80, 80),
}
"""Table 2's four structures. Paper parameter counts: 0.06M, 0.09M, 0.15M, 0.16M."""

STAGE_KERNELS = (4, 3, 3, 2)         # Sun et al. F1: 39 -> 36 -> 18 -> 16 -> 8 -> 6 -> 3 -> 2
SECOND_CONV_KERNELS = (3, 3, 3, 2)   # 8-conv structure: the added conv of each stage, 'same'


class LandmarkNet(nn.Module):
    """The paper's Section 4 backbone: four conv stages and two FC layers on a 39x39 gray crop.

    ``conv(k) -> ReLU -> maxpool2`` for stages 1-3, ``conv -> ReLU`` for stage 4, then
    ``fc(120) -> ReLU -> dropout -> fc(2K)``. With 8 channel numbers each stage holds two convs,
    the second one 'same'-padded with kernel ``SECOND_CONV_KERNELS`` (the paper does not give it;
    this choice gives its 0.16M).

    Args:
        channels: 4 or 8 output-channel numbers (see :data:`KERNEL_STRUCTURES`).
        mode: one of :data:`MODES`.
        num_points: K landmarks; the output is ``[N, K, 2]`` in units of the crop side
            (x / input_size, 0-based pixel coordinates; (0, 0) = centre of the top-left pixel).
        input_size: crop side (39).
        fc: width of the first FC layer (120, Sun et al.).
        dropout: after the first FC layer (rate not given by the paper).
        theta: amplitude-loss weight of every AConv (Eq. 4).
    """

    def __init__(self, channels: Sequence[int] = (20, 40, 60, 80), mode: str = "cnn",
                 num_points: int = 5, input_size: int = 39, fc: int = 120, dropout: float = 0.5,
                 theta: float = 5e-4, in_channels: int = 1):
        super().__init__()
        if len(channels) not in (4, 8):
            raise ValueError(f"channels must list 4 or 8 numbers, got {list(channels)}")
        # the arguments, to rebuild the network from a model card (LandmarkNet(**config))
        self.config = dict(channels=tuple(channels), mode=mode, num_points=num_points,
                           input_size=input_size, fc=fc, dropout=dropout, theta=theta,
                           in_channels=in_channels)
        self.mode, self.num_points, self.input_size = mode, num_points, input_size
        per_stage = len(channels) // 4
        stages, cin, first = [], in_channels, True
        for s in range(4):
            units: list[nn.Module] = []
            for j in range(per_stage):
                cout = channels[s * per_stage + j]
                k, pad = (STAGE_KERNELS[s], 0) if j == 0 else (SECOND_CONV_KERNELS[s], "same")
                units.append(conv_unit(mode, cin, cout, k, pad, first, theta))
                cin, first = cout, False
            if s < 3:
                units.append(MaxPool2x2())
            stages.append(nn.Sequential(*units))
        self.features = nn.ModuleList(stages)
        with torch.no_grad():
            n_flat = self._features(torch.zeros(1, in_channels, input_size, input_size))[-1].numel()
        self.head = nn.Sequential(nn.Flatten(), nn.Linear(n_flat, fc), nn.ReLU(inplace=True),
                                  nn.Dropout(dropout), nn.Linear(fc, 2 * num_points))

    def _features(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = []
        for stage in self.features:
            x = stage(x)
            maps.append(x)
        return maps

    def feature_maps(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The output of each of the four stages (Fig. 6), ``[N, C_s, H_s, W_s]``."""
        return self._features(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` ``[N, 1, 39, 39]`` (standardised gray) -> ``[N, K, 2]`` in crop-side units."""
        return self.head(self._features(x)[-1]).view(-1, self.num_points, 2)


def acn_net(structure: str = "20-40-60-80", mode: str = "acn", **kw) -> LandmarkNet:
    """Factory: ``acn_net("40-60-80-100", "acn1bit")``."""
    if structure not in KERNEL_STRUCTURES:
        raise ValueError(f"structure must be one of {list(KERNEL_STRUCTURES)}, got {structure!r}")
    return LandmarkNet(KERNEL_STRUCTURES[structure], mode, **kw)


def amplitude_loss(model: nn.Module) -> torch.Tensor:
    """``L_A`` of Eq. (4): the sum over the model's AConv layers (0 if it has none)."""
    terms = [m.amplitude_loss() for m in model.modules() if isinstance(m, AConv2d)]
    return torch.stack(terms).sum() if terms else torch.zeros(())


def mse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``L_S`` of Eq. (5): ``1/(2 S M) sum ||Y^ - Y||^2`` over S examples and M landmarks."""
    s, m = pred.shape[0], pred.shape[1]
    return (pred - target).pow(2).sum() / (2 * s * m)


# --------------------------------------------------------------------------- optimisation
class _AbsAmplitudes:
    """Mixin: after the base step, groups flagged ``abs_after_step`` are replaced by their
    absolute value, so an amplitude update reads ``A <- |A - eta2 * step|`` (Eq. 14)."""

    @torch.no_grad()
    def step(self, closure=None):
        loss = super().step(closure)
        for group in self.param_groups:
            if group.get("abs_after_step", False):
                for p in group["params"]:
                    p.abs_()
        return loss


class AsyncAdam(_AbsAmplitudes, torch.optim.Adam):
    """Adam over the groups of :func:`acn_param_groups` (the paper's optimiser, Alg. 1 line 16)."""


class AsyncSGD(_AbsAmplitudes, torch.optim.SGD):
    """SGD over the groups of :func:`acn_param_groups` (the paper's 300-W setting)."""


def acn_param_groups(model: nn.Module, eta1: float, eta2: float) -> list[dict]:
    """Two groups: the kernels X and every other parameter at ``eta1`` (Eq. 10), the amplitude
    matrices A at ``eta2`` with the absolute value after each step (Eq. 14)."""
    amps = [m.amplitude for m in model.modules() if isinstance(m, AConv2d)]
    ids = {id(p) for p in amps}
    rest = [p for p in model.parameters() if id(p) not in ids]
    groups = [{"params": rest, "lr": eta1}]
    if amps:
        groups.append({"params": amps, "lr": eta2, "abs_after_step": True})
    return groups


def make_optimizer(model: nn.Module, eta1: float = 1e-4, eta2: float = 1e-4,
                   kind: str = "adam", betas: tuple[float, float] = (0.9, 0.999),
                   momentum: float = 0.9, weight_decay: float = 0.0) -> torch.optim.Optimizer:
    """The asynchronous optimiser (Adam(0.9, 0.999) by default, the paper's Section 4.2)."""
    groups = acn_param_groups(model, eta1, eta2)
    if kind == "adam":
        return AsyncAdam(groups, lr=eta1, betas=betas, weight_decay=weight_decay)
    if kind == "sgd":
        return AsyncSGD(groups, lr=eta1, momentum=momentum, weight_decay=weight_decay)
    raise ValueError(f"kind must be 'adam' or 'sgd', got {kind!r}")


# --------------------------------------------------------------------------- memory (Table 4)
def binary_layers(model: nn.Module) -> Iterable[nn.Module]:
    return (m for m in model.modules() if isinstance(m, (AConv2d, XNORConv2d)))


def inference_storage_bits(model: nn.Module) -> int:
    """Bits to store the model for inference, the paper's way: 1 bit per binary kernel weight,
    32 bits per other parameter. An AConv keeps one 32-bit scalar A^ (its amplitude matrix is
    used only in training); an XNOR conv keeps one 32-bit alpha per filter. BatchNorm running
    statistics count as 32-bit values."""
    bits = 0
    counted: set[int] = set()
    for m in model.modules():
        if isinstance(m, AConv2d):
            bits += m.weight.numel() + 32
            counted |= {id(m.weight), id(m.amplitude)}
        elif isinstance(m, XNORConv2d):
            bits += m.weight.numel() + 32 * m.out_channels
            counted.add(id(m.weight))
    bits += 32 * sum(p.numel() for p in model.parameters() if id(p) not in counted)
    bits += 32 * sum(b.numel() for n, b in model.named_buffers() if not n.endswith("num_batches_tracked"))
    return bits

