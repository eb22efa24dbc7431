"""Synthetic faces with exact landmarks: the embedded data every notebook can fall back to.

Each face is the 3-D template of :mod:`lmklib.data.face_template` deformed by random identity and
expression coefficients, rotated (yaw, pitch, roll), projected with a mild perspective camera,
placed at a random scale and offset, and drawn from its own points: the face silhouette is the
convex hull of the projected face surface, the eyes are the polygons of their six points, the
brows the band between their upper (iBUG) and lower (WFLW) edges, the mouth the lip polygons, the
nose the bridge and base lines with nostrils. So every landmark sits exactly on the part drawn there
(the learnability the notebooks rely on).

Appearance: skin tones, hair styles, ears, neck and clothes, background colour with clutter shapes,
a directional light gradient, optional blur (downsample/upsample) and Gaussian noise, random
occluders and face masks. Shapes are filled with Pillow on a canvas supersampled 2-8x (>= 256 px)
and box-reduced, so edges are anti-aliased and sub-pixel positions show in the pixels.

Limits (by design, to stay fast): hidden parts are not z-buffered but skipped by their normals
(a far eye, brow or nostril is not drawn once it turns away), and the head is a stylised
polygon model, not a photo-realistic render.

Conventions (as everywhere in lmklib): points are ``(x, y)`` pixels, 0-based, pixel centres at
integers; "left" is the image left (iBUG sides). Visibility: a point is not visible when its
template normal turns away from the camera (self-occlusion under yaw/pitch) or when an occluder or
mask covers it; a derived point (a mid-lid, an eye centre) is visible when all the points it is
made from are. ``boxes`` are the tight box of the 68 points (visible or not).

Determinism: sample ``i`` of ``generate(n, seed=s)`` depends only on ``(s, i)`` and the options
(per-sample generators seeded by ``SeedSequence(s, spawn_key=(i,))``), never on ``n``; geometry is
drawn first and clutter last, so e.g. ``clutter=False`` or ``grayscale=True`` keeps the same faces.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Callable

import numpy as np
from PIL import Image, ImageDraw

from lmklib.data import face_template as ft
from lmklib.data.face_template import SUPPORTED_SCHEMES, scheme_matrix
from lmklib.data.sample import LandmarkDataset, Record
from lmklib.data.schemes import Scheme, get_scheme

_NA = ft.NUM_ANNOTATED  # 68 landmarks, 8 lower-brow points, 2 ear lobes

__all__ = ["generate", "SyntheticFaces", "scheme_matrix", "SUPPORTED_SCHEMES"]

# ---------------------------------------------------------------- random parameters

_SKIN = np.array([[240, 212, 188], [238, 196, 163], [224, 172, 133], [200, 140, 100],
                  [165, 110, 75], [125, 80, 55], [92, 60, 42]], dtype=np.float64)
_HAIR = np.array([[22, 17, 14], [58, 38, 24], [105, 72, 42], [185, 150, 95], [150, 62, 32],
                  [165, 160, 155]], dtype=np.float64)
_IRIS = np.array([[70, 45, 25], [38, 28, 20], [60, 95, 130], [70, 100, 60], [105, 82, 50]],
                 dtype=np.float64)
_MASK_COLOURS = np.array([[225, 235, 240], [120, 170, 215], [35, 35, 40], [240, 240, 240]],
                         dtype=np.float64)
_MASK_COVERS = np.r_[2:15, 29:36, 48:68]  # iBUG points a face mask covers


def _geometry(rng: np.random.Generator, max_yaw, max_pitch, max_roll, expression, identity) -> dict:
    e = np.zeros(len(ft.EXPRESSION_NAMES))
    u = rng.random(12)
    smile, asym = 1.3 * u[0] - 0.3, 0.3 * (2 * u[1] - 1)
    brow, blink = 1.5 * u[2] - 0.5, u[3]
    e[:] = [u[4] ** 2,  # mouth_open
            smile + asym, smile - asym,  # smile_l, smile_r
            brow + 0.3 * (u[5] - 0.5), brow - 0.3 * (u[5] - 0.5),  # brow_raise_l, _r
            max(0.0, 2.5 * blink - 1.5) + (0.9 if u[6] < 0.04 else 0.0),  # eye_close_l
            max(0.0, 2.5 * blink - 1.5) + (0.9 if u[7] < 0.04 else 0.0),  # eye_close_r
            max(0.0, 2 * u[8] - 1),  # frown
            max(0.0, 3 * u[9] - 2)]  # pucker
    e[5:7] = np.minimum(e[5:7], 0.95)
    return {
        "identity": identity * (2 * rng.random(len(ft.IDENTITY_NAMES)) - 1),
        "expression": expression * e,
        "pose": np.array([max_yaw, max_pitch, max_roll]) * (2 * rng.random(3) - 1),
        "distance": 5.0 + 7.0 * u[10],
        "scale": u[11],  # uniform in scale_range: 68-point frontal box height / image size
        "shift": 2 * rng.random(2) - 1,  # box-centre offset, in units of max_shift
    }


def _appearance(rng: np.random.Generator, size: int, blur: bool, noise: bool) -> dict:
    u = rng.random(24)
    skin = _SKIN[rng.integers(len(_SKIN))] + 24 * (rng.random(3) - 0.5)
    hair = _HAIR[rng.integers(len(_HAIR))] * (0.8 + 0.4 * u[0])
    style = int(np.searchsorted([0.12, 0.6, 1.0], u[1]))  # 0 bald, 1 short, 2 long
    dark = np.minimum(hair, skin * 0.45)
    return {
        "skin": skin, "hair": hair, "style": style, "fringe": u[2] < 0.5 and style > 0,
        "brow": 0.7 * dark + 0.3 * skin * 0.5,
        "lips": np.clip(skin * [0.82, 0.52, 0.52] + [20, 0, 5] + 20 * (u[3] - 0.5), 0, 255),
        "mouth": np.array([55.0, 18, 22]) * (0.5 + 0.5 * u[4]),
        "sclera": np.array([236.0, 232, 226]) * (0.8 + 0.2 * u[5]),
        "iris": _IRIS[rng.integers(len(_IRIS))] * (0.7 + 0.6 * u[6]),
        "background": 255 * rng.random(3),
        "shirt": 255 * rng.random(3),
        "light": (2 * np.pi * u[7], 0.3 * u[8], 0.8 + 0.25 * u[9]),  # angle, strength, gain
        "blur": 1.15 + 0.65 * u[10] if blur and u[11] < 0.4 else 0.0,  # downsampling factor
        "noise": 7.0 * u[12] if noise else 0.0,
        "noise_offset": int(rng.integers(1 << 20)),
    }


def _clutter(rng: np.random.Generator, size: int) -> list[tuple]:
    shapes = []
    for _ in range(int(rng.integers(0, 11))):
        kind = int(rng.integers(4))
        colour = tuple(int(c) for c in 255 * rng.random(3))
        pts = rng.random((4, 2)) * 1.3 - 0.15
        width = float(0.01 + 0.05 * rng.random())
        shapes.append((kind, colour, pts, width))
    return shapes


def _occluder(rng: np.random.Generator) -> dict:
    u = rng.random(8)
    n = 16 if u[0] < 0.5 else (4 if u[0] < 0.75 else 9)
    t = np.linspace(0, 2 * np.pi, n, endpoint=False) + u[1] * np.pi
    r = 0.6 + 0.4 * rng.random(16)[:n] if n == 9 else np.ones(n)  # fixed number of draws
    if n == 4:
        t = t + np.pi / 4
    return {"unit": np.stack([r * np.cos(t) * (0.5 + u[2]), r * np.sin(t)], 1),
            "angle": np.pi * u[3], "centre": u[4:6], "radius": 0.15 + 0.25 * u[6],
            "colour": 255 * rng.random(3), "p": u[7]}


# ---------------------------------------------------------------- drawing helpers

_NOISE_BANK = np.random.default_rng(12345).standard_normal(1 << 21).astype(np.float32)


_DIRS = np.stack([np.cos(np.linspace(0, 2 * np.pi, 96, endpoint=False)),
                  np.sin(np.linspace(0, 2 * np.pi, 96, endpoint=False))])


def _hull(p: np.ndarray) -> np.ndarray:
    """Convex hull of ``[M, 2]`` points as the support points in 96 directions, in angular order
    (duplicates included): exact up to edges whose turn is below 3.75 degrees, and far cheaper
    than Qhull for a polygon fill."""
    return p[(p @ _DIRS).argmax(0)]


def _inside(points: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Even-odd point-in-polygon test, ``[K, 2]`` points against ``[V, 2]`` vertices -> ``[K]``."""
    x, y = points[:, :1], points[:, 1:]
    a, b = poly, np.roll(poly, -1, axis=0)
    cond = (a[:, 1] > y) != (b[:, 1] > y)
    with np.errstate(divide="ignore", invalid="ignore"):
        xc = a[:, 0] + (y - a[:, 1]) * (b[:, 0] - a[:, 0]) / (b[:, 1] - a[:, 1])
    return (cond & (x < xc)).sum(1) % 2 == 1


