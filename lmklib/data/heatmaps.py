"""Gaussian heatmap targets and sub-pixel decoding back to points.

Coordinates are heatmap pixels with the library's convention: 0-based, the centre of heatmap
pixel ``(i, j)`` at ``(x=j, y=i)``. A heatmap ``stride`` times smaller than its image relates to
image pixels by ``x_hm = (x_img + 0.5) / stride - 0.5`` (:func:`image_to_heatmap`), the same
half-pixel rule as :func:`lmklib.data.transforms.resize_affine`.

Decoders (``decode_heatmaps(method=...)``):

* ``"argmax"``: the integer location of the maximum (exact for targets on integer points).
* ``"quarter_offset"``: argmax moved 0.25 px towards the higher neighbour in x and in y
  (Newell et al., Stacked Hourglass, 2016).
* ``"soft_argmax"``: the expectation of the clamped, normalised map (or of ``softmax(beta h)``),
  i.e. integral regression (Sun et al., 2018); biased by mass far from the peak on real outputs.
* ``"dark"``: DARK (Zhang et al., CVPR 2020): optionally blur the map (distribution modulation),
  then a second-order Taylor step of ``log h`` at the argmax. Exact on a noise-free Gaussian.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

METHODS = ("argmax", "quarter_offset", "soft_argmax", "dark")


def image_to_heatmap(points, stride: float):
    """Image pixels -> heatmap pixels for a map ``stride`` times smaller."""
    return (points + 0.5) / stride - 0.5


def heatmap_to_image(points, stride: float):
    """Heatmap pixels -> image pixels (inverse of :func:`image_to_heatmap`)."""
    return (points + 0.5) * stride - 0.5


def gaussian_heatmaps(points, size: int | tuple[int, int], sigma: float,
                      mask=None) -> torch.Tensor:
    """Unnormalised Gaussian targets ``exp(-|p - c|^2 / (2 sigma^2))`` (peak 1 at a pixel centre).

    Args:
        points: ``[N, K, 2]`` (or ``[K, 2]``) heatmap pixels; NaN points give all-zero maps.
        size: heatmap ``(H, W)`` (or one int for square maps).
        sigma: standard deviation in heatmap pixels.
        mask: optional ``[N, K]`` bool; False gives an all-zero map.
    Returns:
        float32 ``[N, K, H, W]`` (``[K, H, W]`` for unbatched points). Separable, so the cost is
        ``N K (H + W)`` exponentials and one outer product.
    """
    gx, gy = _gaussian_factors(points, size, sigma, mask)
    return gy[..., :, None] * gx[..., None, :]


def _gaussian_factors(points, size: int | tuple[int, int], sigma: float,
                      mask=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The separable factors of :func:`gaussian_heatmaps`: ``gx [..., K, W]``, ``gy [..., K, H]``
    (a map is ``gy[:, None] * gx[None, :]``), zero for NaN or masked points."""
    h, w = (size, size) if isinstance(size, int) else size
    p = torch.as_tensor(points, dtype=torch.float32)
    ok = torch.isfinite(p).all(-1)
    if mask is not None:
        ok = ok & torch.as_tensor(mask, dtype=torch.bool, device=p.device)
    p = torch.where(ok[..., None], p, torch.zeros_like(p))
    xs = torch.arange(w, dtype=torch.float32, device=p.device)
    ys = torch.arange(h, dtype=torch.float32, device=p.device)
    gx = torch.exp(-(xs - p[..., 0:1]) ** 2 / (2 * sigma**2)) * ok[..., None]   # [..., K, W]
    gy = torch.exp(-(ys - p[..., 1:2]) ** 2 / (2 * sigma**2))                   # [..., K, H]
    return gx, gy


