"""Bit-packed inference of 1-bit ACN / XNOR-Net landmark nets: XNOR and popcount on the CPU.

The float emulation (:class:`lmklib.models.acn.LandmarkNet` in ``acn1bit`` / ``xnor`` mode)
convolves +-1 activations with +-1 kernels in float32. Here the same binary convolutions run on
packed bits, in the compiled kernel ``lmklib/models/_xnor.c`` (built by ``pip install``): the
signs of a pixel's channels are packed 64 to a ``uint64`` word (bit = 1 for +1), the kernels'
once per layer in the same layout, and for an output pixel

    dot = sum over the kernel taps inside the image of (C - 2 * popcount(a XOR w))

which is an exact integer, as is the float conv of +-1 values (|sum| < 2**24); zero padding adds
nothing in either. The layer output is then formed with the same float32 operations as the
emulation (ACN: ``A^ * dot + b``, in the kernel; XNOR: ``dot * alpha * K + b`` in torch), so the
two paths agree bit for bit. The first conv (it reads the real-valued image), pooling, BatchNorm
and the FC head run the same torch ops in both paths. ``benchmarks/bench_acn_bitpacked.py``
measures it against the float convolutions it replaces.
"""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

try:
    from . import _xnor
except ImportError as e:   # the C source is in the tree, the built module is not
    raise ImportError("lmklib's compiled XNOR/popcount kernel (lmklib/models/_xnor.c) is not "
                      "built: reinstall with `pip install -e .` (needs a C compiler and the "
                      f"Python headers) ({e})") from e
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
        # [O, C, kh, kw] signs -> one bit string per filter, tap-major (tap (i, j) channel c at
        # bit (i * kw + j) * C + c), as words [ceil(kh kw C / 64), O]: filters side by side
        signs = w.permute(0, 2, 3, 1).reshape(w.shape[0], -1).numpy() >= 0
        self.w_packed = np.ascontiguousarray(pack_bits(signs).T)
        if conv.padding == "same":
            self.pad = _same_padding(self.kernel)
        else:
            ph, pw = conv.padding
            self.pad = (pw, pw, ph, ph)
        self.bias = None if conv.bias is None else conv.bias.detach().view(1, -1, 1, 1)
        if isinstance(conv, AConv2d):
            self.kind, self.scale = "acn", conv.amplitude.detach().mean()
            # what the kernel applies itself: A^ as the float32 value it is, and b
            self._scale = float(self.scale)
            self._bias = None if conv.bias is None else conv.bias.detach().float().numpy().copy()
        elif isinstance(conv, XNORConv2d):
            self.kind = "xnor"
            self.scale = conv.weight.detach().abs().mean(dim=(1, 2, 3)).view(1, -1, 1, 1)
        else:
            raise TypeError(f"expected AConv2d or XNORConv2d, got {type(conv).__name__}")

    def _kernel(self, x: torch.Tensor, scale: float | None = None,
                bias: np.ndarray | None = None) -> torch.Tensor:
        """The compiled binary conv of ``x`` ``[N, C, H, W]``: ``dot`` (or ``dot * scale +
        bias``) as float32 ``[N, O, H_out, W_out]``."""
        if x.dtype != torch.float32 or not x.is_contiguous() or x.requires_grad:
            x = x.detach().float().contiguous()
        n, c, h, w = x.shape
        left, right, top, bottom = self.pad
        kh, kw = self.kernel
        ho, wo = h + top + bottom - kh + 1, w + left + right - kw + 1
        out = torch.empty(n, self.out_channels, ho, wo)
        _xnor.binary_conv(x.numpy(), self.w_packed, out.numpy(), n, c, h, w, self.out_channels,
                          kh, kw, top, left, ho, wo, scale, bias)
        return out

    def integer_conv(self, x: torch.Tensor) -> torch.Tensor:
        """``conv(sign(x), sign(W))`` as exact integers (returned as float32)
        ``[N, O, H_out, W_out]``."""
        return self._kernel(x)

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if self.kind == "acn":   # A^ * dot + b, both float32 operations, in the kernel
            return self._kernel(x, self._scale, self._bias)
        out = self.integer_conv(x) * self.scale * self.conv.input_scale(x)
        return out if self.bias is None else out + self.bias


class FrozenConv:
    """A binary-weight conv in float, its kernels computed once, not at every call: the same
    float ops as its ``eval()`` forward, so the same numbers. The first layer (real-valued input)
    of the packed network, and the float counterpart a packed layer is timed against."""

    def __init__(self, conv: nn.Conv2d):
        self.conv = conv
        with torch.no_grad():
            if isinstance(conv, AConv2d):
                self.weight, self.scale = binarize(conv.weight), conv.amplitude.mean()
                self.bias = None if conv.bias is None else conv.bias.view(1, -1, 1, 1)
            else:
                self.weight, self.scale, self.bias = conv.binary_kernels(), None, conv.bias

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        if getattr(self.conv, "binarize_input", False):
            if isinstance(self.conv, XNORConv2d):
                return self.conv(x)       # its K needs the real input: the module as it is
            x = binarize(x)
        if self.scale is None:            # XNOR: conv(x, alpha sign(W)) + b, as XNORConv2d
            return self.conv._conv_forward(x, self.weight, self.bias)
        out = self.conv._conv_forward(x, self.weight, None) * self.scale
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
                        if getattr(layer, "binarize_input", False):
                            self.ops.append(PackedBinaryConv(layer))
                        elif isinstance(layer, (AConv2d, XNORConv2d)):
                            self.ops.append(FrozenConv(layer))
                        else:
                            self.ops.append(layer)
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
    "packed_conv"}], "equal": bool}``; ``float_conv`` is the layer in float with its kernels'
    signs computed once (:class:`FrozenConv`), its fastest float form.
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
            layers.append({"layer": f"{conv.in_channels}->{conv.out_channels} k{op.kernel[0]}",
                           "input": list(h.shape),
                           "float_conv": time_call(FrozenConv(conv), h, repeats=repeats),
                           "packed_conv": time_call(op, h, repeats=repeats)})
        h = op(h)
    out["layers"] = layers
    return out
