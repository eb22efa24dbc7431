"""Model cost: parameter counts, storage, FLOPs and CPU latency.

Parameter counts follow the papers' conventions: ``biases=False`` counts only weights (as the
CCNN paper's Table 2 does). Storage is 32 bits per full-precision parameter and 1 bit per binary
one; a module marks its binary parameters by listing their names in ``binary_weight_names``
(e.g. ``("weight",)`` on an XNOR or ACN convolution).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch import nn


def _is_bias(name: str) -> bool:
    return name == "bias" or name.endswith(".bias")


def count_parameters(model: nn.Module, biases: bool = True, trainable_only: bool = False) -> int:
    """Number of parameters; ``biases=False`` leaves out every parameter named ``bias``."""
    return sum(p.numel() for n, p in model.named_parameters()
               if (biases or not _is_bias(n)) and (p.requires_grad or not trainable_only))


def parameter_table(model: nn.Module, biases: bool = True) -> "pd.DataFrame":
    """One row per leaf module with parameters: name, type, parameter count (and shape)."""
    import pandas as pd

    rows = []
    for name, m in model.named_modules():
        own = [(n, p) for n, p in m.named_parameters(recurse=False) if biases or not _is_bias(n)]
        if own:
            rows.append({"layer": name, "type": type(m).__name__,
                         "params": sum(p.numel() for _, p in own),
                         "weight_shape": tuple(getattr(m, "weight", torch.empty(0)).shape)})
    return pd.DataFrame(rows)


def storage_bits(model: nn.Module, full_precision_bits: int = 32) -> int:
    """Storage in bits: 1 bit per parameter a module lists in ``binary_weight_names``,
    ``full_precision_bits`` for every other parameter."""
    total = 0
    for m in model.modules():
        binary = set(getattr(m, "binary_weight_names", ()))
        for n, p in m.named_parameters(recurse=False):
            total += p.numel() * (1 if n in binary else full_precision_bits)
    return total


def model_size_bytes(model: nn.Module, biases: bool = True, bits_per_param: int = 32) -> int:
    """Size in bytes at ``bits_per_param`` per parameter (4 bytes each for float32)."""
    return count_parameters(model, biases) * bits_per_param // 8


def flops(model: nn.Module, *inputs: torch.Tensor) -> int:
    """Floating-point operations of one forward pass, counted by ``torch.utils.flop_counter``
    (a multiply-add counts as 2; element-wise ops are not counted)."""
    from torch.utils.flop_counter import FlopCounterMode

    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            model(*inputs)
    finally:
        model.train(was_training)
    return int(counter.get_total_flops())


def conv_gflops(repeats: int = 30) -> float:
    """Measured GFLOP/s of a plain convolution on this CPU with the current thread setting: a
    3x3 conv, 20 -> 40 channels, 18x18, batch 64 (a CCNN/ACN-sized layer at its best case). The
    rate against which the benchmarks turn a model's :func:`flops` into an arithmetic bound."""
    conv = nn.Conv2d(20, 40, 3).eval()
    x = torch.randn(64, 20, 18, 18)
    with torch.inference_mode():
        conv(x)
        t0 = time.perf_counter()
        for _ in range(repeats):
            conv(x)
        dt = (time.perf_counter() - t0) / repeats
    return 64 * 2 * 16 * 16 * 40 * 20 * 9 / dt / 1e9


@dataclass
class Latency:
    """Per-call wall-clock latency in milliseconds over ``runs`` timed calls."""

    batch: int
    threads: int
    median_ms: float
    p90_ms: float
    per_item_ms: float
    runs: int


