"""lmklib.acn_train: face crops from the 5-point formats, box placement, one tiny training run."""

from __future__ import annotations

import numpy as np
import pytest

from lmklib import acn_train as T
from lmklib.data import fixtures


def test_box_geometry_round_trip():
    rng = np.random.default_rng(0)
    p5 = rng.uniform(40, 60, (10, 5, 2))
    g = np.array([0.05, -0.1, 1.8])
    boxes = T.boxes_from_points(p5, g)
    crops = T.FaceCrops("x", np.zeros((10, 1, 4, 4), np.uint8), p5, np.zeros((10, 2, 3)), p5, boxes)
    np.testing.assert_allclose(T.box_geometry(crops), g)
    np.testing.assert_allclose(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])


def test_five_point_crops_from_other_formats(tmp_path):
    from lmklib.data.formats.bioid import BioID
    from lmklib.data.formats.celeba import CelebA
    from lmklib.data.formats.w300 import W300

    fixtures.write_bioid_fixture(tmp_path / "bioid", n=3)
    fixtures.write_celeba_fixture(tmp_path / "celeba", n=6)
    fixtures.write_300w_fixture(tmp_path / "300w")
    g = np.array([0.0, 0.0, 1.8])
    sets = [T.five_point_crops(BioID(tmp_path / "bioid", image_mode="L"), "BioID", g),
            T.five_point_crops(CelebA(tmp_path / "celeba", "all", aligned=False, image_mode="L"),
                               "CelebA", g, replace_boxes=False),
            T.w300_five_point_crops(tmp_path / "300w", g)]
    for c in sets:
        assert c.images.shape[1:] == (1, 39, 39) and c.points.shape[1:] == (5, 2)
        assert c.gt.shape == c.points.shape and len(c.paths) == len(c)
        # crop points come from the original ones through the stored affine
        from lmklib.data.transforms import apply_affine
        np.testing.assert_allclose(apply_affine(c.gt[0], c.affines[0]), c.points[0], atol=1e-4)


@pytest.mark.slow
def test_train_and_score_a_tiny_network():
    train = T.synthetic_crops(64, seed=1)
    cfg = T.resolve_profile("smoke")
    model, hist = T.train_landmark_net("10-20-40-80", "acn", train, cfg)
    assert list(hist.columns[:4]) == ["epoch", "train_loss", "mse", "amp"]
    err = T.face_nme(T.predict_points(model, train), train)
    assert err.shape == (64,) and np.isfinite(err).all()
