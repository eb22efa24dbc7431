"""Landmark-aware transforms: every geometric change moves the pixels and the points together.

Geometry conventions (the same as :mod:`lmklib.data.sample`):

* Points are ``(x, y)`` pixels, 0-based, the centre of pixel ``(i, j)`` at ``(j, i)``; the image
  *area* of a ``W``-pixel row spans ``[-0.5, W - 0.5]``.
* Every geometric transform builds one 2x3 affine matrix ``A`` that maps a point of the input
  image to the output image, ``p' = A[:, :2] @ p + A[:, 2]``. The image is resampled by pulling
  each output pixel centre back through ``A^-1`` (``grid_sample`` with ``align_corners=False`` and
  the matching normalisation), so pixels and points agree exactly; the test suite draws dots,
  transforms them and finds them again.
* ``meta["affine"]`` (float64 ``[2, 3]``) accumulates the map from the *original* image to the
  current one, so predictions can be sent back with :func:`invert_points`. Flips also toggle
  ``meta["flipped"]``; :func:`invert_points` does not undo the index swap.
* Angles are degrees, positive = counter-clockwise as displayed (y down), as in torchvision.

Transforms are callables ``sample -> sample`` that return a new dict and never modify their input.
Random ones take ``seed`` (an int, a ``numpy.random.Generator`` or None); inside DataLoader workers
they re-derive their generator from ``(seed, worker seed)`` so workers do not repeat each other.
"""

from __future__ import annotations

import math
from typing import Callable, Sequence

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

from .schemes import Scheme

Size = int | tuple[int, int]


def _hw(size: Size) -> tuple[int, int]:
    return (size, size) if isinstance(size, int) else (int(size[0]), int(size[1]))


def _as3(a) -> np.ndarray:
    """2x3 (or [..., 2, 3]) affine -> 3x3 homogeneous float64."""
    a = np.asarray(a, dtype=np.float64)
    out = np.zeros(a.shape[:-2] + (3, 3))
    out[..., :2, :] = a
    out[..., 2, 2] = 1.0
    return out


def compose_affine(second, first) -> np.ndarray:
    """The affine ``second o first`` (apply ``first``, then ``second``), both 2x3."""
    return (_as3(second) @ _as3(first))[..., :2, :]


def invert_affine(affine) -> np.ndarray:
    """Inverse of a 2x3 (or ``[..., 2, 3]``) affine (closed form: cheap per sample)."""
    a = np.asarray(affine, dtype=np.float64)
    m00, m01, t0 = a[..., 0, 0], a[..., 0, 1], a[..., 0, 2]
    m10, m11, t1 = a[..., 1, 0], a[..., 1, 1], a[..., 1, 2]
    det = m00 * m11 - m01 * m10
    out = np.empty_like(a)
    out[..., 0, 0], out[..., 0, 1] = m11 / det, -m01 / det
    out[..., 1, 0], out[..., 1, 1] = -m10 / det, m00 / det
    out[..., 0, 2] = -(out[..., 0, 0] * t0 + out[..., 0, 1] * t1)
    out[..., 1, 2] = -(out[..., 1, 0] * t0 + out[..., 1, 1] * t1)
    return out


def apply_affine(points, affine):
    """Map points ``[..., K, 2]`` through a 2x3 affine (``[2, 3]`` or batched ``[..., 2, 3]``).

    NaN points stay NaN. Returns the same type as ``points`` (numpy or torch, dtype kept).
    """
    a = np.asarray(affine, dtype=np.float64)
    if isinstance(points, torch.Tensor):
        if points.device.type == "cpu" and not points.requires_grad:
            out = apply_affine(points.detach().numpy().astype(np.float64), a)
            return torch.from_numpy(out).to(points.dtype)
        at = torch.as_tensor(a, device=points.device)
        p = points.to(torch.float64)
        return (p @ at[..., :2].transpose(-1, -2) + at[..., 2].unsqueeze(-2)).to(points.dtype)
    p = np.asarray(points, dtype=np.float64)
    out = p @ np.swapaxes(a[..., :2], -1, -2) + a[..., None, :, 2]
    return out.astype(np.result_type(np.asarray(points).dtype, np.float32), copy=False)


def invert_points(points, affine):
    """Send points ``[..., K, 2]`` predicted in a transformed image back to the original image.

    ``affine`` is ``sample["meta"]["affine"]`` (``[2, 3]``, or ``[N, 2, 3]`` for a collated batch
    with points ``[N, K, 2]``).
    """
    return apply_affine(points, invert_affine(affine))


