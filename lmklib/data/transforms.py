"""Landmark-aware transforms: every geometric change moves the pixels and the points together.

* Every geometric transform builds one 2x3 affine ``A`` (input point -> output point) and applies
  it to the image and the points alike (see :mod:`lmklib.data.geometry` for the pixel-centre
  convention and the warping; its functions are re-exported here). The test suite draws dots,
  transforms them and finds them again.
* ``meta["affine"]`` (float64 ``[2, 3]``) accumulates the map from the *original* image to the
  current one, so predictions can be sent back with :func:`invert_points`. Flips also toggle
  ``meta["flipped"]``; :func:`invert_points` does not undo the index swap.
* Points that leave the image keep their coordinates and ``mask``; only occlusion clears
  ``visible``.
* Angles are degrees, positive = counter-clockwise as displayed (y down), as in torchvision.

Transforms are callables ``sample -> sample`` that return a new dict and never modify their input.
Random ones take ``seed`` (an int, a ``numpy.random.Generator`` or None); inside DataLoader workers
they re-derive their generator from ``(seed, worker seed)`` so workers do not repeat each other.
"""

from __future__ import annotations

import zlib
from typing import Callable, Sequence

import numpy as np
import torch
from torchvision.transforms.v2 import functional as TF

from .geometry import (  # noqa: F401  (re-exported: the public geometry API lives here too)
    Size, _hw, antialias_prescale, apply_affine, box_affine, compose_affine, crop_batch,
    crop_windows, image_to_window, invert_affine, invert_points, pil_crop, resize_affine,
    rotation_affine, warp_affine,
    window_to_image,
)
from .schemes import Scheme


# ----------------------------------------------------------------------------- sample transforms

def _transform_box(box: torch.Tensor, affine: np.ndarray) -> torch.Tensor:
    x0, y0, x1, y1 = box.numpy().astype(np.float64)
    corners = apply_affine(np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]]), affine)
    return torch.from_numpy(np.concatenate([corners.min(0), corners.max(0)]).astype(np.float32))


def apply_to_sample(sample: dict, affine, out_size: Size | None = None, padding: str = "zeros",
                    antialias: bool = True, prescale: float | None = None) -> dict:
    """Warp a sample's image, landmarks and box by one affine; compose ``meta["affine"]``
    (``padding``, ``antialias``, ``prescale``: see :func:`warp_affine`)."""
    img = sample["image"]
    in_hw = (img.shape[-2], img.shape[-1])
    out_hw = in_hw if out_size is None else _hw(out_size)
    if out_hw == in_hw and np.array_equal(affine, np.eye(3)[:2]):
        return move_points(sample, affine, img)  # identity (a 0-degree rotation): no resampling
    return move_points(sample, affine, warp_affine(img, affine, out_hw, padding=padding,
                                                   antialias=antialias, prescale=prescale))


def move_points(sample: dict, affine, image: torch.Tensor) -> dict:
    """A new sample with ``image``, and landmarks, box and ``meta["affine"]`` moved by ``affine``
    (for transforms that resample the pixels themselves)."""
    out = dict(sample)
    out["image"] = image
    out["landmarks"] = apply_affine(sample["landmarks"], affine)
    out["box"] = _transform_box(sample["box"], affine)
    meta = dict(sample.get("meta", {}))
    meta["affine"] = compose_affine(affine, meta.get("affine", np.eye(3)[:2]))
    out["meta"] = meta
    return out


class RandomTransform:
    """Base for random transforms: a numpy Generator, re-derived inside each DataLoader worker."""

    def __init__(self, seed: int | np.random.Generator | None = None):
        if isinstance(seed, np.random.Generator):
            self._entropy = [int(seed.integers(2**63))]
            self._gen = seed
        else:
            # the class name is mixed in so that Compose([RandomRotate(seed=s), RandomScale(seed=s)])
            # does not draw correlated angles and zooms
            base = np.random.SeedSequence().entropy if seed is None else int(seed)
            self._entropy = [base, zlib.crc32(type(self).__name__.encode())]
            self._gen = np.random.default_rng(self._entropy)
        self._worker = None

    @property
    def rng(self) -> np.random.Generator:
        info = torch.utils.data.get_worker_info()
        if info is not None and self._worker != (info.id, info.seed):
            self._gen = np.random.default_rng([*self._entropy, info.seed])
            self._worker = (info.id, info.seed)
        return self._gen


