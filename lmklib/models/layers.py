"""Small layers shared by the architecture files, and their inference fast paths.

A fast path runs only at inference: outside autograd (no tensor involved needs a gradient, or
grad mode is off) and outside tracing and scripting, so that training keeps ATen's kernels and
their gradients and ONNX export keeps the standard operators. It computes the same function;
its float sums may be ordered differently (``tests/models/test_layers.py`` bounds the
difference).
"""

from __future__ import annotations

import operator
from typing import Callable, NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils._python_dispatch import _get_current_dispatch_mode

try:
    from . import _loops
except ImportError as e:   # the C source is in the tree, the built module is not
    raise ImportError("lmklib's compiled loops (lmklib/models/_loops.c) are not "
                      "built: reinstall with `pip install -e .` (needs a C compiler and the "
                      f"Python headers) ({e})") from e


def inference(*tensors: torch.Tensor | None) -> bool:
    """Whether a fast path may run on ``tensors``: no autograd (grad mode off, or none of them
    requires a gradient), no tracing, no scripting, no ``torch.compile`` (Dynamo cannot trace
    the C loops and failed on their buffers), and no dispatch mode watching the ops
    (``lmklib.profile.flops``' FLOP counter would not see the compiled loop's work)."""
    if (torch.jit.is_tracing() or torch.jit.is_scripting() or torch.compiler.is_compiling()
            or _get_current_dispatch_mode()):
        return False
    return not torch.is_grad_enabled() or not any(t is not None and t.requires_grad
                                                  for t in tensors)


_VERSION = operator.attrgetter("_version")


class DerivedCache:
    """A value computed from some tensors (folded or packed weights), kept until one of them
    changes: updated in place (its version counter moves, as an optimiser step or
    ``load_state_dict`` does), given new memory (``p.data = ...``) or replaced by another
    tensor. Modules holding one clear it when converted (:class:`ClearsDerived`). Like
    autograd, it cannot see in-place writes through ``p.data`` (write under ``torch.no_grad()``
    instead)."""

    def __init__(self):
        self.clear()

    def clear(self) -> None:
        self._sources: tuple[torch.Tensor, ...] = ()
        self._key: tuple[int, ...] = ()
        self._value = None

    def get(self, sources: Sequence[torch.Tensor], build: Callable[[], object]):
        # identities, versions and addresses, gathered by C-level maps: a CCNN stage asks about
        # 80 tensors per call. The ids stay unique: the cache holds the tensors they name.
        try:
            key = (*map(id, sources), *map(_VERSION, sources),
                   *map(torch.Tensor.data_ptr, sources))
        except RuntimeError:   # an inference tensor has no version counter: nothing is kept
            self.clear()
            return build()
        if key != self._key:
            self._value = build()
            self._sources, self._key = tuple(sources), key
        return self._value


class ClearsDerived:
    """Mixin for modules with :class:`DerivedCache` attributes (alone or in a tuple):
    ``nn.Module._apply`` (``.to``, ``.half``, ``.float``, ...) swaps the tensors' ``.data``
    without moving their version counters, so it clears the caches first."""

    def _apply(self, fn, *args, **kwargs):
        for value in self.__dict__.values():
            for cache in value if isinstance(value, tuple) else (value,):
                if isinstance(cache, DerivedCache):
                    cache.clear()
        return super()._apply(fn, *args, **kwargs)


# --------------------------------------------------------------------------- fast paths
# Batch-1 inference of small maps is dominated by per-call costs, so the fast paths below keep
# their Python short: arrays for the C loop and matrices for the products are prepared once
# (cached with the folded weights in ConvBNAct) and each call checks little.
_ACTS = {None: 0, "relu": 1, "relu6": 2}


def activate(y: torch.Tensor, act: str | None) -> torch.Tensor:
    """``act`` (None, ``"relu"`` or ``"relu6"``) applied to ``y`` in place."""
    if act is None:
        return y
    return y.relu_() if act == "relu" else y.clamp_(0.0, 6.0)


def _cpu_float(*tensors: torch.Tensor | None) -> bool:
    return all(t is None or (t.device.type == "cpu" and t.dtype == torch.float32)
               for t in tensors)


