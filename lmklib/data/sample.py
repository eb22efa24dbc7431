"""The one sample contract every lmklib dataset returns, and the checks that guard it.

A sample is a plain ``dict``:

=============  ==========================  ==================================================
key            type / shape                meaning
=============  ==========================  ==================================================
``image``      ``uint8`` tensor [C, H, W]  C = 1 (grayscale) or 3 (RGB)
``landmarks``  ``float32`` tensor [K, 2]   (x, y) pixels, 0-based, pixel centres at integers;
                                           NaN where the point is not annotated
``mask``       ``bool`` tensor [K]         True where the point is annotated (finite)
``visible``    ``bool`` tensor [K]         True where annotated and not occluded
``box``        ``float32`` tensor [4]      face box (x0, y0, x1, y1) in pixels
``meta``       ``dict``                    ``path``, ``index``, and dataset extras (pose, ...)
=============  ==========================  ==================================================

Loaders parse and validate every annotation in ``__init__`` (so a bad file fails at once with the
file and line named) and decode images lazily in ``__getitem__``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from .geometry import boxes_from_points


class AnnotationError(ValueError):
    """A malformed annotation: the message names the file, the line (when known) and what was
    expected."""

    def __init__(self, path: str | os.PathLike, problem: str, line: int | None = None):
        where = f"{path}" + (f", line {line}" if line is not None else "")
        super().__init__(f"{where}: {problem}")
        self.path, self.line, self.problem = str(path), line, problem


def check_points(points: np.ndarray, k: int, path: str | os.PathLike, line: int | None = None,
                 allow_nan: bool = False) -> np.ndarray:
    """Validate a ``[K, 2]`` point array: the count, and finiteness unless ``allow_nan``.

    Returns the points as float64. Raises :class:`AnnotationError` naming file and line.
    """
    p = np.asarray(points, dtype=np.float64)
    if p.ndim != 2 or p.shape[1] != 2:
        raise AnnotationError(path, f"expected points of shape [{k}, 2], got {list(p.shape)}", line)
    if p.shape[0] != k:
        raise AnnotationError(path, f"expected {k} points, found {p.shape[0]}", line)
    bad = ~np.isfinite(p)
    if bad.any() and not (allow_nan and np.isnan(p[bad]).all()):
        i = int(np.argwhere(bad)[0, 0])
        raise AnnotationError(path, f"point {i} has a non-finite coordinate {p[i].tolist()}", line)
    return p


def parse_floats(tokens: Sequence[str], path: str | os.PathLike, line: int | None) -> np.ndarray:
    """Parse tokens as floats, or raise :class:`AnnotationError` naming the bad token."""
    try:
        return np.array([float(t) for t in tokens], dtype=np.float64)
    except ValueError as e:
        raise AnnotationError(path, f"not a number: {e}", line) from None


def load_image(path: str | os.PathLike, mode: str | None = None) -> torch.Tensor:
    """Decode an image file to a ``uint8`` tensor ``[C, H, W]``.

    Args:
        path: any format Pillow reads (jpg, png, pgm, ppm, bmp, ...).
        mode: ``"L"`` for grayscale (C=1), ``"RGB"`` (C=3), or ``None`` to keep the file's own
            (palette/alpha images become RGB, 16-bit become 8-bit L).
    Raises:
        FileNotFoundError: the file does not exist (the path is named).
        ValueError: the file is not a decodable image (the path is named).
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"image not found: {path}")
    try:
        with Image.open(path) as im:
            im.load()
            if mode is None:
                mode = "L" if im.mode in ("L", "I", "I;16", "1") else "RGB"
            im = im.convert(mode)
            arr = np.array(im, dtype=np.uint8)  # a writable copy: torch warns on read-only arrays
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"{path}: cannot decode image ({e})") from None
    if arr.ndim == 2:
        arr = arr[:, :, None]
    return torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))


@dataclass
class Record:
    """One parsed annotation; the image is decoded only when the sample is requested."""

    image_path: Path
    landmarks: np.ndarray                 # [K, 2] float64, NaN where missing
    box: np.ndarray | None = None         # (x0, y0, x1, y1); None -> tight box of the points
    visible: np.ndarray | None = None     # [K] bool; None -> all annotated points visible
    meta: dict[str, Any] = field(default_factory=dict)
    image: np.ndarray | None = None       # in-memory image [H, W] or [H, W, C] uint8 (CSV formats)


def make_sample(image: torch.Tensor, landmarks: np.ndarray, box: np.ndarray | None = None,
                visible: np.ndarray | None = None, meta: dict | None = None) -> dict:
    """Assemble a sample dict following the contract above."""
    lm = np.asarray(landmarks, dtype=np.float64)
    mask = np.isfinite(lm).all(axis=1)
    vis = mask.copy() if visible is None else (np.asarray(visible, dtype=bool) & mask)
    b = boxes_from_points(lm) if box is None else np.asarray(box, dtype=np.float64)
    return {
        "image": image,
        "landmarks": torch.as_tensor(lm, dtype=torch.float32),
        "mask": torch.as_tensor(mask),
        "visible": torch.as_tensor(vis),
        "box": torch.as_tensor(b, dtype=torch.float32),
        "meta": dict(meta or {}),
    }


class LandmarkDataset(Dataset):
    """Base class: a list of :class:`Record` s, decoded lazily, with an optional transform.

    Subclasses parse their annotation files into ``self.records`` in ``__init__`` and set
    ``self.scheme``. ``transform`` is a callable ``sample -> sample``.
    """

    scheme = None
    image_mode: str | None = None

    def __init__(self, records: list[Record], transform: Callable[[dict], dict] | None = None):
        self.records = records
        self.transform = transform

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict:
        r = self.records[index]
        if r.image is not None:
            arr = r.image if r.image.ndim == 3 else r.image[:, :, None]
            image = torch.from_numpy(np.ascontiguousarray(arr.transpose(2, 0, 1)))
        else:
            image = load_image(r.image_path, self.image_mode)
        meta = {"path": str(r.image_path), "index": index,
                "image_hw": [int(image.shape[-2]), int(image.shape[-1])], **r.meta}
        sample = make_sample(image, r.landmarks, r.box, r.visible, meta)
        return self.transform(sample) if self.transform is not None else sample

    def landmarks_array(self) -> np.ndarray:
        """All annotations as one ``[N, K, 2]`` float64 array (no image decoding)."""
        return np.stack([r.landmarks for r in self.records]) if self.records else np.zeros((0, 0, 2))

    def boxes_array(self) -> np.ndarray:
        """All face boxes ``[N, 4]`` (tight point boxes where the format has none)."""
        return np.stack([r.box if r.box is not None else boxes_from_points(r.landmarks)
                         for r in self.records]) if self.records else np.zeros((0, 4))

    def extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        lines = [f"{type(self).__name__}", f"    Number of samples: {len(self)}"]
        if self.scheme is not None:
            lines.append(f"    Scheme: {self.scheme.name} ({self.scheme.num_points} points)")
        extra = self.extra_repr()
        if extra:
            lines += ["    " + ln for ln in extra.splitlines()]
        return "\n".join(lines)
