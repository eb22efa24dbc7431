"""CCNN: the improved cascaded CNN of Duan, Wang & Wu (2021), 23 lightweight CNNs for 5 points.

Reference: X. Duan, Y. Wang, Y. Wu, "Face Alignment Algorithm Based on an Improved Cascaded
Convolutional Neural Network", Advances in Multimedia, 2021 (Sections 3.1-3.3, Table 2, Eqs. 4-9).
It follows Sun, Wang & Tang (CVPR 2013): a global stage and two local refinement stages.

* Stage 1: F1 (whole face box, 10 outputs), EN1 (eyes + nose region, 6), NM1 (nose + mouth
  region, 6), each on a 39x39x3 crop: conv 4x4x20, pool, conv 3x3x40, pool, conv 3x3x60, pool,
  fc 120, fc out (Table 2). A point predicted by several nets is their mean (Eq. 4).
* Stages 2 and 3: ten nets each, two per point, on 15x15x3 windows centred on the previous
  stage's points, expanded by 0.16 / 0.18 (stage 2) and 0.08 / 0.09 (stage 3) of the face box
  on each side (Eq. 5, ``CCNNConfig.window_extent``): conv 4x4x20, pool, conv 3x3x40, pool,
  fc 60, fc 2.

Coordinates. Everything geometric is in *face-box units*: ``u = (x - x0) / w``, ``v = (y - y0) / h``
for the face box ``(x0, y0, x1, y1)``, ``w = x1 - x0``, ``h = y1 - y0``; pixel centres sit at
integer pixel coordinates (0-based). A *window* is an axis-aligned rectangle given by its centre
``c`` and size ``s`` (box units); its output pixel ``i`` of ``n`` samples the point
``c - s/2 + (i + 0.5) s / n``, so the window covers exactly ``[c - s/2, c + s/2]``. A net predicts
its points relative to the window, ``t = (p - (c - s/2)) / s`` (Eq. 9, "windows+"); the ablation
"windows-" (absolute positioning) regresses image coordinates instead (see ``encode``).

Parameters are counted as the paper does, weights only (643,920 = 2.46 MiB in float32); the
nets do have biases (Eq. 1), :func:`lmklib.profile.count_parameters` leaves them out with
``biases=False``.

Batched inference: :class:`NetGroup` runs the G nets of one stage as one computation (grouped
convolutions with ``groups=G`` and batched matrix products), not G Python calls.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ClearsDerived, DerivedCache, max_pool2x2

POINTS = ("left_eye", "right_eye", "nose_tip", "left_mouth_corner", "right_mouth_corner")
POINT_ABBR = ("LE", "RE", "N", "LM", "RM")
STAGE1_NETS = ("F1", "EN1", "NM1")
# Which of the 5 points each stage-1 net predicts (in its output order).
STAGE1_POINTS = ((0, 1, 2, 3, 4), (0, 1, 2), (2, 3, 4))


# --------------------------------------------------------------------------- configuration
@dataclass
class CCNNConfig:
    """Geometry of the cascade (box units unless stated)."""

    stage1_size: int = 39                  # stage-1 input side, pixels (Table 2)
    local_size: int = 15                   # stage-2/3 input side, pixels (Section 3.2.2)
    # EN1 sees the top and NM1 the bottom `region_fraction` of the face box. The paper only says
    # "eyes + nose" / "nose + mouth"; 31/39 is Sun et al. 2013's EN1/NM1 crop (39x31 of 39x39).
    region_fraction: float = 31 / 39
    # Eq. 5: (a1, b1) and (a2, b2) per stage; a scales the box height, b the width.
    stage2_windows: tuple[float, float] = (0.16, 0.18)
    stage3_windows: tuple[float, float] = (0.08, 0.09)
    # How Eq. 5's fractions size a window. "half": the anchor is "expanded to the top, bottom,
    # left and right" by a*h / b*w, so the window is 2a*h x 2b*w (Sun et al. 2013's padding,
    # Section 3.1.2's wording). "full": a*h x b*w is the whole window (the formula read alone).
    window_extent: str = "half"
    shake_std: float = 0.01                # shake ~ N(0, 1e-4): variance 1e-4 -> std 0.01
    dropout: float = 0.25                  # on the hidden FC layer's output (Section 3.3)
    relative: bool = True                  # windows+ (Eq. 9); False = windows- (absolute)

    def stage1_windows(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Centres ``[3, 2]`` and sizes ``[3, 2]`` of the F1, EN1, NM1 regions (box units).
        Shared constants: read them, do not write into them."""
        return _stage1_windows(self.region_fraction)

    def local_window_sizes(self, stage: int) -> torch.Tensor:
        """Sizes ``[10, 2]`` (width, height, box units) of the ten windows of stage 2 or 3: nets
        0-4 use ``(b1, a1)`` for points 0-4, nets 5-9 ``(b2, a2)`` (Eq. 5, with a = b in the
        paper), doubled when :attr:`window_extent` is ``"half"`` (the default). A shared
        constant: read it, do not write into it."""
        if self.window_extent not in ("half", "full"):
            raise ValueError(f"window_extent must be 'half' or 'full', got {self.window_extent!r}")
        a1, a2 = {2: self.stage2_windows, 3: self.stage3_windows}[stage]
        return _local_window_sizes(a1, a2, 2.0 if self.window_extent == "half" else 1.0)


