"""A 3-D face template of our own, with identity and expression deformations, pose and projection.

The template is built from simple parametric curves (no scanned or published mean shape is used).
Model coordinates: ``x`` to the image right in a frontal view (the subject's left), ``y`` down,
``z`` towards the camera; the face is about 2 units wide (jaw points 0 and 16 near ``x = -+1``).

The model holds the annotated points first (``NUM_ANNOTATED`` rows: the 68 iBUG landmarks in iBUG
order with "image" sides, 8 lower-brow points as WFLW marks them, 2 ear lobes as AFLW marks them),
then points used only to draw the head: forehead arc, a dome of surface rings (so the convex hull of
the projection is the silhouette under any pose), ears, neck, hair cap, hairline and mask anchors.
Every deformation is linear, so a shape is ``TEMPLATE + coeffs @ BASIS``. :func:`scheme_matrix`
turns the annotated points into any supported landmark scheme.

Pose: ``R = Rz(roll) @ Rx(pitch) @ Ry(yaw)`` (degrees). Positive yaw turns the nose towards the
image right, positive pitch lifts the nose (the face looks up), positive roll turns the face
clockwise in the image. Mirroring the image equals negating yaw and roll of the mirrored shape.
"""

from __future__ import annotations

import numpy as np

from lmklib.data.schemes import Scheme, conversion_path, convert_points, get_scheme

# ---------------------------------------------------------------- the 68 landmarks


def _mirror(p: np.ndarray) -> np.ndarray:
    return p * np.array([-1.0, 1.0, 1.0])


def _landmarks68() -> np.ndarray:
    pts = np.zeros((68, 3))
    # jaw 0..16: a U from the image-left ear, round the chin, to the image-right ear
    a = np.linspace(-0.10, np.pi + 0.10, 17)
    c, s = np.cos(a), np.sin(a)
    pts[:17, 0] = -1.0 * c * (1.0 - 0.18 * np.clip(s, 0, None) ** 3)
    pts[:17, 1] = -0.10 + 1.32 * s
    pts[:17, 2] = 0.30 * np.clip(s, 0, None) - 0.62 * c ** 2
    # brows 17..21 (image-left, outer -> inner), 22..26 their mirror inner -> outer
    bx = np.linspace(-0.82, -0.16, 5)
    by = -0.56 - 0.10 * np.sin(np.linspace(0.2, np.pi - 0.4, 5))
    pts[17:22] = np.stack([bx, by, 0.42 - 0.38 * bx ** 2], axis=1)
    pts[22:27] = _mirror(pts[17:22][::-1])
    # nose bridge 27..30 and base 31..35
    pts[27:31] = np.stack([np.zeros(4), np.linspace(-0.30, 0.26, 4), np.linspace(0.42, 0.86, 4)], 1)
    nx = np.array([-0.21, -0.11, 0.0, 0.11, 0.21])
    pts[31:36] = np.stack([nx, [0.40, 0.44, 0.46, 0.44, 0.40], [0.50, 0.60, 0.66, 0.60, 0.50]], 1)
    # eyes: 36 outer corner, 37-38 upper lid, 39 inner corner, 40-41 lower lid (image-left eye)
    cx, cy, ew, eu, el = -0.42, -0.28, 0.20, 0.085, 0.075
    eye = np.array([[cx - ew, cy], [cx - 0.35 * ew, cy - eu], [cx + 0.35 * ew, cy - eu],
                    [cx + ew, cy + 0.01], [cx + 0.35 * ew, cy + el], [cx - 0.35 * ew, cy + el]])
    pts[36:42, :2] = eye
    pts[36:42, 2] = 0.40 - 0.45 * eye[:, 0] ** 2
    pts[42:48] = _mirror(pts[[39, 38, 37, 36, 41, 40]])
    # mouth: outer 48 (left corner) .. 54 (right corner) upper lip, 55..59 lower lip right -> left
    mo = np.array([[-0.38, 0.78], [-0.25, 0.71], [-0.10, 0.67], [0.0, 0.69], [0.10, 0.67],
                   [0.25, 0.71], [0.38, 0.78], [0.25, 0.87], [0.12, 0.91], [0.0, 0.92],
                   [-0.12, 0.91], [-0.25, 0.87]])
    mi = np.array([[-0.31, 0.78], [-0.12, 0.765], [0.0, 0.77], [0.12, 0.765], [0.31, 0.78],
                   [0.12, 0.79], [0.0, 0.795], [-0.12, 0.79]])
    pts[48:60, :2], pts[60:68, :2] = mo, mi
    pts[48:68, 2] = 0.55 - 0.9 * pts[48:68, 0] ** 2
    return pts


