"""CUHK 5-point set (Sun, Wang & Tang, CVPR 2013): the "LFW+Webface" data of the CCNN and ACN
papers (10,000 training / 3,466 test faces as published).

Layout under ``root``::

    trainImageList.txt   testImageList.txt   lfw_5590/*.jpg   net_7876/*.jpg
    trainImageList_lfw_5590_80px.txt   lfw_5590_80px/*.jpg      (the clean protocol, below)

Two protocols, as named splits of :class:`CUHK5Point`:

* ``"train"`` / ``"test"`` -- the CLEAN protocol, the default. Our ``lfw_5590/`` copy is a
  rotated, re-aligned grayscale LFW whose frames do not match the labels (made on the original
  LFW frames): an independent detector scores 7.04 % there against 2.80 % on ``net_7876``. So the
  training split takes each official line as published for ``net_7876`` (5,849) and, for the
  4,151 LFW faces, the same face as the ORIGINAL colour LFW frame downscaled to 80x80
  (``lfw_5590_80px/``, its list mapped into that frame: low-resolution faces, cropped through
  the same box-relative crop as the rest); 10,000 faces in the official order. The test split is
  the 2,027 ``net_7876`` test faces: the 1,439 LFW test faces have no correct copy.
* ``"train_official"`` / ``"test_official"`` -- the lists as published (10,000 / 3,466),
  including the mislabelled ``lfw_5590/`` copy: only on request, e.g. to show its effect.

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

from ..sample import (AnnotationError, LandmarkDataset, Record, check_in_image, check_points,
                      image_size, open_text, parse_floats, resolve_in_root)
from ..schemes import CUHK5

SPLITS = {"train": "trainImageList.txt", "test": "testImageList.txt",
          "train_official": "trainImageList.txt", "test_official": "testImageList.txt"}
EXPECTED_COUNTS = {"train": 10_000, "test": 2_027, "train_official": 10_000, "test_official": 3_466}
#: The clean protocol's list of the 80 px LFW training frames, and the folder it replaces.
LFW80_LIST, LFW_FOLDER = "trainImageList_lfw_5590_80px.txt", "lfw_5590"
PROTOCOLS = {"train": "clean", "test": "clean", "train_official": "official",
             "test_official": "official"}


def read_cuhk_list(list_file: str | os.PathLike, image_root: str | os.PathLike | None = None,
                   check_images: bool = True) -> list[Record]:
    """Parse a CUHK image list into records; every line is validated.

    The list is UTF-8 (a byte-order mark is skipped). With ``check_images`` each image's header
    is read (not its pixels) and the box and points must lie within
    :data:`~lmklib.data.sample.OUTSIDE_TOLERANCE` of it.

    Raises:
        FileNotFoundError: the list, or (with ``check_images``) an image it names, is missing.
        AnnotationError: a line without 14 numbers, a non-finite value, an empty box, text that
            is not UTF-8, an image path leaving ``image_root``, or a box or point far outside
            its image (file and line named).
    """
    list_file = Path(list_file)
    root = Path(image_root) if image_root is not None else list_file.parent
    if not list_file.is_file():
        raise FileNotFoundError(f"CUHK list not found: {list_file}")
    records = []
    with open_text(list_file, newline="") as f:
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
            box = np.array([x0, y0, x1, y1])
            image_path = resolve_in_root(root, tokens[0], list_file, lineno)
            if check_images:
                hw = image_size(image_path, list_file, lineno)
                check_in_image(points, box, hw, list_file, lineno, tokens[0])
            records.append(Record(image_path, points, box,
                                  meta={"source": tokens[0].replace("\\", "/").split("/")[0]}))
    return records


def clean_records(records: list[Record], root: Path, split: str) -> list[Record]:
    """The clean protocol from the official records (see the module docstring): LFW training
    faces swapped for their 80 px original frames (same order), LFW test faces dropped."""
    if split == "test":
        return [r for r in records if r.meta["source"] != LFW_FOLDER]
    lfw80 = read_cuhk_list(root / LFW80_LIST, root) if (root / LFW80_LIST).is_file() else None
    if lfw80 is None:
        raise FileNotFoundError(
            f"{root / LFW80_LIST} not found: the clean CUHK training split needs the 80 px original "
            f"LFW frames (lfw_5590_80px/ and its list); split='train_official' gives the lists as "
            "published, with the mislabelled lfw_5590/ copy")
    by_name = {r.image_path.name: r for r in lfw80}
    out = []
    for r in records:
        if r.meta["source"] != LFW_FOLDER:
            out.append(r)
        elif r.image_path.name in by_name:
            out.append(by_name.pop(r.image_path.name))
        else:
            raise FileNotFoundError(f"{root / LFW80_LIST}: no line for {r.image_path.name}, a "
                                    f"{LFW_FOLDER} face of {SPLITS['train']}")
    if by_name:
        raise AnnotationError(root / LFW80_LIST, f"{len(by_name)} faces not in {SPLITS['train']} "
                              f"(e.g. {next(iter(by_name))})")
    return out


class CUHK5Point(LandmarkDataset):
    """The CUHK 5-point dataset.

    Args:
        root: folder holding the list files and the image folders.
        split: ``"train"`` (clean, 10,000: net_7876 + the 80 px original LFW frames, which are
            low-resolution faces), ``"test"`` (clean, 2,027 net_7876 faces),
            ``"train_official"`` (10,000) or ``"test_official"`` (3,466): the published lists,
            whose ``lfw_5590/`` copy does not match its labels. See the module docstring.
        transform: callable ``sample -> sample``.
        image_mode: ``"L"``, ``"RGB"`` or ``None`` (keep each file's own; ``lfw_5590`` is grayscale,
            ``net_7876`` and ``lfw_5590_80px`` colour, so a batch needs one of the first two).
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
        records = read_cuhk_list(list_file, self.root)
        if PROTOCOLS[split] == "clean":
            records = clean_records(records, self.root, split)
        super().__init__(records, transform)

    @property
    def protocol(self) -> str:
        """``"clean"`` or ``"official"`` (see the module docstring)."""
        return PROTOCOLS[self.split]

    def extra_repr(self) -> str:
        return f"Root: {self.root}\nSplit: {self.split} ({self.protocol} protocol)"
