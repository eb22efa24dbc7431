"""Kaggle Facial Keypoints Detection (2013): 96x96 grayscale faces with 15 keypoints.

Layout under ``root`` (the files of https://www.kaggle.com/c/facial-keypoints-detection/data)::

    training.csv        7,049 rows: 30 coordinate columns, then ``Image``
    test.csv            1,783 rows: ``ImageId,Image``
    IdLookupTable.csv   27,124 rows: ``RowId,ImageId,FeatureName,Location`` (Location empty)

``Image`` holds the 96*96 = 9,216 pixel values (0-255) of one image, row-major, separated by
spaces. The coordinate columns are ``left_eye_center_x, left_eye_center_y, ...`` (see
:data:`lmklib.data.schemes.KAGGLE15_COLUMNS`); "left" is the *subject's* left (image right). An empty
cell is a missing keypoint (only 2,140 training rows have all 15): it becomes NaN with
``mask = False``. Coordinates are pixels, used as given (0-based, as the competition scores them).

A submission is ``RowId,Location``: one row per row of ``IdLookupTable.csv``
(:func:`write_submission`). :func:`write_kaggle_csv` writes arrays back in the training/test CSV
format, e.g. to build a Kaggle-style set from other faces.
"""

from __future__ import annotations

import csv
import io
import os
import warnings
from pathlib import Path
from typing import Callable

import numpy as np

from ..sample import AnnotationError, LandmarkDataset, Record, check_in_image, open_text
from ..schemes import KAGGLE15, KAGGLE15_COLUMNS

SPLITS = {"train": "training.csv", "test": "test.csv"}
EXPECTED_COUNTS = {"train": 7049, "test": 1783, "complete": 2140, "lookup_rows": 27124}
IMAGE_SIZE = 96
LOOKUP_FILE = "IdLookupTable.csv"
HOW_TO_GET = ("Download training.csv, test.csv and IdLookupTable.csv from "
              "https://www.kaggle.com/c/facial-keypoints-detection/data (Kaggle account needed) "
              "and put them in that folder.")