def _centre(sample: dict, centre: str) -> tuple[float, float]:
    if centre == "box":
        x0, y0, x1, y1 = sample["box"].tolist()
        return (x0 + x1) / 2, (y0 + y1) / 2
    if centre == "image":
        h, w = sample["image"].shape[-2:]
        return (w - 1) / 2, (h - 1) / 2
    raise ValueError(f"centre must be 'box' or 'image', got {centre!r}")


class CropToBox(RandomTransform):
    """Crop the face box (square, enlarged ``scale`` times, shifted by up to ``jitter`` box
    units uniformly in x and y) and resize it to ``output_size``; see :func:`box_affine`.
    Deterministic when ``jitter == 0`` (the cacheable crop). ``padding``, ``antialias`` and
    ``prescale`` (a fixed first shrink of the image) are :func:`warp_affine`'s."""

    def __init__(self, output_size: Size, scale: float = 1.0, jitter: float = 0.0,
                 square: bool = True, padding: str = "zeros", antialias: bool = True,
                 seed: int | np.random.Generator | None = None, backend: str = "torch",
                 prescale: float | None = None):
        super().__init__(seed)
        if backend not in ("torch", "pil"):
            raise ValueError(f"backend must be 'torch' or 'pil', got {backend!r}")
        if backend == "pil" and padding != "zeros":
            raise ValueError("the 'pil' backend pads with zeros only")
        if backend == "pil" and prescale is not None:
            raise ValueError("the 'pil' backend chooses its own pre-shrink: prescale needs 'torch'")
        self.output_size, self.scale, self.jitter = _hw(output_size), scale, jitter
        self.square, self.padding, self.antialias = square, padding, antialias
        self.backend, self.prescale = backend, prescale

    def __call__(self, sample: dict) -> dict:
        shift = self.rng.uniform(-self.jitter, self.jitter, 2) if self.jitter else (0.0, 0.0)
        a = box_affine(sample["box"].double().numpy(), self.output_size, self.scale,
                       self.square, shift)
        if self.backend == "pil":
            return move_points(sample, a, pil_crop(sample["image"], sample["box"].double().numpy(),
                                                  self.output_size, self.scale, self.square))
        return apply_to_sample(sample, a, self.output_size, self.padding, self.antialias,
                               self.prescale)

    def __repr__(self) -> str:
        return (f"CropToBox(output_size={self.output_size}, scale={self.scale}, "
                f"jitter={self.jitter}, square={self.square}, padding={self.padding!r}"
                + ("" if self.antialias else ", antialias=False")
                + ("" if self.backend == "torch" else f", backend={self.backend!r}")
                + ("" if self.prescale is None else f", prescale={self.prescale!r}") + ")")


class Resize:
    """Resize the whole image to ``size`` (H, W) with torchvision's antialiased resize."""

    def __init__(self, size: Size):
        self.size = _hw(size)

    def __call__(self, sample: dict) -> dict:
        img = sample["image"]
        a = resize_affine((img.shape[-2], img.shape[-1]), self.size)
        return move_points(sample, a, TF.resize(img, list(self.size), antialias=True))

    def __repr__(self) -> str:
        return f"Resize(size={self.size})"


class Rotate:
    """Rotate by a fixed ``angle`` (degrees, counter-clockwise) about the box or image centre,
    keeping the image size (corners filled by ``padding``)."""

    def __init__(self, angle: float, centre: str = "box", padding: str = "zeros"):
        self.angle, self.centre, self.padding = angle, centre, padding

    def __call__(self, sample: dict) -> dict:
        a = rotation_affine(self.angle, _centre(sample, self.centre))
        return apply_to_sample(sample, a, padding=self.padding)

    def __repr__(self) -> str:
        return f"Rotate(angle={self.angle}, centre={self.centre!r})"