def _seg_dist(p: np.ndarray, poly: np.ndarray) -> float:
    """Distance from point ``p`` [2] to the closed polygon ``poly`` [V, 2]."""
    a = poly
    ab = np.concatenate([poly[1:], poly[:1]]) - a
    ap = p - a
    t = np.minimum(np.maximum((ap * ab).sum(1) / np.maximum((ab * ab).sum(1), 1e-12), 0.0), 1.0)
    d = ap - t[:, None] * ab
    return float(np.sqrt((d * d).sum(1).min()))


class _Canvas:
    """A supersampled RGB PIL canvas. Points are given in canvas pixels: output pixel ``x`` covers
    ``[x - 0.5, x + 0.5]`` and PIL pixel ``j`` covers ``[j, j + 1)``, so ``j = (x + 0.5) ss - 0.5``
    (:meth:`to_canvas`)."""

    def __init__(self, size: int, ss: int, background: tuple):
        self.ss = ss
        self.im = Image.new("RGB", (size * ss, size * ss), background)
        self.d = ImageDraw.Draw(self.im)

    def to_canvas(self, p: np.ndarray) -> np.ndarray:
        return (p + 0.5) * self.ss - 0.5

    def poly(self, p: np.ndarray, colour: tuple) -> None:
        if len(p) >= 3:
            self.d.polygon(p.ravel().tolist(), fill=colour)

    def line(self, p: np.ndarray, colour: tuple, width: float) -> None:
        self.d.line(p.ravel().tolist(), fill=colour, width=max(1, int(width + 0.5)), joint="curve")

    def disc(self, c: np.ndarray, r: float, colour: tuple) -> None:
        self.d.ellipse([c[0] - r, c[1] - r, c[0] + r, c[1] + r], fill=colour)


