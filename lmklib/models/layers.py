"""Small layers shared by the architecture files."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def max_pool2x2(x: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(x, 2)``, the same values. Outside autograd (inference) and outside tracing
    (ONNX export keeps its ``MaxPool``) it is two elementwise maxima of strided views: on a CPU
    ATen's max-pooling is 5-13x slower than that at batch 1 (one thread, 16-64 channels,
    measured in ``benchmarks/bench_inference.py``). Training keeps ATen's kernel and its
    gradient (one winner per window; ``torch.maximum`` would split ties)."""
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    if (torch.is_grad_enabled() and x.requires_grad) or torch.jit.is_tracing() \
            or torch.jit.is_scripting() or h == 0 or w == 0:
        return F.max_pool2d(x, 2)                      # (and ATen's error for a too small map)
    rows = torch.maximum(x[..., 0:h:2, :w], x[..., 1:h:2, :w])
    return torch.maximum(rows[..., 0::2], rows[..., 1::2])


class MaxPool2x2(nn.MaxPool2d):
    """``nn.MaxPool2d(2)`` computed by :func:`max_pool2x2`."""

    def __init__(self):
        super().__init__(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return max_pool2x2(x)