class RandomRotate(RandomTransform):
    """Random rotation about the box (or image) centre.

    Args:
        angles: ``a`` -> uniform in ``[-a, a]``; ``(lo, hi)`` -> uniform in ``[lo, hi]``
            (SD-HRNet: 30).
        choices: instead, pick one of these angles with equal probability (CCNN: ``(0, -15, 12)``,
            the original and its two rotations).
        p: probability of rotating at all.
    """

    def __init__(self, angles: float | tuple[float, float] = 30.0, *,
                 choices: Sequence[float] | None = None, p: float = 1.0, centre: str = "box",
                 padding: str = "zeros", seed: int | np.random.Generator | None = None):
        super().__init__(seed)
        lo_hi = (-abs(angles), abs(angles)) if np.isscalar(angles) else tuple(angles)
        self.range, self.choices = lo_hi, (None if choices is None else tuple(choices))
        self.p, self.centre, self.padding = p, centre, padding

    def sample_angle(self) -> float:
        if self.rng.random() >= self.p:
            return 0.0
        if self.choices is not None:
            return float(self.choices[self.rng.integers(len(self.choices))])
        return float(self.rng.uniform(*self.range))

    def __call__(self, sample: dict) -> dict:
        return Rotate(self.sample_angle(), self.centre, self.padding)(sample)

    def __repr__(self) -> str:
        what = f"choices={self.choices}" if self.choices is not None else f"range={self.range}"
        return f"RandomRotate({what}, p={self.p}, centre={self.centre!r})"


class RandomScale(RandomTransform):
    """Zoom by a factor uniform in ``[low, high]`` about the box (or image) centre, keeping the
    image size (SD-HRNet: 1 +- 0.25). Factors > 1 enlarge the face."""

    def __init__(self, low: float = 0.75, high: float = 1.25, centre: str = "box",
                 padding: str = "zeros", seed: int | np.random.Generator | None = None):
        super().__init__(seed)
        self.low, self.high, self.centre, self.padding = low, high, centre, padding

    def __call__(self, sample: dict) -> dict:
        s = float(self.rng.uniform(self.low, self.high))
        a = rotation_affine(0.0, _centre(sample, self.centre), scale=s)
        return apply_to_sample(sample, a, padding=self.padding)

    def __repr__(self) -> str:
        return f"RandomScale({self.low}, {self.high}, centre={self.centre!r})"


class RandomSimilarity(RandomTransform):
    """Rotation, zoom and shift about the box (or image) centre in ONE resampling (chaining
    :class:`RandomRotate` and :class:`RandomScale` blurs twice). Angle uniform in ``[-a, a]`` or
    ``(lo, hi)``, zoom uniform in ``scale``, shift uniform in ``[-shift, shift]`` x image side."""

    def __init__(self, angles: float | tuple[float, float] = 30.0,
                 scale: tuple[float, float] = (0.75, 1.25), shift: float = 0.0,
                 centre: str = "box", padding: str = "zeros",
                 seed: int | np.random.Generator | None = None):
        super().__init__(seed)
        self.range = (-abs(angles), abs(angles)) if np.isscalar(angles) else tuple(angles)
        self.scale, self.shift, self.centre, self.padding = tuple(scale), shift, centre, padding

    def __call__(self, sample: dict) -> dict:
        rng = self.rng
        angle, zoom = float(rng.uniform(*self.range)), float(rng.uniform(*self.scale))
        a = rotation_affine(angle, _centre(sample, self.centre), scale=zoom)
        if self.shift:
            h, w = sample["image"].shape[-2:]
            a[:, 2] += rng.uniform(-self.shift, self.shift, 2) * (w, h)
        return apply_to_sample(sample, a, padding=self.padding)

    def __repr__(self) -> str:
        return (f"RandomSimilarity(angles={self.range}, scale={self.scale}, shift={self.shift}, "
                f"centre={self.centre!r})")


