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
    positions that are not padding; ``n`` is then ignored).

    Loops over the (few) words and accumulates per-word popcounts in ``uint16``: 8x faster than
    one ``[M, O, W]`` XOR followed by a sum over the last axis."""
    m, o = a.shape[0], w.shape[0]
    if w.shape[1] * 64 > np.iinfo(np.uint16).max:
        raise ValueError(f"rows of {w.shape[1] * 64} bits overflow the uint16 accumulator")
    wt = np.ascontiguousarray(w.T)                      # [W, O]
    out = np.empty((m, o), dtype=np.int32)
    for s in range(0, m, chunk):
        rows = a[s:s + chunk]
        diff = np.zeros((len(rows), o), dtype=np.uint16)
        if valid is None:
            for j in range(wt.shape[0]):
                diff += popcount(rows[:, j, None] ^ wt[j][None])
            out[s:s + chunk] = n - 2 * diff.astype(np.int32)
        else:
            v = valid[s:s + chunk]
            for j in range(wt.shape[0]):
                diff += popcount((rows[:, j, None] ^ wt[j][None]) & v[:, j, None])
            nv = popcount(v).sum(-1, dtype=np.int32)[:, None]
            out[s:s + chunk] = nv - 2 * diff.astype(np.int32)
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
        ``[N, O, H_out, W_out]``. im2col runs on booleans (a strided view, one byte per value)
        and is packed 64 to a word; float ``unfold`` was the slow part."""
        n = x.shape[0]
        bits = (x >= 0).numpy()                                     # sign bit: +1 -> True
        left, right, top, bottom = self.pad
        valid = None
        if any(self.pad):
            widths = ((0, 0), (0, 0), (top, bottom), (left, right))
            valid = np.pad(np.ones(bits.shape, bool), widths)
            bits = np.pad(bits, widths)
        kh, kw = self.kernel

        def im2col(b: np.ndarray) -> np.ndarray:
            win = np.lib.stride_tricks.sliding_window_view(b, (kh, kw), axis=(2, 3))
            ho, wo = win.shape[2], win.shape[3]                    # [N, C, Ho, Wo, kh, kw]
            return win.transpose(0, 2, 3, 1, 4, 5).reshape(n * ho * wo, -1), ho, wo

        cols, ho, wo = im2col(bits)
        vcols = pack_bits(im2col(valid)[0]) if valid is not None else None
        dot = xnor_popcount_matmul(pack_bits(cols), self.w_packed, self.n, vcols)
        # same layout as conv2d's output: later reductions (XNOR's K = mean_c |x|) then sum
        # in the same order as in the emulation
        return torch.from_numpy(dot).view(n, ho, wo, -1).permute(0, 3, 1, 2).float().contiguous()

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


def time_call(fn, *args, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time of ``fn(*args)`` in seconds."""
    import time

    for _ in range(warmup):
        fn(*args)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn(*args)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


@torch.no_grad()
def benchmark(model: LandmarkNet, x: torch.Tensor, float_model: nn.Module | None = None,
              repeats: int = 5) -> dict:
    """Measured times (s) of the float emulation, the bit-packed path and (optionally) a
    full-precision network of the same shape on ``x``; per binary layer too.

    Returns ``{"emulation", "bitpacked", "float_cnn", "layers": [{"layer", "shape", "float_conv",
    "packed_conv", "xnor_popcount_only"}], "equal": bool}``.
    """
    model.eval()
    packed = BitpackedLandmarkNet(model)
    out = {"emulation": time_call(model, x, repeats=repeats),
           "bitpacked": time_call(packed, x, repeats=repeats),
           "equal": bool(torch.equal(model(x), packed(x)))}
    if float_model is not None:
        out["float_cnn"] = time_call(float_model.eval(), x, repeats=repeats)
    # per binary layer, on the input that layer really sees
    layers, h = [], x
    for op in packed.ops:
        if isinstance(op, PackedBinaryConv):
            conv = op.conv
            cols = F.unfold(binarize(F.pad(h, op.pad)), op.kernel).transpose(1, 2)
            a = pack_bits(cols.reshape(-1, cols.shape[-1]).numpy() > 0)
            layers.append({"layer": f"{conv.in_channels}->{conv.out_channels} k{op.kernel[0]}",
                           "input": list(h.shape),
                           "float_conv": time_call(conv, h, repeats=repeats),
                           "packed_conv": time_call(op, h, repeats=repeats),
                           "xnor_popcount_only": time_call(xnor_popcount_matmul, a, op.w_packed,
                                                           op.n, repeats=repeats)})
        h = op(h)
    out["layers"] = layers
    return out