def diffusion_heatmaps(points, shape3d, size: int | tuple[int, int],
                       sigma: float = 1.0) -> torch.Tensor:
    """3D diffusion heat maps (Fast DHM, Sun et al., Eq. 3, Fig. 2a, Algorithm 1).

    Channel ``j`` (x, y, z) is ``sum_k n_j(k) exp(-|(u, v) - p_k|^2 / (2 sigma^2))``: Algorithm 1's
    impulse map (landmark ``k`` holding ``n_j(k)`` at its pixel) convolved with a Gaussian, where
    ``n_j(k) = (S_j(k) - min_k S_j) / (max_k S_j - min_k S_j)`` normalises each face's shape per
    axis to ``[0, 1]`` (an axis with ``max == min`` gives 0). The Gaussians are those of
    :func:`gaussian_heatmaps` (peak 1), so a channel can exceed 1 where landmarks overlap.

    Args:
        points: ``[..., K, 2]`` heatmap pixels (0-based, pixel centres at integers); NaN points
            add nothing.
        shape3d: ``[..., K, 3]`` the 3D shape at the landmarks, finite (any units and origin:
            the normalisation removes each axis's offset and scale, not its direction, so e.g.
            a z towards or away from the viewer gives complementary channels ``n`` vs ``1 - n``).
        size: heatmap ``(H, W)`` (or one int for square maps).
        sigma: Gaussian std in heatmap pixels (the paper: 1).
    Returns:
        float32 ``[..., 3, H, W]``; differentiable w.r.t. ``points`` and ``shape3d`` (tensors;
        numpy input is accepted). Cost ``K (H + W)`` exponentials and ``3 K H W`` multiply-adds.
    """
    gx, gy = _gaussian_factors(points, size, sigma)
    s = torch.as_tensor(shape3d, dtype=torch.float32, device=gx.device)
    lo, hi = s.amin(-2, keepdim=True), s.amax(-2, keepdim=True)
    n = (s - lo) / (hi - lo).clamp_min(1e-12)                               # [..., K, 3]
    return torch.einsum("...kh,...kj,...kw->...jhw", gy, n, gx)


def soft_argmax(heatmaps: torch.Tensor, beta: float | None = None) -> torch.Tensor:
    """Differentiable expected location ``[..., K, 2]`` of ``[..., K, H, W]`` maps.

    ``beta=None`` normalises the maps clamped at 0 (exact for a noise-free Gaussian away from the
    border); otherwise weights are ``softmax(beta * h)``. An all-zero map gives NaN.
    """
    h, w = heatmaps.shape[-2:]
    flat = heatmaps.flatten(-2).float()
    if beta is None:
        wts = flat.clamp_min(0)
        wts = wts / wts.sum(-1, keepdim=True)
    else:
        wts = torch.softmax(beta * flat, dim=-1)
    wts = wts.unflatten(-1, (h, w))
    xs = torch.arange(w, dtype=wts.dtype, device=wts.device)
    ys = torch.arange(h, dtype=wts.dtype, device=wts.device)
    return torch.stack([(wts.sum(-2) * xs).sum(-1), (wts.sum(-1) * ys).sum(-1)], dim=-1)


def _gaussian_blur(maps: torch.Tensor, kernel: int) -> torch.Tensor:
    """OpenCV-style ``GaussianBlur(kernel, sigma=0)`` on ``[M, H, W]``, keeping each map's max."""
    sigma = 0.3 * ((kernel - 1) * 0.5 - 1) + 0.8
    r = kernel // 2
    t = torch.arange(-r, r + 1, dtype=maps.dtype, device=maps.device)
    g = torch.exp(-t**2 / (2 * sigma**2))
    g = g / g.sum()
    x = maps[:, None]
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="reflect"), g.view(1, 1, 1, -1))
    x = F.conv2d(F.pad(x, (0, 0, r, r), mode="reflect"), g.view(1, 1, -1, 1))[:, 0]
    peak_old = maps.flatten(1).amax(1).view(-1, 1, 1)
    peak_new = x.flatten(1).amax(1).view(-1, 1, 1).clamp_min(1e-12)
    return x * peak_old / peak_new


def decode_heatmaps(heatmaps, method: str = "dark", *, beta: float | None = None,
                    blur_kernel: int = 0, return_scores: bool = False):
    """Decode ``[N, K, H, W]`` (or ``[K, H, W]``) heatmaps to ``[N, K, 2]`` heatmap pixels.

    Args:
        method: one of ``argmax``, ``quarter_offset``, ``soft_argmax``, ``dark`` (module doc).
        beta: ``soft_argmax`` temperature (None = normalise the clamped map).
        blur_kernel: ``dark`` modulation kernel (odd; DARK/mmpose use 11 on predicted maps;
            0 = none, right for noise-free targets).
        return_scores: also return each map's maximum ``[N, K]``.
    Returns:
        float32 points (and scores). Maps that are all zero decode to NaN.
    """
    if method not in METHODS:
        raise ValueError(f"unknown decoding method {method!r}; valid: {METHODS}")
    hm = torch.as_tensor(heatmaps).float()
    lead, (h, w) = hm.shape[:-2], hm.shape[-2:]
    flat = hm.reshape(-1, h, w)
    scores, idx = flat.flatten(1).max(1)
    x, y = (idx % w).float(), torch.div(idx, w, rounding_mode="floor").float()
    empty = ~(flat.flatten(1) > 0).any(1)

    if method == "soft_argmax":
        pts = soft_argmax(flat, beta)
    elif method == "argmax":
        pts = torch.stack([x, y], -1)
    elif method == "quarter_offset":
        xi, yi, rows = x.long(), y.long(), torch.arange(len(flat), device=flat.device)
        inx = (xi > 0) & (xi < w - 1)
        iny = (yi > 0) & (yi < h - 1)
        dx = flat[rows, yi, (xi + 1).clamp(max=w - 1)] - flat[rows, yi, (xi - 1).clamp(min=0)]
        dy = flat[rows, (yi + 1).clamp(max=h - 1), xi] - flat[rows, (yi - 1).clamp(min=0), xi]
        pts = torch.stack([x + 0.25 * torch.sign(dx) * inx, y + 0.25 * torch.sign(dy) * iny], -1)
    else:
        pts = _dark(flat, x, y, blur_kernel)
    pts = torch.where(empty[:, None], torch.full_like(pts, float("nan")), pts)
    pts = pts.reshape(*lead, 2)
    return (pts, scores.reshape(lead)) if return_scores else pts


