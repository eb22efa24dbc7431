"""300W-LP-style profiling (lmklib.data.profiling): rotation conventions, the shape fit on
noise-free synthetic faces and on real 300-W, rotate, landmark marching, the image warp and the
whole profile_faces pipeline, each against a hand-computed answer."""

import numpy as np
import pytest
from scipy.spatial import ConvexHull

from lmklib.data import profiling as P
from lmklib.data.formats.bfm import load_bfm68, template_shape_model
from lmklib.data.schemes import IBUG68

TEMPLATE = template_shape_model()


def _faces(model, n=6, seed=0, yaw=60.0, pitch=20.0, roll=20.0, std=1.0):
    """Ground-truth fits: coefficients from the prior, random pose, scale 60-120 px."""
    rng = np.random.default_rng(seed)
    a = rng.normal(0, std, (n, model.n_id)) * model.id_std
    b = rng.normal(0, std, (n, model.n_exp)) * model.exp_std
    rot = P.rotation_matrix(rng.uniform(-yaw, yaw, n), rng.uniform(-pitch, pitch, n),
                            rng.uniform(-roll, roll, n))
    return P.ShapeFit(rng.uniform(60, 120, n), rot, rng.uniform(100, 150, (n, 2)), a, b, model)


def _flip(points, width):
    out = points[:, list(IBUG68.flip_perm)].copy()
    out[..., 0] = width - 1 - out[..., 0]
    return out


@pytest.fixture(scope="module")
def bfm(real_data_root):
    root = real_data_root / "bfm68"
    if not (root / "u_base.txt").is_file():
        pytest.skip(f"bfm68 not found under {real_data_root}")
    return load_bfm68(root)


def test_rotation_conventions():
    r = P.rotation_matrix([30.0, -10.0, 0.0], [0.0, 15.0, 0.0], [0.0, 5.0, 20.0])
    np.testing.assert_allclose(r @ r.transpose(0, 2, 1), np.broadcast_to(np.eye(3), r.shape),
                               atol=1e-12)
    np.testing.assert_allclose(np.linalg.det(r), 1.0)
    np.testing.assert_allclose(P.euler_degrees(r), [[30, 0, 0], [-10, 15, 5], [0, 0, 20]],
                               atol=1e-12)
    nose = np.array([0.0, 0.0, -1.0])              # in front of the face: z points away
    assert (r[0] @ nose)[0] > 0.4                  # +yaw: the nose goes to the image right
    assert (P.rotation_matrix(0, 15, 0)[0] @ nose)[1] < -0.2    # +pitch: the nose goes up
    assert (r[2] @ [1.0, 0, 0])[1] > 0.3           # +roll: clockwise in the image (y down)


@pytest.mark.parametrize("which", ["template", "bfm68"])
def test_fit_recovers_noise_free_faces(which, request):
    model = TEMPLATE if which == "template" else request.getfixturevalue("bfm")
    truth = _faces(model, n=20)
    fit = P.fit_shape(truth.project(), model, reg=0.0)
    err = np.linalg.norm(fit.project() - truth.project(), axis=2) / truth.scale[:, None]
    assert err.max() < 1e-4                        # of the inter-ocular distance
    np.testing.assert_allclose(fit.pose_degrees(), truth.pose_degrees(), atol=0.01)
    np.testing.assert_allclose(fit.scale, truth.scale, rtol=1e-4)
    assert fit.rotation.shape == (20, 3, 3) and fit.id.shape == (20, model.n_id)


def test_fit_errors():
    with pytest.raises(ValueError, match=r"points must be \[N, 68, 2\], got \[2, 5, 2\]"):
        P.fit_shape(np.zeros((2, 5, 2)), TEMPLATE)
    pts = _faces(TEMPLATE, n=1).project()
    pts[0, 3, 1] = np.nan
    with pytest.raises(ValueError, match="points must be finite"):
        P.fit_shape(pts, TEMPLATE)