def _colours(app: dict, occ: dict | None) -> list[tuple]:
    """Every colour a face uses, as int RGB tuples, in the order :func:`_render` unpacks them."""
    skin, hair = app["skin"], app["hair"] if app["style"] else app["skin"] * 0.85
    mask = _MASK_COLOURS[int(app["noise_offset"] % len(_MASK_COLOURS))]
    table = np.stack([app["background"], hair * 0.85, app["shirt"], skin * 0.72, skin * 0.85, hair,
                      skin * 0.9, skin * 0.96, skin, app["brow"], app["sclera"], app["iris"],
                      app["iris"] * 0.25, skin * 0.2, skin * 0.45, skin * 0.86, skin * 0.8,
                      skin * 0.5,
                      skin * 0.3, app["lips"], app["mouth"], mask, mask * 0.8,
                      occ["colour"] if occ is not None else skin])
    return [tuple(c) for c in np.clip(table, 0, 255).astype(int).tolist()]


# ---------------------------------------------------------------- one face


def _render(xy: np.ndarray, vis: np.ndarray, facing: np.ndarray, ppu: float, app: dict,
            clutter: list, occ: dict | None, mask: bool,
            size: int) -> tuple[Image.Image, np.ndarray]:
    """Draw one face. ``xy`` [P, 2] model points in output pixels; ``vis`` [NA] self-visibility.

    Returns ``(RGB image, covered [NA] bool)`` (points hidden by an occluder or a mask).
    """
    (bg, long_hair, shirt, neck_c, ear_c, hair, face0, face1, face2, brow, sclera, iris, pupil, lid,
     lower_lid, bridge, under, base_c, nostril, lips, mouth, mask_c, strap, occ_c) = \
        _colours(app, occ)
    ss = max(2, min(8, math.ceil(256 / size)))
    cv = _Canvas(size, ss, bg)
    S, X, u = ft.SLICES, cv.to_canvas(xy), ppu * ss  # X: canvas points; u: one model unit
    for kind, colour, pts, width in clutter:  # background clutter in image-relative coordinates
        p = cv.to_canvas(pts * size)
        if kind == 0:
            cv.d.ellipse(np.sort(p[:2], axis=0).ravel().tolist(), fill=colour)
        elif kind == 1:
            cv.d.rectangle(np.sort(p[:2], axis=0).ravel().tolist(), fill=colour)
        elif kind == 2:
            cv.poly(p[:3], colour)
        else:
            cv.line(p[:2], colour, width * size * ss)
    if app["style"] == 2:
        cv.poly(_hull(np.concatenate([X[S["long_hair"]], X[S["cap"]]])), long_hair)
    neck = X[S["neck"]]
    bottom = neck[5:]
    w, far = bottom[:, 0].max() - bottom[:, 0].min(), 2.0 * size * ss
    shoulders = np.array([[bottom[0, 0] - 1.1 * w, far], [bottom[-1, 0] + 1.1 * w, far]])
    cv.poly(_hull(np.concatenate([bottom, shoulders])), shirt)
    cv.poly(_hull(neck), neck_c)
    for side, ear in ((facing[0], "ear_l"), (facing[1], "ear_r")):
        if side:
            cv.poly(_hull(X[S[ear]]), ear_c)
    cv.poly(_hull(X[S["cap"]]), hair)
    # face: three nested hulls shade the dome (darker towards the silhouette)
    nose = X[27:36]
    cv.poly(_hull(X[ft.FACE_HULL]), face0)
    cv.poly(_hull(np.concatenate([X[S["ring1"]], nose])), face1)
    cv.poly(_hull(np.concatenate([X[S["ring2"]], nose])), face2)
    if app["fringe"]:
        cv.poly(np.concatenate([X[S["forehead"]][2:-2], X[S["hairline"]][::-1]]), hair)
    lw = 0.035 * u  # a line width that scales with the face
    if vis[19]:
        cv.poly(np.concatenate([X[17:22], X[68:72]]), brow)
    if vis[24]:
        cv.poly(np.concatenate([X[22:27], X[72:76]]), brow)
    for a in (36, 42):
        if vis[a:a + 6].sum() < 3:
            continue
        e = X[a:a + 6]
        cv.poly(e, sclera)
        centre = e.mean(0)
        r = min(0.085 * u, _seg_dist(centre, e))
        if r > 0.2 * ss:
            cv.disc(centre, r, iris)
            cv.disc(centre, 0.45 * r, pupil)
        cv.line(e[[0, 1, 2, 3]], lid, 1.8 * lw)  # upper lid and lashes
        cv.line(e[[3, 4, 5, 0]], lower_lid, 1.0 * lw)
    # nose: shaded bridge, the underside (tip 30 to the wings 31-35), base line, nostrils
    cv.line(X[27:31], bridge, 2.0 * lw)
    if vis[31:36].any():
        cv.poly(X[[30, 35, 34, 33, 32, 31]], under)
    base = X[31:36][vis[31:36]]
    if len(base) >= 2:
        cv.line(base, base_c, 0.9 * lw)
    for a, b in ((31, 32), (34, 35)):
        if vis[a] and vis[b]:
            cv.disc(0.5 * (X[a] + X[b]) - [0, 0.01 * u], 0.04 * u, nostril)
    # mouth: lips, then the opening
    cv.poly(X[48:60], lips)
    cv.poly(X[60:68], mouth)
    cv.line(X[[60, 61, 62, 63, 64]], mouth, 0.5 * lw)
    covered = np.zeros(_NA, dtype=bool)
    if mask:
        cv.poly(np.concatenate([X[1:16], X[S["mask_top"]][::-1]]), mask_c)
        cv.line(np.stack([X[S["mask_top"]][0], X[1]]), strap, lw)
        covered[_MASK_COVERS] = True
    if occ is not None:
        lo, hi = xy[:68].min(0), xy[:68].max(0)
        c, s = math.cos(occ["angle"]), math.sin(occ["angle"])
        poly = (occ["unit"] @ np.array([[c, s], [-s, c]])) * occ["radius"] * (hi - lo).max() \
            + lo + occ["centre"] * (hi - lo)
        cv.poly(cv.to_canvas(poly), occ_c)
        covered |= _inside(xy[:_NA], poly)
    im = cv.im.reduce(ss)
    if app["blur"] > 1.0:  # blur = box-downsample by the blur factor, bilinear back up (cheap)
        m = max(4, int(round(size / app["blur"])))
        im = im.resize((m, m), Image.BOX).resize((size, size), Image.BILINEAR)
    return im, covered


