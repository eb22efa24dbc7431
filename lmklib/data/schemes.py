"""Landmark schemes as plain data: point names, flip permutation, normalisation indices, citation.

Conventions used throughout lmklib:

* Points are ``[K, 2]`` arrays of ``(x, y)`` pixel coordinates, 0-based, where pixel ``(0, 0)``
  has its centre at ``(0.0, 0.0)``. Formats with 1-based coordinates (300-W ``.pts``, MATLAB) are
  shifted by -1 when read and +1 when written.
* "Left" and "right" in point names follow each dataset's own convention, which the scheme's
  ``sides`` field states: ``"image"`` (left = smaller x in a frontal face, i.e. the subject's right;
  CUHK, CelebA, iBUG 68, WFLW, COFW, AFLW) or ``"subject"`` (the subject's own left; Kaggle, BioID).
* ``flip_perm[i]`` is the index that point ``i`` takes after a horizontal mirror: a left eye
  becomes a right eye. Flipping twice is the identity.
* :func:`convert_points` maps between schemes only where the target points are defined by the
  source points (a subset, or a mean such as an eye centre). Anything else raises a
  :class:`ValueError` that says why: no point is ever invented or filled with NaN.
"""

from __future__ import annotations

import warnings
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

# --- Kaggle Facial Keypoints (15 points, the subject's own left/right) ----------------------------

KAGGLE15 = Scheme(
    name="kaggle15",
    names=("left_eye_center", "right_eye_center", "left_eye_inner_corner", "left_eye_outer_corner",
           "right_eye_inner_corner", "right_eye_outer_corner", "left_eyebrow_inner_end",
           "left_eyebrow_outer_end", "right_eyebrow_inner_end", "right_eyebrow_outer_end",
           "nose_tip", "mouth_left_corner", "mouth_right_corner", "mouth_center_top_lip",
           "mouth_center_bottom_lip"),
    flip_perm=_pairs_to_perm(15, [(0, 1), (2, 4), (3, 5), (6, 8), (7, 9), (11, 12)]),
    outer_eye_corners=(5, 3),  # image-left (subject's right) first
    eye_centres=((1,), (0,)),
    sides="subject",
    citation="Kaggle Facial Keypoints Detection (2013), https://www.kaggle.com/c/facial-keypoints-"
             "detection; data from Y. Bengio's lab, Univ. Montreal",
)
#: The 30 coordinate columns of the Kaggle CSVs, in file order (``<point>_x``, ``<point>_y``).
KAGGLE15_COLUMNS: tuple[str, ...] = tuple(f"{n}_{c}" for n in KAGGLE15.names for c in "xy")

# --- AFLW (21 points; 19 without the ears) ---------------------------------------------------------

_AFLW21_NAMES = (
    "left_brow_left_corner", "left_brow_center", "left_brow_right_corner",
    "right_brow_left_corner", "right_brow_center", "right_brow_right_corner",
    "left_eye_left_corner", "left_eye_center", "left_eye_right_corner",
    "right_eye_left_corner", "right_eye_center", "right_eye_right_corner",
    "left_ear", "nose_left", "nose_center", "nose_right", "right_ear",
    "mouth_left_corner", "mouth_center", "mouth_right_corner", "chin_center",
)
_AFLW_CITATION = ("Koestinger, Wohlhart, Roth & Bischof, Annotated Facial Landmarks in the Wild, "
                  "ICCV-W 2011")
AFLW21 = Scheme(
    name="aflw21",
    names=_AFLW21_NAMES,
    flip_perm=_pairs_to_perm(21, [(0, 5), (1, 4), (2, 3), (6, 11), (7, 10), (8, 9), (12, 16),
                                  (13, 15), (17, 19)]),
    outer_eye_corners=(6, 11),
    eye_centres=((7,), (10,)),
    sides="image",
    citation=_AFLW_CITATION + " (21-point markup; also AFLW2000-3D's pt2d)",
)
_AFLW19_FROM_21 = tuple(i for i in range(21) if i not in (12, 16))
AFLW19 = Scheme(
    name="aflw19",
    names=tuple(_AFLW21_NAMES[i] for i in _AFLW19_FROM_21),
    flip_perm=_pairs_to_perm(19, [(0, 5), (1, 4), (2, 3), (6, 11), (7, 10), (8, 9), (12, 14),
                                  (15, 17)]),
    outer_eye_corners=(6, 11),
    eye_centres=((7,), (10,)),
    sides="image",
    citation=_AFLW_CITATION + " (the 19 points without ears used by the AFLW-full benchmark, "
             "Zhu et al. CVPR 2016; mmpose aflw.py)",
)