def test_fit_on_real_300w(w300_root, bfm):
    from lmklib.data.formats.w300 import read_pts

    files = sorted((w300_root / "afw").glob("*.pts"))[:30] + \
        sorted((w300_root / "lfpw" / "trainset").glob("*.pts"))[:30]
    pts = np.stack([read_pts(f, 68) for f in files])
    fit = P.fit_shape(pts, bfm)
    iod = np.linalg.norm(pts[:, 36] - pts[:, 45], axis=1)
    err = np.linalg.norm(fit.project() - pts, axis=2).mean(1) / iod
    # measured: 2.6 % mean on 200 training faces (the model's 50 components and the annotators'
    # noise); a broken fit is far above 10 %
    assert err.mean() < 0.035 and err.max() < 0.08
    assert (np.abs(fit.pose_degrees()[:, 0]) < 60).all()


def test_rotate_is_a_turn_about_the_vertical_axis_through_the_centroid():
    fit = _faces(TEMPLATE, n=3, pitch=0, roll=0)
    posed = fit.posed()
    centre = posed.mean(1, keepdims=True)
    t = np.deg2rad(35.0)
    ry = np.array([[np.cos(t), 0, -np.sin(t)], [0, 1, 0], [np.sin(t), 0, np.cos(t)]])
    expected = (posed - centre) @ ry.T + centre
    turned = P.rotate(fit, 35.0)
    np.testing.assert_allclose(turned.project(), expected[..., :2], atol=1e-9)
    origin = np.concatenate([fit.translation, np.zeros((3, 1))], 1)[:, None]
    np.testing.assert_allclose(turned.posed()[..., 2], ((posed - origin) @ ry.T)[..., 2],
                               atol=1e-9)                   # depth: s (R S)_z, no offset
    np.testing.assert_allclose(turned.pose_degrees()[:, 0], fit.pose_degrees()[:, 0] + 35)


def test_rotate_round_trip_and_per_face_angles():
    fit = _faces(TEMPLATE, n=4)
    yaw, pitch = np.array([10.0, -20.0, 30.0, 0.0]), np.array([5.0, 0.0, -5.0, 8.0])
    turned = P.rotate(fit, yaw, pitch)
    np.testing.assert_allclose(turned.pose_degrees(),
                               fit.pose_degrees() + np.stack([yaw, pitch, 0 * yaw], 1), atol=1e-9)
    np.testing.assert_allclose(turned.posed().mean(1)[:, :2], fit.posed().mean(1)[:, :2])
    back = P.rotate(turned, -yaw, -pitch)
    np.testing.assert_allclose(back.posed(), fit.posed(), atol=1e-9)
    np.testing.assert_allclose(turned.shapes(), fit.shapes())       # identity, expression kept


def test_flipped_face_turned_the_other_way_is_the_mirror_image():
    noise = np.random.default_rng(0).normal(0, 1, (5, 68, 2))
    pts = _faces(TEMPLATE, n=5, seed=3).project() + noise
    fit, fit_flipped = P.fit_shape(pts, TEMPLATE), P.fit_shape(_flip(pts, 256), TEMPLATE)
    np.testing.assert_allclose(fit_flipped.pose_degrees() * [-1, 1, -1], fit.pose_degrees(),
                               atol=1e-6)
    a = P.rotate(fit, -25.0).project()
    b = P.rotate(fit_flipped, 25.0).project()
    np.testing.assert_allclose(_flip(a, 256), b, atol=1e-6)   # the template is mirror-symmetric


