"""Benchmark: the full CCNN cascade (23 nets, 3 stages) on one CPU core, batch 1, against the
paper's 14.7 ms per face on a GPU (Duan et al. 2021, Table 3).

    python benchmarks/bench_ccnn.py [--runs 300] [--threads 1]

Prints the median latency, the paper's value and their ratio. Exit status 1 if the cascade is
not faster than the paper's GPU time.
"""

from __future__ import annotations

import argparse
import sys

from lmklib.models.ccnn import ccnn, time_cascade
from lmklib.reports import paper_value


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=300)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    model = ccnn()  # latency does not depend on the weights' values
    t = time_cascade(model, threads=args.threads, runs=args.runs)
    paper = paper_value("ccnn_duan2021", "speed_ms").value
    print(f"CCNN 3-stage cascade, batch 1, {args.threads} CPU thread(s), {args.runs} runs: "
          f"median {t['median_ms']:.2f} ms, p90 {t['p90_ms']:.2f} ms per face")
    print(f"paper (Table 3, GPU): {paper} ms per face")
    print(f"ratio paper / ours = {paper / t['median_ms']:.2f}x "
          f"({'faster' if t['median_ms'] < paper else 'SLOWER'} than the paper's GPU time)")
    return 0 if t["median_ms"] < paper else 1


if __name__ == "__main__":
    sys.exit(main())