# --- COFW (29 points, the LFPW markup; order as in mmpose cofw.py) ----------------------------------

COFW29 = Scheme(
    name="cofw29",
    names=("left_brow_outer", "right_brow_outer", "left_brow_inner", "right_brow_inner",
           "left_brow_top", "left_brow_bottom", "right_brow_top", "right_brow_bottom",
           "left_eye_outer", "right_eye_outer", "left_eye_inner", "right_eye_inner",
           "left_eye_top", "left_eye_bottom", "right_eye_top", "right_eye_bottom",
           "left_pupil", "right_pupil", "nose_left", "nose_right", "nose_tip", "nose_bottom",
           "mouth_left_corner", "mouth_right_corner", "upper_lip_top", "upper_lip_bottom",
           "lower_lip_top", "lower_lip_bottom", "chin"),
    flip_perm=_pairs_to_perm(29, [(0, 1), (2, 3), (4, 6), (5, 7), (8, 9), (10, 11), (12, 14),
                                  (13, 15), (16, 17), (18, 19), (22, 23)]),
    outer_eye_corners=(8, 9),
    eye_centres=((16,), (17,)),
    sides="image",
    citation="Burgos-Artizzu, Perona & Dollar, Robust Face Landmark Estimation under Occlusion, "
             "ICCV 2013 (COFW, 29 points)",
)

# --- WFLW (98 points) -------------------------------------------------------------------------------

_WFLW98_NAMES = (
    [f"contour_{i:02d}" for i in range(33)]
    + [f"left_brow_upper_{i}" for i in range(5)] + [f"left_brow_lower_{i}" for i in range(4)]
    + [f"right_brow_upper_{i}" for i in range(5)] + [f"right_brow_lower_{i}" for i in range(4)]
    + [f"nose_bridge_{i}" for i in range(4)] + [f"nose_base_{i}" for i in range(5)]
    + [f"left_eye_{i}" for i in range(8)] + [f"right_eye_{i}" for i in range(8)]
    + [f"mouth_outer_{i:02d}" for i in range(12)] + [f"mouth_inner_{i}" for i in range(8)]
    + ["left_pupil", "right_pupil"]
)
_WFLW98_PAIRS = (
    [(i, 32 - i) for i in range(16)]
    + [(33 + i, 46 - i) for i in range(5)] + [(38 + i, 50 - i) for i in range(4)]
    + [(55, 59), (56, 58)]
    + [(60 + i, 72 - i) for i in range(5)] + [(65, 75), (66, 74), (67, 73)]
    + [(76, 82), (77, 81), (78, 80), (83, 87), (84, 86)]
    + [(88, 92), (89, 91), (93, 95), (96, 97)]
)
WFLW98 = Scheme(
    name="wflw98",
    names=tuple(_WFLW98_NAMES),
    flip_perm=_pairs_to_perm(98, _WFLW98_PAIRS),
    outer_eye_corners=(60, 72),
    eye_centres=((96,), (97,)),
    sides="image",
    citation="Wu et al., Look at Boundary: A Boundary-Aware Face Alignment Algorithm, CVPR 2018 "
             "(WFLW, 98 points)",
)

# --- BioID with the FGNet 20-point markup (the subject's own left/right) ---------------------------

BIOID20 = Scheme(
    name="bioid20",
    names=("right_eye_pupil", "left_eye_pupil", "right_mouth_corner", "left_mouth_corner",
           "right_eyebrow_outer_end", "right_eyebrow_inner_end", "left_eyebrow_inner_end",
           "left_eyebrow_outer_end", "right_temple", "right_eye_outer_corner",
           "right_eye_inner_corner", "left_eye_inner_corner", "left_eye_outer_corner",
           "left_temple", "nose_tip", "right_nostril", "left_nostril", "upper_lip_outer_centre",
           "lower_lip_outer_centre", "chin_tip"),
    flip_perm=_pairs_to_perm(20, [(0, 1), (2, 3), (4, 7), (5, 6), (8, 13), (9, 12), (10, 11),
                                  (15, 16)]),
    outer_eye_corners=(9, 12),
    eye_centres=((0,), (1,)),
    sides="subject",
    citation="Jesorsky, Kirchberg & Frischholz, Robust Face Detection Using the Hausdorff "
             "Distance, AVBPA 2001 (BioID); 20-point markup by the FGNet project (T. Cootes)",
)

