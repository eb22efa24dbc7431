"""Synthetic faces: determinism, shapes, visibility and that the parts are drawn at their points."""

import numpy as np
import pytest
import torch

from lmklib.data import face_template as ft
from lmklib.data.schemes import IBUG68, flip_points, get_scheme, ibug68_to_cuhk5
from lmklib.data.synthetic import (SUPPORTED_SCHEMES, SyntheticFaces, _appearance, _draw, _geometry,
                                   generate)


def test_deterministic_and_independent_of_n():
    a = generate(3, size=32, seed=7)
    b = generate(3, size=32, seed=7)
    c = generate(5, size=32, seed=7)
    d = generate(3, size=32, seed=8)
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])
        np.testing.assert_array_equal(a[k], c[k][:3])
    assert not np.array_equal(a["images"], d["images"])


def test_options_do_not_change_geometry():
    a = generate(2, size=32, seed=1)
    b = generate(2, size=32, seed=1, clutter=False, noise=False, blur=False, grayscale=True)
    np.testing.assert_array_equal(a["landmarks"], b["landmarks"])
    np.testing.assert_array_equal(a["pose"], b["pose"])


@pytest.mark.parametrize("scheme", SUPPORTED_SCHEMES)
def test_shapes_per_scheme(scheme):
    k = get_scheme(scheme).num_points
    d = generate(2, size=39, seed=0, scheme=scheme)
    assert d["images"].shape == (2, 39, 39, 3) and d["images"].dtype == np.uint8
    assert d["landmarks"].shape == (2, k, 2) and d["landmarks"].dtype == np.float32
    assert d["visible"].shape == (2, k) and d["visible"].dtype == bool
    assert d["boxes"].shape == (2, 4) and d["pose"].shape == (2, 3)
    assert d["landmarks3d"].shape == (2, 68, 3)
    assert np.isfinite(d["landmarks"]).all()


def test_derived_schemes_agree_with_68():
    d68 = generate(2, size=48, seed=3)
    d5 = generate(2, size=48, seed=3, scheme="cuhk5")
    np.testing.assert_allclose(d5["landmarks"], ibug68_to_cuhk5(d68["landmarks"]), atol=1e-4)
    d98 = generate(2, size=48, seed=3, scheme="wflw98")
    # WFLW even contour points, the nose and the mouth are the 68 points themselves
    np.testing.assert_allclose(d98["landmarks"][:, 0:33:2], d68["landmarks"][:, :17], atol=1e-4)
    np.testing.assert_allclose(d98["landmarks"][:, 76:96], d68["landmarks"][:, 48:68], atol=1e-4)
    # lower brow edge lies below the upper edge
    assert (d98["landmarks"][:, 38:42, 1].mean(1) > d98["landmarks"][:, 33:38, 1].mean(1)).all()
    with pytest.raises(ValueError, match="cannot produce"):
        generate(1, size=32, scheme="bioid20")


@pytest.mark.parametrize("size", [39, 64, 96, 128])
@pytest.mark.parametrize("grayscale", [False, True])
def test_sizes_and_channels(size, grayscale):
    d = generate(1, size=size, seed=2, grayscale=grayscale)
    assert d["images"].shape == (1, size, size, 1 if grayscale else 3)
    box = d["boxes"][0]
    assert box[2] - box[0] > 0.25 * size and box[3] - box[1] > 0.25 * size


def test_landmarks_inside_for_moderate_pose():
    d = generate(24, size=64, seed=4, max_yaw=30, max_pitch=15, max_roll=15)
    p = d["landmarks"]
    assert (p >= 0).all() and (p <= 63).all()
    assert d["visible"].mean() > 0.97
    np.testing.assert_allclose(d["boxes"][:, :2], p.min(1), atol=1e-5)
    np.testing.assert_allclose(d["boxes"][:, 2:], p.max(1), atol=1e-5)


def test_self_occlusion_at_profile():
    vis = ft.visibility(np.array([[90.0, 0, 0], [-90.0, 0, 0], [0.0, 0, 0]]))[:, :68]
    far_right = np.r_[12:17, 42:48, 22:27]  # image-right jaw, eye and brow turn away for yaw +90
    far_left = np.array(IBUG68.flip_perm)[far_right]
    assert not vis[0, far_right].any() and vis[0, far_left].all()
    assert not vis[1, far_left].any() and vis[1, far_right].all()
    assert vis[2].all()
    d = generate(40, size=32, seed=0, max_yaw=90, clutter=False)
    big = np.abs(d["pose"][:, 0]) > 75
    assert big.any()
    assert (~d["visible"][big]).sum(1).min() >= 8