_GRIDS: dict[tuple, tuple[np.ndarray, np.ndarray]] = {}


def _finish(im: Image.Image, app: dict, grayscale: bool) -> np.ndarray:
    """Light gradient and noise on the rendered image -> ``[H, W, C]`` uint8."""
    if grayscale:
        im = im.convert("L")
    img = np.asarray(im)
    if img.ndim == 2:
        img = img[:, :, None]
    key = img.shape
    if key not in _GRIDS:  # full-shape grids: broadcasting over channels is several times slower
        g = np.linspace(-1, 1, key[0], dtype=np.float32)
        _GRIDS[key] = (np.ascontiguousarray(np.broadcast_to(g[None, :, None], key)),
                       np.ascontiguousarray(np.broadcast_to(g[:, None, None], key)))
    gx, gy = _GRIDS[key]
    angle, strength, gain = app["light"]
    field = gx * np.float32(gain * strength * math.cos(angle))
    field += gy * np.float32(gain * strength * math.sin(angle))
    field += np.float32(gain)
    out = img.astype(np.float32)
    out *= field
    if app["noise"] > 0:
        k = out.size
        off = app["noise_offset"] % (len(_NOISE_BANK) - k)
        out += np.float32(app["noise"]) * _NOISE_BANK[off:off + k].reshape(key)
    np.clip(out, 0, 255, out=out)
    return out.astype(np.uint8)


