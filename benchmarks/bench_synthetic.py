"""Synthetic-face generation speed on one core (the issue asks >= 500 faces/s at 128x128).

Not a timed test: shared machines vary. Reports wall-clock and process-CPU rates (the CPU rate
is the fairer number on a loaded machine) and the load average it ran under.

    python benchmarks/bench_synthetic.py [--n 500] [--sizes 64 128]
"""

from __future__ import annotations

import argparse
import os
import time

import torch

from lmklib.data.synthetic import generate


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=500)
    ap.add_argument("--sizes", type=int, nargs="+", default=[128, 64])
    ap.add_argument("--grayscale", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(1)
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    generate(8, size=args.sizes[0])  # warm caches
    print(f"load average before: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPUs")
    for size in args.sizes:
        for opts in ({}, {"occlusion": 0.5, "mask_prob": 0.2}):
            w, c = time.perf_counter(), time.process_time()
            generate(args.n, size=size, seed=1, grayscale=args.grayscale, **opts)
            w, c = time.perf_counter() - w, time.process_time() - c
            print(f"{size}x{size} {opts or 'defaults'}: {args.n / w:6.0f} faces/s wall, "
                  f"{args.n / c:6.0f} faces/s CPU")


if __name__ == "__main__":
    main()