SCHEMES: dict[str, Scheme] = {s.name: s for s in (CUHK5, KAGGLE15, AFLW19, BIOID20, AFLW21,
                                                  COFW29, IBUG68, WFLW98)}
#: Other names accepted by :func:`get_scheme` (CelebA's 5 points are the CUHK 5, same order).
ALIASES: dict[str, str] = {"celeba5": "cuhk5", "celeba": "cuhk5", "cuhk": "cuhk5",
                           "kaggle": "kaggle15", "aflw": "aflw21", "cofw": "cofw29",
                           "300w": "ibug68", "ibug": "ibug68", "wflw": "wflw98",
                           "bioid": "bioid20"}


def get_scheme(name_or_k: str | int | Scheme) -> Scheme:
    """Look a scheme up by name (or alias, see :data:`ALIASES`), or by point count where that is
    unambiguous (5, 15, 19, 20, 21, 29, 68, 98)."""
    if isinstance(name_or_k, Scheme):
        return name_or_k
    if isinstance(name_or_k, str):
        key = ALIASES.get(name_or_k.lower(), name_or_k.lower())
        if key not in SCHEMES:
            raise ValueError(f"unknown scheme {name_or_k!r}; valid: {sorted(SCHEMES)} "
                             f"(aliases: {sorted(ALIASES)})")
        return SCHEMES[key]
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


# --- Conversions ------------------------------------------------------------------------------------
# Each direct conversion lists, per target point, the source points averaged to make it (one index
# = the point itself; several = a centre, e.g. the mean of an eye contour). Longer conversions are
# chains of these (found by breadth-first search), so every target point is always defined.

_EYE_R68, _EYE_L68 = tuple(range(36, 42)), tuple(range(42, 48))  # image-left eye, image-right eye
_CONVERSIONS: dict[tuple[str, str], tuple[tuple[int, ...], ...]] = {
    # eye centres = mean of the six eye-contour points; nose tip; mouth corners (image-left first)
    ("ibug68", "cuhk5"): (_EYE_R68, _EYE_L68, (30,), (48,), (54,)),
    # Kaggle's "left" is the subject's left = image right in the 68 markup. The eye centres (pupils
    # in Kaggle) are approximated by the mean of each eye contour.
    ("ibug68", "kaggle15"): (_EYE_L68, _EYE_R68, (42,), (45,), (39,), (36,), (22,), (26,), (21,),
                             (17,), (30,), (54,), (48,), (51,), (57,)),
    # WFLW -> 68: every other contour point, the upper brow contours, 6 of the 8 points of each eye,
    # the whole nose and mouth (the usual correspondence for cross-dataset 68-point evaluation).
    ("wflw98", "ibug68"): tuple((i,) for i in (
        list(range(0, 33, 2)) + list(range(33, 38)) + list(range(42, 47)) + list(range(51, 60))
        + [60, 61, 63, 64, 65, 67, 68, 69, 71, 72, 73, 75] + list(range(76, 96)))),
    # WFLW annotates the pupils: use them as eye centres rather than contour means.
    ("wflw98", "cuhk5"): ((96,), (97,), (54,), (76,), (82,)),
    ("kaggle15", "cuhk5"): ((1,), (0,), (10,), (12,), (11,)),
    ("aflw21", "aflw19"): tuple((i,) for i in _AFLW19_FROM_21),
    ("aflw21", "cuhk5"): ((7,), (10,), (14,), (17,), (19,)),
    ("aflw19", "cuhk5"): ((7,), (10,), (13,), (15,), (17,)),
    ("cofw29", "cuhk5"): ((16,), (17,), (20,), (22,), (23,)),
    # BioID's "right" is the subject's right = image left.
    ("bioid20", "cuhk5"): ((0,), (1,), (14,), (2,), (3,)),
    # The 15 Kaggle points are all in the FGNet 20-point markup.
    ("bioid20", "kaggle15"): ((1,), (0,), (11,), (12,), (10,), (9,), (6,), (7,), (5,), (4,),
                              (14,), (3,), (2,), (17,), (18,)),
}