def _array(t: torch.Tensor | None):
    """``t`` as a contiguous numpy array, sharing its memory where it can (None stays None)."""
    if t is None:
        return None
    if t.requires_grad:
        t = t.detach()
    return (t if t.is_contiguous() else t.contiguous()).numpy()


# --------------------------------------------------------------------------- pooling
def max_pool2x2(x: torch.Tensor, act: str | None = None) -> torch.Tensor:
    """``F.max_pool2d(x, 2)`` then ``act`` (None, ``"relu"`` or ``"relu6"``), the same values.
    As the maximum commutes with a non-decreasing function, ``max_pool2x2(x, "relu")`` also
    equals ``F.max_pool2d(F.relu(x), 2)``, for a quarter of the activations' work.

    Outside autograd (inference) and outside tracing (ONNX export keeps its ``MaxPool``) a
    CPU float32 map, channels-first or channels-last, is pooled in the C loop of
    ``_loops.c``, the activation included: ATen's max-pooling took 85 us on Kaggle's 16 x
    94 x 94 map at batch 1, two strided maxima 64 us, the loop 20-40 us (one thread). Other
    maps take the strided maxima. Training keeps ATen's kernel and its gradient (one winner per
    window; ``torch.maximum`` would split ties)."""
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    if not inference(x) or h == 0 or w == 0:
        y = F.max_pool2d(x, 2)                         # (and ATen's error for a too small map)
        return y if act is None else F.relu(y) if act == "relu" else F.relu6(y)
    if x.dim() == 4 and _cpu_float(x) and x.numel():
        n, c, hi, wi = x.shape
        if x.is_contiguous():
            out = torch.empty(n, c, hi // 2, wi // 2)
            _loops.maxpool2x2(_array(x), out.numpy(), n * c, hi, wi, 1, _ACTS[act])
            return out
        if x.is_contiguous(memory_format=torch.channels_last):
            out = torch.empty(n, c, hi // 2, wi // 2, memory_format=torch.channels_last)
            _loops.maxpool2x2(_array(x.permute(0, 2, 3, 1)), out.permute(0, 2, 3, 1).numpy(),
                              n, hi, wi, c, _ACTS[act])
            return out
    if (h, w) != x.shape[-2:]:
        x = x[..., :h, :w]                             # an odd row or column is dropped
    rows = torch.maximum(x[..., 0::2, :], x[..., 1::2, :])
    return activate(torch.maximum(rows[..., 0::2], rows[..., 1::2]), act)


class MaxPool2x2(nn.MaxPool2d):
    """``nn.MaxPool2d(2)`` computed by :func:`max_pool2x2`."""

    def __init__(self):
        super().__init__(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return max_pool2x2(x)


# --------------------------------------------------------------------------- sampling
def extract_patches(images: torch.Tensor, centres: torch.Tensor, patch: int) -> torch.Tensor:
    """Bilinearly sample a ``patch x patch`` window centred on each point.

    Args:
        images: ``[N, 1, H, W]`` float.
        centres: ``[N, K, 2]`` pixel ``(x, y)``, 0-based (NaN is treated as the image centre).
        patch: window side in pixels (one output pixel per input pixel).
    Returns:
        ``[N, K, patch, patch]``; outside the image the border pixel is repeated.

    Training and tracing use ``F.grid_sample`` (``padding_mode="border"``,
    ``align_corners=True``) on the grid built below. At inference on one-channel CPU float32
    images the C loop of ``_loops.c`` does the same float operations in the same order, so the
    same bits where ATen's kernel uses FMA (its AVX2 and AVX-512 builds): grid_sample and the
    dozen tensor ops building its grid took 105-165 us for Kaggle's 15 windows of 24 x 24 at
    batch 1, the loop ~40 us (one thread).
    """
    n, _, h, w = images.shape
    k = centres.shape[1]
    if inference(images, centres) and _cpu_float(images, centres) and images.shape[1] == 1:
        out = torch.empty(n, k, patch, patch)
        _loops.patches(_array(images), _array(centres), out.numpy(), n, h, w, k, patch)
        return out
    centres = torch.nan_to_num(centres, nan=(w - 1) / 2)
    offs = torch.arange(patch, dtype=images.dtype, device=images.device) - (patch - 1) / 2
    gx = centres[..., 0, None, None] + offs[None, None, None, :]          # [N, K, 1, P]
    gy = centres[..., 1, None, None] + offs[None, None, :, None]          # [N, K, P, 1]
    gx, gy = torch.broadcast_tensors(gx, gy)
    # align_corners=True maps -1/+1 to the centres of the first/last pixel: our convention.
    grid = torch.stack([gx * 2 / (w - 1) - 1, gy * 2 / (h - 1) - 1], dim=-1)
    out = F.grid_sample(images, grid.reshape(n, k * patch, patch, 2), mode="bilinear",
                        padding_mode="border", align_corners=True)
    return out.reshape(n, k, patch, patch)


# --------------------------------------------------------------------------- fully connected
def group_linear(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None
                 ) -> torch.Tensor:
    """``groups`` independent linear layers: ``einsum("ngi,gio->ngo", x, weight) + bias``, ``x``
    ``[N, G, I]``, ``weight`` ``[G, I, O]``, ``bias`` ``[G, O]`` or None.

    At inference on CPU float32 it runs in the C loop of ``_loops.c`` (the sums in input
    order, then the bias): einsum's batched product took 36 us for the Kaggle refiner's 15
    groups of 256 -> 64 at batch 1 on this AMD core, the loop 29 us (one thread)."""
    if x.dim() != 3 or weight.dim() != 3 or x.shape[1:] != weight.shape[:2]:
        raise ValueError(f"group_linear needs x [N, G, I] and weight [G, I, O], got "
                         f"{list(x.shape)} and {list(weight.shape)}")
    if not (inference(x, weight, bias) and _cpu_float(x, weight, bias)):
        y = torch.einsum("ngi,gio->ngo", x, weight)
        return y if bias is None else y + bias
    n, (g, i, o) = x.shape[0], weight.shape
    out = torch.empty(n, g, o)
    _loops.group_linear(_array(x), _array(weight), _array(bias), out.numpy(), n, g, i, o)
    return out


# --------------------------------------------------------------------------- convolutions
def _loop_pays(x: torch.Tensor) -> bool:
    """Whether the C loop (one thread) beats ATen's depthwise convolution on ``x``: at batch 1
    (ATen's per-call cost dominates: 62-198 us against 10-72 us on 3x3 to 64x64 maps, two
    threads), and for channel counts that are not a multiple of 8, where oneDNN leaves its
    channel-blocked kernel (32 x 18 x 64 x 64: 56 ms against 3.1 ms). On batches of 8-aligned
    channels ATen's kernel is as fast or, multi-threaded, faster (32 x 64 x 6 x 6: 106 against
    334 us with two threads). Measured in this file's tests' shapes and HRSuperNet's."""
    return x.shape[0] == 1 or x.shape[1] % 8 != 0


def _depthwise_loop(x: torch.Tensor, w, b, stride: int, act: int) -> torch.Tensor:
    """The C loop on a CPU float32 ``x`` with prepared arrays ``w`` ``[C, 1, 3, 3]``, ``b``."""
    n, c, h, wd = x.shape
    ho, wo = (h - 1) // stride + 1, (wd - 1) // stride + 1
    out = torch.empty(n, c, ho, wo)
    _loops.depthwise3x3(_array(x), w, b, out.numpy(), n, c, h, wd, stride, ho, wo, act)
    return out


def _matmul_1x1(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None) -> torch.Tensor:
    """A 1x1 convolution, ``w`` ``[O, C]``, ``b`` ``[O, 1]`` or None: at batch 1 one matrix
    product (ATen's 1x1 convolution takes its im2col path there, about twice as long); on a
    batch ATen's own (oneDNN's, multi-threaded; a batched product was 20 % slower)."""
    n, c, h, wd = x.shape
    if n != 1:
        return F.conv2d(x, w.view(*w.shape, 1, 1), None if b is None else b.view(-1))
    y = torch.mm(w, x.reshape(c, h * wd)) if b is None \
        else torch.addmm(b, w, x.reshape(c, h * wd))
    return y.view(1, -1, h, wd)


def _depthwise_conv(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, stride: int,
                    act: str | None, arrays: tuple | None = None) -> torch.Tensor:
    """A depthwise 3x3 convolution at inference: the C loop where it pays (:func:`_loop_pays`;
    ``arrays``: ``w`` and ``b`` already as numpy arrays), else ATen's."""
    if not _loop_pays(x):
        return activate(F.conv2d(x, w, b, stride, 1, 1, x.shape[1]), act)
    w_arr, b_arr = arrays if arrays is not None else (_array(w), _array(b))
    return _depthwise_loop(x, w_arr, b_arr, stride, _ACTS[act])


def depthwise3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
                 stride: int = 1, act: str | None = None) -> torch.Tensor:
    """Depthwise 3x3 convolution, zero padding 1: ``F.conv2d(x, weight, bias, stride, 1,
    groups=C)`` then ``act``; ``weight`` ``[C, 1, 3, 3]``.

    At inference on CPU float32 it runs in the compiled loop of ``_loops.c``, bias and
    activation included, where that pays (:func:`_loop_pays`): ATen's depthwise convolution
    costs 40-70 us per call at batch 1 on 4x4 to 32x32 maps whatever their size, the loop
    5-25 us (one thread)."""
    if x.dim() != 4 or x.shape[1] != weight.shape[0] or tuple(weight.shape[1:]) != (1, 3, 3):
        raise ValueError(f"depthwise3x3 needs x [N, C, H, W] and weight [C, 1, 3, 3], got "
                         f"{list(x.shape)} and {list(weight.shape)}")
    if not (inference(x, weight, bias) and _cpu_float(x, weight, bias) and x.numel()):
        return activate(F.conv2d(x, weight, bias, stride, 1, 1, x.shape[1]), act)
    return _depthwise_conv(x, weight, bias, stride, act)


def _conv3x3_loop(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
                  groups: int, stride: int, padding: int, act: str | None) -> torch.Tensor:
    """The C loop of ``_loops.c`` for a grouped 3x3 convolution of a CPU float32 ``x``
    (:func:`stem3x3`, :func:`grouped3x3`): padding 1 (any stride) or 0 (stride 1); ``bias``
    None, ``[O]`` or a map ``[O, Ho, Wo]``."""
    n, c, h, wd = x.shape
    o = weight.shape[0]
    ho, wo = ((h - 1) // stride + 1, (wd - 1) // stride + 1) if padding else (h - 2, wd - 2)
    out = torch.empty(n, o, ho, wo)
    _loops.conv3x3(_array(x), _array(weight), _array(bias), out.numpy(), n, c, h, wd, o, groups,
                   stride, padding, ho, wo, _ACTS[act])
    return out


def stem3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
            stride: int = 1, act: str | None = None) -> torch.Tensor:
    """A dense 3x3 convolution with few input channels (a network's stem), zero padding 1, at
    inference: ``act(F.conv2d(x, weight, None, stride, 1) + bias)``, ``weight`` ``[O, C, 3,
    3]``, ``bias`` None, ``[O]`` or a map ``[O, Ho, Wo]`` added to each image's output.

    At batch 1 on CPU float32 it runs in the compiled loop of ``_loops.c`` (oneDNN took
    50-65 us for a 64 px, 3-channel, 16-filter stride-2 stem of 0.9 MFLOP at batch 1, the loop
    ~35 us, one thread); otherwise ATen's convolution. Callers run it outside autograd."""
    o, c = weight.shape[:2]
    if x.dim() != 4 or x.shape[1] != c or tuple(weight.shape[2:]) != (3, 3):
        raise ValueError(f"stem3x3 needs x [N, C, H, W] and weight [O, C, 3, 3], got "
                         f"{list(x.shape)} and {list(weight.shape)}")
    if x.shape[0] != 1 or not _cpu_float(x, weight, bias):
        y = F.conv2d(x, weight, None, stride, 1)
        return activate(y if bias is None else y.add_(bias.view(o, -1, 1) if bias.dim() == 1
                                                      else bias), act)
    return _conv3x3_loop(x, weight, bias, 1, stride, 1, act)


def grouped3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
               padding: int = 0, groups: int = 1, act: str | None = None) -> torch.Tensor:
    """A 3x3 convolution, stride 1, with few input channels per group: ``act(F.conv2d(x,
    weight, bias, 1, padding, 1, groups))``, ``weight`` ``[O, C / groups, 3, 3]``, padding 0 or
    1.

    At inference on CPU float32 it runs in the C loop of ``_loops.c``, bias and activation
    included. ATen sends a convolution with one input channel per group to its im2col path and
    a grouped one on channels-first maps to a slow one: the Kaggle cascade's refiner (15 groups;
    1 -> 8 channels on 24 x 24, then 8 -> 16 on 11 x 11) took 100-130 us in each at batch 1,
    the loop 40 and 70-100 us (one thread)."""
    o = weight.shape[0]
    if (x.dim() != 4 or x.shape[1] % groups or o % groups or padding not in (0, 1)
            or tuple(weight.shape[1:]) != (x.shape[1] // groups, 3, 3)):
        raise ValueError(f"grouped3x3 needs x [N, C, H, W], weight [O, C / groups, 3, 3] (groups "
                         f"{groups} dividing C and O) and padding 0 or 1, got {list(x.shape)}, "
                         f"{list(weight.shape)}, {padding}")
    if not (inference(x, weight, bias) and _cpu_float(x, weight, bias) and x.numel()):
        return activate(F.conv2d(x, weight, bias, 1, padding, 1, groups), act)
    return _conv3x3_loop(x, weight, bias, groups, 1, padding, act)


def depthwise_pair_hwc(a: torch.Tensor, b: torch.Tensor, wa, wb, bias) -> torch.Tensor:
    """``dw(a, wa) + bias + dw(b, wb)``: two depthwise 3x3 convolutions (zero padding 1, stride
    1) summed, on channels-last CPU float32 maps ``a``, ``b`` ``[N, H, W, C]`` (contiguous), in
    the C loop of ``_loops.c`` with its vectors along the channels; ``wa``, ``wb`` tap-major
    ``[9, C]`` and ``bias`` ``[C]``, float32 numpy arrays prepared once by the caller. Fast
    DHM's recurrent module runs on 4 x 4 x 128 maps, where a plane-by-plane loop spends its
    time per plane: both convolutions took 2.6 us here against 5 us for one of them."""
    n, h, w, c = a.shape
    out = torch.empty(n, h, w, c)
    _loops.depthwise3x3_pair_hwc(a.numpy(), b.numpy(), wa, wb, bias, out.numpy(), n, h, w, c)
    return out


def fold_batchnorm(weight: torch.Tensor, bias: torch.Tensor | None, bn: nn.BatchNorm2d
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """``(w, b)`` of the convolution equal to ``conv(weight, bias)`` followed by ``bn`` in eval
    mode (its running statistics): ``w = weight s``, ``b = (bias - mean) s + beta``,
    ``s = gamma / sqrt(var + eps)``; detached and contiguous."""
    with torch.inference_mode(False), torch.no_grad():   # plain tensors, even if called there
        scale = torch.rsqrt(bn.running_var + bn.eps)
        if bn.weight is not None:
            scale = scale * bn.weight
        b = -bn.running_mean * scale if bias is None else (bias - bn.running_mean) * scale
        if bn.bias is not None:
            b = b + bn.bias
        w = weight * scale.view(-1, *[1] * (weight.dim() - 1))
    return w.detach().contiguous(), b.detach().contiguous()


class Plan(NamedTuple):
    """What :func:`run_plan` runs for one convolution: its kind, its (folded) weights and its
    geometry (:func:`fold_plan`)."""

    kind: str                       # "dw3x3", "1x1" (batch 1: a matrix product) or "conv"
    w: torch.Tensor                 # [O, C / groups, kh, kw]; [O, C] for "1x1"
    b: torch.Tensor | None          # [O]; [O, 1] for "1x1"
    geometry: tuple                 # F.conv2d's (stride, padding, dilation, groups)
    arrays: tuple | None = None     # "dw3x3": w and b as numpy arrays for the C loop


def fold_plan(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> Plan:
    """``conv`` (+ ``bn`` in eval mode, folded by :func:`fold_batchnorm`) prepared for
    :func:`run_plan`: detached, contiguous weights in the form its kind runs on."""
    if bn is None:
        w = conv.weight.detach().contiguous()
        b = None if conv.bias is None else conv.bias.detach().contiguous()
    else:
        w, b = fold_batchnorm(conv.weight, conv.bias, bn)
    geometry = (conv.stride, conv.padding, conv.dilation, conv.groups)
    if conv.kernel_size == (1, 1) and conv.stride == (1, 1) and conv.groups == 1 \
            and conv.padding in ((0, 0), "valid"):
        return Plan("1x1", w.view(w.shape[0], -1), None if b is None else b.view(-1, 1),
                    geometry)
    if conv.kernel_size == (3, 3) and conv.padding == (1, 1) and conv.dilation == (1, 1) \
            and conv.groups == conv.in_channels == conv.out_channels \
            and conv.stride[0] == conv.stride[1]:
        return Plan("dw3x3", w, b, geometry, (w.numpy(), None if b is None else b.numpy()))
    return Plan("conv", w, b, geometry)


def run_plan(x: torch.Tensor, plan: Plan, act: str | None) -> torch.Tensor:
    """``act(conv(x))`` with a :func:`fold_plan` plan, at inference on a CPU float32 ``x``: a
    depthwise 3x3 convolution in the C loop of :func:`depthwise3x3` where that pays
    (:func:`_loop_pays`), a 1x1 one by :func:`_matmul_1x1`, any other as ``F.conv2d``; the
    activation applied in place."""
    if plan.kind == "dw3x3":
        return _depthwise_conv(x, plan.w, plan.b, plan.geometry[0][0], act, plan.arrays)
    if plan.kind == "1x1":
        return activate(_matmul_1x1(x, plan.w, plan.b), act)
    return activate(F.conv2d(x, plan.w, plan.b, *plan.geometry), act)


def conv_sources(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> list[torch.Tensor]:
    """The tensors a :func:`fold_plan` of ``conv`` (+ ``bn``) is computed from, read from the
    modules' own dicts (``nn.Module.__getattr__`` costs a few us per call at this scale): the
    key of its :class:`DerivedCache`."""
    cp = conv._parameters
    if bn is None:
        return [cp["weight"]] if cp.get("bias") is None else [cp["weight"], cp["bias"]]
    bp, bb = bn._parameters, bn._buffers
    return [t for t in (cp["weight"], cp.get("bias"), bp.get("weight"), bp.get("bias"),
                        bb.get("running_mean"), bb.get("running_var")) if t is not None]


def foldable(conv: nn.Conv2d, bn: nn.BatchNorm2d | None) -> bool:
    """Whether :func:`fold_plan` computes ``bn(conv(.))`` as the modules do: the BN (if any) in
    eval mode with running statistics, zero padding."""
    return conv.padding_mode == "zeros" and (
        bn is None or (not bn.training and bn._buffers.get("running_mean") is not None))


def conv_bn_act(x: torch.Tensor, conv: nn.Conv2d, bn: nn.BatchNorm2d | None, act: str | None,
                cache: DerivedCache) -> torch.Tensor | None:
    """``act(bn(conv(x)))`` (no BN for ``bn=None``) by the inference fast path, or None where
    it does not apply (autograd or tracing, a BN in training mode or without running
    statistics, another padding mode, a tensor off the CPU or not float32): the caller then
    runs its modules.

    The BN is folded into the convolution and the weights prepared once (:func:`fold_plan`),
    kept in ``cache`` until a parameter or statistic changes, and run by :func:`run_plan`."""
    sources = conv_sources(conv, bn)
    if not foldable(conv, bn) or x.dtype != torch.float32 or x.device.type != "cpu" \
            or not inference(x, *sources) \
            or x.dim() != 4 or x.shape[1] != conv.in_channels:   # (torch's modules say why)
        return None
    return run_plan(x, cache.get(sources, lambda: fold_plan(conv, bn)), act)


class FastConv2d(ClearsDerived, nn.Conv2d):
    """``nn.Conv2d`` (same arguments, same state dict) whose eval-mode inference runs
    :func:`conv_bn_act` without a BN (a depthwise 3x3 convolution in the C loop, a 1x1 one as
    a matrix product at batch 1, the weights prepared once)."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._prepared = DerivedCache()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = None if self.training else conv_bn_act(x, self, None, None, self._prepared)
        return super().forward(x) if y is None else y


_ACT_MODULES = {nn.ReLU: "relu", nn.ReLU6: "relu6"}


class ConvBNAct(ClearsDerived, nn.Sequential):
    """``conv -> BatchNorm2d (-> ReLU or ReLU6)``, an ``nn.Sequential`` of those children (so
    its state-dict keys are ``0.*``, ``1.*``); in eval mode at inference it runs
    :func:`conv_bn_act` (the BN folded into the convolution)."""

    def __init__(self, conv: nn.Conv2d, bn: nn.BatchNorm2d, act: nn.Module | None = None):
        if act is not None and type(act) not in _ACT_MODULES:
            raise ValueError(f"ConvBNAct's activation is ReLU or ReLU6, got {act}")
        super().__init__(conv, bn, *([act] if act is not None else []))
        self._act = _ACT_MODULES[type(act)] if act is not None else None
        self._folded = DerivedCache()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        mods = self._modules
        y = None if self.training else conv_bn_act(x, mods["0"], mods["1"], self._act,
                                                   self._folded)
        return super().forward(x) if y is None else y


# --------------------------------------------------------------------------- sequences
# activations the maximum commutes with (non-decreasing), so that pooling may run first
_MONOTONE = {nn.ReLU: "relu", nn.ReLU6: "relu6", nn.Sigmoid: None, nn.Tanh: None}


def _few_channel_groups(conv: nn.Conv2d) -> bool:
    """Whether :func:`grouped3x3` computes ``conv``: at most 8 input channels per group. (On
    the Kaggle CNN's dense 1 -> 16 layer, 96 px, the loop and ATen both took ~90 us at batch 1;
    on a batch ATen's im2col path took 670 us per image, the loop 76.)"""
    return (conv.kernel_size == (3, 3) and conv.stride == (1, 1) and conv.dilation == (1, 1)
            and conv.padding in ((0, 0), (1, 1)) and conv.padding_mode == "zeros"
            and conv.in_channels // conv.groups <= 8)


def run_sequential(layers: nn.Sequential, x: torch.Tensor) -> torch.Tensor:
    """``layers(x)``, the same function; with grad mode off (inference) three shortcuts:

    * a non-decreasing activation followed by :class:`MaxPool2x2` runs after the pooling, on a
      quarter of the values (ReLU and ReLU6 inside the pooling loop): ``max`` commutes with it;
    * a 3x3 ``nn.Conv2d`` of stride 1 with at most 8 input channels per group, and a ReLU
      after it, run as :func:`grouped3x3`;
    * another ``nn.Conv2d`` on a batch runs on a channels-last copy of its input.

    Kaggle's CNN spent 40 us in its three ReLUs and 160 us in its pools at batch 1 (one thread);
    pooled first, in the C loop, 20-40 us for all three. oneDNN took 34 ms for its 16 -> 32 2x2
    layer on a channels-first batch of 64, 6.6 ms channels-last (one thread); at batch 1 the
    copy would cost what channels-last saves."""
    if torch.is_grad_enabled() or not inference(x):
        return layers(x)
    mods = list(layers)
    i = 0
    while i < len(mods):
        m, nxt = mods[i], mods[i + 1] if i + 1 < len(mods) else None
        kind = type(m)
        if kind in _MONOTONE and type(nxt) is MaxPool2x2:
            act = _MONOTONE[kind]
            x = max_pool2x2(x, act)
            if act is None:
                x = m(x)
            i += 2
        elif kind is nn.Conv2d and _few_channel_groups(m):
            relu = type(nxt) is nn.ReLU
            x = grouped3x3(x, m.weight, m.bias, m.padding[0], m.groups, "relu" if relu else None)
            i += 1 + relu
        elif kind is nn.Conv2d and x.dim() == 4 and x.shape[0] > 1:
            x = m(x.contiguous(memory_format=torch.channels_last))
            i += 1
        else:
            x = m(x)
            i += 1
    return x