# Geometry constants, built once per value: a batch-1 cascade otherwise spends ~10 us on each
# small torch.tensor it makes from Python lists. Built outside inference mode, so a constant
# first made under torch.inference_mode() can still enter a training step's graph.
@functools.lru_cache(maxsize=None)
def _stage1_windows(r: float) -> tuple[torch.Tensor, torch.Tensor]:
    with torch.inference_mode(False):
        centres = torch.tensor([[0.5, 0.5], [0.5, r / 2], [0.5, 1 - r / 2]])
        sizes = torch.tensor([[1.0, 1.0], [1.0, r], [1.0, r]])
    return centres, sizes


@functools.lru_cache(maxsize=None)
def _local_window_sizes(a1: float, a2: float, k: float) -> torch.Tensor:
    with torch.inference_mode(False):
        return torch.tensor([[k * a1, k * a1]] * 5 + [[k * a2, k * a2]] * 5)


_EYE2 = torch.eye(2)


@functools.lru_cache(maxsize=None)
def _pixel_to_grid(w: int, h: int) -> torch.Tensor:
    """``[2]``: grid_sample's units per source pixel, x and y, of a ``w`` x ``h`` image."""
    with torch.inference_mode(False):
        return torch.tensor([2.0 / w, 2.0 / h])


@functools.lru_cache(maxsize=None)
def _unit_grid(n: int) -> torch.Tensor:
    """``[n * n, 3]``, row-major over an ``n`` x ``n`` window: ``(s_j, s_i, 1)`` for output
    pixel ``(i, j)``, ``s_k = (k + 0.5) / n - 0.5`` its offset from the centre in window sides."""
    with torch.inference_mode(False):
        s = (torch.arange(n, dtype=torch.float32) + 0.5) / n - 0.5
        gy, gx = torch.meshgrid(s, s, indexing="ij")
        return torch.stack([gx, gy, torch.ones_like(gx)], -1).reshape(n * n, 3)


@functools.lru_cache(maxsize=None)
def _averaging(point_ids: tuple[tuple[int, ...], ...], pairs: int, k: int
               ) -> tuple[torch.Tensor, torch.Tensor]:
    """``[G, pairs, k]``: weight ``1 / n_i`` where net g's output pair j is point i (predicted
    by ``n_i`` nets), else 0; and ``[k, 1]``: 0, or NaN for a point no net predicts."""
    with torch.inference_mode(False):
        w = torch.zeros(len(point_ids), pairs, k)
        for g, ids in enumerate(point_ids):
            for j, i in enumerate(ids):
                w[g, j, i] = 1.0
        count = w.sum((0, 1))
        return w / count.clamp(min=1), torch.where(count > 0, 0.0, float("nan"))[:, None]