# ---------------------------------------------------------------- drawing-only points

def _forehead(n: int = 15) -> np.ndarray:
    """Arc from above jaw point 0 over the forehead to above jaw point 16 (left -> right)."""
    b = np.linspace(0.0, np.pi, n + 2)[1:-1]
    return np.stack([-0.98 * np.cos(b), -0.12 - 1.05 * np.sin(b),
                     0.10 * np.sin(b) - 0.58 * np.cos(b) ** 2], 1)


def _ring(points: np.ndarray, scale: float, dz: float) -> np.ndarray:
    centre = np.array([0.0, 0.25, 0.0])
    out = (points - centre) * np.array([scale, scale, 1.0]) + centre
    out[:, 2] += dz
    return out


def _ear(side: float) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, 10, endpoint=False)
    return np.stack([side * (1.00 + 0.10 * (1 + np.cos(t))), -0.12 + 0.27 * np.sin(t),
                     -0.70 - 0.16 * np.cos(t)], 1)


def _cap(n: int = 24) -> np.ndarray:
    """Hair cap: points on an ellipsoid over and behind the skull (symmetric, left->right)."""
    b = np.linspace(0.0, np.pi, n // 2)
    top = np.stack([-1.10 * np.cos(b), -0.15 - 1.22 * np.sin(b), -0.35 + 0 * b], 1)
    back = np.stack([-1.05 * np.cos(b), -0.15 - 1.00 * np.sin(b), -1.30 + 0 * b], 1)
    return np.concatenate([top, back])


def _long_hair() -> np.ndarray:
    """Hair hanging beside the face down to the shoulders (behind the face and neck)."""
    return np.array([[-1.18, -0.2, -0.7], [-1.25, 0.8, -0.8], [-1.15, 1.75, -0.8],
                     [-0.6, 1.8, -1.1],
                     [0.6, 1.8, -1.1], [1.15, 1.75, -0.8], [1.25, 0.8, -0.8], [1.18, -0.2, -0.7]])


def _neck() -> np.ndarray:
    t = np.linspace(0, np.pi, 5)
    ring = np.stack([-0.62 * np.cos(t), 0 * t, -0.35 + 0.35 * np.sin(t)], 1)
    return np.concatenate([ring + [0, 0.75, 0], ring * [1.25, 1, 1.2] + [0, 2.1, 0]])


def _hairline() -> np.ndarray:
    """Lower edge of a fringe, left->right, to be joined with the forehead arc above it."""
    b = np.linspace(0.05, np.pi - 0.05, 9)
    return np.stack([-0.92 * np.cos(b), -0.40 - 0.50 * np.sin(b) ** 0.6,
                     0.16 * np.sin(b) - 0.50 * np.cos(b) ** 2], 1)


def _brow_lower(lm: np.ndarray) -> np.ndarray:
    """Lower brow edges (WFLW style): 4 points per brow between the corners, image-left brow from
    inner to outer, then the image-right brow from outer to inner (closing each contour)."""
    u = np.array([0.8, 0.6, 0.4, 0.2])  # 0 = outer corner, 1 = inner corner
    up = np.stack([np.interp(u * 4, np.arange(5), lm[17:22, d]) for d in range(3)], 1)
    up[:, 1] += 0.035 + 0.035 * u
    return np.concatenate([up, _mirror(up[::-1])])


LM = _landmarks68()
_PARTS = {
    "lm": LM,
    "brow_lower": _brow_lower(LM),
    "ear_lobe": np.array([[-1.04, 0.13, -0.66], [1.04, 0.13, -0.66]]),
    "forehead": _forehead(),
    "ring1": None, "ring2": None,  # filled below
    "ear_l": _ear(-1.0), "ear_r": _ear(1.0),
    "neck": _neck(),
    "cap": _cap(),
    "long_hair": _long_hair(),
    "hairline": _hairline(),
    "mask_top": np.array([[-0.95, 0.05, -0.35], [-0.55, 0.08, 0.30], [0.0, -0.02, 0.72],
                          [0.55, 0.08, 0.30], [0.95, 0.05, -0.35]]),
}
_contour = np.concatenate([LM[:17], _PARTS["forehead"][::-1]])
_PARTS["ring1"] = _ring(_contour, 0.80, 0.30)
_PARTS["ring2"] = _ring(_contour, 0.52, 0.50)

SLICES: dict[str, slice] = {}
_rows, _start = [], 0
for _name, _arr in _PARTS.items():
    SLICES[_name] = slice(_start, _start + len(_arr))
    _rows.append(_arr)
    _start += len(_arr)
TEMPLATE: np.ndarray = np.concatenate(_rows)  # [P, 3]
NUM_MODEL_POINTS = len(TEMPLATE)

# face hull = the contour, the two dome rings, the nose and the chin: the head's front silhouette
#: Rows that are annotated points (68 landmarks, lower brows, ear lobes); the rest only draw.
NUM_ANNOTATED = 78
FACE_HULL = np.r_[np.arange(17), np.arange(SLICES["forehead"].start, SLICES["forehead"].stop),
                  np.arange(SLICES["ring1"].start, SLICES["ring2"].stop), np.arange(27, 36)]

# ---------------------------------------------------------------- outward normals of the 68 points


def _normals() -> np.ndarray:
    n = np.zeros((NUM_ANNOTATED, 3))
    a = np.linspace(-0.10, np.pi + 0.10, 17)
    n[:17] = np.stack([-np.cos(a), 0.55 * np.clip(np.sin(a), 0, None), 0.55 + 0 * a], 1)
    t = TEMPLATE
    for sl in (slice(17, 27), slice(36, 48), slice(48, 68), slice(68, 76)):
        n[sl] = np.stack([1.1 * t[sl, 0], 0 * t[sl, 0], np.ones(sl.stop - sl.start)], 1)
    n[76:78] = [[-1.0, 0.0, 0.25], [1.0, 0.0, 0.25]]
    n[27:31] = [0, -0.2, 1]
    n[31:36] = np.stack([1.6 * LM[31:36, 0], 0.4 + 0 * LM[31:36, 0], np.ones(5)], 1)
    return n / np.linalg.norm(n, axis=1, keepdims=True)


NORMALS = _normals()

# ---------------------------------------------------------------- deformation bases


def _region_scale(t: np.ndarray, idx, centre, factor) -> np.ndarray:
    """Displacement that scales points ``idx`` about ``centre`` by ``1 + factor`` (per axis)."""
    d = np.zeros_like(t)
    d[idx] = (t[idx] - centre) * np.asarray(factor)
    return d


def _sided(t: np.ndarray, idx, dx=0.0, dy=0.0, dz=0.0) -> np.ndarray:
    """Displacement moving points ``idx`` by ``(sign(x) dx, dy, dz)``."""
    d = np.zeros_like(t)
    d[idx, 0] = np.sign(t[idx, 0]) * dx
    d[idx, 1], d[idx, 2] = dy, dz
    return d


def _bases() -> tuple[list[str], np.ndarray, list[str], np.ndarray]:
    t = TEMPLATE
    P = len(t)
    allp = np.arange(P)
    eyes_l, eyes_r = np.r_[36:42], np.r_[42:48]
    eyes = np.r_[eyes_l, eyes_r]
    brows = np.r_[17:27, 68:76]
    nose = np.r_[27:36]
    mouth = np.r_[48:68]
    lower = np.where(t[:, 1] > 0.3)[0]
    ident = {
        "face_width": _region_scale(t, allp, 0, [0.10, 0, 0]),
        "face_length": _region_scale(t, lower, [0, 0.3, 0], [0, 0.16, 0]),
        "jaw_narrow": np.where(t[:, 1:2] > 0.2,
                               -0.16 * t[:, 0:1] * np.clip(t[:, 1:2] - 0.2, 0, 1.1), 0)
        * [1, 0, 0],
        "forehead": _region_scale(t, np.where(t[:, 1] < -0.6)[0], [0, -0.6, 0], [0, 0.25, 0]),
        "eye_spacing": _sided(t, np.r_[eyes, brows], dx=0.05),
        "eye_size": _region_scale(t, eyes_l, t[eyes_l].mean(0), 0.18)
        + _region_scale(t, eyes_r, t[eyes_r].mean(0), 0.18),
        "eye_height": _sided(t, np.r_[eyes, brows], dy=-0.05),
        "nose_length": _region_scale(t, nose, t[27], [0, 0.18, 0.12]),
        "nose_width": _region_scale(t, np.r_[31:36], t[33], [0.25, 0, 0]),
        "mouth_width": _region_scale(t, mouth, t[62], [0.15, 0, 0]),
        "lip_thickness": _region_scale(t, np.r_[48:60], t[62], [0, 0.35, 0]),
        "mouth_height": _sided(t, mouth, dy=0.05),
        "brow_height": _sided(t, brows, dy=-0.06),
        "brow_thickness": _sided(t, np.r_[68:76], dy=0.025),
        "depth": _region_scale(t, allp, 0, [0, 0, 0.15]),
    }
    # expressions: one-sided ones come in mirror pairs so the coefficient space is mirror-closed
    left = t[:, 0] < 0
    expr = {}
    d = np.zeros_like(t)  # jaw drop: lower lip, chin and lower jaw move down
    w = np.clip((t[:, 1] - 0.55) / 0.5, 0, 1) * (1 - 0.7 * np.clip(np.abs(t[:, 0]) - 0.3, 0, 1))
    w[np.r_[55:60, 65:68]] = 1.0
    w[np.r_[48, 54, 60, 64]] = 0.5
    w[:68][np.r_[:17]] *= 0.9
    d[:, 1] = 0.30 * w
    d[SLICES["neck"], 1] = 0.0
    d[SLICES["long_hair"], 1] = 0.0
    expr["mouth_open"] = d
    for side, name in ((left, "l"), (~left, "r")):
        d = np.zeros_like(t)
        corners = np.array([i for i in (48, 60, 54, 64) if side[i]])
        d[corners] = [0, -0.07, -0.03]
        d[corners, 0] = np.sign(t[corners, 0]) * 0.05
        nb = np.array([i for i in (49, 59, 61, 67, 53, 55, 63, 65) if side[i]])
        d[nb] = d[corners[0]] * 0.4
        expr[f"smile_{name}"] = d
        d = np.zeros_like(t)
        b = np.array([i for i in np.r_[17:27, 68:76] if side[i]])
        d[b, 1] = -0.07
        expr[f"brow_raise_{name}"] = d
        d = np.zeros_like(t)
        up = [37, 38] if name == "l" else [43, 44]
        lo = [41, 40] if name == "l" else [47, 46]
        d[up] = (t[lo] - t[up]) * 0.85
        expr[f"eye_close_{name}"] = d
    d = np.zeros_like(t)
    inner = np.array([20, 21, 22, 23, 68, 69, 74, 75])
    d[inner, 1] = 0.05
    d[inner, 0] = -np.sign(t[inner, 0]) * 0.03
    expr["frown"] = d
    expr["pucker"] = _region_scale(t, mouth, t[62], [-0.3, 0, 0]) + _sided(t, mouth, dz=0.08)
    return (list(ident), np.stack(list(ident.values())), list(expr), np.stack(list(expr.values())))


IDENTITY_NAMES, IDENTITY_BASIS, EXPRESSION_NAMES, EXPRESSION_BASIS = _bases()

# ---------------------------------------------------------------- pose and projection


def rotation_matrices(pose_deg: np.ndarray) -> np.ndarray:
    """``[N, 3]`` (yaw, pitch, roll) degrees -> ``[N, 3, 3]`` ``Rz(roll) Rx(pitch) Ry(yaw)``."""
    y, p, r = np.deg2rad(np.asarray(pose_deg, dtype=np.float64)).T
    n = len(y)
    cy, sy, cp, sp, cr, sr = np.cos(y), np.sin(y), np.cos(p), np.sin(p), np.cos(r), np.sin(r)
    o, z = np.ones(n), np.zeros(n)
    ry = np.stack([cy, z, sy, z, o, z, -sy, z, cy], 1).reshape(n, 3, 3)
    rx = np.stack([o, z, z, z, cp, sp, z, -sp, cp], 1).reshape(n, 3, 3)
    rz = np.stack([cr, -sr, z, sr, cr, z, z, z, o], 1).reshape(n, 3, 3)
    return rz @ rx @ ry


def shapes(identity: np.ndarray, expression: np.ndarray) -> np.ndarray:
    """Model points ``[N, P, 3]`` for identity ``[N, I]`` and expression ``[N, E]`` coefficients."""
    return (TEMPLATE[None] + np.einsum("ni,ipd->npd", identity, IDENTITY_BASIS)
            + np.einsum("ne,epd->npd", expression, EXPRESSION_BASIS))


def project(points: np.ndarray, pose_deg: np.ndarray,
            distance: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Rotate model points ``[N, P, 3]`` and project them with a pinhole camera at ``distance``
    ``[N]`` model units in front of the head centre (``z`` towards the camera).

    Returns ``(xy [N, P, 2], rotated [N, P, 3])``; ``xy`` is in model units at the head centre's
    depth (weak perspective as ``distance -> inf``).
    """
    rot = np.einsum("nij,npj->npi", rotation_matrices(pose_deg), points)
    d = np.asarray(distance, dtype=np.float64)[:, None]
    f = d / (d - rot[..., 2])
    return rot[..., :2] * f[..., None], rot


def visibility(pose_deg: np.ndarray, threshold: float = 0.0) -> np.ndarray:
    """``[N, NUM_ANNOTATED]`` True where the template normal of an annotated point faces the camera
    (``n_z > threshold``) after rotation: a cheap self-occlusion test (the far jaw, eye and brow
    vanish as |yaw| -> 90)."""
    nz = np.einsum("nj,pj->np", rotation_matrices(pose_deg)[:, 2, :], NORMALS)
    return nz > threshold


def mirror_perm() -> np.ndarray:
    """Index each model point takes under a mirror ``x -> -x`` (used by tests)."""
    t = TEMPLATE
    m = _mirror(t)
    d = np.linalg.norm(m[:, None] - t[None], axis=2)
    return d.argmin(1)


# ---------------------------------------------------------------- schemes from the model points

def _native(name: str) -> np.ndarray | None:
    """``[K, NUM_ANNOTATED]`` weights for the schemes the model defines directly."""
    rows: list[dict[int, float]]
    mid = lambda a, b: {a: 0.5, b: 0.5}  # noqa: E731
    eye_l = {i: 1 / 6 for i in range(36, 42)}
    eye_r = {i: 1 / 6 for i in range(42, 48)}
    if name == "ibug68":
        rows = [{i: 1.0} for i in range(68)]
    elif name == "wflw98":
        contour = []
        for j in range(16):
            contour += [{j: 1.0}, mid(j, j + 1)]
        contour.append({16: 1.0})
        rows = (contour + [{i: 1.0} for i in range(17, 22)] + [{i: 1.0} for i in range(68, 72)]
                + [{i: 1.0} for i in range(22, 27)] + [{i: 1.0} for i in range(72, 76)]
                + [{i: 1.0} for i in range(27, 36)]
                + [{36: 1.0}, {37: 1.0}, mid(37, 38), {38: 1.0}, {39: 1.0}, {40: 1.0}, mid(40, 41),
                   {41: 1.0}]
                + [{42: 1.0}, {43: 1.0}, mid(43, 44), {44: 1.0}, {45: 1.0}, {46: 1.0}, mid(46, 47),
                   {47: 1.0}]
                + [{i: 1.0} for i in range(48, 68)] + [eye_l, eye_r])
    elif name == "cofw29":
        rows = [{17: 1.0}, {26: 1.0}, {21: 1.0}, {22: 1.0}, {19: 1.0}, mid(69, 70), {24: 1.0},
                mid(73, 74),
                {36: 1.0}, {45: 1.0}, {39: 1.0}, {42: 1.0}, mid(37, 38), mid(40, 41), mid(43, 44),
                mid(46, 47), eye_l, eye_r, {31: 1.0}, {35: 1.0}, {30: 1.0}, {33: 1.0}, {48: 1.0},
                {54: 1.0}, {51: 1.0}, {62: 1.0}, {66: 1.0}, {57: 1.0}, {8: 1.0}]
    elif name == "aflw21":
        rows = [{17: 1.0}, {19: 1.0}, {21: 1.0}, {22: 1.0}, {24: 1.0}, {26: 1.0}, {36: 1.0}, eye_l,
                {39: 1.0}, {42: 1.0}, eye_r, {45: 1.0}, {76: 1.0}, {31: 1.0}, {30: 1.0}, {35: 1.0},
                {77: 1.0}, {48: 1.0}, mid(62, 66), {54: 1.0}, {8: 1.0}]
    else:
        return None
    w = np.zeros((len(rows), NUM_ANNOTATED))
    for k, r in enumerate(rows):
        for i, v in r.items():
            w[k, i] = v
    return w


def _conversion_matrix(src: Scheme, dst: Scheme) -> np.ndarray:
    """The linear map ``[K_dst, K_src]`` of :func:`convert_points` (which averages points)."""
    eye = np.zeros((src.num_points, src.num_points, 2))
    eye[np.arange(src.num_points), np.arange(src.num_points)] = 1.0
    return convert_points(eye, src, dst)[..., 0].T


_MATRICES: dict[str, np.ndarray] = {}
_NATIVE = ("ibug68", "wflw98", "aflw21", "cofw29")


def scheme_matrix(scheme: str | Scheme) -> np.ndarray:
    """``[K, 78]`` weights turning the model's annotated points (68 iBUG, 8 lower brow, 2 ear
    lobes) into the points of ``scheme``. Native for iBUG 68, WFLW 98, AFLW 21 and COFW 29 (lower
    brows, pupils = eye-contour centres, mid-lid and odd contour points lie on the drawn parts);
    other schemes via :func:`lmklib.data.schemes.convert_points` from a native one."""
    s = get_scheme(scheme)
    if s.name not in _MATRICES:
        w = _native(s.name)
        if w is None:
            for src in _NATIVE:
                try:
                    conversion_path(src, s.name)
                except ValueError:
                    continue
                w = _conversion_matrix(get_scheme(src), s) @ _native(src)
                break
            else:
                raise ValueError(f"synthetic faces cannot produce scheme {s.name!r}; supported: "
                                 f"{', '.join(SUPPORTED_SCHEMES)}")
        _MATRICES[s.name] = w
    return _MATRICES[s.name]


SUPPORTED_SCHEMES = ("cuhk5", "kaggle15", "aflw19", "aflw21", "cofw29", "ibug68", "wflw98")
