"""Loader benchmark: samples per second decoding JPEGs vs reading the decoded-sample cache.

Uses the real CUHK 5-point training images under the data root ($LMK_DATA_ROOT, else
../shared/data) when present, else writes a fixture of random 250x250 JPEGs to a temp folder.

    python benchmarks/bench_loader.py [--n 500] [--size 64] [--data-root PATH]

Prints one line per pipeline; single thread, as a DataLoader worker would run.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from lmklib.data import transforms as T
from lmklib.data.cache import CachedDataset
from lmklib.data.sample import LandmarkDataset, Record
from lmklib.data.schemes import CUHK5
from lmklib.paths import REPO_ROOT


def _cuhk(data_root: str | None, n: int):
    candidates = [data_root, os.environ.get("LMK_DATA_ROOT"), REPO_ROOT.parent / "shared" / "data"]
    for c in candidates:
        if c and (Path(c) / "cuhk_5pt" / "trainImageList.txt").is_file():
            from lmklib.data.formats.cuhk import CUHK5Point
            ds = CUHK5Point(Path(c) / "cuhk_5pt", "train", image_mode="RGB")
            ds.records = ds.records[:n]
            return ds, f"CUHK 5-point train (first {len(ds)} of {Path(c) / 'cuhk_5pt'})"
    return None, ""


def _fixture(folder: Path, n: int):
    from PIL import Image

    class Faces(LandmarkDataset):
        scheme, image_mode = CUHK5, "RGB"

    rng = np.random.default_rng(0)
    records = []
    for i in range(n):
        path = folder / f"{i:05d}.jpg"
        Image.fromarray(rng.integers(0, 256, (250, 250, 3), dtype=np.uint8)).save(path, quality=90)
        records.append(Record(path, rng.uniform(80, 170, (5, 2)), np.array([60., 60., 190., 190.])))
    return Faces(records), f"fixture: {n} random 250x250 JPEGs"


def _rate(fn, n: int) -> float:
    t = time.perf_counter()
    for i in range(n):
        fn(i)
    return n / (time.perf_counter() - t)


def main(argv: list[str] | None = None) -> dict[str, float]:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=500, help="samples to read")
    ap.add_argument("--size", type=int, default=64, help="crop side in pixels")
    ap.add_argument("--data-root", default=None, help="folder holding cuhk_5pt/")
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as tmp:
        ds, what = _cuhk(args.data_root, args.n)
        if ds is None:
            ds, what = _fixture(Path(tmp), args.n)
        n = len(ds)
        crop = T.CropToBox(args.size, scale=1.2)
        aug = T.Compose([T.RandomHorizontalFlip(CUHK5, seed=0), T.RandomRotate(15, seed=1)])
        print(f"data: {what}; crop {args.size}x{args.size}; torch threads 1")

        res = {"decode only": _rate(lambda i: ds[i], n),
               "decode+crop": _rate(lambda i: crop(ds[i]), n)}
        t = time.perf_counter()
        cached = CachedDataset(ds, Path(tmp) / "cache", pre_transform=crop)
        build_s = time.perf_counter() - t
        res["cached"] = _rate(lambda i: cached[i], n)
        cached.transform = aug
        res["cached+flip+rotate"] = _rate(lambda i: cached[i], n)
        t = time.perf_counter()
        images = torch.from_numpy(np.array(cached.arrays["image"]))          # whole-array read
        res["cached arrays (bulk)"] = n / (time.perf_counter() - t)
        assert images.shape[0] == n

        for name, r in res.items():
            print(f"{name:>22s}: {r:12,.0f} samples/s")
        print(f"{'cache build':>22s}: {build_s:12.2f} s for {n} samples "
              f"({res['cached'] / res['decode+crop']:.1f}x faster per sample once cached)")
        return res


if __name__ == "__main__":
    main()
