"""CUHK 5-point set (Sun, Wang & Tang, CVPR 2013): the "LFW+Webface" data of the CCNN and ACN
papers (10,000 training / 3,466 test faces).

Layout under ``root``::

    trainImageList.txt   testImageList.txt   lfw_5590/*.jpg   net_7876/*.jpg

Each list line (CRLF, Windows separators) is::

    lfw_5590\\Aaron_Eckhart_0001.jpg  left right top bottom  x1 y1 x2 y2 ... x5 y5

i.e. the face box as ``x0 x1 y0 y1`` followed by five points: left eye, right eye, nose tip, left
mouth corner, right mouth corner ("left" = image left). Coordinates are used as given (0-based
pixels, as in the authors' own evaluation code).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from ..sample import AnnotationError, LandmarkDataset, Record, check_points, parse_floats
from ..schemes import CUHK5

SPLITS = {"train": "trainImageList.txt", "test": "testImageList.txt"}
EXPECTED_COUNTS = {"train": 10_000, "test": 3_466}


def read_cuhk_list(list_file: str | os.PathLike, image_root: str | os.PathLike | None = None,
                   check_images: bool = True) -> list[Record]:
    """Parse a CUHK image list into records; every line is validated.

    Raises:
        FileNotFoundError: the list, or (with ``check_images``) an image it names, is missing.
        AnnotationError: a line without 14 numbers, a non-finite value, or an empty box.
    """
    list_file = Path(list_file)
    root = Path(image_root) if image_root is not None else list_file.parent
    if not list_file.is_file():
        raise FileNotFoundError(f"CUHK list not found: {list_file}")
    records = []
    with open(list_file, encoding="utf-8", newline="") as f:
        for lineno, raw in enumerate(f, start=1):
            tokens = raw.split()
            if not tokens:
                continue
            if len(tokens) != 15:
                raise AnnotationError(
                    list_file, f"expected an image path and 14 numbers (box x0 x1 y0 y1 and 5 "
                    f"points x y), found {len(tokens) - 1} numbers", lineno)
            values = parse_floats(tokens[1:], list_file, lineno)
            x0, x1, y0, y1 = values[:4]
            if not np.isfinite(values[:4]).all() or x1 <= x0 or y1 <= y0:
                raise AnnotationError(list_file, f"face box {values[:4].tolist()} is empty or "
                                      "not finite (expected left < right, top < bottom)", lineno)
            points = check_points(values[4:].reshape(5, 2), 5, list_file, lineno)
            image_path = root / tokens[0].replace("\\", "/")
            if check_images and not image_path.is_file():
                raise FileNotFoundError(f"{list_file}, line {lineno}: image not found: {image_path}")
            records.append(Record(image_path, points, np.array([x0, y0, x1, y1]),
                                  meta={"source": tokens[0].replace("\\", "/").split("/")[0]}))
    return records


class CUHK5Point(LandmarkDataset):
    """The CUHK 5-point dataset.

    Args:
        root: folder holding the two list files and the image folders.
        split: ``"train"`` (10,000) or ``"test"`` (3,466).
        transform: callable ``sample -> sample``.
        image_mode: ``"L"``, ``"RGB"`` or ``None`` (keep each file's own; ``lfw_5590`` is grayscale,
            ``net_7876`` colour, so a batch needs one of the first two).
    """

    scheme = CUHK5

    def __init__(self, root: str | os.PathLike, split: str = "train",
                 transform: Callable[[dict], dict] | None = None, image_mode: str | None = "RGB"):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
        self.root, self.split, self.image_mode = Path(root), split, image_mode
        list_file = self.root / SPLITS[split]
        if not list_file.is_file():
            raise FileNotFoundError(
                f"CUHK 5-point list not found: {list_file}. Get the data of Sun et al. (CVPR 2013, "
                "'Deep Convolutional Network Cascade for Facial Point Detection') and place "
                "trainImageList.txt, testImageList.txt, lfw_5590/ and net_7876/ in that folder.")
        super().__init__(read_cuhk_list(list_file, self.root), transform)

    def extra_repr(self) -> str:
        return f"Root: {self.root}\nSplit: {self.split}"