def _theta(affine: np.ndarray, in_hw: tuple[int, int], out_hw: tuple[int, int]) -> np.ndarray:
    """affine_grid ``theta`` [..., 2, 3] that samples ``A^-1(output pixel)`` from the input:
    ``N_in o A^-1 o N_out^-1`` with ``N`` pixel -> [-1, 1] (align_corners=False)."""
    inv = invert_affine(affine)
    (hi, wi), (ho, wo) = in_hw, out_hw
    sx_in, sy_in = 2.0 / wi, 2.0 / hi                  # N_in: x_n = s x + (s / 2 - 1)
    th = inv.copy()
    th[..., 0, :] *= sx_in
    th[..., 1, :] *= sy_in
    th[..., 0, 2] += sx_in / 2 - 1
    th[..., 1, 2] += sy_in / 2 - 1
    # N_out^-1: x = (x_n + 1) wo / 2 - 0.5
    th[..., :, 2] += th[..., :, 0] * (wo / 2 - 0.5) + th[..., :, 1] * (ho / 2 - 0.5)
    th[..., :, 0] *= wo / 2
    th[..., :, 1] *= ho / 2
    return th


def warp_affine(image: torch.Tensor, affine, out_size: Size, mode: str = "bilinear",
                padding: str = "zeros", antialias: bool = True) -> torch.Tensor:
    """Resample ``image`` ``[C, H, W]`` or ``[N, C, H, W]`` so that input point ``p`` lands on
    ``A p`` in an output of ``out_size`` ``(H', W')``.

    Args:
        affine: ``[2, 3]`` (or ``[N, 2, 3]`` for a batch) input-pixel -> output-pixel map.
        mode / padding: ``grid_sample`` options (``"zeros"``, ``"border"``, ``"reflection"``).
        antialias: when the map shrinks the image by more than 1.5x, first resize the input with
            torchvision's antialiased resize (exact half-pixel geometry), then warp.
    Returns:
        the warped image, same dtype as the input (uint8 is rounded and clamped).
    """
    out_hw = _hw(out_size)
    batched = image.dim() == 4
    x = image if batched else image.unsqueeze(0)
    a = np.broadcast_to(np.asarray(affine, dtype=np.float64), (x.shape[0], 2, 3)).copy()
    in_hw = (x.shape[-2], x.shape[-1])
    if antialias:
        shrink = 1.0 / np.sqrt(np.abs(a[:, 0, 0] * a[:, 1, 1] - a[:, 0, 1] * a[:, 1, 0]))
        if shrink.min() > 1.5:  # one common pre-resize keeps the batch a single tensor
            f = float(shrink.min())
            small = (max(1, round(in_hw[0] / f)), max(1, round(in_hw[1] / f)))
            x = TF.resize(x, list(small), antialias=True)
            a = compose_affine(a, invert_affine(resize_affine(in_hw, small)))
            in_hw = small
    theta = torch.as_tensor(_theta(a, in_hw, out_hw), dtype=torch.float32)
    xf = x.float() if not x.is_floating_point() else x
    grid = F.affine_grid(theta.to(xf.device, xf.dtype), [x.shape[0], x.shape[1], *out_hw],
                         align_corners=False)
    out = F.grid_sample(xf, grid, mode=mode, padding_mode=padding, align_corners=False)
    if image.dtype == torch.uint8:
        out = out.round_().clamp_(0, 255).to(torch.uint8)
    return out if batched else out[0]


def resize_affine(in_hw: tuple[int, int], out_hw: tuple[int, int]) -> np.ndarray:
    """Affine of a plain resize with the half-pixel convention: ``x' = (x + 0.5) W'/W - 0.5``."""
    sy, sx = out_hw[0] / in_hw[0], out_hw[1] / in_hw[1]
    return np.array([[sx, 0, 0.5 * sx - 0.5], [0, sy, 0.5 * sy - 0.5]])