_WHY_NOT = {
    "cuhk5": "five points only (eye centres, nose tip, mouth corners)",
    "kaggle15": "no face contour, nose wings or inner mouth",
    "aflw19": "no face contour (only the chin centre), eye centres only as points",
    "aflw21": "no face contour (only the chin centre and ears)",
    "cofw29": "no face contour (only the chin), no 68-style eye contour",
    "bioid20": "no face contour (temples and chin only)",
    "ibug68": "no pupils, lower brow contours or the odd WFLW contour points",
}


def _conversion_path(src: str, dst: str) -> list[str] | None:
    """Shortest chain of direct conversions from ``src`` to ``dst`` (breadth-first)."""
    from collections import deque

    prev: dict[str, str | None] = {src: None}
    queue = deque([src])
    while queue:
        node = queue.popleft()
        if node == dst:
            path = [node]
            while prev[path[-1]] is not None:
                path.append(prev[path[-1]])
            return path[::-1]
        for a, b in _CONVERSIONS:
            if a == node and b not in prev:
                prev[b] = node
                queue.append(b)
    return None


def conversion_path(src: str | int | Scheme, dst: str | int | Scheme) -> list[str]:
    """The schemes a conversion from ``src`` to ``dst`` passes through (``[src, ..., dst]``).

    Raises:
        ValueError: ``dst`` cannot be derived from ``src``; the message says why.
    """
    s, d = get_scheme(src), get_scheme(dst)
    path = _conversion_path(s.name, d.name)
    if path is None:
        known = sorted({f"{a}->{b}" for a, b in _CONVERSIONS})
        raise ValueError(
            f"cannot convert {s.name} ({s.num_points} points) to {d.name} ({d.num_points} points): "
            f"{d.name} has points that {s.name} does not annotate ({s.name}: "
            f"{_WHY_NOT.get(s.name, 'different markup')}), and lmklib does not guess them. "
            f"Direct conversions: {', '.join(known)} (and chains of them).")
    return path


def convert_points(points: np.ndarray, src: str | int | Scheme,
                   dst: str | int | Scheme) -> np.ndarray:
    """Convert ``points`` ``[..., K_src, 2]`` from scheme ``src`` to ``dst`` ``[..., K_dst, 2]``.

    Every target point is one source point or the mean of several (eye centres); a point that is
    NaN in the input stays NaN (a centre is the mean of its annotated points). A target that cannot
    be derived raises instead of returning NaN.

    Raises:
        ValueError: unknown scheme, wrong number of input points, or no documented conversion.
    """
    s, d = get_scheme(src), get_scheme(dst)
    p = np.asarray(points, dtype=np.float64)
    if p.ndim < 2 or p.shape[-1] != 2 or p.shape[-2] != s.num_points:
        raise ValueError(f"expected points of shape [..., {s.num_points}, 2] for {s.name}, "
                         f"got {list(p.shape)}")
    path = conversion_path(s, d)
    for a, b in zip(path[:-1], path[1:]):
        groups = _CONVERSIONS[(a, b)]
        with np.errstate(invalid="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN centre -> NaN, on purpose
            p = np.stack([p[..., g[0], :] if len(g) == 1 else np.nanmean(p[..., list(g), :], axis=-2)
                          for g in groups], axis=-2)
    return p.copy() if len(path) == 1 else p


def ibug68_to_cuhk5(points: np.ndarray) -> np.ndarray:
    """68 iBUG points ``[..., 68, 2]`` -> CUHK 5 points: eye centres (mean of the six eye-contour
    points), nose tip (30), mouth corners (48, 54). Image-left first, as CUHK orders them."""
    p = np.asarray(points, dtype=np.float64)
    if p.shape[-2] != 68:
        raise ValueError(f"expected 68 points, got {p.shape[-2]}")
    return convert_points(p, IBUG68, CUHK5)