def _place(lm68: np.ndarray, geo: dict, size: int, scale_range: tuple[float, float],
           max_shift: float) -> tuple[float, np.ndarray]:
    """Pixels per model unit, and the offset putting the 68-point box at the image centre moved by
    ``shift * max_shift * size`` (as far as the box stays 3% inside the image)."""
    ppu = (scale_range[0] + geo["scale"] * (scale_range[1] - scale_range[0])) * size / _FRONTAL_H
    lo, hi = lm68.min(0), lm68.max(0)
    margin = 0.03 * size
    limit = size - 1 - 2 * margin
    if (hi - lo).max() * ppu > limit:
        ppu = limit / (hi - lo).max()
    span = (hi - lo) * ppu
    room = np.maximum(limit - span, 0)  # free range for the box origin
    centre = (size - 1) / 2 + geo["shift"] * np.minimum(room / 2, max_shift * size)
    return ppu, centre - span / 2 - lo * ppu


_FRONTAL_H = float(np.ptp(ft.LM[:, 1]))
_TEMPLATE_FLAT = ft.TEMPLATE.ravel()
_IDENTITY_FLAT = ft.IDENTITY_BASIS.reshape(len(ft.IDENTITY_BASIS), -1)
_EXPRESSION_FLAT = ft.EXPRESSION_BASIS.reshape(len(ft.EXPRESSION_BASIS), -1)
_EAR_NORMALS = np.array([[-1.0, 0, 0.1], [1.0, 0, 0.1]]).T