def box_affine(box, out_size: Size, scale: float = 1.0, square: bool = True,
               shift=(0.0, 0.0)) -> np.ndarray:
    """Affine(s) that crop a face box to ``out_size``.

    The box ``(x0, y0, x1, y1)`` (``[4]`` or ``[N, 4]``) is taken as a continuous region; it is
    made square (side = the longer side) if ``square``, enlarged ``scale`` times about its centre,
    moved by ``shift`` (``[2]`` or ``[N, 2]``, in units of the enlarged box's width/height), and
    mapped onto the whole output area ``[-0.5, W' - 0.5]``: the box centre lands on
    ``((W'-1)/2, (H'-1)/2)``. Returns ``[2, 3]`` or ``[N, 2, 3]``.
    """
    oh, ow = _hw(out_size)
    b = np.asarray(box, dtype=np.float64)
    cx, cy = (b[..., 0] + b[..., 2]) / 2, (b[..., 1] + b[..., 3]) / 2
    w, h = b[..., 2] - b[..., 0], b[..., 3] - b[..., 1]
    if square:
        w = h = np.maximum(w, h)
    w, h = w * scale, h * scale
    s = np.asarray(shift, dtype=np.float64)
    cx, cy = cx + s[..., 0] * w, cy + s[..., 1] * h
    sx, sy = ow / w, oh / h
    a = np.zeros(b.shape[:-1] + (2, 3))
    a[..., 0, 0], a[..., 0, 2] = sx, (ow - 1) / 2 - sx * cx
    a[..., 1, 1], a[..., 1, 2] = sy, (oh - 1) / 2 - sy * cy
    return a


def crop_batch(images: torch.Tensor, boxes, out_size: Size, scale: float = 1.0,
               square: bool = True, shift=(0.0, 0.0), padding: str = "zeros",
               antialias: bool = True) -> tuple[torch.Tensor, np.ndarray]:
    """Crop face boxes from a batch in one ``grid_sample`` call.

    Args:
        images: ``[N, C, H, W]`` uint8 or float.
        boxes: ``[N, 4]`` ``(x0, y0, x1, y1)`` pixels; geometry as in :func:`box_affine`.
    Returns:
        ``(crops [N, C, H', W'], affines [N, 2, 3])``; map points with :func:`apply_affine`.
    """
    affines = box_affine(boxes, out_size, scale, square, shift)
    return warp_affine(images, affines, out_size, padding=padding, antialias=antialias), affines


def _window_step(half_sizes: torch.Tensor, out_size: int) -> torch.Tensor:
    return 2 * half_sizes / (out_size - 1) if out_size > 1 else torch.zeros_like(half_sizes)


def crop_windows(images: torch.Tensor, centres, half_sizes, out_size: int,
                 padding: str = "zeros") -> torch.Tensor:
    """Crop ``M`` square windows per image (CCNN's patches around each point), bilinear.

    Geometry: the ``out_size`` samples of a window are spaced ``step = 2 h / (out_size - 1)``
    pixels apart and the outermost ones fall on ``c - h`` and ``c + h``: output pixel ``(u, v)``
    reads the input at ``(cx + (u - (out-1)/2) step, cy + (v - (out-1)/2) step)``. So the centre
    ``c`` lands on ``(out_size - 1) / 2``, and ``h = 7, out_size = 15`` around an integer centre is
    an exact copy of the 15 x 15 pixels ``c - 7 .. c + 7``. Outside the image: ``padding``.
    No antialiasing: when ``2 h`` is much larger than ``out_size``, crop from a downsized image.
    Convert coordinates with :func:`window_to_image` / :func:`image_to_window`.

    Args:
        images: ``[N, C, H, W]`` float (uint8 is converted).
        centres: ``[N, M, 2]`` window centres (x, y), pixels.
        half_sizes: ``[N, M]`` (or broadcastable) half side ``h``, pixels.
    Returns:
        ``[N, M, C, out_size, out_size]`` float.
    """
    x = images.float() if not images.is_floating_point() else images
    n, c, h, w = x.shape
    ctr = torch.as_tensor(centres, dtype=x.dtype, device=x.device)
    m = ctr.shape[1]
    half = torch.as_tensor(half_sizes, dtype=x.dtype, device=x.device).expand(n, m)
    offs = torch.arange(out_size, dtype=x.dtype, device=x.device) - (out_size - 1) / 2
    step = _window_step(half, out_size)[..., None]                       # [N, M, 1]
    gx = ctr[..., 0:1] + offs * step                                      # [N, M, out]
    gy = ctr[..., 1:2] + offs * step
    gx = (2 * gx + 1) / w - 1                                             # align_corners=False
    gy = (2 * gy + 1) / h - 1
    grid = torch.stack(torch.broadcast_tensors(gx[:, :, None, :], gy[:, :, :, None]), dim=-1)
    grid = grid.reshape(n, m * out_size, out_size, 2)
    out = F.grid_sample(x, grid, mode="bilinear", padding_mode=padding, align_corners=False)
    return out.reshape(n, c, m, out_size, out_size).permute(0, 2, 1, 3, 4)


