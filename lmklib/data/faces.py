"""The one in-memory face-tensor set: face crops, their points, and the way back to the image.

Every paper trains and scores on a :class:`FaceCrops`: ``N`` faces cropped (or resized) to one
``S x S`` size, as tensors, with everything needed to map a prediction back to the original
image and score it there. It is built from any :class:`~lmklib.data.sample.LandmarkDataset` by
:func:`load_face_crops` under a :class:`CropPolicy` (where the box comes from, how much margin,
what size, gray or colour, which resampler), decoded once and cached on disk through
:class:`~lmklib.data.cache.CachedDataset` (rebuilt when an image, an annotation, the crop
policy or the decoding code changes).

Conventions: points are ``(x, y)`` pixels, 0-based, pixel centres at integers (see
:mod:`lmklib.data.geometry`); ``affines[i]`` maps original-image pixels of face ``i`` to its
crop's pixels, so ``points == apply_affine(gt, affines)`` up to float32 rounding.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Sequence

import numpy as np
import torch

from .geometry import BoxGeometry, apply_affine, box_affine, boxes_from_points, invert_affine

BOX_SOURCES = ("data", "points", "points_if_missing", "image")
RESAMPLERS = ("torch", "pil")
PADDINGS = ("zeros", "border", "reflection")


@dataclass(frozen=True)
class CropPolicy:
    """How faces become ``size x size`` crops.

    Attributes:
        size: output side, pixels.
        mode: ``"L"`` (1 channel) or ``"RGB"`` (3 channels).
        box: where the crop's box comes from: ``"data"`` (the dataset's own boxes; a tight box
            of the points where it has none), ``"points"`` (every box placed on the points with
            ``geometry``, :func:`~lmklib.data.geometry.boxes_from_points`), ``"points_if_missing"``
            (only the faces without a box) or ``"image"`` (the whole image, resized).
        geometry: the :class:`~lmklib.data.geometry.BoxGeometry` of the ``points`` sources.
        scale: the crop covers ``scale`` times the box about its centre (a margin ``m`` on each
            side is ``scale = 1 + 2 m``).
        square: make the box square (its longer side) before scaling.
        resample: ``"torch"`` (:func:`~lmklib.data.geometry.warp_affine`, antialiased) or
            ``"pil"`` (Pillow: integer pre-shrink, then bilinear, as the CCNN crops are made).
        padding: what ``"torch"`` reads outside the image: ``"zeros"`` (black), ``"border"``
            (the edge pixel repeated) or ``"reflection"``.
        prescale: ``"torch"`` only: shrink the whole image by this fixed factor first (an
            antialiased resize to ``round(H / prescale) x round(W / prescale)``), then crop,
            antialiasing again only where more than 1.5x of shrink is left; None: each face's
            own antialiasing. :func:`~lmklib.data.geometry.crop_batch` shrinks a whole batch
            once, by its smallest face's factor (:func:`~lmklib.data.geometry.antialias_prescale`):
            that factor here cuts each face alone as its batch did (for faces within 1.5x of
            the smallest).
    """

    size: int
    mode: str = "RGB"
    box: str = "data"
    geometry: BoxGeometry | None = None
    scale: float = 1.0
    square: bool = True
    resample: str = "torch"
    padding: str = "zeros"
    prescale: float | None = None

    def __post_init__(self):
        if self.mode not in ("L", "RGB"):
            raise ValueError(f"mode must be 'L' or 'RGB', got {self.mode!r}")
        if self.box not in BOX_SOURCES:
            raise ValueError(f"box must be one of {BOX_SOURCES}, got {self.box!r}")
        if self.box.startswith("points") and self.geometry is None:
            raise ValueError(f"box={self.box!r} needs a BoxGeometry (geometry=...)")
        if self.resample not in RESAMPLERS:
            raise ValueError(f"resample must be one of {RESAMPLERS}, got {self.resample!r}")
        if self.padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {self.padding!r}")
        if self.resample == "pil" and (self.padding != "zeros" or self.prescale is not None):
            raise ValueError("resample='pil' pads with zeros and shrinks by its own rule: "
                             "padding and prescale need resample='torch'")
        if self.prescale is not None and not self.prescale > 1:
            raise ValueError(f"prescale must be None or > 1 (a shrink), got {self.prescale!r}")

    def pre_transform(self):
        """The deterministic crop that the cache runs once per face."""
        from .transforms import CropToBox, Resize

        if self.box == "image":
            return Resize(self.size)
        return CropToBox(self.size, scale=self.scale, square=self.square, backend=self.resample,
                         padding=self.padding, prescale=self.prescale)


@dataclass
class FaceCrops:
    """Faces cropped to one size, as tensors.

    Attributes:
        images: uint8 ``[N, C, S, S]``.
        points: float32 ``[N, K, 2]`` crop pixels; NaN where a point is missing.
        mask: bool ``[N, K]``, True where annotated.
        affines: float64 ``[N, 2, 3]``, original image -> crop.
        gt: float64 ``[N, K, 2]`` the annotation in original-image pixels (what is scored).
        boxes: float64 ``[N, 4]`` the face boxes ``(x0, y0, x1, y1)`` in original pixels: the
            box that was cropped (before ``policy.scale`` and ``square``); for ``box="image"``
            the dataset's own face box.
        image_hw: int64 ``[N, 2]`` original image (height, width).
        name: what the faces are, for tables and reports (``"CUHK 5-point test"``, ...).
        paths: the source image of each face.
        policy: the :class:`CropPolicy` they were made with (None for hand-built sets).
        scheme: the landmark scheme name (``"cuhk5"``, ``"ibug68"``, ...).
        note: a caveat for the report (``"synthetic faces: ..."``).
    """

    images: torch.Tensor
    points: torch.Tensor
    mask: torch.Tensor
    affines: torch.Tensor
    gt: torch.Tensor
    boxes: torch.Tensor
    image_hw: torch.Tensor
    name: str = ""
    paths: list[str] = field(default_factory=list)
    policy: CropPolicy | None = None
    scheme: str | None = None
    note: str = ""

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def size(self) -> int:
        return int(self.images.shape[-1])

    def subset(self, index: Sequence[int] | np.ndarray | torch.Tensor) -> "FaceCrops":
        """The faces ``index`` (a copy of the tensors; same policy, name and note)."""
        idx = torch.as_tensor(np.asarray(index), dtype=torch.long).reshape(-1)
        pick = idx.tolist()
        return replace(self, images=self.images[idx], points=self.points[idx],
                       mask=self.mask[idx], affines=self.affines[idx], gt=self.gt[idx],
                       boxes=self.boxes[idx], image_hw=self.image_hw[idx],
                       paths=[self.paths[i] for i in pick] if self.paths else [])

    def to_image(self, points) -> np.ndarray:
        """Crop-pixel points ``[N, K, 2]`` -> original-image pixels (float64 numpy)."""
        p = np.asarray(points, dtype=np.float64)
        return apply_affine(p, invert_affine(self.affines.numpy()))

    def to_crop(self, points) -> np.ndarray:
        """Original-image points ``[N, K, 2]`` -> crop pixels (float64 numpy)."""
        return apply_affine(np.asarray(points, dtype=np.float64), self.affines.numpy())

    def __repr__(self) -> str:
        c, s = (self.images.shape[1], self.size) if len(self) else (0, 0)
        k = self.points.shape[1] if self.points.dim() == 3 else 0
        return (f"FaceCrops({self.name!r}: {len(self)} faces, {c}x{s}x{s} uint8, {k} points"
                f"{', ' + self.scheme if self.scheme else ''})")

    @classmethod
    def from_images(cls, images, gt, boxes, *, policy: CropPolicy | None = None,
                    affines=None, name: str = "", paths: Sequence[str] = (),
                    scheme: str | None = None, note: str = "",
                    image_hw=None) -> "FaceCrops":
        """Wrap faces that are already crops (rendered synthetic faces, Kaggle's 96x96 CSV
        rows): ``images [N, C, S, S]`` uint8, ``gt [N, K, 2]`` pixels of the original frame,
        ``boxes [N, 4]``; ``affines`` original -> crop (default: the identity, the images are
        the original frames)."""
        im = torch.as_tensor(np.ascontiguousarray(images))
        if im.dim() == 3:
            im = im[:, None]
        n = im.shape[0]
        g = torch.as_tensor(np.asarray(gt, dtype=np.float64))
        a = np.tile(np.eye(3)[:2], (n, 1, 1)) if affines is None else np.asarray(affines, np.float64)
        pts = torch.as_tensor(apply_affine(g.numpy(), a), dtype=torch.float32) \
            if affines is not None else g.float()
        hw = torch.tensor([[im.shape[-2], im.shape[-1]]] * n, dtype=torch.int64) \
            if image_hw is None else torch.as_tensor(np.asarray(image_hw), dtype=torch.int64)
        return cls(im, pts, torch.isfinite(pts).all(-1), torch.as_tensor(a), g,
                   torch.as_tensor(np.asarray(boxes), dtype=torch.float64), hw, name,
                   list(paths), policy, scheme, note)


def load_face_crops(dataset, policy: CropPolicy, *, name: str = "", note: str = "",
                    indices: Sequence[int] | None = None, cache: bool = True,
                    cache_dir: str | os.PathLike | None = None,
                    num_workers: int = 0) -> FaceCrops:
    """Crop every face of ``dataset`` (a :class:`~lmklib.data.sample.LandmarkDataset`) under
    ``policy`` into a :class:`FaceCrops`.

    Args:
        indices: keep only these records (decided before anything is decoded, so a small
            profile decodes and caches only what it uses); None keeps all.
        cache: decode once into the on-disk cache (``cache_dir``, default
            :func:`lmklib.paths.cache_root`); False decodes in memory every time (in-memory
            synthetic faces, where decoding is the generator).
        num_workers: DataLoader processes that decode while the cache is built.

    The dataset's ``image_mode`` is set to ``policy.mode`` and, for the ``points`` box sources,
    its records' boxes are replaced (both on the ``dataset`` object passed in).
    """
    from .cache import CachedDataset

    if indices is not None:
        dataset.records = [dataset.records[i] for i in indices]
    if len(dataset) == 0:
        raise ValueError(f"{name or type(dataset).__name__}: no faces to crop")
    dataset.image_mode = policy.mode
    if policy.box in ("points", "points_if_missing"):
        placed = boxes_from_points(np.stack([r.landmarks for r in dataset.records]), policy.geometry)
        for r, b in zip(dataset.records, placed):
            if policy.box == "points" or r.box is None:
                r.box = b
    gt = torch.as_tensor(dataset.landmarks_array(), dtype=torch.float64)
    pre = policy.pre_transform()
    if cache:
        cached = CachedDataset(dataset, cache_dir=cache_dir, pre_transform=pre,
                               num_workers=num_workers)
        a = cached.arrays
        images, points, mask = (torch.from_numpy(np.array(a[k])) for k in ("image", "landmarks", "mask"))
        affines = torch.from_numpy(np.array(a["affine"]))
        metas = cached._meta
    else:
        samples = [pre(dataset[i]) for i in range(len(dataset))]
        images = torch.stack([s["image"] for s in samples])
        points = torch.stack([s["landmarks"] for s in samples])
        mask = torch.stack([s["mask"] for s in samples])
        affines = torch.from_numpy(np.stack([s["meta"]["affine"] for s in samples]))
        metas = [s["meta"] for s in samples]
    boxes = torch.as_tensor(dataset.boxes_array(), dtype=torch.float64)
    hw = torch.as_tensor([m.get("image_hw", (0, 0)) for m in metas], dtype=torch.int64)
    scheme = getattr(getattr(dataset, "scheme", None), "name", None)
    return FaceCrops(images, points.float(), mask.bool(), affines.double(), gt, boxes, hw,
                     name or type(dataset).__name__, [m.get("path", "") for m in metas], policy,
                     scheme, note)


def fixed_subset(n_total: int, n: int | None, seed: int = 0) -> np.ndarray:
    """``n`` of ``n_total`` indices: a fixed random subset, sorted (all when ``n`` is None or
    not smaller than ``n_total``)."""
    if n is None or n >= n_total:
        return np.arange(n_total)
    return np.sort(np.random.default_rng(seed).permutation(n_total)[:n])


__all__ = ["BoxGeometry", "CropPolicy", "FaceCrops", "fixed_subset", "load_face_crops"]
