"""Landmark error metrics: pure, vectorised, NaN-aware functions.

Shapes: predictions and ground truth are ``[N, K, 2]`` (x, y) in pixels (numpy arrays or torch
tensors; results are numpy). A ground-truth point that is NaN, or masked out by ``mask [N, K]``,
is *skipped*: it never counts as zero error. A face whose points are all missing gets NaN.

Normalisations for :func:`nme` (``norm=``):

============== =============================================================================
``inter_ocular`` distance between the outer eye corners (``scheme.outer_eye_corners``; for
                 5-point schemes the eye centres)
``inter_pupil``  distance between the eye centres (mean of each eye's points)
``bbox``         sqrt(w * h) of the ground-truth box (``boxes`` if given, else the tight box)
``face_size``    the same as ``bbox`` (the name several papers use)
``bbox_width``   width of the face box (Sun et al. 2013 / CUHK 5-point protocol)
``diagonal``     diagonal of the face box
array ``[N]``    a given normaliser per face
============== =============================================================================
"""

from __future__ import annotations

from typing import Any

import numpy as np

NORMS = ("inter_ocular", "inter_pupil", "bbox", "face_size", "bbox_width", "diagonal")


def _np(x: Any) -> np.ndarray:
    if hasattr(x, "detach"):
        x = x.detach().cpu().numpy()
    return np.asarray(x, dtype=np.float64)


def _check_pair(pred: Any, gt: Any, mask: Any = None) -> tuple[np.ndarray, np.ndarray]:
    p, g = _np(pred), _np(gt)
    if p.ndim == 2:
        p, g = p[None], g[None]
    if p.shape != g.shape or p.ndim != 3 or p.shape[-1] != 2:
        raise ValueError(f"pred and gt must both be [N, K, 2]; got {list(p.shape)} and {list(g.shape)}")
    if mask is not None:
        m = _np(mask).astype(bool).reshape(g.shape[:2])
        g = np.where(m[..., None], g, np.nan)
    return p, g


def point_errors(pred: Any, gt: Any, mask: Any = None) -> np.ndarray:
    """Euclidean error per point ``[N, K]`` in pixels; NaN where the ground truth is missing."""
    p, g = _check_pair(pred, gt, mask)
    return np.sqrt(((p - g) ** 2).sum(-1))


def _boxes(gt: np.ndarray, boxes: Any) -> np.ndarray:
    if boxes is None:
        with np.errstate(invalid="ignore"), _warnings_off():
            return np.stack([np.nanmin(gt[..., 0], 1), np.nanmin(gt[..., 1], 1),
                             np.nanmax(gt[..., 0], 1), np.nanmax(gt[..., 1], 1)], axis=1)
    b = _np(boxes).reshape(-1, 4)
    if len(b) != len(gt):
        raise ValueError(f"boxes must be [N, 4] with N={len(gt)}; got {list(b.shape)}")
    return b


class _warnings_off:
    def __enter__(self):
        import warnings
        self._cm = warnings.catch_warnings()
        self._cm.__enter__()
        warnings.simplefilter("ignore", RuntimeWarning)

    def __exit__(self, *exc):
        return self._cm.__exit__(*exc)


def normaliser(gt: Any, norm: str | Any = "inter_ocular", scheme: Any = None,
               boxes: Any = None) -> np.ndarray:
    """The per-face normalising distance ``[N]`` for ``norm`` (see the module docstring)."""
    g = _np(gt)
    if g.ndim == 2:
        g = g[None]
    if not isinstance(norm, str):
        d = _np(norm).reshape(-1)
        if len(d) != len(g):
            raise ValueError(f"a given normaliser must have one value per face ({len(g)}); got {len(d)}")
        return d
    if norm not in NORMS:
        raise ValueError(f"unknown norm {norm!r}; valid: {list(NORMS)} or an array of shape [N]")
    if norm in ("inter_ocular", "inter_pupil"):
        from .data.schemes import get_scheme

        if scheme is None:
            scheme = get_scheme(g.shape[1])
        scheme = get_scheme(scheme) if not hasattr(scheme, "eye_centres") else scheme
        if norm == "inter_ocular":
            a, b = scheme.outer_eye_corners
            ea, eb = g[:, a], g[:, b]
        else:
            with _warnings_off():
                ea, eb = scheme.eye_centre_points(g)
        return np.sqrt(((ea - eb) ** 2).sum(-1))
    bx = _boxes(g, boxes)
    w, h = bx[:, 2] - bx[:, 0], bx[:, 3] - bx[:, 1]
    if norm in ("bbox", "face_size"):
        return np.sqrt(w * h)
    if norm == "bbox_width":
        return w
    return np.sqrt(w ** 2 + h ** 2)


