"""300-W (Sagonas et al. 2013): folders of images with 68-point iBUG ``.pts`` files.

A ``.pts`` file is::

    version: 1
    n_points: 68
    {
    x y        (68 lines, 1-based pixel coordinates)
    }

Files stripped of the header (just the 68 ``x y`` lines) are accepted too. Points are shifted
by -1 on reading (lmklib is 0-based) and +1 on writing.

Standard splits (by the sub-folders of the original release)::

    train     = afw + helen/trainset + lfpw/trainset           (3,148)
    common    = helen/testset + lfpw/testset                    (554)
    challenge = ibug                                            (135)
    full      = common + challenge                              (689)

Masked 300-W keeps the same layout (its images have synthetic masks drawn on): pass
``root`` = the Masked 300-W folder.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Iterable

import numpy as np

from ..sample import (AnnotationError, LandmarkDataset, Record, check_in_image, check_points,
                      image_size, parse_floats, read_text)
from ..schemes import IBUG68

SPLIT_FOLDERS = {
    "train": ("afw", "helen/trainset", "lfpw/trainset"),
    "common": ("helen/testset", "lfpw/testset"),
    "challenge": ("ibug",),
    "full": ("helen/testset", "lfpw/testset", "ibug"),
}
EXPECTED_COUNTS = {"train": 3148, "common": 554, "challenge": 135, "full": 689,
                   "afw": 337, "helen/trainset": 2000, "helen/testset": 330,
                   "lfpw/trainset": 811, "lfpw/testset": 224, "ibug": 135}
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".ppm", ".pgm")


def read_pts(path: str | os.PathLike, n_points: int | None = None,
             image_hw: tuple[int, int] | None = None,
             image: str | os.PathLike | None = None) -> np.ndarray:
    """Read a ``.pts`` file into ``[K, 2]`` 0-based float64 points.

    Args:
        n_points: the count required (e.g. 68); ``None`` accepts the header's.
        image_hw: ``(height, width)`` of the image the points belong to (``image``): points
            more than :data:`~lmklib.data.sample.OUTSIDE_TOLERANCE` outside it are rejected.
    Raises:
        FileNotFoundError, AnnotationError (with the file and line of the problem: text that
        is not UTF-8, a point block opened with ``{`` and never closed, a wrong count, a point
        far outside the image, ...).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"landmark file not found: {path}")
    lines = read_text(path).splitlines()
    declared, points, in_block, headerless, opened = None, [], False, True, None
    for lineno, raw in enumerate(lines, start=1):
        s = raw.strip()
        if not s or s.startswith("#"):
            continue
        if s.startswith("version"):
            headerless = False
            continue
        if s.startswith("n_points"):
            headerless = False
            try:
                declared = int(s.split(":")[1])
            except (IndexError, ValueError):
                raise AnnotationError(path, f"bad n_points line {s!r}", lineno) from None
            continue
        if s == "{":
            in_block, headerless, opened = True, False, lineno
            continue
        if s == "}":
            in_block = False
            continue
        if not (in_block or headerless):
            raise AnnotationError(path, f"unexpected line {s!r} outside the point block", lineno)
        tokens = s.split()
        if len(tokens) != 2:
            raise AnnotationError(path, f"expected 'x y', got {s!r}", lineno)
        points.append((parse_floats(tokens, path, lineno), lineno))
    if in_block:
        raise AnnotationError(path, f"the point block opened with '{{' on line {opened} has no "
                              "closing '}' (expected '}' after the last point: a truncated file?)",
                              len(lines))
    if declared is not None and declared != len(points):
        raise AnnotationError(path, f"header says n_points: {declared} but {len(points)} points follow")
    k = n_points if n_points is not None else len(points)
    for p, lineno in points:
        if not np.isfinite(p).all():
            raise AnnotationError(path, f"non-finite coordinate {p.tolist()}", lineno)
    arr = check_points(np.array([p for p, _ in points]).reshape(-1, 2), k, path) - 1.0
    if image_hw is not None:
        check_in_image(arr, None, image_hw, path, [ln for _, ln in points], image)
    return arr


