"""COCO-style keypoint json, as mmpose ships the face benchmarks (300W, 300W-LP, AFLW, COFW, WFLW,
300VW, LaPa).

A file holds ``images`` (``id``, ``file_name`` relative to the image folder, ``width``, ``height``)
and ``annotations`` (``image_id``, ``keypoints`` = ``[x1, y1, v1, x2, y2, v2, ...]``, optional
``bbox`` = ``[x, y, w, h]``); one annotation is one sample (an image may hold several faces).
Coordinates are 0-based pixels, used as given. The flag ``v`` follows COCO: 0 = not annotated
(NaN, masked), 1 = annotated but not visible, 2 = visible. Face files often write 1 for every
point; so by default (``visibility="auto"``) 1 means occluded only in files that also use 2.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Callable

import numpy as np

from ..sample import (AnnotationError, LandmarkDataset, Record, check_in_image, check_points,
                      image_size, read_text, resolve_in_root)
from ..schemes import SCHEMES, Scheme, get_scheme


def read_coco_keypoints(ann_file: str | os.PathLike, image_root: str | os.PathLike | None = None,
                        num_keypoints: int | None = None, visibility: str = "auto",
                        check_images: bool = True) -> list[Record]:
    """Parse a COCO keypoint json into records (one per annotation, file order).

    Raises:
        FileNotFoundError: the json or (with ``check_images``) an image is missing.
        AnnotationError: malformed json or text that is not UTF-8, an annotation whose
            keypoints are not a multiple of 3 or not ``num_keypoints``, a non-finite coordinate,
            an unknown ``image_id``, a ``file_name`` leaving ``image_root``, keypoints or a
            ``bbox`` far outside the image (its ``width``/``height``, else, with
            ``check_images``, its header).
    """
    ann_file = Path(ann_file)
    root = Path(image_root) if image_root is not None else ann_file.parent
    if not ann_file.is_file():
        raise FileNotFoundError(f"COCO keypoint json not found: {ann_file}")
    if visibility not in ("auto", "coco", "all"):
        raise ValueError(f"visibility must be 'auto', 'coco' or 'all', got {visibility!r}")
    try:
        data = json.loads(read_text(ann_file))
    except json.JSONDecodeError as e:
        raise AnnotationError(ann_file, f"not valid json: {e.msg}", e.lineno) from None
    if not isinstance(data, dict) or "images" not in data or "annotations" not in data:
        raise AnnotationError(ann_file, "expected a json object with 'images' and 'annotations'")
    images = {}
    for im in data["images"]:
        if "id" not in im or "file_name" not in im:
            raise AnnotationError(ann_file, f"image entry without id/file_name: {im}")
        images[im["id"]] = im
    anns = data["annotations"]
    uses_2 = any(2 in a.get("keypoints", [])[2::3] for a in anns)
    records = []
    for n, a in enumerate(anns):
        where = f"annotation {n} (id {a.get('id')})"
        kp = np.asarray(a.get("keypoints", []), dtype=np.float64)
        if kp.size == 0 or kp.size % 3:
            raise AnnotationError(ann_file, f"{where}: keypoints must be [x, y, v] * K, got "
                                  f"{kp.size} numbers")
        kp = kp.reshape(-1, 3)
        k = num_keypoints if num_keypoints is not None else len(kp)
        if len(kp) != k:
            raise AnnotationError(ann_file, f"{where}: expected {k} keypoints, found {len(kp)}")
        v = kp[:, 2]
        pts = kp[:, :2].copy()
        pts[v == 0] = np.nan
        pts = check_points(pts, k, ann_file, allow_nan=True)
        if np.isnan(pts[v > 0]).any():
            raise AnnotationError(ann_file, f"{where}: a keypoint flagged v>0 has a NaN coordinate")
        if visibility == "all":
            visible = v > 0
        elif visibility == "coco" or uses_2:
            visible = v == 2
        else:
            visible = v > 0
        if a.get("image_id") not in images:
            raise AnnotationError(ann_file, f"{where}: image_id {a.get('image_id')} not in images")
        im = images[a["image_id"]]
        path = resolve_in_root(root, str(im["file_name"]), ann_file)
        if check_images and not path.is_file():
            raise FileNotFoundError(f"{ann_file}, {where}: image not found: {path}")
        box = None
        if a.get("bbox") is not None:
            x, y, w, h = (float(t) for t in a["bbox"])
            box = np.array([x, y, x + w, y + h])
        hw = (im["height"], im["width"]) if im.get("width") and im.get("height") else (
            image_size(path) if check_images else None)
        if hw is not None:
            check_in_image(pts, box, hw, ann_file, image=im["file_name"], label=f"{where}: ")
        meta = {"image_id": a["image_id"], "annotation_id": a.get("id"),
                "width": im.get("width"), "height": im.get("height")}
        records.append(Record(path, pts, box, visible=visible,  # None would break collation
                              meta={k: v for k, v in meta.items() if v is not None}))
    return records


class CocoKeypoints(LandmarkDataset):
    """Faces from a COCO-style keypoint json.

    Args:
        ann_file: the json file.
        image_root: folder ``file_name`` is relative to (default: the json's folder).
        scheme: a scheme (name or :class:`Scheme`); default: the scheme with that many points if
            it is unique (68 -> ibug68, 98 -> wflw98, 29 -> cofw29, 19 -> aflw19), else ``None``.
        visibility: ``"auto"``, ``"coco"`` (visible = v == 2) or ``"all"`` (visible = v > 0).
    """

    def __init__(self, ann_file: str | os.PathLike, image_root: str | os.PathLike | None = None,
                 scheme: str | Scheme | None = None, transform: Callable[[dict], dict] | None = None,
                 image_mode: str | None = "RGB", visibility: str = "auto",
                 check_images: bool = True):
        self.ann_file, self.image_mode = Path(ann_file), image_mode
        if not self.ann_file.is_file():
            raise FileNotFoundError(f"COCO keypoint json not found: {self.ann_file}. mmpose's "
                                    "face datasets come as such files (see its dataset docs).")
        expected = get_scheme(scheme).num_points if scheme is not None else None
        records = read_coco_keypoints(self.ann_file, image_root, expected, visibility, check_images)
        if scheme is not None:
            self.scheme = get_scheme(scheme)
        elif records:
            k = len(records[0].landmarks)
            found = [s for s in SCHEMES.values() if s.num_points == k]
            self.scheme = found[0] if len(found) == 1 else None
        super().__init__(records, transform)

    def extra_repr(self) -> str:
        return f"File: {self.ann_file}"