class HorizontalFlip:
    """Mirror the image and the points (``x' = W - 1 - x``) AND swap left/right indices with
    ``scheme.flip_perm`` (torchvision's KeyPoints flip only mirrors x)."""

    def __init__(self, scheme: Scheme):
        self.scheme = scheme
        self.perm = torch.tensor(scheme.flip_perm)

    def __call__(self, sample: dict) -> dict:
        img = sample["image"]
        k = sample["landmarks"].shape[0]
        if k != len(self.perm):
            raise ValueError(f"sample has {k} landmarks but scheme {self.scheme.name} has "
                             f"{len(self.perm)}")
        w = img.shape[-1]
        a = np.array([[-1.0, 0.0, w - 1.0], [0.0, 1.0, 0.0]])
        out = move_points(sample, a, TF.horizontal_flip(img))
        for key in ("landmarks", "mask", "visible"):
            if key in out:
                out[key] = out[key][self.perm]
        out["meta"]["flipped"] = not out["meta"].get("flipped", False)
        return out

    def __repr__(self) -> str:
        return f"HorizontalFlip(scheme={self.scheme.name!r})"


class RandomHorizontalFlip(RandomTransform):
    """:class:`HorizontalFlip` with probability ``p``."""

    def __init__(self, scheme: Scheme, p: float = 0.5,
                 seed: int | np.random.Generator | None = None):
        super().__init__(seed)
        self.flip, self.p = HorizontalFlip(scheme), p

    def __call__(self, sample: dict) -> dict:
        if self.rng.random() < self.p:
            return self.flip(sample)
        # same meta keys whether flipped or not, so DataLoader's default_collate works
        meta = sample.get("meta", {})
        return {**sample, "meta": {**meta, "flipped": meta.get("flipped", False)}}

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(scheme={self.flip.scheme.name!r}, p={self.p})"


class Compose:
    """Apply transforms in order."""

    def __init__(self, transforms: Sequence[Callable[[dict], dict]]):
        self.transforms = list(transforms)

    def __call__(self, sample: dict) -> dict:
        for t in self.transforms:
            sample = t(sample)
        return sample

    def __repr__(self) -> str:
        return "Compose([\n" + "".join(f"    {t!r},\n" for t in self.transforms) + "])"


# ----------------------------------------------------------------------------- pixel transforms

class Photometric(RandomTransform):
    """Random photometric changes on a uint8 image, in this order (each skipped when 0):

    brightness, contrast, saturation (RGB only): factors uniform in ``[1 - v, 1 + v]``
    (torchvision ``adjust_*``); gamma: exponent uniform in ``[1 - v, 1 + v]``; noise: additive
    Gaussian noise with std uniform in ``[0, v]`` intensity levels (0..255). Points are untouched.
    """

    def __init__(self, brightness: float = 0.0, contrast: float = 0.0, saturation: float = 0.0,
                 gamma: float = 0.0, noise: float = 0.0, p: float = 1.0,
                 seed: int | np.random.Generator | None = None):
        super().__init__(seed)
        self.brightness, self.contrast, self.saturation = brightness, contrast, saturation
        self.gamma, self.noise, self.p = gamma, noise, p

    def __call__(self, sample: dict) -> dict:
        img = sample["image"]
        if img.dtype != torch.uint8:
            raise TypeError(f"Photometric expects a uint8 image (apply it before ToFloat), "
                            f"got {img.dtype}")
        rng = self.rng
        if rng.random() >= self.p:
            return sample
        u = lambda v: float(rng.uniform(1 - v, 1 + v))  # noqa: E731
        if self.brightness:
            img = TF.adjust_brightness(img, u(self.brightness))
        if self.contrast:
            img = TF.adjust_contrast(img, u(self.contrast))
        if self.saturation and img.shape[-3] == 3:
            img = TF.adjust_saturation(img, u(self.saturation))
        if self.gamma:
            img = TF.adjust_gamma(img, u(self.gamma))
        if self.noise:
            std = rng.uniform(0, self.noise)
            noise = torch.from_numpy(rng.normal(0, std, tuple(img.shape)).astype(np.float32))
            img = (img.float() + noise).round_().clamp_(0, 255).to(torch.uint8)
        return {**sample, "image": img}

    def __repr__(self) -> str:
        return (f"Photometric(brightness={self.brightness}, contrast={self.contrast}, saturation="
                f"{self.saturation}, gamma={self.gamma}, noise={self.noise}, p={self.p})")


