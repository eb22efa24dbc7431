"""lmklib.papers.fast_dhm_sun: the data recipe, priors, metrics rows and model cards, with known
answers on small in-memory faces."""

import numpy as np
import pytest
import torch

from lmklib.data.formats.bfm import template_shape_model
from lmklib.data.geometry import apply_affine
from lmklib.data.synthetic import generate
from lmklib.papers import fast_dhm_sun as T


@pytest.fixture(scope="module")
def cfg():
    return T.resolve_profile("smoke")


@pytest.fixture(scope="module")
def shape():
    return template_shape_model()


def test_profiles_are_complete_and_paper_is_the_papers(cfg):
    keys = set(T.PROFILES["smoke"])
    assert all(set(p) == keys for p in T.PROFILES.values())
    p = T.PROFILES["paper"]
    assert (p["lr"], p["batch_size"], p["epochs"], p["schedule"], p["milestones"], p["reset_lr"]) == \
        (5e-3, 50, 120, "reset", (60,), 1e-5)
    assert p["loss"] == "frobenius"
    with pytest.raises(ValueError, match="profile must be one of"):
        T.resolve_profile("fast")


def test_crop_arrays_frames_the_points_box(cfg):
    d = generate(4, size=64, seed=1, scheme="ibug68")
    crops = T.crop_arrays(d["images"], d["landmarks"].astype(np.float64), cfg, "synthetic test")
    assert crops.images.shape == (4, 3, cfg["size"], cfg["size"]) and crops.images.dtype == torch.uint8
    pts = crops.points.numpy()
    assert np.allclose(pts, apply_affine(d["landmarks"].astype(np.float64), crops.affines.numpy()), atol=1e-4)
    # the tight box of the points, square, scale x: its longer side spans size / scale px
    span = (pts.max(1) - pts.min(1)).max(1)
    assert np.allclose(span, cfg["size"] / cfg["scale"], atol=1e-3)
    assert np.allclose((pts.max(1) + pts.min(1)) / 2, (cfg["size"] - 1) / 2, atol=1e-3)


def test_mean_init_is_placed_on_the_training_mean_by_least_squares(cfg, shape):
    framed, posed = T.mean_init(shape, cfg)
    assert (framed.max(0) - framed.min(0)).max() == pytest.approx(cfg["size"] / cfg["scale"])
    assert np.allclose(posed[:, :2], framed)
    # points that are the mean shape scaled by 7 and moved: recovered exactly
    target = (shape.mean[:, :2] - shape.mean[:, :2].mean(0)) * 7 + [10.0, 12.0]
    placed, posed = T.mean_init(shape, cfg, np.stack([target - 1, target + 1]))
    assert np.allclose(placed, target, atol=1e-9)
    assert np.allclose(posed[:, 2] - posed[:, 2].mean(), 7 * (shape.mean[:, 2] - shape.mean[:, 2].mean()))


def test_priors_and_mean_shape_errors(cfg, shape):
    pri = T.priors(shape, cfg)
    s = cfg["size"]
    assert pri["3d"].shape == (3, s, s) and pri["2d"].shape == (1, s, s)
    assert pri["3d"].min() >= 0 and pri["2d"].max() <= 1.0   # the DHM sums overlapping Gaussians
    d = generate(3, size=64, seed=2, scheme="ibug68")
    crops = T.crop_arrays(d["images"], d["landmarks"].astype(np.float64), cfg, "synthetic")
    e = T.mean_shape_errors(pri, crops)
    # by hand: the mean points mapped back to each image, mean distance / sqrt(w h) of the truth's box
    pts = crops.to_image(np.broadcast_to(pri["mean"].numpy() * s, crops.points.shape).astype(np.float64))
    gt = crops.gt.numpy()
    wh = gt.max(1) - gt.min(1)
    hand = np.linalg.norm(pts - gt, axis=-1).mean(1) / np.sqrt(wh[:, 0] * wh[:, 1])
    assert np.allclose(e, hand)


def test_yaw_row_in_percent():
    row = T.yaw_row(np.array([0.02, 0.04, 0.07, 0.10]), np.array([0.0, 45.0, 70.0, -92.0]))
    assert row["0-30"] == pytest.approx(2.0) and row["30-60"] == pytest.approx(4.0)
    assert row["60-90"] == pytest.approx(8.5)
    assert row["mean"] == pytest.approx((2 + 4 + 8.5) / 3)
    assert row["all faces"] == pytest.approx(5.75)
    assert row["failure % (6 %)"] == pytest.approx(50.0)


def test_dhm_starts_at_the_mean_initialisation(cfg, shape):
    from lmklib.data.profiling import fit_shape

    pri = T.priors(shape, cfg)
    d = generate(8, size=cfg["size"], seed=3, scheme="ibug68")
    fits = fit_shape(d["landmarks"].astype(np.float64), shape)
    model = T.make_dhm(shape, fits, pri, cfg).eval()
    with torch.no_grad():
        out = model(torch.randn(2, 3, cfg["size"], cfg["size"]))
    assert torch.allclose(out, pri["mean"].expand(2, -1, -1), atol=1e-4)


def test_training_learns_and_the_card_rebuilds_the_model(cfg, shape):
    d = generate(64, size=64, seed=4, scheme="ibug68")
    crops = T.crop_arrays(d["images"], d["landmarks"].astype(np.float64), cfg, "synthetic")
    pri = T.priors(shape, cfg, crops.points.numpy())
    base = T.box_nme(T.predict(T.make_fast_dhm(pri, cfg), crops), crops).mean()
    model, hist = T.train_model(T.make_fast_dhm(pri, cfg), crops.images, crops.points,
                                {**cfg, "similarity": None, "batch_size": 16, "lr": 2e-3}, 15, seed=0)
    assert hist["train_loss"].iloc[-1] < 0.6 * hist["train_loss"].iloc[0]
    assert T.box_nme(T.predict(model, crops), crops).mean() < base
    # trained channels-last, returned channels-first (saved state and cards as before)
    assert all(p.is_contiguous() for p in model.parameters())
    card = T.model_card(model, crops.name, cfg, 12.3, "synthetic test")
    again = T.load_predictor(card, model.state_dict())
    assert np.array_equal(again(crops), T.predict(model, crops))
    assert card["crop"]["size"] == cfg["size"] and card["crop"]["scale"] == cfg["scale"]
    with pytest.raises(ValueError, match="loss must be one of"):
        T.train_model(T.make_fast_dhm(pri, cfg), crops.images, crops.points, {**cfg, "loss": "l1"}, 1)


def test_same_seed_same_model(cfg, shape):
    """A model's initialisation is seeded where it is built, so whatever ran before (data
    generation, other models) does not change it."""
    d = generate(16, size=64, seed=5, scheme="ibug68")
    crops = T.crop_arrays(d["images"], d["landmarks"].astype(np.float64), cfg, "synthetic")
    pri = T.priors(shape, cfg, crops.points.numpy())
    runs = []
    for _ in range(2):
        torch.rand(7)   # move the global generator between the two runs
        m, h = T.train_model(T.make_fast_dhm(pri, cfg, seed=3), crops.images, crops.points, cfg, 1, seed=3)
        runs.append(m.state_dict())
    assert all(torch.equal(runs[0][k], runs[1][k]) for k in runs[0])
