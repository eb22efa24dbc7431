"""Benchmark: Fast DHM's speed on one CPU core at batch 1, against the paper's Table I.

    python benchmarks/bench_fast_dhm.py [--size 64] [--runs 300]

Fast DHM x1 and x2 (untrained: speed does not depend on the weights) at the quick profile's
input size, timed with ``lmklib.profile.latency`` (one thread, batch 1, median), beside the
paper's one-core Intel i7 figures (81 and 53 FPS) and their arithmetic
(``lmklib.profile.bound_ratio``: ``lmklib.profile.flops`` at the throughput of a plain conv on
this core, measured in blocks alternating with the model's timing, in this run).
Exit status 1 when Fast DHM runs below 81 FPS or has more than 1 M parameters (issue #11).
"""

from __future__ import annotations

import argparse
import sys

import torch

from lmklib.models.fast_dhm import fast_dhm
from lmklib.profile import bound_ratio, count_parameters, model_size_bytes
from lmklib.reports import paper_value

PAPER = "fast_dhm_sun"
MAX_PARAMS = 1_000_000


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=64, help="input side (quick profile: 64)")
    ap.add_argument("--runs", type=int, default=300)
    args = ap.parse_args(argv)
    torch.manual_seed(0)
    torch.set_num_threads(1)
    print(f"one thread, batch 1, input {args.size} px; each model timed in 10 blocks alternating "
          f"with a plain conv's rate (GFLOP/s)\n")
    print(f"{'model':14s} {'params':>10s} {'bytes':>10s} {'MFLOP':>7s} {'GFLOP/s':>8s} {'bound ms':>9s} "
          f"{'ms':>7s} {'FPS':>7s} {'paper FPS':>10s} {'x paper':>8s} {'x bound':>8s}")
    rows = {}
    for name, width, key in (("Fast DHM", 1, "fast_dhm_cpu_fps"), ("Fast DHM x2", 2, "fast_dhm_x2_cpu_fps")):
        model = fast_dhm(width, size=args.size).eval()
        x = torch.randn(1, 3, args.size, args.size)
        r = bound_ratio(model, (x,), blocks=10, runs=max(1, args.runs // 10))
        fps, paper = 1e3 / r.median_ms, paper_value(PAPER, key).value
        rows[name] = dict(params=count_parameters(model), fps=fps, paper=paper)
        print(f"{name:14s} {count_parameters(model):10,d} {model_size_bytes(model):10,d} "
              f"{r.mflop:7.2f} {r.gflops:8.1f} {r.bound_ms:9.3f} {r.median_ms:7.3f} {fps:7.0f} "
              f"{paper:10.0f} {fps / paper:7.1f}x {r.ratio:7.1f}x")
    fd = rows["Fast DHM"]
    ok = fd["fps"] >= fd["paper"] and fd["params"] <= MAX_PARAMS
    print(f"\nratios measured in this run: Fast DHM {fd['fps'] / fd['paper']:.1f}x the paper's "
          f"{fd['paper']:.0f} FPS (target >= 1x), {fd['params'] / MAX_PARAMS:.2f}x of 1 M parameters "
          f"(target <= 1x)")
    print("targets met" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