def _dark(flat: torch.Tensor, x: torch.Tensor, y: torch.Tensor, blur_kernel: int) -> torch.Tensor:
    """Taylor refinement of the argmax ``(x, y)`` on ``log`` of the (modulated) maps."""
    h, w = flat.shape[-2:]
    m = _gaussian_blur(flat, blur_kernel) if blur_kernel and blur_kernel > 1 else flat
    L = torch.log(m.clamp_min(1e-10)).double()
    L = F.pad(L[:, None], (1, 1, 1, 1), mode="replicate")[:, 0]        # so border lookups work
    rows = torch.arange(len(flat), device=flat.device)
    xi, yi = x.long() + 1, y.long() + 1
    at = lambda dy, dx: L[rows, yi + dy, xi + dx]                       # noqa: E731
    gx = 0.5 * (at(0, 1) - at(0, -1))
    gy = 0.5 * (at(1, 0) - at(-1, 0))
    hxx = at(0, 1) - 2 * at(0, 0) + at(0, -1)
    hyy = at(1, 0) - 2 * at(0, 0) + at(-1, 0)
    hxy = 0.25 * (at(1, 1) - at(1, -1) - at(-1, 1) + at(-1, -1))
    det = hxx * hyy - hxy**2
    ok = (det > 1e-12) & (hxx < 0) & (x > 0) & (x < w - 1) & (y > 0) & (y < h - 1)
    safe = torch.where(ok, det, torch.ones_like(det))
    ox = -(hyy * gx - hxy * gy) / safe
    oy = -(hxx * gy - hxy * gx) / safe
    ok = ok & (ox.abs() <= 1) & (oy.abs() <= 1)                         # a wild step: keep argmax
    return torch.stack([x + torch.where(ok, ox, 0.0).float(),
                        y + torch.where(ok, oy, 0.0).float()], -1)


def heatmap_targets(points, image_size: int | tuple[int, int], stride: float, sigma: float,
                    mask=None) -> torch.Tensor:
    """Targets for points in *image* pixels: maps of ``image_size / stride`` pixels (rounded)."""
    ih, iw = (image_size, image_size) if isinstance(image_size, int) else image_size
    size = (int(round(ih / stride)), int(round(iw / stride)))
    p = image_to_heatmap(torch.as_tensor(np.asarray(points), dtype=torch.float32), stride)
    return gaussian_heatmaps(p, size, sigma, mask)


LOSSES = ("mse", "softmax_ce")


def heatmap_loss(pred: torch.Tensor, target: torch.Tensor, kind: str = "mse") -> torch.Tensor:
    """Loss between predicted maps and :func:`gaussian_heatmaps` targets, ``[N, K, H, W]`` each.

    * ``"mse"``: the mean squared error over every pixel (CPM, Stacked Hourglass). With sparse
      targets an all-zero prediction already scores ``mean(target^2)``, close to a trained
      network's loss, so small or binary networks can stall on flat maps.
    * ``"softmax_ce"``: per landmark, the cross-entropy between the target normalised to sum 1 and
      the softmax of the predicted map over its pixels (the maps are logits), averaged over the
      landmarks that have a target. A flat map costs ``log(H W)`` above the optimum; decode such
      maps with ``soft_argmax(pred, beta=1)`` or the argmax.
    """
    if kind not in LOSSES:
        raise ValueError(f"unknown heatmap loss {kind!r}; valid: {LOSSES}")
    if kind == "mse":
        return ((pred - target) ** 2).mean()
    t = target.flatten(-2)
    mass = t.sum(-1)
    p = t / mass.clamp_min(1e-12).unsqueeze(-1)
    ce = -(p * F.log_softmax(pred.flatten(-2), dim=-1)).sum(-1)
    has = mass > 0
    return (ce * has).sum() / has.sum().clamp_min(1)
