"""Face detection for images that come without a box, and its calibration to a model's box.

The detector is OpenCV's Viola-Jones cascade ``haarcascade_frontalface_default.xml``, which ships
inside the ``opencv-python-headless`` wheel (OpenCV 4; OpenCV 5 no longer bundles the cascades):
nothing is downloaded. It finds frontal and near-frontal faces; profiles beyond ~45 degrees of
yaw are mostly missed.

A detector's box is not the box a model was trained with (CUHK's boxes are tighter and lower;
300-W boxes are placed on the 68 points). :func:`calibrate` measures, on the training faces, how
the training box sits around the detector's box, as a
:class:`~lmklib.data.geometry.BoxGeometry` whose "points" are the detector box's two corners;
:func:`adapt` then places the model's box on a new detection with that geometry, the same
:func:`~lmklib.data.geometry.boxes_from_points` that places boxes on points everywhere else.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Sequence

import numpy as np

from .geometry import BoxGeometry, boxes_from_points, fit_box_geometry, frame_boxes

DETECTOR = "OpenCV Haar cascade haarcascade_frontalface_default.xml"
#: A detection counts as the same face as a training box when their IoU is at least this.
MATCH_IOU = 0.3


@lru_cache(maxsize=1)
def _cascade():
    try:
        import cv2
    except ImportError as e:   # a core dependency: only a broken install gets here
        raise ImportError("face detection needs OpenCV: pip install 'opencv-python-headless<5'"
                          ) from e
    path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise FileNotFoundError(f"OpenCV's face cascade is missing or unreadable: {path}")
    return cascade


def detect_faces(image: np.ndarray, min_size: float = 0.1) -> np.ndarray:
    """Face boxes ``[F, 4]`` float64 ``(x0, y0, x1, y1)`` in image pixels, largest first.

    Args:
        image: uint8 ``[H, W]`` (gray) or ``[H, W, 3]`` (RGB).
        min_size: smallest face side, as a fraction of the image's shorter side.
    """
    import cv2

    img = np.asarray(image)
    if img.dtype != np.uint8 or img.ndim not in (2, 3):
        raise ValueError(f"detect_faces expects a uint8 [H, W] or [H, W, 3] image, got "
                         f"{img.dtype} {list(img.shape)}")
    gray = img if img.ndim == 2 else (img[..., 0] if img.shape[2] == 1 else
                                      cv2.cvtColor(np.ascontiguousarray(img[..., :3]),
                                                   cv2.COLOR_RGB2GRAY))
    side = max(12, int(min_size * min(gray.shape)))
    found = _cascade().detectMultiScale(np.ascontiguousarray(gray), scaleFactor=1.1,
                                        minNeighbors=5, minSize=(side, side))
    if len(found) == 0:
        return np.zeros((0, 4))
    xywh = np.asarray(found, dtype=np.float64).reshape(-1, 4)
    boxes = np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], 1)
    return boxes[np.argsort(-(xywh[:, 2] * xywh[:, 3]), kind="stable")]


def iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Intersection over union of boxes ``a [N, 4]`` and ``b [M, 4]`` -> ``[N, M]``."""
    a, b = np.asarray(a, np.float64)[:, None], np.asarray(b, np.float64)[None]
    lo, hi = np.maximum(a[..., :2], b[..., :2]), np.minimum(a[..., 2:], b[..., 2:])
    inter = np.clip(hi - lo, 0, None).prod(-1)
    area = lambda x: (x[..., 2] - x[..., 0]) * (x[..., 3] - x[..., 1])
    return inter / (area(a) + area(b) - inter)


@dataclass(frozen=True)
class DetectorCalibration:
    """How a model's face box sits around the detector's box, measured on its training faces.

    Attributes:
        geometry: the model box relative to the detector box's corners (see module docstring).
        faces_tried, faces_matched: training faces run through the detector, and those with a
            detection of IoU >= :data:`MATCH_IOU` with their box (what the geometry is measured on).
        detector: which detector.
    """

    geometry: BoxGeometry
    faces_tried: int
    faces_matched: int
    detector: str = DETECTOR

    def to_dict(self) -> dict:
        return {"geometry": asdict(self.geometry), "faces_tried": self.faces_tried,
                "faces_matched": self.faces_matched, "detector": self.detector}

    @classmethod
    def from_dict(cls, d: dict) -> "DetectorCalibration":
        return cls(BoxGeometry(**d["geometry"]), int(d["faces_tried"]), int(d["faces_matched"]),
                   d.get("detector", DETECTOR))


def calibrate(images: Sequence[np.ndarray], boxes: np.ndarray,
              min_matched: int = 10) -> DetectorCalibration | None:
    """Measure a :class:`DetectorCalibration` on faces ``images`` (uint8 ``[H, W(, 3)]``, one
    face each) with their training boxes ``[N, 4]`` (median over the matched faces). None when
    fewer than ``min_matched`` faces are found (synthetic faces, say): the model then needs boxes.
    """
    dets, targets = [], []
    for img, box in zip(images, np.asarray(boxes, np.float64)):
        found = detect_faces(img)
        if len(found):
            overlap = iou(found, box[None])[:, 0]
            if overlap.max() >= MATCH_IOU:
                dets.append(found[overlap.argmax()])
                targets.append(box)
    if len(dets) < min_matched:
        return None
    corners = np.asarray(dets).reshape(-1, 2, 2)
    return DetectorCalibration(fit_box_geometry(corners, np.asarray(targets), side="mean",
                                                stat="median"), len(boxes), len(dets))


def calibrate_crops(crops, n: int = 300, seed: int = 0) -> DetectorCalibration | None:
    """:func:`calibrate` on a fixed random subset of ``n`` faces of a
    :class:`~lmklib.data.faces.FaceCrops` (their source images, decoded as RGB) against the
    boxes they were cropped with: their face boxes, or for crops of the whole image
    (``policy.box == "image"``) the image frame (:func:`~lmklib.data.geometry.frame_boxes`). None for faces without
    image files (synthetic, in memory)."""
    from .faces import fixed_subset
    from .sample import load_image

    if not crops.paths or not all(crops.paths) or not Path(crops.paths[0]).is_file():
        return None
    pick = fixed_subset(len(crops), n, seed)
    images = [load_image(crops.paths[i], "RGB").permute(1, 2, 0).numpy() for i in pick]
    if crops.policy is not None and crops.policy.box == "image":
        boxes = frame_boxes(crops.image_hw[pick].numpy())
    else:
        boxes = crops.boxes[pick].numpy()
    return calibrate(images, boxes)


def adapt(detections: np.ndarray, calibration: DetectorCalibration) -> np.ndarray:
    """The model's boxes ``[F, 4]`` for detector boxes ``[F, 4]`` (see :func:`calibrate`)."""
    d = np.asarray(detections, np.float64).reshape(-1, 2, 2)
    return boxes_from_points(d, calibration.geometry).reshape(-1, 4)


__all__ = ["DETECTOR", "DetectorCalibration", "adapt", "calibrate", "calibrate_crops",
           "detect_faces", "iou"]
