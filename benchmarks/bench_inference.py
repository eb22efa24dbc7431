"""Benchmark: batch-1 latency of the reproduced models on one CPU thread against their arithmetic,
throughput at batch 256, and onnxruntime beside torch.

    python benchmarks/bench_inference.py [--runs 200]

Models (untrained: speed does not depend on the weights): the Kaggle report's MLP, CNN
(``cnn_small``, the quick profile's) and cascade (``cnn_small`` + ``refiner``), the ACN
notebook's 5-point CNN and its 64 px CPM, the CCNN cascade (``benchmarks/bench_ccnn.py``
has its own targets) and Fast DHM x1 at the quick profile's 64 px. Arithmetic:
``lmklib.profile.flops`` at the throughput of a plain conv on this core (the GFLOP/s column),
measured in this run in blocks alternating with the model's (``lmklib.profile.bound_ratio``:
``--runs`` calls in 10 blocks; the columns are medians over the blocks). ONNX columns need
the extra ``.[onnx]`` (skipped without it). Exit status 1 when a Kaggle model's or Fast DHM's
batch-1 latency is more than 3x its arithmetic (issue #15).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from lmklib.models import kaggle as K
from lmklib.models.acn import acn_net
from lmklib.models.ccnn import ccnn, canonical_frame
from lmklib.models.cpm import CPM
from lmklib.models.fast_dhm import fast_dhm
from lmklib.profile import bound_ratio, latency

TARGET_BOUND = 3.0


def models() -> dict[str, tuple[torch.nn.Module, tuple[torch.Tensor, ...], bool]]:
    """name -> (model, batch-1 example inputs, has a target)."""
    torch.manual_seed(0)
    norm = K.Normalisation.paper(K.IMAGE_SIZE)
    img96 = torch.rand(1, 1, K.IMAGE_SIZE, K.IMAGE_SIZE)
    crop = torch.randint(0, 256, (1, 3, 80, 80), dtype=torch.uint8)
    return {
        "Kaggle MLP": (K.mlp().eval(), (img96,), True),
        "Kaggle CNN (cnn_small)": (K.cnn_small().eval(), (img96,), True),
        "Kaggle cascade (cnn_small + refiner)":
            (K.CascadeCNN(K.cnn_small(), K.refiner(), norm).eval(), (img96,), True),
        "ACN 5-point CNN (20-40-60-80)": (acn_net("20-40-60-80", "cnn").eval(),
                                          (torch.randn(1, 1, 39, 39),), False),
        "ACN 300-W CPM (64 px, quick widths)": (CPM(68, "cnn", (16, 16, 32, 32), 32, 3, 7).eval(),
                                                (torch.randn(1, 3, 64, 64),), False),
        "CCNN cascade (80 px crop)": (ccnn().eval(), (crop, canonical_frame(80, 0.25)[None]),
                                      False),
        "Fast DHM x1 (64 px, T = 4)": (fast_dhm(1, size=64).eval(), (torch.randn(1, 3, 64, 64),),
                                       True),
    }


def timed(fn, inputs: tuple, runs: int) -> float:
    """Median ms of ``fn(*inputs)`` on one thread (:func:`lmklib.profile.latency`)."""
    return latency(fn, inputs, threads=1, warmup=5, runs=runs).median_ms


def depthwise_table(runs: int) -> None:
    """The per-call cost of a depthwise 3x3 convolution at batch 1 (Fast DHM's and HRSuperNet's
    maps): ATen's (oneDNN) against lmklib's compiled loop (``lmklib.models.layers``), bias and
    ReLU included in both."""
    import torch.nn.functional as F

    from lmklib.models.layers import depthwise3x3

    print(f"{'depthwise 3x3, batch 1':38s} {'ATen us':>8s} {'loop us':>8s} {'ATen/loop':>10s}")
    for c, size, stride in ((16, 32, 2), (32, 16, 2), (64, 8, 1), (128, 4, 1), (18, 64, 1)):
        x, w, b = torch.randn(1, c, size, size), torch.randn(c, 1, 3, 3), torch.randn(c)
        aten = timed(lambda: F.conv2d(x, w, b, stride, 1, 1, c).relu_(), (), runs) * 1e3
        loop = timed(lambda: depthwise3x3(x, w, b, stride, "relu"), (), runs) * 1e3
        print(f"{f'{c} x {size} x {size}, stride {stride}':38s} {aten:8.1f} {loop:8.1f} "
              f"{aten / loop:9.1f}x")
    print()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=200)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    try:
        from lmklib.export import onnx_session, to_onnx
        import onnxruntime  # noqa: F401
    except ImportError:
        to_onnx = None
    depthwise_table(args.runs)
    print(f"{'model':38s} {'MFLOP':>7s} {'GFLOP/s':>8s} {'bound ms':>9s} {'torch ms':>9s} "
          f"{'x bound':>8s} {'onnx ms':>8s} {'faces/s @256':>13s}")
    missed, tmp = [], Path(tempfile.mkdtemp(prefix="lmk_bench_"))
    for name, (model, inputs, target) in models().items():
        r = bound_ratio(model, inputs, blocks=10, runs=max(1, args.runs // 10))
        with torch.inference_mode():
            big = tuple(x.expand(256, *x.shape[1:]).contiguous() for x in inputs)
            model(*big)                                   # the first call builds the kernels
            t0 = time.perf_counter()
            model(*big)
            fps = 256 / (time.perf_counter() - t0)
        onnx_ms = float("nan")
        if to_onnx is not None:
            run = onnx_session(to_onnx(model, tmp / f"{len(list(tmp.iterdir()))}.onnx"), threads=1)
            onnx_ms = timed(run, inputs, args.runs)
        if target and r.ratio > TARGET_BOUND:
            missed.append(name)
        print(f"{name:38s} {r.mflop:7.2f} {r.gflops:8.1f} {r.bound_ms:9.3f} {r.median_ms:9.3f} "
              f"{r.ratio:7.2f}x {onnx_ms:8.3f} {fps:13,.0f}")
    print(f"\nratios measured in this run: torch batch-1 latency / arithmetic bound, target <= "
          f"{TARGET_BOUND:g}x for the Kaggle models and Fast DHM" + ("" if to_onnx else
                                                       "; ONNX skipped (pip install -e .[onnx])"))
    print("targets met" if not missed else f"TARGET MISSED: {', '.join(missed)}")
    return 0 if not missed else 1


if __name__ == "__main__":
    sys.exit(main())
