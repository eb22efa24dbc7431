"""Bit-packed inference of 1-bit ACN / XNOR-Net landmark nets: XNOR and popcount on the CPU.

The float emulation (:class:`lmklib.models.acn.LandmarkNet` in ``acn1bit`` / ``xnor`` mode)
convolves +-1 activations with +-1 kernels in float32. Here the same binary convolutions run on
packed bits: activations and kernels are packed 64 to a ``uint64`` word (bit = 1 for +1), and for
an im2col row ``a`` and a filter ``w`` of n binary values

    a . w = n - 2 * popcount(a XOR w)                          (no padding)
    a . w = n_valid - 2 * popcount((a XOR w) AND valid)        (zero padding: valid-position mask)

which is an exact integer, as is the float conv of +-1 values (|sum| < 2**24). The layer output
is then formed with the same float ops as the emulation (``A^ * dot + b``; XNOR:
``dot * alpha * K + b``), so the two paths agree bit for bit. The first conv (it reads the
real-valued image), pooling, BatchNorm and the FC head run the same torch ops in both paths.

This is a vectorised numpy implementation (``np.bitwise_count`` on numpy >= 2, a byte lookup
table otherwise), not a hand-written SIMD kernel: measure it, do not assume the 58x of XNOR-Net.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .acn import AConv2d, LandmarkNet, XNORConv2d, binarize

_POP8 = np.array([bin(i).count("1") for i in range(256)], dtype=np.uint8)


def popcount(words: np.ndarray) -> np.ndarray:
    """Number of set bits of each element of a ``uint64`` array (same shape, uint8)."""
    if hasattr(np, "bitwise_count"):
        return np.bitwise_count(words)
    b = _POP8[np.ascontiguousarray(words).view(np.uint8)]
    return b.reshape(*words.shape, 8).sum(-1, dtype=np.uint8)


def pack_bits(bits: np.ndarray) -> np.ndarray:
    """Pack a boolean array ``[..., L]`` into ``uint64`` words ``[..., ceil(L/64)]`` along the
    last axis (little bit order; unused high bits of the last word are 0)."""
    bits = np.asarray(bits, dtype=bool)
    n_words = -(-bits.shape[-1] // 64)
    packed = np.packbits(bits, axis=-1, bitorder="little")
    pad = n_words * 8 - packed.shape[-1]
    if pad:
        packed = np.concatenate([packed, np.zeros((*packed.shape[:-1], pad), np.uint8)], -1)
    return np.ascontiguousarray(packed).view(np.uint64)


def xnor_popcount_matmul(a: np.ndarray, w: np.ndarray, n: int,
                         valid: np.ndarray | None = None, chunk: int = 4096) -> np.ndarray:
    """Binary dot products of packed rows: ``a`` ``[M, W]``, ``w`` ``[O, W]`` (uint64) ->
    ``[M, O]`` int32 = sum of (+-1)(+-1) over the n positions (``valid`` ``[M, W]``: the
    positions that are not padding; ``n`` is then ignored)."""
    m, o = a.shape[0], w.shape[0]
    out = np.empty((m, o), dtype=np.int32)
    for s in range(0, m, chunk):
        x = a[s:s + chunk, None, :] ^ w[None, :, :]
        if valid is None:
            diff = popcount(x).sum(-1, dtype=np.int32)
            out[s:s + chunk] = n - 2 * diff
        else:
            v = valid[s:s + chunk, None, :]
            diff = popcount(x & v).sum(-1, dtype=np.int32)
            nv = popcount(valid[s:s + chunk]).sum(-1, dtype=np.int32)[:, None]
            out[s:s + chunk] = nv - 2 * diff
    return out


def _same_padding(kernel: tuple[int, int]) -> tuple[int, int, int, int]:
    """PyTorch's 'same' padding for stride 1: (left, right, top, bottom); the extra pixel of an
    even kernel goes right/bottom."""
    (kh, kw) = kernel
    return ((kw - 1) // 2, kw - 1 - (kw - 1) // 2, (kh - 1) // 2, kh - 1 - (kh - 1) // 2)


class PackedBinaryConv:
    """A binary-input, binary-weight conv (an ``AConv2d`` or ``XNORConv2d`` with
    ``binarize_input``) with its kernels packed once. Call on a float ``[N, C, H, W]`` tensor (the
    BatchNorm output); the sign is taken here, as the emulation does."""

    def __init__(self, conv: nn.Conv2d):
        if not getattr(conv, "binarize_input", False):
            raise ValueError("PackedBinaryConv needs a conv with binarize_input=True")
        if conv.stride != (1, 1) or conv.dilation != (1, 1) or conv.groups != 1:
            raise ValueError("only stride 1, dilation 1, groups 1 convolutions are packed")
        self.conv = conv
        self.kernel = conv.kernel_size
        w = conv.weight.detach()
        self.out_channels = w.shape[0]
        self.n = w[0].numel()
        self.w_packed = pack_bits(w.reshape(w.shape[0], -1).numpy() >= 0)
        if conv.padding == "same":
            self.pad = _same_padding(self.kernel)
        else:
            ph, pw = conv.padding
            self.pad = (pw, pw, ph, ph)
        self.bias = None if conv.bias is None else conv.bias.detach().view(1, -1, 1, 1)
        if isinstance(conv, AConv2d):
            self.kind, self.scale = "acn", conv.amplitude.detach().mean()
        elif isinstance(conv, XNORConv2d):
            self.kind = "xnor"
            self.scale = conv.weight.detach().abs().mean(dim=(1, 2, 3)).view(1, -1, 1, 1)
        else:
            raise TypeError(f"expected AConv2d or XNORConv2d, got {type(conv).__name__}")

    def integer_conv(self, x: torch.Tensor) -> torch.Tensor:
        """``conv(sign(x), sign(W))`` as exact integers (returned as float32)
        ``[N, O, H_out, W_out]``."""
        n, _, h, w = x.shape
        s = binarize(x)
        padded = any(self.pad)
        if padded:
            s = F.pad(s, self.pad)
        kh, kw = self.kernel
        ho, wo = s.shape[2] - kh + 1, s.shape[3] - kw + 1
        cols = F.unfold(s, self.kernel)                      # [N, C*kh*kw, L]
        cols = cols.transpose(1, 2).reshape(-1, cols.shape[1]).numpy()
        a = pack_bits(cols > 0)
        valid = pack_bits(cols != 0) if padded else None
        dot = xnor_popcount_matmul(a, self.w_packed, self.n, valid)
        return torch.from_numpy(dot).float().view(n, ho * wo, -1).transpose(1, 2) \
            .reshape(n, -1, ho, wo).contiguous()   # same layout as conv2d's output: later
        # reductions (XNOR's K = mean_c |x|) then sum in the same order as in the emulation

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        dot = self.integer_conv(x)
        if self.kind == "acn":
            out = dot * self.scale
        else:
            out = dot * self.scale * self.conv.input_scale(x)
        return out if self.bias is None else out + self.bias


class BitpackedLandmarkNet:
    """Inference-only copy of a ``LandmarkNet`` (mode ``acn1bit`` or ``xnor``) whose binary
    convolutions run on packed bits. ``__call__(x)`` matches ``model.eval()(x)`` exactly."""

    def __init__(self, model: LandmarkNet):
        if model.mode not in ("acn1bit", "xnor"):
            raise ValueError(f"only 1-bit models can be bit-packed, got mode {model.mode!r}")
        self.model = model.eval()
        self.ops: list = []
        for stage in model.features:
            for unit in stage:
                if isinstance(unit, nn.Sequential):
                    for layer in unit:
                        conv = getattr(layer, "binarize_input", False)
                        self.ops.append(PackedBinaryConv(layer) if conv else layer)
                else:
                    self.ops.append(unit)
        self.head = model.head

    @torch.no_grad()
    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        for op in self.ops:
            x = op(x)
        return self.head(x).view(-1, self.model.num_points, 2)

    def binary_convs(self) -> list[PackedBinaryConv]:
        return [op for op in self.ops if isinstance(op, PackedBinaryConv)]