def test_visible_contour_frontal_unchanged_profile_on_the_outline():
    fit = _faces(TEMPLATE, n=1, std=0.0, pitch=0, roll=0)
    fit.rotation[:] = np.eye(3)
    np.testing.assert_array_equal(P.visible_contour(fit.posed()), fit.project())
    posed = P.rotate(fit, 70.0).posed()              # nose to the image right: far side 9-16
    vis = P.visible_contour(posed)[0]
    np.testing.assert_array_equal(vis[:9], posed[0, :9, :2])     # near side and chin unchanged
    np.testing.assert_array_equal(vis[17:], posed[0, 17:, :2])
    # in the face's own axes (horizontal h, down d; here within a few degrees of the image's)
    h, d = (a[0] for a in P._face_axes(posed))
    assert h[0] > 0.99 and d[1] > 0.99
    x, y, vx, vy = posed[0, :, :2] @ h, posed[0, :, :2] @ d, vis @ h, vis @ d
    np.testing.assert_allclose(vy, y, atol=1e-9)                 # moved along h only
    moved = np.flatnonzero(np.abs(vx - x) > 1e-9)
    assert set(moved) <= set(range(9, 17)) and len(moved) >= 4
    assert (vx[moved] > x[moved]).all()                          # outwards, to the far side
    # each moved point is the far extreme of the (independent) convex hull at its height
    pts = np.stack([x, y], 1)
    hull = ConvexHull(pts)
    for k in moved:
        on_edges = [pts[i, 0] + (vy[k] - pts[i, 1]) / (pts[j, 1] - pts[i, 1])
                    * (pts[j, 0] - pts[i, 0]) for i, j in hull.simplices
                    if min(pts[i, 1], pts[j, 1]) <= vy[k] <= max(pts[i, 1], pts[j, 1])
                    and pts[i, 1] != pts[j, 1]]
        assert vx[k] == pytest.approx(max(on_edges), abs=1e-6)
    assert x.min() <= vx.min() and vx.max() <= x.max()           # inside the face's x-range


def test_visible_contour_follows_the_face_under_roll():
    fit = _faces(TEMPLATE, n=3, seed=2, yaw=0, pitch=0, roll=0)
    turned = P.rotate(fit, np.array([-65.0, 50.0, 80.0]))
    posed = turned.posed()
    c, s = np.cos(np.deg2rad(25)), np.sin(np.deg2rad(25))
    roll = np.array([[c, -s, 0], [s, c, 0], [0, 0, 1]])          # 25 degrees in the image plane
    np.testing.assert_allclose(P.visible_contour(posed @ roll.T),
                               P.visible_contour(posed) @ roll[:2, :2].T, atol=1e-9)


def _texture(h=96, w=112, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:h, :w]
    base = np.stack([2 * xx, yy * 2 + xx, 255 - 2 * yy], -1) % 256
    return np.clip(base + rng.integers(-20, 20, (h, w, 3)), 0, 255).astype(np.uint8)


def test_warp_translation_moves_a_dot_and_anchors_stay():
    img = np.full((96, 112), 30, np.uint8)
    yy, xx = np.mgrid[:96, :112]
    img += (200 * np.exp(-((xx - 50.0) ** 2 + (yy - 45.0) ** 2) / (2 * 2.0**2))).astype(np.uint8)
    src = np.array([[35.0, 30], [65, 30], [65, 60], [35, 60], [50, 45]])
    shift = np.array([4.3, -2.6])
    out = P.warp_image(img, src, src + shift)
    assert out.dtype == np.uint8 and out.shape == img.shape
    w = np.clip(out.astype(float) - 30, 0, None)
    centroid = np.array([(w * xx).sum(), (w * yy).sum()]) / w.sum()
    np.testing.assert_allclose(centroid, [50 + shift[0], 45 + shift[1]], atol=0.5)
    # outside the ring of anchors round the face nothing moves
    ring = P.face_anchors(src, src + shift, img.shape)[16:]
    far = np.hypot(xx - 50, yy - 45) > np.hypot(*(ring - [50, 45]).T).max() + 2
    np.testing.assert_array_equal(out[far], img[far])
    # colour images, another output size, no anchors: the dot moves all the same
    rgb = np.repeat(img[..., None], 3, -1)
    out = P.warp_image(rgb, src, src + shift, out_size=(80, 90), anchors=None)
    assert out.shape == (80, 90, 3)
    with pytest.raises(ValueError, match="anchors must be 'ring'"):
        P.warp_image(img, src, src, anchors="box")


