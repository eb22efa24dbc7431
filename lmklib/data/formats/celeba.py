"""CelebA (Liu et al., ICCV 2015): 202,599 celebrity images with five landmarks.

Layout under ``root`` (the official Google Drive folders; a flat folder as torchvision's
``celeba/`` works too)::

    Img/img_align_celeba/000001.jpg ...        aligned & cropped 178x218 images
    Img/img_celeba/000001.jpg ...              in-the-wild images (optional)
    Anno/list_landmarks_align_celeba.txt       landmarks of the aligned images
    Anno/list_landmarks_celeba.txt             landmarks of the in-the-wild images
    Anno/list_bbox_celeba.txt                  face boxes of the in-the-wild images (optional)
    Eval/list_eval_partition.txt               "000001.jpg 0": 0 train, 1 valid, 2 test

A landmark file starts with the image count, then the header
``lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y rightmouth_x
rightmouth_y``, then one line per image: its name and ten integers. "left" is the image left, so the
points are the CUHK 5-point scheme in the same order. Coordinates are used as given (0-based).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from ..sample import (AnnotationError, LandmarkDataset, Record, check_in_image, check_points,
                      image_size, open_text, parse_floats, read_text, resolve_in_root)
from ..schemes import CUHK5

SPLITS = {"train": 0, "valid": 1, "test": 2, "all": None}
EXPECTED_COUNTS = {"train": 162770, "valid": 19867, "test": 19962, "all": 202599}
HEADER = ("lefteye_x lefteye_y righteye_x righteye_y nose_x nose_y leftmouth_x leftmouth_y "
          "rightmouth_x rightmouth_y").split()
FILES = {True: ("list_landmarks_align_celeba.txt", "img_align_celeba"),
         False: ("list_landmarks_celeba.txt", "img_celeba")}
PARTITION_FILE = "list_eval_partition.txt"
BBOX_FILE = "list_bbox_celeba.txt"
HOW_TO_GET = ("Get CelebA from https://mmlab.ie.cuhk.edu.hk/projects/CelebA.html (Img/, Anno/, "
              "Eval/ folders) and unpack it there.")


def find_file(root: Path, name: str) -> Path | None:
    """``name`` in ``root``, ``root/Anno``, ``root/Eval`` or ``root/Img``."""
    for d in (".", "Anno", "Eval", "Img"):
        if (root / d / name).exists():
            return root / d / name
    return None


def read_landmark_list(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """A CelebA landmark file as ``{image name: [5, 2] points}`` (file order)."""
    return _read_landmarks(path)[0]


def _read_landmarks(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """:func:`read_landmark_list` and the line of each image name."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CelebA landmark file not found: {path}. {HOW_TO_GET}")
    lines = read_text(path).splitlines()
    if len(lines) < 2:
        raise AnnotationError(path, "expected the image count and the column header", 1)
    try:
        declared = int(lines[0].strip())
    except ValueError:
        raise AnnotationError(path, f"expected the image count, got {lines[0]!r}", 1) from None
    if lines[1].split() != HEADER:
        raise AnnotationError(path, f"expected the header {' '.join(HEADER)!r}", 2)
    out, where = {}, {}
    for line, raw in enumerate(lines[2:], start=3):
        tokens = raw.split()
        if not tokens:
            continue
        if len(tokens) != 11:
            raise AnnotationError(path, f"expected an image name and 10 numbers, found "
                                  f"{len(tokens) - 1} numbers", line)
        out[tokens[0]] = check_points(parse_floats(tokens[1:], path, line).reshape(5, 2), 5,
                                      path, line)
        where[tokens[0]] = line
    if len(out) != declared:
        raise AnnotationError(path, f"header says {declared} images but {len(out)} lines follow")
    return out, where


