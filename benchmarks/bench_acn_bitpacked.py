"""Measured speed of bit-packed (XNOR/popcount) inference of a 1-bit ACN vs its float emulation
and vs the full-precision CNN of the same shape (Chen et al. 2020 quote XNOR-Net's theoretical
58x). Untrained weights: speed does not depend on their values.

    python benchmarks/bench_acn_bitpacked.py --structure 20-40-60-80 --batch 64 --threads 1
"""

from __future__ import annotations

import argparse
import json

import torch

from lmklib.models.acn import KERNEL_STRUCTURES, acn_net
from lmklib.models.acn_bitpacked import benchmark


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--structure", default="20-40-60-80", choices=list(KERNEL_STRUCTURES))
    ap.add_argument("--mode", default="acn1bit", choices=["acn1bit", "xnor"])
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=10)
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    x = torch.randn(args.batch, 1, 39, 39)
    res = benchmark(acn_net(args.structure, args.mode), x, acn_net(args.structure, "cnn"),
                    args.repeats)
    res["speedup_vs_emulation"] = res["emulation"] / res["bitpacked"]
    res["speedup_vs_float_cnn"] = res["float_cnn"] / res["bitpacked"]
    for layer in res["layers"]:
        layer["kernel_speedup"] = layer["float_conv"] / layer["xnor_popcount_only"]
    print(json.dumps({"args": vars(args), **res}, indent=1))


if __name__ == "__main__":
    main()