_FEATURE_INDEX = {c: (i // 2, i % 2) for i, c in enumerate(KAGGLE15_COLUMNS)}


def _parse_image(text: str, path: Path, line: int, size: int) -> np.ndarray:
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # a bad token: handled below
            fast = np.fromstring(text, dtype=np.int64, sep=" ")  # C parser: ~10x faster than split
    except ValueError:
        fast = np.zeros(0, dtype=np.int64)
    if fast.size == size * size:  # numpy raises on any token it cannot read
        if fast.min(initial=0) < 0 or fast.max(initial=0) > 255:
            raise AnnotationError(path, "Image: pixel values must be integers in 0..255", line)
        return fast.astype(np.uint8).reshape(size, size)
    tokens = text.split()  # slow path: say exactly what is wrong
    if len(tokens) != size * size:
        raise AnnotationError(path, f"Image has {len(tokens)} pixel values, expected "
                              f"{size}*{size} = {size * size}", line)
    try:
        values = np.array(tokens, dtype=np.float64)
    except ValueError as e:
        raise AnnotationError(path, f"Image: not a number ({e})", line) from None
    if not (np.isfinite(values).all() and (values >= 0).all() and (values <= 255).all()
            and (values == np.round(values)).all()):
        raise AnnotationError(path, "Image: pixel values must be integers in 0..255", line)
    return values.astype(np.uint8).reshape(size, size)


def read_kaggle_csv(path: str | os.PathLike, image_size: int = IMAGE_SIZE
                    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Read ``training.csv`` or ``test.csv``.

    Returns:
        ``(image_ids [N] int, images [N, S, S] uint8, landmarks [N, 15, 2] float64)``; ids are
        1-based (test.csv's ``ImageId``; the row number for training.csv); landmarks are all NaN
        for test.csv and NaN where a training cell is empty.
    Raises:
        FileNotFoundError; AnnotationError naming the file, the line and what was expected
        (also for text that is not UTF-8, and keypoints far outside the image).
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Kaggle CSV not found: {path}. {HOW_TO_GET}")
    with open_text(path, newline="") as f:
        rows = csv.reader(f)
        header = next(rows, None)
        if header is None:
            raise AnnotationError(path, "empty file, expected a header line", 1)
        header = [h.strip() for h in header]
        if header == [*KAGGLE15_COLUMNS, "Image"]:
            labelled = True
        elif header == ["ImageId", "Image"]:
            labelled = False
        else:
            raise AnnotationError(path, "unexpected header: expected the 30 keypoint columns "
                                  "(left_eye_center_x, ...) then Image, or ImageId,Image; got "
                                  f"{header[:3]}... ({len(header)} columns)", 1)
        ids, images, landmarks = [], [], []
        for line, row in enumerate(rows, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise AnnotationError(path, f"expected {len(header)} comma-separated fields, "
                                      f"found {len(row)}", line)
            images.append(_parse_image(row[-1], path, line, image_size))
            pts = np.full((15, 2), np.nan)
            if labelled:
                for j, cell in enumerate(row[:30]):
                    cell = cell.strip()
                    if cell == "":
                        continue
                    try:
                        v = float(cell)
                    except ValueError:
                        raise AnnotationError(path, f"{KAGGLE15_COLUMNS[j]}: not a number "
                                              f"{cell!r}", line) from None
                    if not np.isfinite(v):
                        raise AnnotationError(path, f"{KAGGLE15_COLUMNS[j]}: non-finite "
                                              f"coordinate {cell!r} (leave the cell empty for a "
                                              "missing keypoint)", line)
                    pts[j // 2, j % 2] = v
                half = np.isnan(pts).any(axis=1) & ~np.isnan(pts).all(axis=1)
                if half.any():
                    k = int(np.argmax(half))
                    raise AnnotationError(path, f"keypoint {KAGGLE15.names[k]} has one coordinate "
                                          "but not the other (expected both or neither)", line)
                check_in_image(pts, None, (image_size, image_size), path, line)
                ids.append(len(ids) + 1)
            else:
                try:
                    ids.append(int(row[0]))
                except ValueError:
                    raise AnnotationError(path, f"ImageId: not an integer {row[0]!r}", line) from None
            landmarks.append(pts)
    n = len(images)
    return (np.array(ids, dtype=np.int64),
            np.stack(images) if n else np.zeros((0, image_size, image_size), np.uint8),
            np.stack(landmarks) if n else np.zeros((0, 15, 2)))


def _fmt(v: float) -> str:
    return "" if not np.isfinite(v) else repr(float(v))


def write_kaggle_csv(path: str | os.PathLike, images: np.ndarray,
                     landmarks: np.ndarray | None = None,
                     image_ids: np.ndarray | None = None) -> None:
    """Write images (and keypoints) in the Kaggle CSV format, atomically.

    Args:
        images: ``[N, S, S]`` (or ``[N, S, S, 1]``) uint8 grayscale; Kaggle's own are 96x96.
        landmarks: ``[N, 15, 2]`` 0-based pixels in :data:`KAGGLE15` order, NaN = missing (empty
            cell): writes the ``training.csv`` format. ``None`` writes the ``test.csv`` format.
        image_ids: the test ``ImageId`` s (default ``1..N``); unused for training files.
    """
    from ...reports import atomic_write_text

    imgs = np.asarray(images)
    if imgs.ndim == 4 and imgs.shape[-1] == 1:
        imgs = imgs[..., 0]
    if imgs.ndim != 3 or imgs.shape[1] != imgs.shape[2] or imgs.dtype != np.uint8:
        raise ValueError(f"images must be uint8 [N, S, S] grayscale, got {imgs.dtype} "
                         f"{list(imgs.shape)}")
    out = io.StringIO()
    w = csv.writer(out, lineterminator="\n")
    if landmarks is not None:
        lm = np.asarray(landmarks, dtype=np.float64)
        if lm.shape != (len(imgs), 15, 2):
            raise ValueError(f"landmarks must be [{len(imgs)}, 15, 2], got {list(lm.shape)}")
        if np.isinf(lm).any():
            raise ValueError("landmarks contain inf; use NaN for a missing keypoint")
        w.writerow([*KAGGLE15_COLUMNS, "Image"])
        for img, pts in zip(imgs, lm):
            w.writerow([_fmt(v) for v in pts.reshape(-1)] + [" ".join(map(str, img.reshape(-1)))])
    else:
        ids = np.arange(1, len(imgs) + 1) if image_ids is None else np.asarray(image_ids)
        w.writerow(["ImageId", "Image"])
        for i, img in zip(ids, imgs):
            w.writerow([int(i), " ".join(map(str, img.reshape(-1)))])
    atomic_write_text(Path(path), out.getvalue())


def read_id_lookup(path: str | os.PathLike) -> list[tuple[int, int, str]]:
    """``IdLookupTable.csv`` as ``(RowId, ImageId, FeatureName)`` tuples (file order)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"Kaggle lookup table not found: {path}. {HOW_TO_GET}")
    out = []
    with open_text(path, newline="") as f:
        rows = csv.reader(f)
        header = [h.strip() for h in next(rows, [])]
        if header[:3] != ["RowId", "ImageId", "FeatureName"]:
            raise AnnotationError(path, "expected the header RowId,ImageId,FeatureName,Location, "
                                  f"got {','.join(header)!r}", 1)
        for line, row in enumerate(rows, start=2):
            if not row:
                continue
            if len(row) < 3 or row[2] not in _FEATURE_INDEX:
                raise AnnotationError(path, f"expected RowId,ImageId,FeatureName with a known "
                                      f"feature (e.g. nose_tip_x), got {row!r}", line)
            try:
                out.append((int(row[0]), int(row[1]), row[2]))
            except ValueError:
                raise AnnotationError(path, f"RowId and ImageId must be integers, got {row[:2]}",
                                      line) from None
    return out


def write_id_lookup(path: str | os.PathLike, requests: list[tuple[int, str]]) -> None:
    """Write an ``IdLookupTable.csv`` asking for ``(ImageId, FeatureName)`` pairs (RowId 1..)."""
    from ...reports import atomic_write_text

    lines = ["RowId,ImageId,FeatureName,Location"]
    lines += [f"{r},{i},{name}," for r, (i, name) in enumerate(requests, start=1)]
    atomic_write_text(Path(path), "\n".join(lines) + "\n")


def write_submission(path: str | os.PathLike, predictions: np.ndarray,
                     lookup_file: str | os.PathLike, image_ids: np.ndarray | None = None,
                     clip: bool = True) -> int:
    """Write a Kaggle submission ``RowId,Location`` for every row of the lookup table.

    Args:
        predictions: ``[N, 15, 2]`` pixel coordinates for the test images, in test.csv order.
        image_ids: the ``ImageId`` of each prediction row (default ``1..N``, as in test.csv).
        clip: clip locations to ``[0, 96]`` as the competition expected.
    Returns:
        The number of rows written.
    Raises:
        ValueError: a requested image has no prediction, or a requested value is not finite.
    """
    from ...reports import atomic_write_text

    pred = np.asarray(predictions, dtype=np.float64)
    if pred.ndim != 3 or pred.shape[1:] != (15, 2):
        raise ValueError(f"predictions must be [N, 15, 2], got {list(pred.shape)}")
    ids = np.arange(1, len(pred) + 1) if image_ids is None else np.asarray(image_ids)
    row_of = {int(i): r for r, i in enumerate(ids)}
    lines = ["RowId,Location"]
    for row_id, image_id, feature in read_id_lookup(lookup_file):
        if image_id not in row_of:
            raise ValueError(f"{lookup_file}: RowId {row_id} asks for ImageId {image_id}, which "
                             f"has no prediction (ids given: {ids.min()}..{ids.max()})")
        k, c = _FEATURE_INDEX[feature]
        v = float(pred[row_of[image_id], k, c])
        if not np.isfinite(v):
            raise ValueError(f"prediction for ImageId {image_id} {feature} is not finite ({v})")
        if clip:
            v = min(max(v, 0.0), float(IMAGE_SIZE))
        lines.append(f"{row_id},{v!r}")
    atomic_write_text(Path(path), "\n".join(lines) + "\n")
    return len(lines) - 1


def read_submission(path: str | os.PathLike, lookup_file: str | os.PathLike,
                    n_images: int | None = None) -> np.ndarray:
    """Read a submission back into ``[N, 15, 2]`` (NaN where the lookup table asked nothing).

    Rows follow ImageId ``1..N``; ``N`` defaults to the largest ImageId in the lookup table.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"submission not found: {path}")
    lookup = {r: (i, name) for r, i, name in read_id_lookup(lookup_file)}
    n = n_images if n_images is not None else max((i for i, _ in lookup.values()), default=0)
    out = np.full((n, 15, 2), np.nan)
    with open_text(path, newline="") as f:
        rows = csv.reader(f)
        if [h.strip() for h in next(rows, [])] != ["RowId", "Location"]:
            raise AnnotationError(path, "expected the header RowId,Location", 1)
        for line, row in enumerate(rows, start=2):
            if not row:
                continue
            try:
                row_id, value = int(row[0]), float(row[1])
            except (ValueError, IndexError):
                raise AnnotationError(path, f"expected RowId,Location numbers, got {row!r}",
                                      line) from None
            if row_id not in lookup:
                raise AnnotationError(path, f"RowId {row_id} is not in {lookup_file}", line)
            image_id, feature = lookup[row_id]
            k, c = _FEATURE_INDEX[feature]
            out[image_id - 1, k, c] = value
    return out


class KaggleFacialKeypoints(LandmarkDataset):
    """The Kaggle Facial Keypoints set (15 points, 96x96 grayscale, images held in memory).

    Args:
        root: folder with ``training.csv`` / ``test.csv`` (and ``IdLookupTable.csv``).
        split: ``"train"`` (7,049 rows) or ``"test"`` (1,783 rows, no keypoints: all NaN).
        complete_only: keep only rows with all 15 keypoints (2,140 of the training rows).
        transform: callable ``sample -> sample``.

    Samples: ``image`` uint8 ``[1, 96, 96]``; ``box`` the whole image ``(0, 0, 96, 96)``;
    ``meta["image_id"]`` the 1-based ImageId (test) or row number (train).
    """

    scheme = KAGGLE15
    image_mode = "L"

    def __init__(self, root: str | os.PathLike, split: str = "train",
                 transform: Callable[[dict], dict] | None = None, complete_only: bool = False):
        if split not in SPLITS:
            raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
        self.root, self.split = Path(root), split
        path = self.root / SPLITS[split]
        if not path.is_file():
            raise FileNotFoundError(f"Kaggle Facial Keypoints file not found: {path}. {HOW_TO_GET}")
        ids, images, landmarks = read_kaggle_csv(path)
        self.image_ids = ids
        s = images.shape[-1]
        box = np.array([0.0, 0.0, s, s])
        records = [Record(path, lm, box.copy(), image=img, meta={"image_id": int(i)})
                   for i, img, lm in zip(ids, images, landmarks)
                   if not complete_only or np.isfinite(lm).all()]
        super().__init__(records, transform)

    def images_array(self) -> np.ndarray:
        """All images ``[N, 96, 96]`` uint8 (already in memory)."""
        return np.stack([r.image for r in self.records]) if self.records else np.zeros((0, 96, 96),
                                                                                        np.uint8)

    def extra_repr(self) -> str:
        return f"Root: {self.root}\nSplit: {self.split}"