def nme(pred: Any, gt: Any, norm: str | Any = "inter_ocular", scheme: Any = None,
        boxes: Any = None, mask: Any = None, reduce: str = "mean") -> np.ndarray | float:
    """Normalised mean error.

    For each face: the mean over its annotated points of the point error, divided by the face's
    normalising distance. ``reduce="mean"`` averages over faces (ignoring faces with no annotated
    point), ``"none"`` returns ``[N]``. A fraction, not a percentage.
    """
    if reduce not in ("mean", "none"):
        raise ValueError(f"reduce must be 'mean' or 'none', got {reduce!r}")
    _, g = _check_pair(pred, gt, mask)
    err = point_errors(pred, gt, mask)
    d = normaliser(g, norm, scheme, boxes)
    with _warnings_off():
        per_face = np.nanmean(err, axis=1) / d
    if reduce == "none":
        return per_face
    return float(np.nanmean(per_face)) if np.isfinite(per_face).any() else float("nan")


def per_landmark_error(pred: Any, gt: Any, norm: str | Any = "inter_ocular", scheme: Any = None,
                       boxes: Any = None, mask: Any = None) -> np.ndarray:
    """Mean normalised error of each landmark ``[K]`` over the faces where it is annotated."""
    _, g = _check_pair(pred, gt, mask)
    err = point_errors(pred, gt, mask) / normaliser(g, norm, scheme, boxes)[:, None]
    with _warnings_off():
        return np.nanmean(err, axis=0)


def failure_rate(errors: Any, threshold: float = 0.1) -> float:
    """Fraction of faces whose (normalised) error exceeds ``threshold``; NaN errors skipped."""
    e = _np(errors).reshape(-1)
    e = e[np.isfinite(e)]
    return float((e > threshold).mean()) if len(e) else float("nan")


def ced(errors: Any, max_threshold: float = 0.1, steps: int = 1001) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative error distribution: thresholds ``[steps]`` in ``[0, max_threshold]`` and the
    fraction of faces with error <= each threshold."""
    if max_threshold <= 0 or steps < 2:
        raise ValueError("max_threshold must be > 0 and steps >= 2")
    e = np.sort(_np(errors).reshape(-1))
    e = e[np.isfinite(e)]
    t = np.linspace(0.0, max_threshold, steps)
    if len(e) == 0:
        return t, np.full(steps, np.nan)
    return t, np.searchsorted(e, t, side="right") / len(e)


def auc(errors: Any, threshold: float = 0.1, steps: int = 10001) -> float:
    """Area under the CED curve up to ``threshold``, divided by ``threshold`` (so in [0, 1])."""
    t, f = ced(errors, threshold, steps)
    return float(np.trapezoid(f, t) / threshold) if hasattr(np, "trapezoid") \
        else float(np.trapz(f, t) / threshold)


def rmse(pred: Any, gt: Any, mask: Any = None) -> float:
    """Root mean squared error in pixels over all annotated coordinates (Kaggle's metric: each
    x and y value is one entry)."""
    p, g = _check_pair(pred, gt, mask)
    d = (p - g).reshape(-1)
    d = d[np.isfinite(d)]
    return float(np.sqrt((d ** 2).mean())) if len(d) else float("nan")


def yaw_binned_nme(errors: Any, yaws: Any) -> dict[str, float]:
    """Per-face errors ``[N]`` grouped by ``|yaw|`` (degrees) into the large-pose bins of
    AFLW2000-3D (:func:`lmklib.data.formats.aflw.yaw_bin`: ``[0, 30]``, ``(30, 60]``, ``(60, 90]``;
    faces beyond 90 degrees count in the last bin, as 3DDFA's protocol does).

    Returns the mean of each bin (``"0-30"``, ``"30-60"``, ``"60-90"``), ``"mean"`` = the mean of
    the three bin means (the AFLW2000-3D tables' convention, so the few large-pose faces weigh a
    third), ``"all"`` = the plain mean over faces, and the bin sizes (``"n_0-30"``, ...). NaN
    errors are skipped; an empty bin gives NaN (and a NaN ``"mean"``).
    """
    from .data.formats.aflw import yaw_bin

    e, y = _np(errors).reshape(-1), _np(yaws).reshape(-1)
    if len(e) != len(y):
        raise ValueError(f"errors and yaws must have the same length, got {len(e)} and {len(y)}")
    binned = np.array([yaw_bin(v) for v in y], dtype=object)
    binned[binned == ">90"] = "60-90"
    out: dict[str, float] = {}
    with _warnings_off():
        for name in ("0-30", "30-60", "60-90"):
            sel = binned == name
            out[name] = float(np.nanmean(e[sel])) if sel.any() else float("nan")
            out[f"n_{name}"] = int(sel.sum())
        out["mean"] = float(np.mean([out[k] for k in ("0-30", "30-60", "60-90")]))
        out["all"] = float(np.nanmean(e)) if np.isfinite(e).any() else float("nan")
    return out
