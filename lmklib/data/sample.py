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
file and line named) and decode images lazily in ``__getitem__``. The checks every loader shares
live here, one implementation each: :func:`open_text` / :func:`read_text` (UTF-8 text, the line of
a bad byte named), :func:`parse_floats`, :func:`check_points`, :func:`numeric_array` (a MATLAB
variable that must be a matrix), :func:`resolve_in_root` (an image path from a list must stay in
the data root) and :func:`check_in_image` (points and boxes at most :data:`OUTSIDE_TOLERANCE`
outside their image, whose size :func:`image_size` reads from the file header).
"""

from __future__ import annotations

import os
import struct
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path, PureWindowsPath
from typing import Any, Callable, Iterator, Sequence, TextIO

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


def _first_bad_utf8(path: Path) -> tuple[int, int, int] | None:
    """``(line, column, byte)`` of the first byte of ``path`` that is not UTF-8, or None."""
    data = path.read_bytes()
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as e:
        start = data.rfind(b"\n", 0, e.start) + 1
        return data.count(b"\n", 0, e.start) + 1, e.start - start + 1, data[e.start]
    return None


@contextmanager
def open_text(path: str | os.PathLike, newline: str | None = None) -> Iterator[TextIO]:
    """Open an annotation file as UTF-8 text, for reading.

    A UTF-8 byte-order mark at the start is decoded away (``utf-8-sig``: Windows editors write
    one, and it would otherwise stick to the first token). Text that is not UTF-8 raises
    :class:`AnnotationError` naming the file, the line and column of the first bad byte (when the
    file is read inside the ``with`` block); UTF-16 text (its byte-order mark) fails at once.
    ``newline`` as for :func:`open` (``""`` for :mod:`csv`).
    """
    path = Path(path)
    with open(path, "rb") as f:
        head = f.read(2)
    if head in (b"\xff\xfe", b"\xfe\xff"):
        raise AnnotationError(path, "UTF-16 text (it starts with a UTF-16 byte-order mark); "
                              "expected UTF-8: save the file as UTF-8", 1)
    f = open(path, encoding="utf-8-sig", newline=newline)
    try:
        yield f
    except UnicodeDecodeError:
        bad = _first_bad_utf8(path)
        if bad is None:  # raised by something else read in the block
            raise
        line, column, byte = bad
        raise AnnotationError(path, f"not UTF-8 text: byte 0x{byte:02x} at column {column} "
                              "(expected UTF-8; was the file saved as Latin-1 or cp1252?)",
                              line) from None
    finally:
        f.close()


def read_text(path: str | os.PathLike) -> str:
    """The whole of an annotation file as text, decoded as :func:`open_text` does."""
    with open_text(path) as f:
        return f.read()


def numeric_array(value: Any, path: str | os.PathLike, name: str, expected: str) -> np.ndarray:
    """A variable read from a MATLAB (or HDF5) file as float64; a cell, struct, char array or
    complex matrix raises :class:`AnnotationError` naming the file, the variable and
    ``expected`` (e.g. ``"a numeric 3x68 matrix"``)."""
    a = np.asarray(value)
    if a.dtype.kind not in "biuf":
        kind = {"O": "cell array (or object references)", "U": "char array", "S": "char array",
                "V": "struct", "c": "complex matrix"}.get(a.dtype.kind, f"{a.dtype} array")
        raise AnnotationError(path, f"{name}: expected {expected}, got a {kind} of shape "
                              f"{list(a.shape)}")
    return a.astype(np.float64)


def resolve_in_root(root: str | os.PathLike, name: str, path: str | os.PathLike,
                    line: int | None = None) -> Path:
    """``root / name`` for an image path ``name`` read from the annotation file ``path``.

    ``name`` may use Windows (``\\``) or POSIX separators. A path that leaves ``root`` (a leading
    ``/`` or ``\\``, a drive such as ``C:``, or ``..`` above the root, as in ``../x.jpg``) raises
    :class:`AnnotationError` with the file and line: list files name images inside the data
    root, and following one out of it would read files the dataset does not hold. The check is
    on the text (symlinks inside the root are followed as usual).
    """
    if ".." not in name and ":" not in name and not name.startswith(("/", "\\")):
        return Path(root) / name.replace("\\", "/")  # the usual case, 20x faster
    parts = PureWindowsPath(name).parts
    depth = 0
    for part in parts:
        depth += -1 if part == ".." else 1
        if depth < 0:
            break
    if not parts or PureWindowsPath(name).anchor or depth < 0:
        raise AnnotationError(path, f"image path {name!r} leaves the data root {root} (expected a "
                              "path relative to it: no leading '/' or drive, no '..' above it)",
                              line)
    return Path(root).joinpath(*parts)


_JPEG_SOF = {0xC0, 0xC1, 0xC2, 0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg_size(f) -> tuple[int, int] | None:
    """(height, width) from a JPEG's frame header, reading only its markers; None if the stream
    does not parse (then Pillow decides)."""
    if f.read(2) != b"\xff\xd8":
        return None
    while True:
        b = f.read(1)
        while b and b != b"\xff":
            b = f.read(1)
        while b == b"\xff":
            b = f.read(1)
        if not b:
            return None
        marker = b[0]
        if marker in (0x01, 0xD8) or 0xD0 <= marker <= 0xD7:  # markers without a length
            continue
        head = f.read(2)
        if len(head) < 2:
            return None
        length = struct.unpack(">H", head)[0]
        if marker in _JPEG_SOF:
            frame = f.read(5)
            return struct.unpack(">xHH", frame) if len(frame) == 5 else None
        f.seek(length - 2, 1)


def image_size(path: str | os.PathLike, source: str | os.PathLike | None = None,
               line: int | None = None) -> tuple[int, int]:
    """``(height, width)`` of an image file from its header, without decoding the pixels (about
    15 us a JPEG: its markers are read directly; other formats through Pillow's lazy open).
    ``source`` / ``line``: the annotation that names the image, for the not-found message.

    Raises:
        FileNotFoundError: the file does not exist (the path is named, after ``source, line``).
        ValueError: the file is not a readable image (the path is named).
    """
    from PIL import Image, UnidentifiedImageError

    try:
        f = open(path, "rb")
    except FileNotFoundError:
        where = "" if source is None else f"{source}, line {line}: " if line else f"{source}: "
        raise FileNotFoundError(f"{where}image not found: {path}") from None
    with f:
        hw = _jpeg_size(f)
    if hw is not None and min(hw) > 0:
        return int(hw[0]), int(hw[1])
    try:
        with Image.open(path) as im:
            return int(im.size[1]), int(im.size[0])
    except (UnidentifiedImageError, OSError, SyntaxError) as e:
        raise ValueError(f"{path}: cannot read the image header ({e})") from None


#: How far outside its image a point or a box corner may lie: a fraction of the image's width
#: (for x) or height (for y) beyond its edges, so x in [-0.5 W, 1.5 W] and y in [-0.5 H, 1.5 H].
#: Faces cut by the frame put some points and box corners a little outside (the CUHK boxes,
#: profile faces of AFLW2000-3D); coordinates half an image or more away belong to another frame
#: (the points of a resized or cropped copy, x and y swapped, another image's line).
OUTSIDE_TOLERANCE = 0.5


def outside_fraction(points: np.ndarray, image_hw: Sequence[int]) -> np.ndarray:
    """How far each point ``[..., 2]`` lies outside a ``(height, width)`` image, in image sizes:
    ``max(dx / W, dy / H)`` with ``dx``, ``dy`` the distances beyond the edges ``[0, W] x [0, H]``
    (0 inside; NaN where a point is missing)."""
    p = np.asarray(points, dtype=np.float64)
    h, w = float(image_hw[0]), float(image_hw[1])
    size = np.array([w, h])
    beyond = np.maximum(np.maximum(-p, p - size), 0.0) / size
    out = beyond.max(axis=-1)
    return np.where(np.isfinite(p).all(axis=-1), out, np.nan)


def check_in_image(points: np.ndarray | None, box: np.ndarray | None, image_hw: Sequence[int],
                   path: str | os.PathLike, line: int | Sequence[int] | None = None,
                   image: str | os.PathLike | None = None, label: str = "",
                   tolerance: float = OUTSIDE_TOLERANCE) -> None:
    """Reject points ``[K, 2]`` or a box ``(x0, y0, x1, y1)`` more than ``tolerance`` image
    sizes outside their ``(height, width)`` image (:data:`OUTSIDE_TOLERANCE`; missing points are
    skipped). ``line``: the annotation's line, or one line per point (a ``.pts`` file);
    ``image``: its name for the message; ``label``: what precedes "point 3" there (``"face 2: "``,
    ``"pt3d_68 "``).

    Raises:
        AnnotationError: naming the annotation file, the line, the point (or box corner), how
            far outside it lies and the image.
    """
    h, w = int(image_hw[0]), int(image_hw[1])
    for kind, p in (("point", points), ("box corner", box)):
        if p is None:
            continue
        p = np.asarray(p, dtype=np.float64).reshape(-1, 2)
        frac = outside_fraction(p, (h, w))
        bad = frac > tolerance  # False for NaN: missing points pass
        if bad.any():
            i = int(np.argmax(bad))
            where = f" {image}" if image is not None else ""
            at = line if not isinstance(line, Sequence) else line[i] if kind == "point" else None
            raise AnnotationError(path, f"{label}{kind} {i} at ({p[i, 0]:g}, {p[i, 1]:g}) lies "
                                  f"{frac[i]:.2f} image sizes outside the {w}x{h} image{where} "
                                  f"(at most {tolerance:g} allowed: are these coordinates of "
                                  "another frame?)", at)


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