def _face(i: int, seed: int, size: int, opts: dict) -> dict:
    """Geometry, image and annotations of sample ``i`` (independent of every other sample).

    One generator per sample, drawn in a fixed order (geometry, appearance, occluder, mask, then
    the variable-length clutter last), so switching an option off leaves the other draws alone."""
    rng = np.random.default_rng(np.random.SeedSequence(seed, spawn_key=(i,)))
    geo = _geometry(rng, opts["max_yaw"], opts["max_pitch"], opts["max_roll"],
                    opts["expression"], opts["identity"])
    app = _appearance(rng, size, opts["blur"], opts["noise"])
    occ = _occluder(rng)
    has_occ, has_mask = occ["p"] < opts["occlusion"], rng.random() < opts["mask_prob"]
    clutter = _clutter(rng, size) if opts["clutter"] else []
    return _draw(geo, app, clutter, occ if has_occ else None, has_mask, size, opts["grayscale"],
                 opts["scale_range"], opts["max_shift"])


def _draw(geo: dict, app: dict, clutter: list, occ: dict | None, mask: bool, size: int,
          grayscale: bool, scale_range: tuple[float, float] = (0.5, 0.75),
          max_shift: float = 0.08) -> dict:
    R = ft.rotation_matrices(geo["pose"][None])[0]
    pts = _TEMPLATE_FLAT + geo["identity"] @ _IDENTITY_FLAT + geo["expression"] @ _EXPRESSION_FLAT
    rot = pts.reshape(-1, 3) @ R.T
    f = geo["distance"] / (geo["distance"] - rot[:, 2])
    xy = rot[:, :2] * f[:, None]
    ppu, offset = _place(xy[:68], geo, size, scale_range, max_shift)
    xy = xy * ppu + offset
    vis = ft.NORMALS @ R[2] > 0.0
    facing = R[2] @ _EAR_NORMALS > -0.35
    img, covered = _render(xy, vis, facing, ppu, app, clutter, occ, mask, size)
    z = rot[:68, 2] * ppu * geo["distance"] / (geo["distance"] - rot[:68, 2])
    return {"image": _finish(img, app, grayscale), "points": xy[:_NA], "visible": vis & ~covered,
            "landmarks3d": np.concatenate([xy[:68], z[:, None]], 1), "pose": geo["pose"]}


# ---------------------------------------------------------------- public API


