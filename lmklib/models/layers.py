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
    from . import _depthwise
except ImportError as e:   # the C source is in the tree, the built module is not
    raise ImportError("lmklib's compiled depthwise kernel (lmklib/models/_depthwise.c) is not "
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


def max_pool2x2(x: torch.Tensor) -> torch.Tensor:
    """``F.max_pool2d(x, 2)``, the same values. Outside autograd (inference) and outside tracing
    (ONNX export keeps its ``MaxPool``) it is two elementwise maxima of strided views: on a CPU
    ATen's max-pooling is 5-13x slower than that at batch 1 (one thread, 16-64 channels,
    measured in ``benchmarks/bench_inference.py``). Training keeps ATen's kernel and its
    gradient (one winner per window; ``torch.maximum`` would split ties)."""
    h, w = x.shape[-2] // 2 * 2, x.shape[-1] // 2 * 2
    if not inference(x) or h == 0 or w == 0:
        return F.max_pool2d(x, 2)                      # (and ATen's error for a too small map)
    if (h, w) != x.shape[-2:]:
        x = x[..., :h, :w]                             # an odd row or column is dropped
    rows = torch.maximum(x[..., 0::2, :], x[..., 1::2, :])
    return torch.maximum(rows[..., 0::2], rows[..., 1::2])


class MaxPool2x2(nn.MaxPool2d):
    """``nn.MaxPool2d(2)`` computed by :func:`max_pool2x2`."""

    def __init__(self):
        super().__init__(2)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return max_pool2x2(x)


# --------------------------------------------------------------------------- convolutions
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
    _depthwise.depthwise3x3(_array(x), w, b, out.numpy(), n, c, h, wd, stride, ho, wo, act)
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

    At inference on CPU float32 it runs in the compiled loop of ``_depthwise.c``, bias and
    activation included, where that pays (:func:`_loop_pays`): ATen's depthwise convolution
    costs 40-70 us per call at batch 1 on 4x4 to 32x32 maps whatever their size, the loop
    5-25 us (one thread)."""
    if x.dim() != 4 or x.shape[1] != weight.shape[0] or tuple(weight.shape[1:]) != (1, 3, 3):
        raise ValueError(f"depthwise3x3 needs x [N, C, H, W] and weight [C, 1, 3, 3], got "
                         f"{list(x.shape)} and {list(weight.shape)}")
    if not (inference(x, weight, bias) and _cpu_float(x, weight, bias) and x.numel()):
        return activate(F.conv2d(x, weight, bias, stride, 1, 1, x.shape[1]), act)
    return _depthwise_conv(x, weight, bias, stride, act)


def stem3x3(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None,
            stride: int = 1, act: str | None = None) -> torch.Tensor:
    """A dense 3x3 convolution with few input channels (a network's stem), zero padding 1, at
    inference: ``act(F.conv2d(x, weight, None, stride, 1) + bias)``, ``weight`` ``[O, C, 3,
    3]``, ``bias`` None, ``[O]`` or a map ``[O, Ho, Wo]`` added to each image's output.

    At batch 1 on CPU float32 it runs in the compiled loop of ``_depthwise.c`` (oneDNN took
    50-65 us for a 64 px, 3-channel, 16-filter stride-2 stem of 0.9 MFLOP at batch 1, the loop
    ~35 us, one thread); otherwise ATen's convolution. Callers run it outside autograd."""
    o, c = weight.shape[:2]
    if x.dim() != 4 or x.shape[1] != c or tuple(weight.shape[2:]) != (3, 3):
        raise ValueError(f"stem3x3 needs x [N, C, H, W] and weight [O, C, 3, 3], got "
                         f"{list(x.shape)} and {list(weight.shape)}")
    n, _, h, wd = x.shape
    ho, wo = (h - 1) // stride + 1, (wd - 1) // stride + 1
    if n != 1 or not _cpu_float(x, weight, bias):
        y = F.conv2d(x, weight, None, stride, 1)
        return activate(y if bias is None else y.add_(bias.view(o, -1, 1) if bias.dim() == 1
                                                      else bias), act)
    out = torch.empty(1, o, ho, wo)
    _depthwise.conv3x3(_array(x), _array(weight), _array(bias), out.numpy(), 1, c, h, wd, o,
                       stride, ho, wo, _ACTS[act])
    return out


def depthwise_pair_hwc(a: torch.Tensor, b: torch.Tensor, wa, wb, bias) -> torch.Tensor:
    """``dw(a, wa) + bias + dw(b, wb)``: two depthwise 3x3 convolutions (zero padding 1, stride
    1) summed, on channels-last CPU float32 maps ``a``, ``b`` ``[N, H, W, C]`` (contiguous), in
    the C loop of ``_depthwise.c`` with its vectors along the channels; ``wa``, ``wb`` tap-major
    ``[9, C]`` and ``bias`` ``[C]``, float32 numpy arrays prepared once by the caller. Fast
    DHM's recurrent module runs on 4 x 4 x 128 maps, where a plane-by-plane loop spends its
    time per plane: both convolutions took 2.6 us here against 5 us for one of them."""
    n, h, w, c = a.shape
    out = torch.empty(n, h, w, c)
    _depthwise.depthwise3x3_pair_hwc(a.numpy(), b.numpy(), wa, wb, bias, out.numpy(), n, h, w, c)
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