def _window_frame(points, centres, half_sizes, out_size: int):
    p = torch.as_tensor(points, dtype=torch.float64)
    ctr = torch.as_tensor(centres, dtype=torch.float64)
    step = _window_step(torch.as_tensor(half_sizes, dtype=torch.float64), out_size)
    extra = p.dim() - ctr.dim()
    return (p, ctr.reshape(ctr.shape[:-1] + (1,) * extra + (2,)),
            step.reshape(step.shape + (1,) * (extra + 1)))


def window_to_image(points, centres, half_sizes, out_size: int) -> torch.Tensor:
    """Window pixel coordinates ``[N, M, ..., 2]`` -> image pixels (float64), for windows of
    :func:`crop_windows` with ``centres [N, M, 2]`` and ``half_sizes [N, M]``."""
    p, ctr, step = _window_frame(points, centres, half_sizes, out_size)
    return ctr + (p - (out_size - 1) / 2) * step


def image_to_window(points, centres, half_sizes, out_size: int) -> torch.Tensor:
    """Image pixels ``[N, M, ..., 2]`` -> window pixel coordinates (needs ``out_size > 1``)."""
    p, ctr, step = _window_frame(points, centres, half_sizes, out_size)
    return (p - ctr) / step + (out_size - 1) / 2


# ----------------------------------------------------------------------------- sample transforms

def _transform_box(box: torch.Tensor, affine: np.ndarray) -> torch.Tensor:
    x0, y0, x1, y1 = box.numpy().astype(np.float64)
    corners = apply_affine(np.array([[x0, y0], [x1, y0], [x0, y1], [x1, y1]]), affine)
    return torch.from_numpy(np.concatenate([corners.min(0), corners.max(0)]).astype(np.float32))


def apply_to_sample(sample: dict, affine, out_size: Size | None = None, padding: str = "zeros",
                    antialias: bool = True) -> dict:
    """Warp a sample's image, landmarks and box by one affine; compose ``meta["affine"]``."""
    img = sample["image"]
    in_hw = (img.shape[-2], img.shape[-1])
    out_hw = in_hw if out_size is None else _hw(out_size)
    if out_hw == in_hw and np.array_equal(affine, np.eye(3)[:2]):
        return move_points(sample, affine, img)  # identity (e.g. a 0-degree rotation): no resampling
    return move_points(sample, affine,
                       warp_affine(img, affine, out_hw, padding=padding, antialias=antialias))


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
            self._entropy = int(seed.integers(2**63))
            self._gen = seed
        else:
            self._entropy = np.random.SeedSequence(seed).entropy
            self._gen = np.random.default_rng(self._entropy)
        self._worker = None

    @property
    def rng(self) -> np.random.Generator:
        info = torch.utils.data.get_worker_info()
        if info is not None and self._worker != (info.id, info.seed):
            self._gen = np.random.default_rng([self._entropy, info.seed])
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


def rotation_affine(angle: float, centre: tuple[float, float], scale: float = 1.0) -> np.ndarray:
    """Rotate by ``angle`` degrees counter-clockwise (as displayed) and scale about ``centre``."""
    t = math.radians(angle)
    c, s = scale * math.cos(t), scale * math.sin(t)
    cx, cy = centre
    return np.array([[c, s, cx - c * cx - s * cy], [-s, c, cy + s * cx - c * cy]])


class CropToBox(RandomTransform):
    """Crop the face box (square, enlarged ``scale`` times, shifted by up to ``jitter`` box
    units uniformly in x and y) and resize it to ``output_size``; see :func:`box_affine`.
    Deterministic when ``jitter == 0`` (the cacheable crop)."""

    def __init__(self, output_size: Size, scale: float = 1.0, jitter: float = 0.0,
                 square: bool = True, padding: str = "zeros", antialias: bool = True,
                 seed: int | np.random.Generator | None = None):
        super().__init__(seed)
        self.output_size, self.scale, self.jitter = _hw(output_size), scale, jitter
        self.square, self.padding, self.antialias = square, padding, antialias

    def __call__(self, sample: dict) -> dict:
        shift = self.rng.uniform(-self.jitter, self.jitter, 2) if self.jitter else (0.0, 0.0)
        a = box_affine(sample["box"].double().numpy(), self.output_size, self.scale,
                       self.square, shift)
        return apply_to_sample(sample, a, self.output_size, self.padding, self.antialias)

    def __repr__(self) -> str:
        return (f"CropToBox(output_size={self.output_size}, scale={self.scale}, "
                f"jitter={self.jitter}, square={self.square}, padding={self.padding!r}"
                + ("" if self.antialias else ", antialias=False") + ")")


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
