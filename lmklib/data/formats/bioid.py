"""BioID (Jesorsky et al. 2001): 1,521 grayscale 384x286 frontal faces of 23 people.

Layout under ``root``::

    BioID_0000.pgm  BioID_0000.eye  ...           (the BioID release)
    points_20/bioid_0000.pts  ...                 (FGNet 20-point markup, optional)

A ``.eye`` file is two lines, ``#LX LY RX RY`` then four integers: the eye centres, where "left"
is the *subject's* left (image right). A ``.pts`` file is the 300-W style
``version: 1 / n_points: 20 / { x y ... }`` with the 20 FGNet points (:data:`BIOID20`, subject's
left/right). Both are used as given (0-based pixels).

``markup`` picks what a sample holds: ``"fgnet20"`` (20 points), ``"cuhk5"`` (the five points of the
CUHK scheme, derived from the 20: pupils, nose tip, mouth corners; image-left first) or ``"eyes"``
(the ``.eye`` centres as the two eyes of the CUHK 5-point scheme, the other three NaN/masked).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from ..sample import (AnnotationError, LandmarkDataset, Record, check_in_image, check_points,
                      image_size, parse_floats, read_text)
from ..schemes import BIOID20, CUHK5, convert_points
from .w300 import read_pts

EXPECTED_COUNTS = {"all": 1521}
IMAGE_SIZE = (384, 286)  # width, height
MARKUPS = ("fgnet20", "cuhk5", "eyes")
POINTS_FOLDERS = ("points_20", "points", ".")
HOW_TO_GET = ("Get BioID-FaceDatabase-V1.2.zip (images and .eye files) from "
              "https://www.bioid.com/face-database/ and, for 20 points, the FGNet markup "
              "(points_20.zip) into points_20/.")


def read_eye_file(path: str | os.PathLike, image_hw: tuple[int, int] | None = None,
                  image: str | None = None) -> np.ndarray:
    """A BioID ``.eye`` file as ``[2, 2]``: (subject's left eye, subject's right eye); with
    ``image_hw`` the eyes must lie within :data:`~lmklib.data.sample.OUTSIDE_TOLERANCE` of the
    image."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"BioID eye file not found: {path}")
    lines = [(i, ln.strip()) for i, ln in enumerate(read_text(path).splitlines(), start=1)
             if ln.strip()]
    data = [(i, ln) for i, ln in lines if not ln.startswith("#")]
    if len(data) != 1:
        raise AnnotationError(path, f"expected one line 'LX LY RX RY' after the '#' header, found "
                              f"{len(data)}", data[1][0] if len(data) > 1 else None)
    line, text = data[0]
    tokens = text.split()
    if len(tokens) != 4:
        raise AnnotationError(path, f"expected 4 numbers 'LX LY RX RY', found {len(tokens)}", line)
    eyes = check_points(parse_floats(tokens, path, line).reshape(2, 2), 2, path, line)
    if image_hw is not None:
        check_in_image(eyes, None, image_hw, path, line, image)
    return eyes


def write_eye_file(path: str | os.PathLike, left: tuple[float, float],
                   right: tuple[float, float]) -> None:
    """Write a ``.eye`` file (subject's left eye first, integers as in BioID)."""
    from ...reports import atomic_write_text

    values = [int(round(v)) for v in (*left, *right)]
    atomic_write_text(Path(path), "#LX\tLY\tRX\tRY\n" + "\t".join(map(str, values)) + "\n")


class BioID(LandmarkDataset):
    """BioID faces with the ``.eye`` centres or the FGNet 20-point markup.

    Args:
        root: folder with ``BioID_XXXX.pgm`` + ``.eye`` (and ``points_20/``).
        split: only ``"all"`` (the papers test on every image).
        markup: ``"fgnet20"``, ``"cuhk5"`` or ``"eyes"`` (module docstring).
    """

    def __init__(self, root: str | os.PathLike, split: str = "all", markup: str = "cuhk5",
                 transform: Callable[[dict], dict] | None = None, image_mode: str | None = "L"):
        if split != "all":
            raise ValueError(f"split must be one of ['all'], got {split!r}")
        if markup not in MARKUPS:
            raise ValueError(f"markup must be one of {list(MARKUPS)}, got {markup!r}")
        self.root, self.split, self.markup, self.image_mode = Path(root), split, markup, image_mode
        self.scheme = BIOID20 if markup == "fgnet20" else CUHK5
        images = sorted(self.root.glob("BioID_*.pgm")) if self.root.is_dir() else []
        if not images:
            raise FileNotFoundError(f"BioID images (BioID_XXXX.pgm) not found in {self.root}. "
                                    f"{HOW_TO_GET}")
        records = []
        for image in images:
            number = image.stem.split("_")[-1]
            hw = image_size(image)
            if markup == "eyes":
                left, right = read_eye_file(image.with_suffix(".eye"), hw, image.name)
                pts = np.full((5, 2), np.nan)
                pts[0], pts[1] = right, left  # CUHK: image-left eye (subject's right) first
            else:
                pts_file = next((self.root / d / f"bioid_{number}.pts" for d in POINTS_FOLDERS
                                 if (self.root / d / f"bioid_{number}.pts").is_file()), None)
                if pts_file is None:
                    raise FileNotFoundError(
                        f"FGNet points for {image.name} not found: {self.root / 'points_20' / f'bioid_{number}.pts'}. "
                        f"{HOW_TO_GET}")
                # read_pts assumes 1-based points; BioID's are 0-based
                pts = read_pts(pts_file, 20, hw, image.name) + 1.0
                if markup == "cuhk5":
                    pts = convert_points(pts, BIOID20, CUHK5)
            records.append(Record(image, pts, meta={"number": int(number)}))
        super().__init__(records, transform)

    def extra_repr(self) -> str:
        return f"Root: {self.root}\nMarkup: {self.markup}"