# --------------------------------------------------------------------------- the nets
class Stage1Net(nn.Module):
    """One stage-1 CNN (Table 2): 39x39x3 -> ``out_dim`` (= 2 x points), relative coordinates."""

    def __init__(self, out_dim: int, dropout: float = 0.25, in_size: int = 39):
        super().__init__()
        self.conv1 = nn.Conv2d(3, 20, 4)
        self.conv2 = nn.Conv2d(20, 40, 3)
        self.conv3 = nn.Conv2d(40, 60, 3)
        side = ((((in_size - 3) // 2) - 2) // 2 - 2) // 2            # 39 -> 36,18 -> 16,8 -> 6,3
        self.fc1 = nn.Linear(60 * side * side, 120)
        self.fc2 = nn.Linear(120, out_dim)
        self.convs = ("conv1", "conv2", "conv3")
        self.dropout = dropout

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, 3, 39, 39]`` (standardised) -> ``[B, out_dim]``."""
        for name in self.convs:
            x = max_pool2x2(F.relu(getattr(self, name)(x)))
        x = F.dropout(F.relu(self.fc1(x.flatten(1))), self.dropout, self.training)
        return self.fc2(x)


class LocalNet(Stage1Net):
    """One stage-2/3 CNN (Section 3.2.2, Fig. 3): 15x15x3 -> 2 (one point, window-relative)."""

    def __init__(self, dropout: float = 0.25, in_size: int = 15):
        nn.Module.__init__(self)
        self.conv1 = nn.Conv2d(3, 20, 4)
        self.conv2 = nn.Conv2d(20, 40, 3)
        side = (((in_size - 3) // 2) - 2) // 2                      # 15 -> 12,6 -> 4,2
        self.fc1 = nn.Linear(40 * side * side, 60)
        self.fc2 = nn.Linear(60, 2)
        self.convs = ("conv1", "conv2")
        self.dropout = dropout


def xavier_init(module: nn.Module, output_bias: float = 0.5) -> None:
    """Xavier (Glorot) uniform weights (Section 3.3) and zero biases on every conv and linear
    layer, except the output layers (``fc2``), whose bias starts at ``output_bias``: 0.5 is the
    window centre in window-relative units, so training starts from "the point is at the centre
    of its window" instead of spending its first iterations learning that offset."""
    for name, m in module.named_modules():
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            nn.init.constant_(m.bias, output_bias if name.endswith("fc2") else 0.0)


class NetGroup(ClearsDerived, nn.Module):
    """The parallel nets of one stage, run as one batched computation.

    The nets share one architecture (they may differ in their last layer's width). ``forward``
    concatenates their conv weights and runs grouped convolutions (``groups = G``), then
    batched matrix products for the FC layers: one call for all G nets. Gradients flow back to
    each net's own parameters, so the same path trains the nets "in parallel within a group".
    :meth:`forward_each` is the plain per-net loop, kept as the reference.
    """

    def __init__(self, nets: list[nn.Module]):
        super().__init__()
        self.nets = nn.ModuleList(nets)
        self.out_dims = [n.fc2.out_features for n in nets]
        self._packed = DerivedCache()

    def __len__(self) -> int:
        return len(self.nets)

    def _packed_sources(self) -> list[torch.Tensor]:
        """The weights and biases :meth:`packed` reads, looked up afresh (a replaced layer is
        seen) in the modules' own dicts: ``self.parameters()`` walks every module through
        generators, 65 us of a 1.8 ms batch-1 cascade for a 10-net stage."""
        layers = (*self.nets[0].convs, "fc1", "fc2")
        return [net._modules[name]._parameters[kind] for net in self.nets._modules.values()
                for name in layers for kind in ("weight", "bias")]

    def packed(self) -> dict[str, torch.Tensor]:
        """The G nets' weights packed for the batched computation: conv weights concatenated
        (``[G*C_out, C_in, k, k]``), FC weights stacked and transposed (``[G, in, out]``, the last
        layer zero-padded to the widest net). Built from the parameters, so gradients reach each
        net; without gradients the packing is cached until a parameter changes."""
        params = self._packed_sources()
        if not torch.is_grad_enabled() or not any(p.requires_grad for p in params):
            return self._packed.get(params, self._pack_for_inference)
        return self._pack()

    def _pack_for_inference(self) -> dict[str, torch.Tensor]:
        """:meth:`_pack` detached, the conv weights channels-last like the inference input:
        oneDNN otherwise reorders them at every call (measured at batch 1, one thread: the
        stage-2 grouped convs 122 -> 84 us and 165 -> 126 us)."""
        return {k: v.detach().contiguous(memory_format=torch.channels_last) if v.dim() == 4
                else v.detach() for k, v in self._pack().items()}

    def _pack(self) -> dict[str, torch.Tensor]:
        nets, out = list(self.nets), max(self.out_dims)
        packed = {}
        for name in nets[0].convs:
            packed[name + ".w"] = torch.cat([getattr(n, name).weight for n in nets])
            packed[name + ".b"] = torch.cat([getattr(n, name).bias for n in nets])
        packed["fc1.w"] = torch.stack([n.fc1.weight.t() for n in nets])
        packed["fc1.b"] = torch.stack([n.fc1.bias for n in nets])[:, None]
        packed["fc2.w"] = torch.stack([F.pad(n.fc2.weight, (0, 0, 0, out - d)).t()
                                       for n, d in zip(nets, self.out_dims)])
        packed["fc2.b"] = torch.stack([F.pad(n.fc2.bias, (0, out - d))
                                       for n, d in zip(nets, self.out_dims)])[:, None]
        return packed

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``x [B, G, 3, H, W]`` (net g reads ``x[:, g]``) -> ``[B, G, max_out]``; the outputs of
        a net narrower than ``max_out`` are zero-padded."""
        b, g = x.shape[:2]
        first, w = self.nets[0], self.packed()
        h = x.reshape(b, g * x.shape[2], *x.shape[3:])
        if not self.training:
            # inference: oneDNN's grouped convs are 2-3x faster channels-last on a CPU (batch 1;
            # the float sums differ from channels-first in the last bits)
            h = h.contiguous(memory_format=torch.channels_last)
        for name in first.convs:                                       # grouped: groups = G
            # in place: a new [256, 60, 36, 36] output costs 0.28 s of page faults at batch 256
            h = max_pool2x2(F.relu(F.conv2d(h, w[name + ".w"], w[name + ".b"], groups=g),
                                   inplace=True))
        h = h.reshape(b, g, -1).transpose(0, 1)                        # [G, B, in], per-net order
        h = F.relu(torch.baddbmm(w["fc1.b"], h, w["fc1.w"]))
        if self.training:
            h = F.dropout(h, first.dropout)
        return torch.baddbmm(w["fc2.b"], h, w["fc2.w"]).transpose(0, 1)

    def forward_each(self, x: torch.Tensor) -> torch.Tensor:
        """The same as :meth:`forward`, one net at a time (reference implementation)."""
        out = max(self.out_dims)
        return torch.stack([F.pad(net(x[:, i]), (0, out - d))
                            for i, (net, d) in enumerate(zip(self.nets, self.out_dims))], 1)


# --------------------------------------------------------------------------- geometry
def augmentation_affine(angle_deg: torch.Tensor, flip: torch.Tensor) -> torch.Tensor:
    """Affines ``[B, 2, 3]`` (box units) of the training augmentation: an optional horizontal
    mirror, then a rotation by ``angle_deg`` about the box centre (0.5, 0.5). Maps original-face
    coordinates to augmented ones (boxes are square in CUHK, so box units rotate rigidly)."""
    a = torch.deg2rad(torch.as_tensor(angle_deg, dtype=torch.float32))
    f = 1.0 - 2.0 * torch.as_tensor(flip, dtype=torch.float32)           # -1 mirrors u
    cos, sin = torch.cos(a), torch.sin(a)
    lin = torch.stack([torch.stack([cos * f, -sin], -1), torch.stack([sin * f, cos], -1)], -2)
    centre = torch.tensor([0.5, 0.5])
    t = centre - lin @ centre
    return torch.cat([lin, t[..., None]], -1)


def apply_affine(points: torch.Tensor, affine: torch.Tensor) -> torch.Tensor:
    """``points [B, ..., 2]`` through per-sample ``affine [B, 2, 3]``."""
    shape = points.shape
    p = points.reshape(shape[0], -1, 2)
    return (p @ affine[:, :, :2].transpose(1, 2) + affine[:, None, :, 2]).reshape(shape)


def invert_affine(affine: torch.Tensor) -> torch.Tensor:
    lin = torch.linalg.inv(affine[:, :, :2])
    return torch.cat([lin, -(lin @ affine[:, :, 2:])], -1)


def sample_windows(images: torch.Tensor, frames: torch.Tensor, centres: torch.Tensor,
                   sizes: torch.Tensor, out_size: int, augment: torch.Tensor | None = None
                   ) -> torch.Tensor:
    """Bilinear crops of M windows per face, each resampled to ``out_size`` x ``out_size``.

    Args:
        images: ``[B, C, H, W]`` uint8 or float source images.
        frames: ``[B, 4]`` ``(ox, oy, sx, sy)``: box unit ``(u, v)`` sits at source pixel
            ``(ox + u sx, oy + v sy)`` (raw image: ``(x0, y0, w, h)`` of the face box).
        centres, sizes: ``[B, M, 2]`` (or ``[M, 2]``) windows in (augmented) box units.
        augment: optional ``[B, 2, 3]`` augmentation affine (:func:`augmentation_affine`); the
            windows are then cut from the augmented face without materialising it.
    Returns:
        ``[B, M, C, out_size, out_size]`` float32, zero outside the image.
    """
    x = images if images.dtype == torch.float32 else images.float()
    b, c, h, w = x.shape
    centres = centres.expand(b, *centres.shape[-2:]) if centres.dim() == 2 else centres
    sizes = sizes.expand(b, *sizes.shape[-2:]) if sizes.dim() == 2 else sizes
    m = centres.shape[1]
    # Each window is one affine map from its pixels' offsets (s_x, s_y, 1) (:func:`_unit_grid`)
    # to box units, [[w, 0, c_x], [0, h, c_y]], composed with the inverse augmentation; a few
    # small ops per stage, where building the grid coordinate by coordinate took ~30.
    theta = torch.cat([sizes[..., None] * _EYE2, centres[..., None]], -1)  # [B, M, 2, 3]
    if augment is not None:
        inv = invert_affine(augment)[:, None]
        theta = inv[..., :2] @ theta + F.pad(inv[..., 2:], (2, 0))
    box = _unit_grid(out_size) @ theta.transpose(-1, -2)                   # [B, M, n*n, 2]
    # box units -> source pixels (the frame) -> grid_sample's [-1, 1] (align_corners=False)
    k = _pixel_to_grid(w, h)
    scale, offset = frames[:, 2:] * k, (frames[:, :2] + 0.5) * k - 1
    norm = box * scale.view(-1, 1, 1, 2) + offset.view(-1, 1, 1, 2)
    out = F.grid_sample(x, norm.reshape(b, m * out_size, out_size, 2), mode="bilinear",
                        padding_mode="zeros", align_corners=False)
    return out.reshape(b, c, m, out_size, out_size).permute(0, 2, 1, 3, 4)


def standardise(crops: torch.Tensor, eps: float = 1e-5) -> torch.Tensor:
    """Zero mean, unit standard deviation per crop (over channels and pixels), Section 4.1."""
    flat = crops.flatten(-3)
    centred = flat - flat.mean(-1, keepdim=True)
    # the unbiased std as two passes: torch.std takes 70 us on a [3, 3, 39, 39] batch-1 crop
    # set on this CPU, 12 us written out (and the same to a float32 step or two)
    std = (centred.square().sum(-1, keepdim=True) / (flat.shape[-1] - 1)).sqrt()
    return (centred / (std + eps)).view_as(crops)


def to_window(points: torch.Tensor, centres: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """Eq. 9: box-unit points -> window-relative coordinates (0 at the window's top-left corner,
    1 at its bottom-right; the centre is 0.5). Shapes broadcast: ``[..., 2]``."""
    return (points - (centres - sizes / 2)) / sizes


def from_window(t: torch.Tensor, centres: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
    """Inverse of :func:`to_window`."""
    return centres - sizes / 2 + t * sizes


def shake(centres: torch.Tensor, std: float, generator: torch.Generator | None = None
          ) -> torch.Tensor:
    """Shake (Section 3.1.2): translate every window by ``N(0, std^2)`` box units in x and y."""
    if std <= 0:
        return centres
    noise = torch.randn(centres.shape, generator=generator, dtype=centres.dtype)
    return centres + std * noise


def average_points(preds: torch.Tensor, point_ids: list[tuple[int, ...]], k: int = 5
                   ) -> torch.Tensor:
    """Eq. 4: mean of every net's prediction of each point.

    Args:
        preds: ``[B, G, max_out]`` box-unit outputs (x0, y0, x1, y1, ...), padded.
        point_ids: for net g, the point index of each of its output pairs.
    Returns:
        ``[B, k, 2]``.
    """
    b, g, width = preds.shape
    weights, missing = _averaging(tuple(map(tuple, point_ids)), width // 2, k)
    # one contraction: a batch-1 cascade spent ~60 small slicing and adding ops on the loop
    return torch.einsum("bgjc,gji->bic", preds.reshape(b, g, width // 2, 2), weights) + missing


# --------------------------------------------------------------------------- the cascade
class CCNN(nn.Module):
    """The 3-stage cascade: ``stage1`` (3 nets), ``stage2`` and ``stage3`` (10 nets each).

    ``forward(images, frames)`` returns the box-unit points ``[B, 5, 2]`` after each stage.
    ``absolute`` (windows- only) is ``[B, 4]`` per face: ``(x0/W, y0/H, w/W, h/H)``, the box in
    image-normalised coordinates, used to decode absolute stage-1 outputs.
    """

    def __init__(self, config: CCNNConfig | None = None):
        super().__init__()
        self.config = config or CCNNConfig()
        d = self.config.dropout
        self.stage1 = NetGroup([Stage1Net(2 * len(p), d) for p in STAGE1_POINTS])
        self.stage2 = NetGroup([LocalNet(d) for _ in range(10)])
        self.stage3 = NetGroup([LocalNet(d) for _ in range(10)])
        xavier_init(self)

    def stage(self, index: int) -> NetGroup:
        return (self.stage1, self.stage2, self.stage3)[index - 1]

    # ---- stage 1
    def stage1_inputs(self, images, frames, augment=None, shake_std=0.0, generator=None):
        """Crops ``[B, 3, 3, 39, 39]`` and their windows (centres, sizes ``[B, 3, 2]``)."""
        c, s = self.config.stage1_windows()
        b = images.shape[0]
        centres = shake(c.expand(b, 3, 2).clone(), shake_std, generator)
        sizes = s.expand(b, 3, 2)
        crops = sample_windows(images, frames, centres, sizes, self.config.stage1_size, augment)
        return standardise(crops), centres, sizes

    def decode_stage1(self, out: torch.Tensor, centres: torch.Tensor, sizes: torch.Tensor,
                      absolute: torch.Tensor | None = None) -> torch.Tensor:
        """Stage-1 outputs ``[B, 3, 10]`` -> averaged box-unit points ``[B, 5, 2]``."""
        t = out.unflatten(-1, (-1, 2))                                     # [B, 3, 5, 2]
        if self.config.relative:                                   # from_window, every pair
            p = (centres - sizes / 2)[:, :, None] + t * sizes[:, :, None]
        else:
            if absolute is None:
                raise ValueError("windows- (absolute positioning) needs `absolute` boxes")
            p = (t - absolute[:, None, None, :2]) / absolute[:, None, None, 2:]
        return average_points(p.flatten(-2), list(STAGE1_POINTS))

    # ---- stages 2 and 3
    def local_inputs(self, stage, images, frames, anchors, augment=None, shake_std=0.0,
                     generator=None):
        """Ten windows around ``anchors [B, 5, 2]``: crops ``[B, 10, 3, 15, 15]``, centres,
        sizes ``[B, 10, 2]``. Net ``g`` handles point ``g % 5``."""
        b = images.shape[0]
        centres = shake(anchors.repeat(1, 2, 1), shake_std, generator)
        sizes = self.config.local_window_sizes(stage).expand(b, 10, 2)
        crops = sample_windows(images, frames, centres, sizes, self.config.local_size, augment)
        return standardise(crops), centres, sizes

    @staticmethod
    def decode_local(out: torch.Tensor, centres: torch.Tensor, sizes: torch.Tensor) -> torch.Tensor:
        """``[B, 10, 2]`` window-relative outputs -> averaged box-unit points ``[B, 5, 2]``."""
        p = from_window(out[..., :2], centres, sizes)
        return p.unflatten(1, (2, 5)).mean(1)

    def forward(self, images: torch.Tensor, frames: torch.Tensor, stages: int = 3,
                absolute: torch.Tensor | None = None) -> list[torch.Tensor]:
        """Run the cascade; returns ``[p1, p2, p3]`` (up to ``stages``), each ``[B, 5, 2]`` in
        box units. ``images [B, C, H, W]``, ``frames [B, 4]`` as in :func:`sample_windows`."""
        images = images.float()   # once, not at each stage's sampling (a large batch pays 3x)
        crops, c, s = self.stage1_inputs(images, frames)
        points = [self.decode_stage1(self.stage1(crops), c, s, absolute)]
        for k in range(2, stages + 1):
            crops, c, s = self.local_inputs(k, images, frames, points[-1])
            points.append(self.decode_local(self.stage(k)(crops), c, s))
        return points


def image_frames(boxes: torch.Tensor) -> torch.Tensor:
    """Frames ``[B, 4]`` for raw images from face boxes ``[B, 4]`` ``(x0, y0, x1, y1)`` px."""
    boxes = torch.as_tensor(boxes, dtype=torch.float32)
    return torch.stack([boxes[:, 0], boxes[:, 1], boxes[:, 2] - boxes[:, 0],
                        boxes[:, 3] - boxes[:, 1]], 1)


def canonical_frame(size: int, margin: float) -> torch.Tensor:
    """Frame ``[4]`` of a canonical face image of ``size`` px covering box units
    ``[-margin, 1 + margin]`` (pixel i's centre at ``u = -margin + (i + 0.5)(1 + 2 margin)/size``)."""
    scale = size / (1 + 2 * margin)
    return torch.tensor([margin * scale - 0.5, margin * scale - 0.5, scale, scale])


def time_cascade(model: CCNN, image_hw: tuple[int, int] = (250, 250), threads: int = 1,
                 runs: int = 200, warmup: int = 20) -> dict[str, float]:
    """CPU latency of the full 3-stage cascade on one face (batch 1): from a raw uint8 image and
    its face box to the stage-3 points, crops included. Returns median/p90 ms and runs.
    ``model`` is a :class:`CCNN` (timed in eval mode) or its TorchScript graph
    (:func:`lmklib.export.to_torchscript` with an ``image_hw`` example)."""
    import time

    import numpy as np

    img = torch.randint(0, 256, (1, 3, *image_hw), dtype=torch.uint8)
    h, w = image_hw
    frames = image_frames(torch.tensor([[0.34 * w, 0.37 * h, 0.64 * w, 0.68 * h]]))
    old, was_training = torch.get_num_threads(), getattr(model, "training", False)
    torch.set_num_threads(threads)
    if was_training:
        model.eval()
    times = []
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                model(img, frames)
            for _ in range(runs):
                t0 = time.perf_counter()
                model(img, frames)
                times.append((time.perf_counter() - t0) * 1e3)
    finally:
        torch.set_num_threads(old)
        if was_training:
            model.train()
    return {"median_ms": float(np.median(times)), "p90_ms": float(np.percentile(times, 90)),
            "runs": runs, "threads": threads}


def ccnn(**config) -> CCNN:
    """The paper's cascade (643,920 weights)."""
    return CCNN(CCNNConfig(**config))


PAPER_PARAMETERS = 643_920  # Section 3.2.4, weights only
MODELS = {"ccnn": ccnn}