def read_partition(path: str | os.PathLike) -> dict[str, int]:
    """``list_eval_partition.txt`` as ``{image name: 0 | 1 | 2}``."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CelebA partition file not found: {path}. {HOW_TO_GET}")
    out = {}
    with open_text(path) as f:
        for line, raw in enumerate(f, start=1):
            tokens = raw.split()
            if not tokens:
                continue
            if len(tokens) != 2 or tokens[1] not in ("0", "1", "2"):
                raise AnnotationError(path, f"expected 'name 0|1|2', got {raw.strip()!r}", line)
            out[tokens[0]] = int(tokens[1])
    return out


def read_bbox_list(path: str | os.PathLike) -> dict[str, np.ndarray]:
    """``list_bbox_celeba.txt`` (count, header, ``name x_1 y_1 width height``) as ``(x0,y0,x1,y1)``."""
    return _read_boxes(path)[0]


def _read_boxes(path: str | os.PathLike) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """:func:`read_bbox_list` and the line of each image name."""
    path = Path(path)
    lines = read_text(path).splitlines()
    out, where = {}, {}
    for line, raw in enumerate(lines[2:], start=3):
        tokens = raw.split()
        if not tokens:
            continue
        if len(tokens) != 5:
            raise AnnotationError(path, "expected 'name x_1 y_1 width height'", line)
        x, y, w, h = parse_floats(tokens[1:], path, line)
        out[tokens[0]], where[tokens[0]] = np.array([x, y, x + w, y + h]), line
    return out, where


class CelebA(LandmarkDataset):
    """CelebA with its five landmarks (CUHK 5-point scheme).

    Args:
        root: the CelebA folder (module docstring).
        split: ``"train"`` (162,770), ``"valid"`` (19,867), ``"test"`` (19,962) or ``"all"``.
        aligned: the aligned-and-cropped images (default) or the in-the-wild ones.
        check_images: verify that every image of the split exists (one directory listing) and
            that its points (and box) lie within
            :data:`~lmklib.data.sample.OUTSIDE_TOLERANCE` of it (its header is read).
    """

    scheme = CUHK5

    def __init__(self, root: str | os.PathLike, split: str = "test", aligned: bool = True,
                 transform: Callable[[dict], dict] | None = None, image_mode: str | None = "RGB",
                 check_images: bool = True):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {list(SPLITS)}, got {split!r}")
        self.root, self.split, self.aligned, self.image_mode = Path(root), split, aligned, image_mode
        list_name, image_dir = FILES[aligned]
        list_file = find_file(self.root, list_name)
        if list_file is None:
            raise FileNotFoundError(f"CelebA landmark file {list_name} not found in {self.root} "
                                    f"(or its Anno/). {HOW_TO_GET}")
        images = find_file(self.root, image_dir)
        if images is None or not images.is_dir():
            raise FileNotFoundError(f"CelebA image folder {image_dir}/ not found in {self.root} "
                                    f"(or its Img/). {HOW_TO_GET}")
        landmarks, lines = _read_landmarks(list_file)
        names = list(landmarks)
        if SPLITS[split] is not None:
            part_file = find_file(self.root, PARTITION_FILE)
            if part_file is None:
                raise FileNotFoundError(f"CelebA partition file {PARTITION_FILE} not found in "
                                        f"{self.root} (or its Eval/). {HOW_TO_GET}")
            partition = read_partition(part_file)
            unknown = [n for n in names if n not in partition]
            if unknown:
                raise AnnotationError(part_file, f"{len(unknown)} images of {list_file.name} have "
                                      f"no partition, e.g. {unknown[0]}")
            names = [n for n in names if partition[n] == SPLITS[split]]
        boxes, box_lines, bbox_file = {}, {}, find_file(self.root, BBOX_FILE)
        if not aligned and bbox_file is not None:
            boxes, box_lines = _read_boxes(bbox_file)
        paths = {n: resolve_in_root(images, n, list_file, lines[n]) for n in names}
        if check_images:
            present = set(os.listdir(images))
            absent = [n for n in names if n not in present]
            if absent:
                raise FileNotFoundError(f"{list_file}: {len(absent)} images missing from {images}, "
                                        f"e.g. {images / absent[0]}")
            for n in names:
                hw = image_size(paths[n])
                check_in_image(landmarks[n], None, hw, list_file, lines[n], n)
                if n in boxes:
                    check_in_image(None, boxes[n], hw, bbox_file, box_lines[n], n)
        records = [Record(paths[n], landmarks[n], boxes.get(n), meta={"name": n}) for n in names]
        super().__init__(records, transform)

    def extra_repr(self) -> str:
        return f"Root: {self.root}\nSplit: {self.split}\nAligned: {self.aligned}"
