"""A CPM-style heatmap network (Wei et al., CVPR 2016, as used by SBR, Dong et al., CVPR 2018),
the 300-W backbone of Chen et al. 2020 (Tables 3-4), with every convolution switchable to
AConv / 1-bit AConv / XNOR-Net (:mod:`lmklib.models.acn`).

Structure: the first four convolutions of VGG-16 (two 3x3 convs, pool, two 3x3 convs, pool:
stride 4) -> a 3x3 "neck" conv -> ``stages`` CPM stages. Stage 1 reads the features; stage t > 1
reads ``concat(features, heatmaps_{t-1})``. Every stage ends in a 1x1 conv to K heatmaps, each
supervised (intermediate supervision).

Choices (the paper gives none of these): the heatmap-output 1x1 convs stay full precision, as
XNOR-Net keeps its last layer; binary-activation modes add BatchNorm before each sign
(:func:`lmklib.models.acn.conv_unit`). Nothing is pre-trained: no ImageNet weights can be
loaded here, so every run starts from PyTorch's default random initialisation.
"""

from __future__ import annotations

import torch
from torch import nn

from ..data.heatmaps import heatmap_loss
from .acn import MODES, conv_unit
from .layers import MaxPool2x2


class CPM(nn.Module):
    """CPM heatmap regressor.

    Args:
        num_points: K heatmaps.
        mode: one of :data:`lmklib.models.acn.MODES`.
        vgg_widths: channels of the four VGG-16 convs (paper: 64, 64, 128, 128).
        stage_channels: width inside the CPM stages (SBR: 128).
        stages: number of CPM stages (paper: 3).
        stage_kernel: kernel of the stage > 1 convs (CPM: 7).
        in_channels: 3 (RGB) or 1.
    Input ``[N, C, H, W]`` (standardised); output: list (one per stage) of ``[N, K, H/4, W/4]``.
    """

    def __init__(self, num_points: int = 68, mode: str = "cnn",
                 vgg_widths: tuple[int, int, int, int] = (64, 64, 128, 128),
                 stage_channels: int = 128, stages: int = 3, stage_kernel: int = 7,
                 in_channels: int = 3, theta: float = 5e-4):
        super().__init__()
        if mode not in MODES:
            raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
        # the arguments, to rebuild the network from a model card (CPM(**config))
        self.config = dict(num_points=num_points, mode=mode, vgg_widths=tuple(vgg_widths),
                           stage_channels=stage_channels, stages=stages,
                           stage_kernel=stage_kernel, in_channels=in_channels, theta=theta)
        self.mode, self.num_points = mode, num_points
        w1, w2, w3, w4 = vgg_widths

        def unit(cin, cout, k, first=False):
            return conv_unit(mode, cin, cout, k, k // 2, first, theta)

        self.features = nn.Sequential(
            unit(in_channels, w1, 3, first=True), unit(w1, w2, 3), MaxPool2x2(),
            unit(w2, w3, 3), unit(w3, w4, 3), MaxPool2x2(),
            unit(w4, stage_channels, 3))
        c = stage_channels
        self.stages = nn.ModuleList()
        for t in range(stages):
            cin = c if t == 0 else c + num_points
            k = 3 if t == 0 else stage_kernel
            body = [unit(cin, c, k), unit(c, c, k)] + ([unit(c, c, k)] if t > 0 else [])
            self.stages.append(nn.Sequential(*body, unit(c, c, 1), nn.Conv2d(c, num_points, 1)))

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f = self.features(x)
        outs = []
        for t, stage in enumerate(self.stages):
            outs.append(stage(f if t == 0 else torch.cat([f, outs[-1]], 1)))
        return outs


def decode_heatmaps(h: torch.Tensor, stride: int = 4) -> torch.Tensor:
    """Argmax with the usual quarter-pixel shift towards the higher neighbour; returns
    ``[N, K, 2]`` in input pixels (0-based) of an image ``stride`` times larger.

    Not :func:`lmklib.data.heatmaps.decode_heatmaps` (``"quarter_offset"``), whose results differ
    on network outputs: here the maps are zero-padded, so a peak on the border still moves a
    quarter pixel (towards the inside when its inner neighbour is positive, outwards when it is
    negative), where the data version does not move it; and a map with no positive value
    decodes to its argmax here, to NaN there. The Tables 3-4 numbers are made with this one."""
    n, k, hh, ww = h.shape
    flat = h.reshape(n, k, -1).argmax(-1)
    y, x = (flat // ww).to(h.dtype), (flat % ww).to(h.dtype)
    xi, yi = flat % ww, flat // ww
    hp = torch.nn.functional.pad(h, (1, 1, 1, 1))  # zeros: a border peak shifts inwards
    b = torch.arange(n).view(-1, 1)
    c = torch.arange(k).view(1, -1)
    dx = hp[b, c, yi + 1, xi + 2] - hp[b, c, yi + 1, xi]
    dy = hp[b, c, yi + 2, xi + 1] - hp[b, c, yi, xi + 1]
    x = x + 0.25 * torch.sign(dx)
    y = y + 0.25 * torch.sign(dy)
    return (torch.stack([x, y], -1) + 0.5) * stride - 0.5


def cpm_loss(outs: list[torch.Tensor], target: torch.Tensor, kind: str = "mse") -> torch.Tensor:
    """Sum over stages of :func:`lmklib.data.heatmaps.heatmap_loss` (intermediate supervision):
    ``"mse"`` (CPM's own) or ``"softmax_ce"``."""
    return sum(heatmap_loss(o, target, kind) for o in outs)