def _clean(n, size, seed=0, **kw):
    return generate(n, size=size, seed=seed, grayscale=True, clutter=False, noise=False, blur=False,
                    max_yaw=20, max_pitch=10, max_roll=10, **kw)


def _at(img, pts):
    x = np.clip(np.round(pts[:, 0]).astype(int), 0, img.shape[1] - 1)
    y = np.clip(np.round(pts[:, 1]).astype(int), 0, img.shape[0] - 1)
    return img[y, x].astype(float)


def test_parts_are_drawn_at_their_points():
    d = _clean(16, 96, seed=11)
    eye, cheek, mouth = [], [], []
    for img, p in zip(d["images"][..., 0], d["landmarks"]):
        eye.append(_at(img, p[[36, 37, 38, 39, 42, 43, 44, 45]]).mean())
        cheek.append(_at(img, np.stack([(p[2] + p[31]) / 2, (p[14] + p[35]) / 2])).mean())
        mouth.append(_at(img, p[60:68]).mean())
    eye, cheek, mouth = map(np.array, (eye, cheek, mouth))
    assert (eye < cheek).mean() >= 0.9 and (mouth < cheek).mean() >= 0.9
    assert (cheek - eye).mean() > 25


def test_occluders_and_masks_hide_points():
    d = generate(6, size=48, seed=0, mask_prob=1.0, max_yaw=20)
    assert not d["visible"][:, 48:68].any() and d["visible"][:, 36:48].all()
    e = generate(30, size=48, seed=0, occlusion=1.0, max_yaw=20)
    assert (~e["visible"]).any(1).mean() > 0.5


def test_mirror_render_matches_negated_yaw_and_roll():
    size = 96
    rng = np.random.default_rng(0)
    geo = _geometry(rng, 40, 10, 15, 0.0, 0.0)  # neutral, symmetric identity
    geo["shift"] = np.array([0.4, -0.2])
    app = _appearance(np.random.default_rng(1), size, False, False)
    app["light"] = (0.0, 0.0, 1.0)
    mirrored = dict(geo, pose=geo["pose"] * [-1, 1, -1], shift=geo["shift"] * [-1, 1])
    a = _draw(geo, app, [], None, False, size, True)
    b = _draw(mirrored, app, [], None, False, size, True)
    np.testing.assert_allclose(flip_points(a["points"][:68], size, IBUG68), b["points"][:68],
                               atol=1e-6)
    np.testing.assert_array_equal(a["visible"][:68][list(IBUG68.flip_perm)], b["visible"][:68])
    diff = np.abs(a["image"][:, ::-1].astype(float) - b["image"].astype(float))
    assert diff.mean() < 2.0 and (diff > 40).mean() < 0.01


def test_dataset_follows_sample_contract():
    ds = SyntheticFaces(3, size=40, scheme="cuhk5", seed=5, max_yaw=30)
    s = ds[1]
    assert len(ds) == 3 and s["image"].shape == (3, 40, 40) and s["image"].dtype == torch.uint8
    assert s["landmarks"].shape == (5, 2) and s["mask"].all()
    assert s["meta"]["pose"] == tuple(float(v) for v in ds.data["pose"][1])
    np.testing.assert_allclose(s["box"].numpy(), ds.data["boxes"][1])
    np.testing.assert_array_equal(s["image"].permute(1, 2, 0).numpy(), ds.data["images"][1])
    assert "cuhk5" in repr(ds)


def test_placement_options():
    d = generate(4, size=64, seed=2, max_shift=0.0, scale_range=(0.6, 0.6), max_yaw=0, max_pitch=0,
                 max_roll=0, identity=0.0, expression=0.0)
    centre = (d["boxes"][:, :2] + d["boxes"][:, 2:]) / 2
    np.testing.assert_allclose(centre, 31.5, atol=1e-3)
    h = d["boxes"][:, 3] - d["boxes"][:, 1]
    np.testing.assert_allclose(h, 0.6 * 64, rtol=0.05)  # perspective changes it a little


def test_template_is_mirror_symmetric_in_ibug_order():
    perm = ft.mirror_perm()
    np.testing.assert_allclose(ft.TEMPLATE[perm] * [-1, 1, 1], ft.TEMPLATE, atol=1e-12)
    assert tuple(perm[:68]) == IBUG68.flip_perm
    # WFLW lower brows and the ear lobes swap sides too
    assert perm[68] == 75 and perm[76] == 77
    xy, _ = ft.project(ft.shapes(np.zeros((1, len(ft.IDENTITY_NAMES))),
                                 np.zeros((1, len(ft.EXPRESSION_NAMES)))),
                       np.zeros((1, 3)), np.array([1e9]))
    np.testing.assert_allclose(xy[0], ft.TEMPLATE[:, :2], atol=1e-6)
