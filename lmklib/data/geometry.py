"""Affine pixel geometry shared by the transforms: 2x3 maps, warping, box crops, point windows.

Conventions: points are ``(x, y)`` pixels, 0-based, pixel centres at integers, so a ``W``-pixel
row covers ``[-0.5, W - 0.5]``. An affine ``A`` (2x3, float64) maps input points to output points,
``p' = A[:, :2] @ p + A[:, 2]``; images are warped by pulling each output pixel centre back
through ``A^-1`` with ``grid_sample(align_corners=False)`` and the matching normalisation, so pixels
and points agree exactly. Angles are degrees, positive = counter-clockwise as displayed.
Everything here is also importable from :mod:`lmklib.data.transforms`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.transforms.v2 import functional as TF

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


def antialias_prescale(affine) -> float | None:
    """The factor by which :func:`warp_affine` (``antialias=True``) first shrinks the input of
    a warp by ``affine`` (``[2, 3]`` or ``[N, 2, 3]``): the smallest shrink over the batch
    (input pixels per output pixel, ``1 / sqrt|det|``) when it exceeds 1.5, else None (no
    pre-resize). One factor per call keeps a batch one tensor, so a face's crop depends on the
    faces warped with it; passing the factor as ``prescale`` gives any face alone the same."""
    a = np.asarray(affine, dtype=np.float64).reshape(-1, 2, 3)
    shrink = 1.0 / np.sqrt(np.abs(a[:, 0, 0] * a[:, 1, 1] - a[:, 0, 1] * a[:, 1, 0]))
    return float(shrink.min()) if shrink.min() > 1.5 else None


def _pre_shrink(x: torch.Tensor, a: np.ndarray, in_hw: tuple[int, int], f: float):
    """Resize ``x`` by ``1 / f`` (torchvision, antialiased) and re-aim ``a`` at the result."""
    small = (max(1, round(in_hw[0] / f)), max(1, round(in_hw[1] / f)))
    x = TF.resize(x, list(small), antialias=True)
    return x, compose_affine(a, invert_affine(resize_affine(in_hw, small))), small


def warp_affine(image: torch.Tensor, affine, out_size: Size, mode: str = "bilinear",
                padding: str = "zeros", antialias: bool = True,
                prescale: float | None = None) -> torch.Tensor:
    """Resample ``image`` ``[C, H, W]`` or ``[N, C, H, W]`` so that input point ``p`` lands on
    ``A p`` in an output of ``out_size`` ``(H', W')``.

    Args:
        affine: ``[2, 3]`` (or ``[N, 2, 3]`` for a batch) input-pixel -> output-pixel map.
        mode / padding: ``grid_sample`` options (``"zeros"``, ``"border"``, ``"reflection"``).
        antialias: when the map shrinks the image by more than 1.5x, first resize the input with
            torchvision's antialiased resize (exact half-pixel geometry), then warp; a batch is
            resized once, by its smallest shrink (:func:`antialias_prescale`).
        prescale: a fixed factor (> 1) to shrink the input by first, whatever the map (the
            resize to ``round(H / prescale) x round(W / prescale)`` that ``antialias`` makes for
            a batch whose smallest shrink is ``prescale``); ``antialias`` then applies to the
            shrink that is left. None: ``antialias`` alone.
    Returns:
        the warped image, same dtype as the input (uint8 is rounded and clamped).
    """
    out_hw = _hw(out_size)
    batched = image.dim() == 4
    x = image if batched else image.unsqueeze(0)
    a = np.broadcast_to(np.asarray(affine, dtype=np.float64), (x.shape[0], 2, 3)).copy()
    in_hw = (x.shape[-2], x.shape[-1])
    if prescale is not None:
        if not prescale > 1:
            raise ValueError(f"prescale must be > 1 (a shrink), got {prescale!r}")
        x, a, in_hw = _pre_shrink(x, a, in_hw, float(prescale))
    f = antialias_prescale(a) if antialias else None
    if f is not None:
        x, a, in_hw = _pre_shrink(x, a, in_hw, f)
    xf = x.float() if not x.is_floating_point() else x
    th = torch.as_tensor(_theta(a, in_hw, out_hw), dtype=xf.dtype, device=xf.device)
    # the grid affine_grid would build, from two broadcast axes (several times cheaper on CPU)
    xs = (2 * torch.arange(out_hw[1], dtype=xf.dtype, device=xf.device) + 1) / out_hw[1] - 1
    ys = (2 * torch.arange(out_hw[0], dtype=xf.dtype, device=xf.device) + 1) / out_hw[0] - 1
    t = th[:, :, :, None, None]                                          # [N, 2, 3, 1, 1]
    grid = (t[:, :, 0] * xs + t[:, :, 1] * ys[:, None] + t[:, :, 2]).permute(0, 2, 3, 1)
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


def frame_boxes(image_hw) -> np.ndarray:
    """The whole-image boxes ``[N, 4]`` ``(-0.5, -0.5, W - 0.5, H - 0.5)`` of images of sizes
    ``image_hw [N, 2]`` (height, width): their outer pixel edges, so that cropping this box
    (:func:`box_affine`, scale 1) is the resize of the whole image (:func:`resize_affine`). The
    box of models that read a whole frame (300-W crops, Kaggle's 96x96 images)."""
    hw = np.asarray(image_hw, dtype=np.float64).reshape(-1, 2)
    return np.stack([np.full(len(hw), -0.5), np.full(len(hw), -0.5), hw[:, 1] - 0.5,
                     hw[:, 0] - 0.5], 1)


def crop_batch(images: torch.Tensor, boxes, out_size: Size, scale: float = 1.0,
               square: bool = True, shift=(0.0, 0.0), padding: str = "zeros",
               antialias: bool = True, prescale: float | None = None
               ) -> tuple[torch.Tensor, np.ndarray]:
    """Crop face boxes from a batch in one ``grid_sample`` call.

    Args:
        images: ``[N, C, H, W]`` uint8 or float.
        boxes: ``[N, 4]`` ``(x0, y0, x1, y1)`` pixels; geometry as in :func:`box_affine`.
        antialias, prescale: as in :func:`warp_affine` (one pre-resize for the whole batch).
    Returns:
        ``(crops [N, C, H', W'], affines [N, 2, 3])``; map points with :func:`apply_affine`.
    """
    affines = box_affine(boxes, out_size, scale, square, shift)
    return warp_affine(images, affines, out_size, padding=padding, antialias=antialias,
                       prescale=prescale), affines


def pil_crop(image: torch.Tensor, box, out_size: Size, scale: float = 1.0,
             square: bool = True) -> torch.Tensor:
    """Crop a face box like :func:`crop_batch` (same geometry, see :func:`box_affine`), with
    Pillow: the image is first shrunk by an integer factor ``k = step // 1.5`` (``step`` = input
    pixels per output pixel; a box filter, so large faces do not alias), then resampled
    bilinearly. The CCNN crops are made this way. ``image``: uint8 ``[C, H, W]`` (C = 1 or 3).
    """
    from PIL import Image

    oh, ow = _hw(out_size)
    x0, y0, x1, y1 = (float(v) for v in np.asarray(box, dtype=np.float64))
    w, h = x1 - x0, y1 - y0
    if square:
        side = max(w, h)
        x0, y0, w, h = x0 + (w - side) / 2, y0 + (h - side) / 2, side, side
    m = (scale - 1) / 2                                # margin on each side, box units
    arr = image.permute(1, 2, 0).numpy()
    im = Image.fromarray(arr[:, :, 0] if arr.shape[2] == 1 else arr)
    k = max(1, int((w * scale / ow) // 1.5))
    if k > 1:
        im = im.reduce(k)
    # PIL samples output pixel i at input *edge* coordinate a (i + 0.5) + c; our pixel centres
    # are at integers, so an input edge coordinate is centre + 0.5 (and / k after reducing).
    ax, ay = w * scale / ow / k, h * scale / oh / k
    cx, cy = (x0 - w * m + 0.5) / k, (y0 - h * m + 0.5) / k
    out = im.transform((ow, oh), Image.AFFINE, (ax, 0, cx, 0, ay, cy), resample=Image.BILINEAR,
                       fillcolor=0 if im.mode == "L" else (0,) * len(im.getbands()))
    out = np.array(out, dtype=np.uint8)   # a writable copy (torch warns on read-only arrays)
    return torch.from_numpy(np.ascontiguousarray(out[None] if out.ndim == 2
                                                 else out.transpose(2, 0, 1)))


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


def rotation_affine(angle: float, centre: tuple[float, float], scale: float = 1.0) -> np.ndarray:
    """Rotate by ``angle`` degrees counter-clockwise (as displayed) and scale about ``centre``."""
    t = math.radians(angle)
    c, s = scale * math.cos(t), scale * math.sin(t)
    cx, cy = centre
    return np.array([[c, s, cx - c * cx - s * cy], [-s, c, cy + s * cx - c * cy]])


# --------------------------------------------------------------------------- boxes from points
@dataclass(frozen=True)
class BoxGeometry:
    """Where a data set's face boxes sit on its points, in units of the points' own size ``s``.

    With the tight box of the points (centre ``c``, sides ``w, h``) and ``s = (w + h) / 2``
    (``side="mean"``) or ``max(w, h)`` (``side="max"``), a face box is the square of side
    ``ratio * s`` centred on ``c + (dx, dy) * s``. :func:`fit_box_geometry` measures it on a set
    with real (detector) boxes; :func:`boxes_from_points` places such boxes on another set, as
    an ideal detector with the first set's box convention would.
    """

    dx: float
    dy: float
    ratio: float
    side: str = "mean"

    def __post_init__(self):
        if self.side not in ("mean", "max"):
            raise ValueError(f"side must be 'mean' or 'max', got {self.side!r}")


def _point_extent(points: np.ndarray, side: str) -> tuple[np.ndarray, np.ndarray]:
    """Centres ``[..., 2]`` and sizes ``[...]`` of the tight boxes of ``points [..., K, 2]``
    (NaN points ignored)."""
    lo, hi = np.nanmin(points, -2), np.nanmax(points, -2)
    size = (hi - lo).sum(-1) / 2 if side == "mean" else (hi - lo).max(-1)
    return (lo + hi) / 2, size


def fit_box_geometry(points, boxes, side: str = "mean", stat: str = "mean") -> BoxGeometry:
    """Measure :class:`BoxGeometry` on points ``[N, K, 2]`` and their boxes ``[N, 4]``.

    ``side``: the points' size measure (see :class:`BoxGeometry`); the box side is measured the
    same way (mean or longer side). ``stat``: ``"mean"`` or ``"median"`` over the faces.
    """
    if stat not in ("mean", "median"):
        raise ValueError(f"stat must be 'mean' or 'median', got {stat!r}")
    p, b = np.asarray(points, dtype=np.float64), np.asarray(boxes, dtype=np.float64)
    centre, s = _point_extent(p, side)
    bw, bh = b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]
    bside = (bw + bh) / 2 if side == "mean" else np.maximum(bw, bh)
    off = ((b[:, :2] + b[:, 2:]) / 2 - centre) / s[:, None]
    reduce = np.mean if stat == "mean" else np.median
    return BoxGeometry(float(reduce(off[:, 0])), float(reduce(off[:, 1])),
                       float(reduce(bside / s)), side)


def boxes_from_points(points, geometry: BoxGeometry | None = None) -> np.ndarray:
    """Face boxes ``(x0, y0, x1, y1)`` from points: ``[K, 2] -> [4]`` or ``[N, K, 2] -> [N, 4]``.

    Without ``geometry``: the tight box of the finite points (all NaN -> a NaN box). With it:
    the square box that :class:`BoxGeometry` places on the points. The one box-from-points
    function of the package; loaders use it for formats that ship no box.
    """
    p = np.asarray(points, dtype=np.float64)
    finite = np.isfinite(p).all(-1)
    empty = ~finite.any(-1)
    # a point with a NaN coordinate is missing; a face with no point at all gets a NaN box (its
    # points are zeroed first only so that nanmin does not warn)
    q = np.where((finite | empty[..., None])[..., None], np.where(empty[..., None, None], 0.0, p),
                 np.nan)
    if geometry is None:
        out = np.concatenate([np.nanmin(q, -2), np.nanmax(q, -2)], -1)
    else:
        centre, s = _point_extent(q, geometry.side)
        c = centre + np.stack([geometry.dx * s, geometry.dy * s], -1)
        half = (geometry.ratio * s / 2)[..., None]
        out = np.concatenate([c - half, c + half], -1)
    return np.where(empty[..., None], np.nan, out)