class RandomOcclusion(RandomTransform):
    """With probability ``p``, paint one rectangle (each side uniform in ``[min_frac, max_frac]``
    of the image side, placed uniformly inside the image) with noise (``fill="noise"``) or a
    random constant colour (``fill="constant"``). Points on covered pixels get
    ``visible = False``; ``mask`` (annotated) and the coordinates are kept."""

    def __init__(self, p: float = 0.5, max_frac: float = 0.4, min_frac: float = 0.1,
                 fill: str = "noise", seed: int | np.random.Generator | None = None):
        super().__init__(seed)
        if fill not in ("noise", "constant"):
            raise ValueError(f"fill must be 'noise' or 'constant', got {fill!r}")
        if not 0 < min_frac <= max_frac <= 1:
            raise ValueError(f"need 0 < min_frac <= max_frac <= 1, got {min_frac}, {max_frac}")
        self.p, self.max_frac, self.min_frac, self.fill = p, max_frac, min_frac, fill

    def __call__(self, sample: dict) -> dict:
        rng = self.rng
        if rng.random() >= self.p:
            return sample
        img = sample["image"].clone()
        c, h, w = img.shape[-3:]
        rh = max(1, round(rng.uniform(self.min_frac, self.max_frac) * h))
        rw = max(1, round(rng.uniform(self.min_frac, self.max_frac) * w))
        r0, c0 = int(rng.integers(0, h - rh + 1)), int(rng.integers(0, w - rw + 1))
        hi = 256 if img.dtype == torch.uint8 else 1
        shape = (c, rh, rw) if self.fill == "noise" else (c, 1, 1)
        patch = torch.from_numpy(rng.uniform(0, hi, shape)).to(img.dtype)
        img[..., r0:r0 + rh, c0:c0 + rw] = patch
        x, y = sample["landmarks"][:, 0], sample["landmarks"][:, 1]
        covered = (x >= c0 - 0.5) & (x < c0 + rw - 0.5) & (y >= r0 - 0.5) & (y < r0 + rh - 0.5)
        return {**sample, "image": img, "visible": sample["visible"] & ~covered}

    def __repr__(self) -> str:
        return (f"RandomOcclusion(p={self.p}, min_frac={self.min_frac}, "
                f"max_frac={self.max_frac}, fill={self.fill!r})")


class ToFloat:
    """uint8 image -> float32 ``(image / 255 - mean) / std`` (per-channel sequences allowed), or
    with ``per_image=True`` each image minus its own mean, divided by its own std (CCNN's
    "minus the mean and dividing the variance")."""

    def __init__(self, mean: float | Sequence[float] = 0.0, std: float | Sequence[float] = 1.0,
                 per_image: bool = False):
        self.mean, self.std, self.per_image = mean, std, per_image

    def __call__(self, sample: dict) -> dict:
        img = sample["image"].float() / 255.0
        if self.per_image:
            img = (img - img.mean()) / img.std().clamp_min(1e-6)
        else:
            mean = torch.as_tensor(self.mean, dtype=torch.float32).reshape(-1, 1, 1)
            std = torch.as_tensor(self.std, dtype=torch.float32).reshape(-1, 1, 1)
            img = (img - mean) / std
        return {**sample, "image": img}

    def __repr__(self) -> str:
        return f"ToFloat(mean={self.mean}, std={self.std}, per_image={self.per_image})"


