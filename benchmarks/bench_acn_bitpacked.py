"""Benchmark: the bit-packed (XNOR/popcount, compiled) 1-bit ACN against the float convolutions it
replaces and against the full-precision CNN of the same shape, on one CPU thread.

    python benchmarks/bench_acn_bitpacked.py [--structure 20-40-60-80] [--repeats 200]

For each binary layer and for the whole network, at batch 1 and batch 64: the float conv (the
emulation's ``conv(sign(x), sign(W))`` layer), the packed conv (packing included) and their
ratio, beside XNOR-Net's theoretical 58x (Rastegari et al. 2016, quoted by Chen et al. 2020); then
the storage of the model (1-bit kernels packed) against float32. All times are medians measured
in this one run; untrained weights (speed does not depend on their values), and the packed
outputs are checked equal to the float emulation's first.

Targets (exit status 1 when one is missed), batch 1, one thread:
* every packed binary layer at least 3x faster than the float conv layer it replaces;
* the whole 1-bit network (packed) faster than the full-precision CNN.
"""

from __future__ import annotations

import argparse
import sys

import torch

from lmklib.models.acn import KERNEL_STRUCTURES, acn_net, inference_storage_bits
from lmklib.models.acn_bitpacked import benchmark
from lmklib.reports import paper_value

LAYER_TARGET = 3.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--structure", default="20-40-60-80", choices=list(KERNEL_STRUCTURES))
    ap.add_argument("--mode", default="acn1bit", choices=["acn1bit", "xnor"])
    ap.add_argument("--repeats", type=int, default=200)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(0)
    binary, full = acn_net(args.structure, args.mode).eval(), acn_net(args.structure, "cnn").eval()
    theory = paper_value("acn_chen2020", "speedup_acn1bit").value
    results = {}
    for batch in (1, 64):
        x = torch.randn(batch, 1, 39, 39)
        r = benchmark(binary, x, full, repeats=args.repeats if batch == 1 else args.repeats // 10)
        if not r["equal"]:
            print(f"batch {batch}: packed outputs differ from the float emulation", file=sys.stderr)
            return 1
        results[batch] = r
        print(f"\n{args.mode} {args.structure}, batch {batch}, 1 thread (ms per batch)")
        print(f"{'layer':14s} {'input':18s} {'float conv':>11s} {'packed':>9s} {'ratio':>7s} "
              f"{'theory':>7s}")
        for layer in r["layers"]:
            print(f"{layer['layer']:14s} {str(layer['input']):18s} "
                  f"{1e3 * layer['float_conv']:11.4f} {1e3 * layer['packed_conv']:9.4f} "
                  f"{layer['float_conv'] / layer['packed_conv']:6.2f}x {theory:6.0f}x")
        print(f"{'whole network':33s} {1e3 * r['float_cnn']:11.4f} {1e3 * r['bitpacked']:9.4f} "
              f"{r['float_cnn'] / r['bitpacked']:6.2f}x   (full-precision CNN vs packed 1-bit; "
              f"float emulation {1e3 * r['emulation']:.4f} ms)")
    bits = inference_storage_bits(binary)
    float_bytes = 4 * sum(p.numel() for p in full.parameters())
    print(f"\nstorage: packed 1-bit model {bits // 8:,} bytes, full-precision CNN "
          f"{float_bytes:,} bytes ({float_bytes / (bits / 8):.1f}x smaller)")

    one = results[1]
    worst = min(layer["float_conv"] / layer["packed_conv"] for layer in one["layers"])
    whole = one["float_cnn"] / one["bitpacked"]
    ok = worst >= LAYER_TARGET and whole > 1.0
    print(f"\nratios, batch 1, 1 thread, measured in this run: slowest packed layer "
          f"{worst:.2f}x faster than its float conv (target >= {LAYER_TARGET:g}x); whole 1-bit "
          f"network {whole:.2f}x the full-precision CNN's speed (target > 1x); theory {theory:g}x")
    print("targets met" if ok else "TARGET MISSED")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
