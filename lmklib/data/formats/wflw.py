"""WFLW (Wu et al., CVPR 2018): 10,000 faces (7,500 train / 2,500 test) with 98 points and six
attributes.

Layout under ``root`` (the official ``WFLW_annotations.tar.gz`` and ``WFLW_images.tar.gz``)::

    WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_train.txt
    WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_test.txt
    WFLW_images/<event folder>/<name>.jpg

(the two list files are also found directly in ``root`` or ``root/WFLW_annotations``). Each line::

    x0 y0 ... x97 y97  x_min y_min x_max y_max  pose expression illumination make-up occlusion blur  image_name

i.e. 196 coordinates (0-based pixels, used as given), the face rectangle, six 0/1 attribute flags
and the image path relative to ``WFLW_images/``. The six test subsets of the paper are the test
faces whose flag is 1 (:data:`SUBSET_COUNTS`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable

import numpy as np

from ..sample import (AnnotationError, LandmarkDataset, Record, check_in_image, check_points,
                      image_size, open_text, parse_floats, resolve_in_root)
from ..schemes import WFLW98

LIST_FILES = {"train": "list_98pt_rect_attr_train.txt", "test": "list_98pt_rect_attr_test.txt"}
ATTRIBUTES = ("pose", "expression", "illumination", "makeup", "occlusion", "blur")
EXPECTED_COUNTS = {"train": 7500, "test": 2500}
SUBSET_COUNTS = {"pose": 326, "expression": 314, "illumination": 698, "makeup": 206,
                 "occlusion": 736, "blur": 773}
LIST_FOLDERS = ("WFLW_annotations/list_98pt_rect_attr_train_test", "WFLW_annotations",
                "list_98pt_rect_attr_train_test", ".")
IMAGE_FOLDERS = ("WFLW_images", "images", ".")
HOW_TO_GET = ("Get WFLW_annotations.tar.gz and WFLW_images.tar.gz from "
              "https://wywu.github.io/projects/LAB/WFLW.html and unpack both in that folder.")
_TOKENS = 196 + 4 + 6 + 1


def find_list_file(root: Path, split: str) -> Path | None:
    """The annotation list of ``split`` under ``root`` (any of :data:`LIST_FOLDERS`)."""
    for folder in LIST_FOLDERS:
        p = root / folder / LIST_FILES[split]
        if p.is_file():
            return p
    return None


def read_wflw_list(list_file: str | os.PathLike, image_root: str | os.PathLike,
                   check_images: bool = True) -> list[Record]:
    """Parse a WFLW list file; ``meta`` holds the six attributes as ``{name: bool}``.

    Raises:
        FileNotFoundError: the list, or (with ``check_images``) an image it names, is missing.
        AnnotationError: a line without 196 + 4 + 6 numbers and a name, a non-finite point, a
            flag other than 0/1, an empty rectangle, text that is not UTF-8, an image path
            leaving ``image_root``, or (with ``check_images``) points or a rectangle far outside
            the image (file and line named).
    """
    list_file, image_root = Path(list_file), Path(image_root)
    if not list_file.is_file():
        raise FileNotFoundError(f"WFLW list not found: {list_file}. {HOW_TO_GET}")
    records = []
    with open_text(list_file) as f:
        for line, raw in enumerate(f, start=1):
            tokens = raw.split()
            if not tokens:
                continue
            if len(tokens) != _TOKENS:
                raise AnnotationError(list_file, f"expected {_TOKENS} fields (196 coordinates, "
                                      "4 box values, 6 attributes, the image name), found "
                                      f"{len(tokens)}", line)
            values = parse_floats(tokens[:-1], list_file, line)
            points = check_points(values[:196].reshape(98, 2), 98, list_file, line)
            box = values[196:200]
            if not np.isfinite(box).all() or box[2] <= box[0] or box[3] <= box[1]:
                raise AnnotationError(list_file, f"face rectangle {box.tolist()} is empty or not "
                                      "finite (expected x_min < x_max, y_min < y_max)", line)
            flags = values[200:206]
            if not np.isin(flags, (0, 1)).all():
                raise AnnotationError(list_file, f"attributes must be 0 or 1, got "
                                      f"{flags.astype(int).tolist()}", line)
            image_path = resolve_in_root(image_root, tokens[-1], list_file, line)
            if check_images:
                hw = image_size(image_path, list_file, line)
                check_in_image(points, box, hw, list_file, line, tokens[-1])
            attrs = {a: bool(v) for a, v in zip(ATTRIBUTES, flags)}
            records.append(Record(image_path, points, box.copy(),
                                  meta={"attributes": attrs, "name": tokens[-1]}))
    return records


class WFLW(LandmarkDataset):
    """WFLW 98-point faces.

    Args:
        root: folder holding ``WFLW_annotations/`` and ``WFLW_images/`` (see the module docstring).
        split: ``"train"`` (7,500) or ``"test"`` (2,500).
        subset: ``None`` or one attribute of :data:`ATTRIBUTES` (``"pose"``, ``"expression"``,
            ``"illumination"``, ``"makeup"``, ``"occlusion"``, ``"blur"``): keep only faces with
            that flag (the paper's test subsets).
        check_images: verify in ``__init__`` that every image exists.

    ``box`` is the annotated face rectangle; ``meta["attributes"]`` the six flags.
    """

    scheme = WFLW98

    def __init__(self, root: str | os.PathLike, split: str = "train", subset: str | None = None,
                 transform: Callable[[dict], dict] | None = None, image_mode: str | None = "RGB",
                 check_images: bool = True):
        if split not in LIST_FILES:
            raise ValueError(f"split must be one of {sorted(LIST_FILES)}, got {split!r}")
        if subset is not None and subset not in ATTRIBUTES:
            raise ValueError(f"subset must be None or one of {list(ATTRIBUTES)}, got {subset!r}")
        self.root, self.split, self.subset, self.image_mode = Path(root), split, subset, image_mode
        list_file = find_list_file(self.root, split)
        if list_file is None:
            raise FileNotFoundError(
                f"WFLW list {LIST_FILES[split]} not found under {self.root} (looked in "
                f"{', '.join(LIST_FOLDERS)}). {HOW_TO_GET}")
        image_root = next((self.root / d for d in IMAGE_FOLDERS if (self.root / d).is_dir()
                           and d != "."), self.root)
        records = read_wflw_list(list_file, image_root, check_images)
        if subset is not None:
            records = [r for r in records if r.meta["attributes"][subset]]
        super().__init__(records, transform)

    def attribute_counts(self) -> dict[str, int]:
        """How many faces carry each attribute flag."""
        return {a: sum(r.meta["attributes"][a] for r in self.records) for a in ATTRIBUTES}

    def extra_repr(self) -> str:
        return f"Root: {self.root}\nSplit: {self.split}\nSubset: {self.subset}"
