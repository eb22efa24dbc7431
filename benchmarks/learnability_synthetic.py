"""Learnability of the synthetic faces (a check for the issue's bar, not a test).

Trains a small CNN on 5,000 synthetic 64x64 faces for a fixed wall-clock budget on one thread and
compares its face-box-normalised NME on 500 held-out faces (another seed) with the mean-shape
baseline: the training mean shape, normalised to the face box, placed in each test face's
ground-truth box. The bar: the CNN must be at least 3x better.

    python benchmarks/learnability_synthetic.py [--seconds 120] [--max-yaw 60]

Measured on the shared 2-core box (load average ~7, ~1,200 steps of 64 in the 120 s): mean-shape
baseline 19.1 %, CNN 4.9 % (3.85x) at the defaults; 13.6 % vs 3.4 % (4.0x) with --max-yaw 30.
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from torch import nn

from lmklib.data.synthetic import generate
from lmklib.metrics import nme, per_landmark_error


def mean_shape_baseline(train_pts: np.ndarray, train_boxes: np.ndarray,
                        test_boxes: np.ndarray) -> np.ndarray:
    """Mean of the box-normalised training shapes, mapped into each test box ``[N, K, 2]``."""
    lo, wh = train_boxes[:, None, :2], train_boxes[:, None, 2:] - train_boxes[:, None, :2]
    mean = ((train_pts - lo) / wh).mean(0)
    tlo, twh = test_boxes[:, None, :2], test_boxes[:, None, 2:] - test_boxes[:, None, :2]
    return tlo + mean[None] * twh


def small_cnn(k: int, c: int = 3) -> nn.Module:
    """Four stride-2 3x3 conv-BN-ReLU layers (64 -> 4 pixels) and a linear head: ~0.4 M params."""
    layers, i = [], c
    for o in (16, 32, 64, 128):
        layers += [nn.Conv2d(i, o, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(o),
                   nn.ReLU(inplace=True)]
        i = o
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(128 * 16, 2 * k))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seconds", type=float, default=120.0)
    ap.add_argument("--n-train", type=int, default=5000)
    ap.add_argument("--n-test", type=int, default=500)
    ap.add_argument("--max-yaw", type=float, default=60.0)
    ap.add_argument("--size", type=int, default=64)
    args = ap.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    s = args.size
    t0 = time.perf_counter()
    kw = dict(size=s, max_yaw=args.max_yaw)
    tr, te = generate(args.n_train, seed=0, **kw), generate(args.n_test, seed=1, **kw)
    print(f"generated {args.n_train + args.n_test} faces in {time.perf_counter() - t0:.1f} s")

    base = mean_shape_baseline(tr["landmarks"], tr["boxes"], te["boxes"])
    nme_base = nme(base, te["landmarks"], norm="bbox", boxes=te["boxes"])

    x = torch.from_numpy(tr["images"]).permute(0, 3, 1, 2).float().div_(255).sub_(0.5)
    y = torch.from_numpy(tr["landmarks"]).reshape(len(x), -1) / (s / 2) - 1
    xt = torch.from_numpy(te["images"]).permute(0, 3, 1, 2).float().div_(255).sub_(0.5)
    k = tr["landmarks"].shape[1]
    model = small_cnn(k)
    with torch.no_grad():  # start from the mean shape: the head learns offsets from it
        model[-1].bias.copy_(y.mean(0))
        model[-1].weight.mul_(0.1)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=1e-4)
    t0, step, epochs = time.perf_counter(), 0, 0
    done = False
    while not done:
        perm = torch.randperm(len(x))
        for i in range(0, len(x) - 63, 64):
            frac = (time.perf_counter() - t0) / args.seconds
            if frac >= 1:
                done = True
                break
            for g in opt.param_groups:  # warm-up then cosine, on the wall clock
                g["lr"] = 3e-3 * min(1.0, frac / 0.05) * 0.5 * (1 + np.cos(np.pi * frac))
            idx = perm[i:i + 64]
            loss = (model(x[idx]) - y[idx]).abs().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            step += 1
        epochs += 1
    model.eval()
    with torch.no_grad():
        pred = torch.cat([model(xt[i:i + 250]) for i in range(0, len(xt), 250)])
    pred = ((pred + 1) * (s / 2)).reshape(len(xt), k, 2).numpy()
    nme_cnn = nme(pred, te["landmarks"], norm="bbox", boxes=te["boxes"])
    print(f"trained {step} steps (~{epochs} epochs) in {time.perf_counter() - t0:.0f} s, "
          "one thread")
    print(f"NME (face box) mean-shape baseline: {100 * nme_base:.2f}%")
    print(f"NME (face box) small CNN:           {100 * nme_cnn:.2f}%")
    print(f"ratio baseline / CNN: {nme_base / nme_cnn:.2f} (bar: >= 3)")
    if k == 68:  # where the errors are: face parts and |yaw|
        parts = {"jaw": slice(0, 17), "brows": slice(17, 27), "nose": slice(27, 36),
                 "eyes": slice(36, 48), "mouth": slice(48, 68)}
        e_cnn = per_landmark_error(pred, te["landmarks"], norm="bbox", boxes=te["boxes"])
        e_base = per_landmark_error(base, te["landmarks"], norm="bbox", boxes=te["boxes"])
        print("part    baseline  CNN")
        for name, sl in parts.items():
            print(f"{name:7s} {100 * e_base[sl].mean():7.2f}% {100 * e_cnn[sl].mean():6.2f}%")
        yaw = np.abs(te["pose"][:, 0])
        f_cnn = nme(pred, te["landmarks"], norm="bbox", boxes=te["boxes"], reduce="none")
        f_base = nme(base, te["landmarks"], norm="bbox", boxes=te["boxes"], reduce="none")
        for lo in range(0, int(args.max_yaw), 15):
            sel = (yaw >= lo) & (yaw < lo + 15)
            print(f"|yaw| {lo:2d}-{lo + 15:2d}: baseline {100 * f_base[sel].mean():6.2f}%  "
                  f"CNN {100 * f_cnn[sel].mean():6.2f}%  ({sel.sum()} faces)")


if __name__ == "__main__":
    main()