def write_pts(path: str | os.PathLike, points: np.ndarray) -> None:
    """Write ``[K, 2]`` 0-based points as a standard 1-based ``.pts`` file (atomically)."""
    from ...reports import atomic_write_text

    p = np.asarray(points, dtype=np.float64) + 1.0
    body = "\n".join(f"{x:.6f} {y:.6f}" for x, y in p)
    atomic_write_text(Path(path), f"version: 1\nn_points: {len(p)}\n{{\n{body}\n}}\n")


def find_image(pts_path: Path) -> Path | None:
    """The image beside a ``.pts`` file (same stem, any known suffix)."""
    for suffix in IMAGE_SUFFIXES:
        for cand in (pts_path.with_suffix(suffix), pts_path.with_suffix(suffix.upper())):
            if cand.is_file():
                return cand
    return None


def read_pts_folder(folder: str | os.PathLike, n_points: int = 68,
                    require_images: bool = True) -> list[Record]:
    """Records for every ``.pts`` in ``folder`` (sorted, recursive), each with its image."""
    folder = Path(folder)
    records = []
    for pts in sorted(folder.rglob("*.pts")):
        image = find_image(pts)
        if image is None and require_images:
            raise FileNotFoundError(f"{pts}: no image beside it (looked for {pts.stem}"
                                    f"{{{','.join(IMAGE_SUFFIXES)}}})")
        hw = image_size(image) if image is not None else None
        records.append(Record(image or pts.with_suffix(".jpg"),
                              read_pts(pts, n_points, hw, image.name if image else None),
                              meta={"subset": str(folder.name)}))
    return records


class W300(LandmarkDataset):
    """300-W (or Masked 300-W) 68-point faces.

    Args:
        root: folder with ``afw/``, ``helen/{trainset,testset}``, ``lfpw/{trainset,testset}``,
            ``ibug/`` (any subset of them).
        split: ``train``, ``common``, ``challenge`` or ``full``, or one sub-folder name
            (``afw``, ``helen/testset``, ...).
        missing_ok: if True, sub-folders of the split that are absent are skipped and listed in
            ``self.missing`` (the partial 300-W here lacks LFPW and IBUG); if False they raise.
    """

    scheme = IBUG68

    def __init__(self, root: str | os.PathLike, split: str = "train",
                 transform: Callable[[dict], dict] | None = None, image_mode: str | None = "RGB",
                 missing_ok: bool = True):
        valid = sorted(SPLIT_FOLDERS) + sorted(f for fs in SPLIT_FOLDERS.values() for f in fs)
        if split not in valid:
            raise ValueError(f"split must be one of {sorted(set(valid))}, got {split!r}")
        self.root, self.split, self.image_mode = Path(root), split, image_mode
        if not self.root.is_dir():
            raise FileNotFoundError(f"300-W folder not found: {self.root}. Get 300-W from "
                                    "https://ibug.doc.ic.ac.uk/resources/300-W/ and unpack afw/, "
                                    "helen/, lfpw/ and ibug/ there.")
        folders: Iterable[str] = SPLIT_FOLDERS.get(split, (split,))
        records, self.present, self.missing = [], [], []
        for sub in folders:
            path = self.root / sub
            if not path.is_dir():
                if not missing_ok:
                    raise FileNotFoundError(f"300-W split {split!r} needs {path}, which is missing")
                self.missing.append(sub)
                continue
            self.present.append(sub)
            for r in read_pts_folder(path):
                r.meta["subset"] = sub
                records.append(r)
        super().__init__(records, transform)

    def extra_repr(self) -> str:
        return (f"Root: {self.root}\nSplit: {self.split}\nPresent: {self.present}"
                f"\nMissing: {self.missing}")