# ----------------------------------------------------------------------------- batch augmentation
# On whole training batches (tensors already in memory), drawn from torch's global RNG so that
# :func:`lmklib.train.fit`'s per-epoch reseeding makes them exact on resume. The draws happen on
# the CPU, so a batch gives the same augmentation on any device.
def random_flip(images: torch.Tensor, points: torch.Tensor,
                flip_perm: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
    """Mirror a random half of a batch: images ``[N, C, H, W]``, pixel points ``[N, K, 2]``;
    left/right points swap through ``flip_perm`` (:attr:`Scheme.flip_perm`)."""
    flip = (torch.rand(images.shape[0]) < 0.5).to(images.device)
    if not flip.any():
        return images, points
    images, points = images.clone(), points.clone()
    w = images.shape[-1]
    images[flip] = images[flip].flip(-1)
    mirrored = points[flip][:, list(flip_perm)]
    mirrored[..., 0] = (w - 1) - mirrored[..., 0]
    points[flip] = mirrored
    return images, points


def random_similarity(images: torch.Tensor, points: torch.Tensor, angle: float = 15.0,
                      scale: tuple[float, float] = (0.9, 1.1), shift: float = 0.05
                      ) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate (uniform +-``angle`` degrees), scale and shift (+-``shift`` of the side) every
    face of a batch about the image centre, in one resampling. Images ``[N, C, H, W]`` (border
    padding), pixel points ``[N, K, 2]`` (NaN stays NaN)."""
    n, h, w = images.shape[0], images.shape[-2], images.shape[-1]
    u = torch.rand(n, 4, dtype=torch.float64).numpy()
    t = np.radians((2 * u[:, 0] - 1) * angle)
    s = scale[0] + (scale[1] - scale[0]) * u[:, 1]
    cx, cy = (w - 1) / 2, (h - 1) / 2
    c, si = s * np.cos(t), s * np.sin(t)
    a = np.zeros((n, 2, 3))
    a[:, 0, 0], a[:, 0, 1], a[:, 1, 0], a[:, 1, 1] = c, si, -si, c
    a[:, 0, 2] = cx - c * cx - si * cy + (2 * u[:, 2] - 1) * shift * w
    a[:, 1, 2] = cy + si * cx - c * cy + (2 * u[:, 3] - 1) * shift * h
    warped = warp_affine(images, a, (h, w), padding="border")
    moved = apply_affine(points.detach().double().cpu().numpy(), a)
    return warped, torch.as_tensor(moved, dtype=points.dtype, device=points.device)


def random_occlusion(images: torch.Tensor, p: float = 1.0, min_frac: float = 0.1,
                     max_frac: float = 0.5, value: float = 0.0) -> torch.Tensor:
    """Mask a random-sized rectangle of each image of a batch (with probability ``p``): sides
    uniform in ``[min_frac, max_frac]`` of the image's, placed uniformly inside it, set to
    ``value`` (0 = the mean of a :func:`standardise`-d image). The batch form of
    :class:`RandomOcclusion` (SD-HRNet's masked student inputs); images ``[N, C, H, W]``."""
    if not 0 < min_frac <= max_frac <= 1:
        raise ValueError(f"need 0 < min_frac <= max_frac <= 1, got {min_frac}, {max_frac}")
    n, h, w = images.shape[0], images.shape[-2], images.shape[-1]
    u = torch.rand(n, 5)
    rh = (min_frac + (max_frac - min_frac) * u[:, 0]) * h
    rw = (min_frac + (max_frac - min_frac) * u[:, 1]) * w
    r0, c0 = u[:, 2] * (h - rh), u[:, 3] * (w - rw)
    rows = torch.arange(h, dtype=torch.float32)[None, :, None]
    cols = torch.arange(w, dtype=torch.float32)[None, None, :]
    inside = ((rows >= r0.round()[:, None, None]) & (rows < (r0 + rh).round()[:, None, None])
              & (cols >= c0.round()[:, None, None]) & (cols < (c0 + rw).round()[:, None, None])
              & (u[:, 4] < p)[:, None, None])
    return images.masked_fill(inside[:, None].to(images.device), value)


def augment_batch(images: torch.Tensor, points: torch.Tensor, flip_perm: Sequence[int] | None,
                  similarity: dict | None) -> tuple[torch.Tensor, torch.Tensor]:
    """A training batch's augmentation: :func:`random_flip` (if ``flip_perm`` is given), then
    :func:`random_similarity` (with ``similarity``'s keyword arguments, if given)."""
    if flip_perm is not None:
        images, points = random_flip(images, points, flip_perm)
    if similarity:
        images, points = random_similarity(images, points, **similarity)
    return images, points


def standardise(images) -> torch.Tensor:
    """uint8 ``[N, C, H, W]`` (tensor or array) -> float32, each image to zero mean and unit
    standard deviation (our choice; the paper does not say; it removes the lighting differences
    of the web faces, worth ~0.6 % NME in the ACN quick profile)."""
    if not isinstance(images, torch.Tensor):
        images = torch.from_numpy(np.ascontiguousarray(images))
    x = images.float()
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    return (x - mean) / (x.std(dim=(1, 2, 3), keepdim=True) + 1.0)