def test_warp_with_depth_culls_a_surface_that_turns_away():
    img = _texture()
    # two squares side by side; the right one is folded back over the left one, farther away
    src = np.array([[30.0, 30], [50, 30], [70, 30], [30, 70], [50, 70], [70, 70]])
    dst = src.copy()
    dst[[2, 5], 0] = 38.0
    depth = np.array([0.0, 0, 30, 0, 0, 30])
    out = P.warp_image(img, src, dst, depth=depth)
    np.testing.assert_array_equal(out[31:70, 31:50], img[31:70, 31:50])   # left square in front
    folded = P.warp_image(img, src, dst)                                 # 2D: the fold shows
    assert np.abs(folded[31:70, 39:50].astype(int) - img[31:70, 39:50]).mean() > 10


def _synthetic_set(yaws, seed=0):
    """Template faces at the given yaws in 96 x 112 textured images; the fit on them is exact."""
    truth = _faces(TEMPLATE, n=len(yaws), seed=seed, pitch=10, roll=10, std=0.5)
    truth.rotation[:] = P.rotation_matrix(yaws, P.euler_degrees(truth.rotation)[:, 1],
                                          P.euler_degrees(truth.rotation)[:, 2])
    truth.scale[:], truth.translation[:] = 35.0, [56.0, 44.0]
    images = np.stack([_texture(seed=i) for i in range(len(yaws))])
    return images, truth.project(), truth


def test_profile_faces_zero_turn_gives_back_the_face():
    images, pts, _ = _synthetic_set([12.0])
    fit = P.fit_shape(pts, TEMPLATE, reg=0.0)
    assert np.array_equal(P.visible_contour(fit.posed()), fit.project())   # nothing hidden
    out = P.profile_faces(images, pts, [abs(fit.pose_degrees()[0, 0])], TEMPLATE, fit=fit)
    assert out["images"].shape == images.shape and out["images"].dtype == np.uint8
    assert np.abs(out["images"].astype(int) - images).max() <= 1
    np.testing.assert_allclose(out["points"], pts, atol=1e-6)
    np.testing.assert_allclose(out["yaw"], fit.pose_degrees()[:, 0], atol=1e-9)
    assert out["source"].tolist() == [0]


def test_profile_faces_targets_signs_pitch_and_labels():
    images, pts, truth = _synthetic_set([-20.0, 2.0, 25.0], seed=1)
    kw = dict(pitch=8.0, seed=5, reg=0.0)
    out = P.profile_faces(images, pts, (30, 70), TEMPLATE, **kw)
    assert out["images"].shape == (6, *images.shape[1:]) and out["points"].shape == (6, 68, 2)
    assert out["posed"].shape == (6, 68, 3) and out["source"].tolist() == [0, 0, 1, 1, 2, 2]
    np.testing.assert_allclose(np.abs(out["yaw"]), [30, 70] * 3, atol=1e-9)
    assert (out["yaw"][:2] < 0).all() and (out["yaw"][4:] > 0).all()   # further the same way
    assert np.sign(out["yaw"][2]) == np.sign(out["yaw"][3])              # frontal: one random side
    fit = P.fit_shape(pts, TEMPLATE, reg=0.0)
    new_pitch = P.fit_shape(out["points"], TEMPLATE, reg=0.0).pose_degrees()[:, 1]
    change = new_pitch - fit.pose_degrees()[out["source"], 1]
    assert (np.abs(change) <= 8 + 1e-6).all() and np.abs(change).max() > 0.5
    np.testing.assert_array_equal(out["points"], out["posed"][..., :2])  # contour="3d"
    vis = P.profile_faces(images, pts, (30, 70), TEMPLATE, contour="visible", **kw)
    np.testing.assert_array_equal(vis["images"], out["images"])          # seeded: same copies
    np.testing.assert_allclose(vis["points"], P.visible_contour(out["posed"]))
    far = np.abs(vis["points"] - out["points"]).max(2)
    assert far[1::2, :17].max() > 1.0 and far[:, 17:].max() == 0        # 70 deg: jaw marched
    with pytest.raises(ValueError, match="contour must be '3d' or 'visible'"):
        P.profile_faces(images, pts, (30,), TEMPLATE, contour="2d")