def generate(n: int, size: int = 64, seed: int = 0, scheme: str | Scheme = "ibug68",
             grayscale: bool = False, max_yaw: float = 60.0, max_pitch: float = 20.0,
             max_roll: float = 20.0, occlusion: float = 0.0, mask_prob: float = 0.0,
             clutter: bool = True, blur: bool = True, noise: bool = True,
             expression: float = 1.0, identity: float = 1.0,
             scale_range: tuple[float, float] = (0.5, 0.75),
             max_shift: float = 0.08) -> dict[str, np.ndarray]:
    """Generate ``n`` synthetic faces with exact landmarks.

    Args:
        n: number of faces.
        size: image side in pixels (square images; any size >= 16).
        seed: sample ``i`` depends only on ``(seed, i)`` and the options below.
        scheme: landmark scheme of ``landmarks``/``visible`` (see :data:`SUPPORTED_SCHEMES`).
        grayscale: one channel instead of RGB.
        max_yaw, max_pitch, max_roll: poses are uniform in ``[-max, max]`` degrees (yaw up to 90).
        occlusion: probability that a face gets a random occluder (points under it invisible).
        mask_prob: probability of a face mask (covers jaw 2-14, lower nose, mouth).
        clutter, blur, noise: background shapes; blur (40% of the faces: box-downsampled by a
            factor 1.15-1.8 and bilinearly upsampled); Gaussian pixel noise (sigma 0-7 levels).
        expression, identity: scale of the random expression / identity coefficients (0 = none).
        scale_range: the frontal 68-point box height, as a fraction of ``size``, is uniform in this
            range (the posed box is shrunk further if it would not fit 3% inside the image).
        max_shift: the box centre moves up to this fraction of ``size`` from the image centre.

    Returns:
        dict of numpy arrays: ``images`` [N, H, W, C] uint8 (C = 1 or 3); ``landmarks`` [N, K, 2]
        float32 pixels (0-based, pixel centres at integers); ``visible`` [N, K] bool; ``boxes``
        [N, 4] float32 tight box (x0, y0, x1, y1) of the 68 points; ``pose`` [N, 3] float32
        (yaw, pitch, roll) degrees; ``landmarks3d`` [N, 68, 3] float32 (x, y = the 68 image
        points, z = depth in pixels towards the camera relative to the head centre).
    """
    if size < 16:
        raise ValueError(f"size must be >= 16 pixels, got {size}")
    if not 0 <= max_yaw <= 90:
        raise ValueError(f"max_yaw must be in [0, 90] degrees, got {max_yaw}")
    w = scheme_matrix(scheme)
    opts = dict(max_yaw=max_yaw, max_pitch=max_pitch, max_roll=max_roll, expression=expression,
                identity=identity, blur=blur, noise=noise, clutter=clutter, occlusion=occlusion,
                mask_prob=mask_prob, grayscale=grayscale, scale_range=tuple(scale_range),
                max_shift=max_shift)
    c = 1 if grayscale else 3
    out = {"images": np.zeros((n, size, size, c), np.uint8),
           "landmarks": np.zeros((n, len(w), 2), np.float32),
           "visible": np.zeros((n, len(w)), bool), "boxes": np.zeros((n, 4), np.float32),
           "pose": np.zeros((n, 3), np.float32), "landmarks3d": np.zeros((n, 68, 3), np.float32)}
    hidden = (w != 0).astype(np.int32)
    for i in range(n):
        f = _face(i, seed, size, opts)
        out["images"][i] = f["image"].reshape(size, size, c)
        out["landmarks"][i] = w @ f["points"]
        out["visible"][i] = hidden @ (~f["visible"]).astype(np.int32) == 0
        p68 = f["points"][:68]
        out["boxes"][i] = [*p68.min(0), *p68.max(0)]
        out["pose"][i] = f["pose"]
        out["landmarks3d"][i] = f["landmarks3d"]
    return out


class SyntheticFaces(LandmarkDataset):
    """A :class:`~lmklib.data.sample.LandmarkDataset` of :func:`generate` faces, made once in
    ``__init__`` and kept in memory (``self.data`` holds the arrays); samples follow the lmklib
    contract, with ``meta["pose"] = (yaw, pitch, roll)`` degrees and ``meta["seed"]``.

    Args:
        n: number of faces; size: image side; scheme: landmark scheme; seed: faces depend only on
        ``(seed, index)``, so disjoint splits come from different seeds; transform: ``sample ->
        sample``; ``**generate_kwargs``: any other :func:`generate` option (grayscale, max_yaw,
        ...).
    """

    def __init__(self, n: int, size: int = 64, scheme: str | Scheme = "ibug68", seed: int = 0,
                 transform: Callable[[dict], dict] | None = None, **generate_kwargs):
        self.scheme = get_scheme(scheme)
        self.size, self.seed, self.options = size, seed, dict(generate_kwargs)
        # generate() fills preallocated arrays face by face, so one call is already "chunked"
        data = generate(n, size=size, seed=seed, scheme=self.scheme, **generate_kwargs)
        self.data = data
        records = [Record(image_path=Path(f"synthetic/seed{seed}/{i:06d}"),
                          landmarks=data["landmarks"][i].astype(np.float64),
                          box=data["boxes"][i].astype(np.float64), visible=data["visible"][i],
                          meta={"pose": tuple(float(v) for v in data["pose"][i]), "seed": seed},
                          image=data["images"][i])
                   for i in range(n)]
        super().__init__(records, transform)

    def extra_repr(self) -> str:
        opts = ", ".join(f"{k}={v}" for k, v in self.options.items())
        head = f"Image size: {self.size}, seed: {self.seed}"
        return head + (f"\nOptions: {opts}" if opts else "")