def latency(model: Callable, example: torch.Tensor | tuple, threads: int = 1, warmup: int = 5,
            runs: int = 30, min_seconds: float = 0.0, device: str = "cpu") -> Latency:
    """Time ``model(example)`` (``model(*example)`` for a tuple) without autograd on
    ``device``: the CPU with ``threads`` intra-op threads, or a GPU (``"cuda"``), synchronised
    around each call.

    An ``nn.Module`` is put in eval mode and moved to ``device`` (and back, with its mode,
    afterwards); any other callable (a TorchScript graph, an onnxruntime session's runner, a
    lambda) is timed as it is. The thread setting is restored afterwards. ``batch`` is the
    first input's first dimension (1 without inputs); ``per_item_ms`` = median / batch.
    """
    inputs = example if isinstance(example, tuple) else (example,)
    # (a TorchScript graph, lmklib.export.to_torchscript, is frozen as it is: timed as it is)
    is_module = isinstance(model, nn.Module) and not isinstance(model, torch.jit.ScriptModule)
    old_threads = torch.get_num_threads()
    was_training = model.training if is_module else False
    home = next(model.parameters(), torch.empty(0)).device if is_module else None
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    if is_module:
        model.eval().to(device)
    inputs = tuple(x.to(device) if isinstance(x, torch.Tensor) else x for x in inputs)
    torch.set_num_threads(threads)
    times = []
    try:
        with torch.inference_mode():
            for _ in range(warmup):
                model(*inputs)
            sync()
            start = time.perf_counter()
            while len(times) < runs or time.perf_counter() - start < min_seconds:
                t0 = time.perf_counter()
                model(*inputs)
                sync()
                times.append((time.perf_counter() - t0) * 1e3)
    finally:
        torch.set_num_threads(old_threads)
        if is_module:
            model.to(home).train(was_training)
    t = np.array(times)
    med = float(np.median(t))
    batch = int(inputs[0].shape[0]) if inputs and hasattr(inputs[0], "shape") else 1
    return Latency(batch=batch, threads=threads, median_ms=med,
                   p90_ms=float(np.percentile(t, 90)), per_item_ms=med / batch, runs=len(t))


@dataclass
class BoundRatio:
    """A latency against its arithmetic bound (:func:`bound_ratio`): medians over the blocks."""

    mflop: float
    gflops: float        # the reference convolution's rate
    median_ms: float
    bound_ms: float      # mflop at gflops
    ratio: float         # median of the blocks' latency / bound


def bound_ratio(model: Callable, example: tuple, blocks: int = 10, runs: int = 20,
                threads: int = 1, work: float | None = None) -> BoundRatio:
    """How far ``model(*example)`` runs from its arithmetic on this CPU: its :func:`flops` at
    the rate of a plain convolution (:func:`conv_gflops`), against its :func:`latency`.

    Measured in ``blocks`` pairs, each a reference-convolution measurement then ``runs`` timed
    calls of the model (after 5 warm-up calls, which also restore its caches); the ratio is the
    median of the pairs' ratios. On a shared host whose speed drifts, each pair sees one state
    of it: with the rate taken once at the start of a run, the same code's ratio moved 2x
    between runs.

    ``work`` gives the FLOPs where :func:`flops` cannot count ``model``'s own (a TorchScript
    graph, timed as :func:`latency` times any callable: pass its eager module's count)."""
    if work is None:
        work = flops(model, *example)
    old = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        rates, times = [], []
        for _ in range(blocks):
            rates.append(conv_gflops(repeats=10))
            times.append(latency(model, example, threads=threads, warmup=5, runs=runs).median_ms)
    finally:
        torch.set_num_threads(old)
    rate, ms = np.array(rates), np.array(times)
    bounds = work / (rate * 1e9) * 1e3
    return BoundRatio(mflop=work / 1e6, gflops=float(np.median(rate)),
                      median_ms=float(np.median(ms)), bound_ms=float(np.median(bounds)),
                      ratio=float(np.median(ms / bounds)))


def latency_table(model: nn.Module, example_one: torch.Tensor, batch: int = 32,
                  threads: tuple[int, ...] = (1, 2), **kwargs) -> "pd.DataFrame":
    """Latency at batch 1 and batch ``batch`` for each thread count, as a DataFrame."""
    import pandas as pd

    rows = []
    for n in threads:
        for b in (1, batch):
            x = example_one.expand(b, *example_one.shape[1:]).contiguous()
            rows.append(vars(latency(model, x, threads=n, **kwargs)))
    return pd.DataFrame(rows)
