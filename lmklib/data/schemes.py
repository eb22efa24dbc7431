"""Landmark schemes as plain data: point names, flip permutation, normalisation indices, citation.

Conventions used throughout lmklib:

* Points are ``[K, 2]`` arrays of ``(x, y)`` pixel coordinates, 0-based, where pixel ``(0, 0)``
  has its centre at ``(0.0, 0.0)``. Formats with 1-based coordinates (300-W ``.pts``, MATLAB) are
  shifted by -1 when read and +1 when written.
* "Left" and "right" in point names follow each dataset's own convention, which the scheme's
  ``sides`` field states: ``"image"`` (left = smaller x in a frontal face, i.e. the subject's right;
  CUHK, iBUG 68) or ``"subject"`` (the subject's own left; Kaggle).
* ``flip_perm[i]`` is the index that point ``i`` takes after a horizontal mirror: a left eye
  becomes a right eye. Flipping twice is the identity.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Scheme:
    """A landmark annotation scheme.

    Attributes:
        name: short identifier (``"cuhk5"``, ``"ibug68"``, ...).
        names: one readable name per point, in the dataset's order.
        flip_perm: index each point maps to under a horizontal flip.
        outer_eye_corners: ``(a, b)`` indices for the inter-ocular distance (outer eye corners);
            for schemes with only eye centres these are the eye centres, as the papers do.
        eye_centres: ``(indices_a, indices_b)``: the points averaged to get each pupil/eye centre.
        sides: ``"image"`` or ``"subject"``: which convention "left" in ``names`` follows.
        citation: where the scheme is defined.
    """

    name: str
    names: tuple[str, ...]
    flip_perm: tuple[int, ...]
    outer_eye_corners: tuple[int, int]
    eye_centres: tuple[tuple[int, ...], tuple[int, ...]]
    sides: str
    citation: str

    def __post_init__(self) -> None:
        k = len(self.names)
        if sorted(self.flip_perm) != list(range(k)):
            raise ValueError(f"scheme {self.name}: flip_perm is not a permutation of 0..{k - 1}")
        if any(self.flip_perm[self.flip_perm[i]] != i for i in range(k)):
            raise ValueError(f"scheme {self.name}: flipping twice must be the identity")
        if self.sides not in ("image", "subject"):
            raise ValueError(f"scheme {self.name}: sides must be 'image' or 'subject'")

    @property
    def num_points(self) -> int:
        return len(self.names)

    def eye_centre_points(self, points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Return the two eye centres ``[..., 2]`` of ``points`` ``[..., K, 2]`` (NaN-aware mean)."""
        a, b = self.eye_centres
        with np.errstate(invalid="ignore"):
            return (np.nanmean(points[..., list(a), :], axis=-2),
                    np.nanmean(points[..., list(b), :], axis=-2))


def _pairs_to_perm(k: int, pairs: list[tuple[int, int]]) -> tuple[int, ...]:
    perm = list(range(k))
    for a, b in pairs:
        perm[a], perm[b] = b, a
    return tuple(perm)


CUHK5 = Scheme(
    name="cuhk5",
    names=("left_eye", "right_eye", "nose_tip", "left_mouth_corner", "right_mouth_corner"),
    flip_perm=(1, 0, 2, 4, 3),
    outer_eye_corners=(0, 1),  # only eye centres exist: inter-ocular == inter-pupil here
    eye_centres=((0,), (1,)),
    sides="image",
    citation="Sun, Wang & Tang, Deep Convolutional Network Cascade for Facial Point Detection, "
             "CVPR 2013 (LFW+Webface 5-point set)",
)

_IBUG68_NAMES = (
    [f"jaw_{i:02d}" for i in range(17)]
    + [f"left_brow_{i}" for i in range(5)] + [f"right_brow_{i}" for i in range(5)]
    + [f"nose_bridge_{i}" for i in range(4)] + [f"nose_base_{i}" for i in range(5)]
    + [f"left_eye_{i}" for i in range(6)] + [f"right_eye_{i}" for i in range(6)]
    + [f"mouth_outer_{i:02d}" for i in range(12)] + [f"mouth_inner_{i}" for i in range(8)]
)
_IBUG68_PAIRS = (
    [(i, 16 - i) for i in range(8)]
    + [(17 + i, 26 - i) for i in range(5)]
    + [(31, 35), (32, 34)]
    + [(36, 45), (37, 44), (38, 43), (39, 42), (40, 47), (41, 46)]
    + [(48, 54), (49, 53), (50, 52), (55, 59), (56, 58)]
    + [(60, 64), (61, 63), (65, 67)]
)
IBUG68 = Scheme(
    name="ibug68",
    names=tuple(_IBUG68_NAMES),
    flip_perm=_pairs_to_perm(68, _IBUG68_PAIRS),
    outer_eye_corners=(36, 45),
    eye_centres=(tuple(range(36, 42)), tuple(range(42, 48))),
    sides="image",
    citation="Sagonas et al., 300 Faces in-the-Wild Challenge, ICCV-W 2013 (iBUG 68-point markup)",
)

SCHEMES: dict[str, Scheme] = {s.name: s for s in (CUHK5, IBUG68)}


def get_scheme(name_or_k: str | int) -> Scheme:
    """Look a scheme up by name, or by point count where that is unambiguous."""
    if isinstance(name_or_k, Scheme):
        return name_or_k
    if isinstance(name_or_k, str):
        if name_or_k not in SCHEMES:
            raise ValueError(f"unknown scheme {name_or_k!r}; valid: {sorted(SCHEMES)}")
        return SCHEMES[name_or_k]
    matches = [s for s in SCHEMES.values() if s.num_points == name_or_k]
    if len(matches) != 1:
        raise ValueError(f"no unique scheme with {name_or_k} points; valid: "
                         f"{sorted((s.name, s.num_points) for s in SCHEMES.values())}")
    return matches[0]


def flip_points(points: np.ndarray, width: float, scheme: Scheme) -> np.ndarray:
    """Mirror ``points`` ``[..., K, 2]`` in an image of ``width`` pixels and swap left/right."""
    out = np.array(points, dtype=np.float64, copy=True)
    out[..., 0] = (width - 1) - out[..., 0]
    return out[..., list(scheme.flip_perm), :]


def ibug68_to_cuhk5(points: np.ndarray) -> np.ndarray:
    """68 iBUG points ``[..., 68, 2]`` -> CUHK 5 points: eye centres (mean of the six eye-contour
    points), nose tip (30), mouth corners (48, 54). Image-left first, as CUHK orders them."""
    p = np.asarray(points, dtype=np.float64)
    if p.shape[-2] != 68:
        raise ValueError(f"expected 68 points, got {p.shape[-2]}")
    left, right = IBUG68.eye_centre_points(p)
    return np.stack([left, right, p[..., 30, :], p[..., 48, :], p[..., 54, :]], axis=-2)
