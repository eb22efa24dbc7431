"""lmklib.papers.acn_chen2020: the face sets of the ACN notebook (CUHK crops, 5-point crops of
other formats with boxes placed on the points, 300-W resized), the subset draws, one tiny
training run of each kind."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lmklib.data import fixtures
from lmklib.data.faces import FaceCrops
from lmklib.data.geometry import BoxGeometry, boxes_from_points, fit_box_geometry
from lmklib.papers import acn_chen2020 as T


def test_schedules():
    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=0.1)
    assert T._scheduler(opt, "constant", 3, 10) == (None, "epoch")
    sched, when = T._scheduler(opt, "onecycle", 3, 10)
    assert when == "batch" and sched.total_steps == 30
    sched, when = T._scheduler(opt, "multistep", 40, 10, (20, 30))
    assert when == "epoch" and sorted(sched.milestones) == [20, 30]
    with pytest.raises(ValueError, match="schedule must be"):
        T._scheduler(opt, "cosine", 3, 10)


def test_profiles_give_the_headline_most_epochs():
    for name in T.PROFILES:
        p = T.resolve_profile(name)
        assert p["epochs"] >= p["epochs_other"] and set(p["eta"]) == {"cnn", "acn", "acn1bit"}
    paper = T.resolve_profile("paper")
    # Section 4.2: Adam at 1e-4 for both rates, 1600 epochs, no decay; 300-W: SGD 5e-5, 40 epochs
    assert set(paper["eta"].values()) == {1e-4} and paper["schedule"] == "constant"
    assert paper["epochs"] == paper["epochs_other"] == 1600
    c = paper["cpm"]
    assert (c["optimizer"], c["epochs"], c["batch_size"], c["size"]) == ("sgd", 40, 8, 256)
    assert set(c["lr"].values()) == {5e-5}
    assert tuple(c["milestones"]) == (20, 30) and c["loss"] == "mse"


def test_acn_box_geometry_round_trip():
    """The notebook's geometry (medians, points' size = the longer side) is recovered from boxes
    placed with it, and the placed boxes are square."""
    rng = np.random.default_rng(0)
    p5 = rng.uniform(40, 60, (10, 5, 2))
    g = BoxGeometry(0.05, -0.1, 1.8, side="max")
    boxes = boxes_from_points(p5, g)
    got = fit_box_geometry(p5, boxes, side="max", stat="median")
    np.testing.assert_allclose([got.dx, got.dy, got.ratio], [g.dx, g.dy, g.ratio])
    np.testing.assert_allclose(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])


def _check_crops(c: FaceCrops, k: int, channels: int, size: int):
    assert isinstance(c, FaceCrops) and len(c) > 0
    assert tuple(c.images.shape[1:]) == (channels, size, size) and c.images.dtype == torch.uint8
    assert tuple(c.points.shape[1:]) == (k, 2) and c.gt.shape == c.points.shape
    assert len(c.paths) == len(c)
    # crop points come from the original ones through the stored affine
    np.testing.assert_allclose(c.to_crop(c.gt), c.points.numpy(), atol=1e-4)


def test_cuhk_crops_keep_the_subset(tmp_path):
    fixtures.write_cuhk_fixture(tmp_path / "cuhk", n_train=4, n_test=2)
    c = T.cuhk_crops(tmp_path / "cuhk", "train", n=3)
    _check_crops(c, 5, 1, 39)
    assert len(c) == 3 and c.name == "LFW+Webface train (clean protocol)"
    # the shared subset draw (seed 0), and every face when n is None
    from lmklib.data.faces import fixed_subset
    from lmklib.data.formats.cuhk import CUHK5Point

    every = CUHK5Point(tmp_path / "cuhk", "train")
    assert c.paths == [str(every.records[i].image_path) for i in fixed_subset(len(every), 3)]
    assert len(T.cuhk_crops(tmp_path / "cuhk", "train")) == len(every)
    assert c.policy.box == "data" and c.policy.resample == "torch"


def test_five_point_crops_from_other_formats(tmp_path):
    from lmklib.data.formats.bioid import BioID
    from lmklib.data.formats.celeba import CelebA

    fixtures.write_bioid_fixture(tmp_path / "bioid", n=3)
    fixtures.write_celeba_fixture(tmp_path / "celeba", n=6)
    fixtures.write_300w_fixture(tmp_path / "300w")
    g = BoxGeometry(0.0, 0.0, 1.8, side="max")
    bioid = T.five_point_crops(BioID(tmp_path / "bioid", image_mode="L"), "BioID", g)
    celeba = T.five_point_crops(CelebA(tmp_path / "celeba", "all", aligned=False, image_mode="L"),
                                "CelebA", g, replace_boxes=False)
    w300 = T.w300_five_point_crops(tmp_path / "300w", g, n=3)
    for c in (bioid, celeba, w300):
        _check_crops(c, 5, 1, 39)
    assert bioid.policy.box == "points" and celeba.policy.box == "points_if_missing"
    assert len(w300) == 3 and w300.scheme == "cuhk5"      # the 68 became 5
    # every BioID box is the square that the geometry places on the points
    np.testing.assert_allclose(bioid.boxes.numpy(), boxes_from_points(bioid.gt.numpy(), g))


def test_w300_faces_are_resized_whole(tmp_path):
    fixtures.write_300w_fixture(tmp_path / "300w")
    faces = T.w300_faces(tmp_path / "300w", "train", 32, n=2)
    _check_crops(faces, 68, 3, 32)
    assert len(faces) == 2 and faces.policy.box == "image"
    assert faces.name.startswith("300-W train (")
    fixtures.write_300w_fixture(tmp_path / "afw_only", folders=("afw",))
    with pytest.raises(FileNotFoundError, match="300-W split 'challenge': none of its folders"):
        T.w300_faces(tmp_path / "afw_only", "challenge", 32)


@pytest.mark.slow
def test_train_and_score_a_tiny_network():
    train = T.synthetic_crops(64, seed=1)
    assert "synthetic" in train.note
    cfg = T.resolve_profile("smoke")
    model, hist = T.train_landmark_net("10-20-40-80", "acn", train, cfg)
    assert list(hist.columns[:4]) == ["epoch", "train_loss", "mse", "amp"]
    err = T.face_nme(T.predict_points(model, train), train)
    assert err.shape == (64,) and np.isfinite(err).all()


@pytest.mark.slow
def test_train_and_score_a_tiny_cpm():
    cfg = T.resolve_profile("smoke")
    faces = T.synthetic_heatmap_faces(8, cfg["cpm"]["size"], seed=3)
    _check_crops(faces, 68, 3, cfg["cpm"]["size"])
    model, hist = T.train_cpm("acn1bit", faces, cfg)
    pred = T.predict_cpm(model, faces, cfg["cpm"]["decode"])
    assert pred.shape == (8, 68, 2)
    with pytest.raises(ValueError, match="decode must be one of"):
        T.predict_cpm(model, faces, "dark")
    err = T.inter_ocular_nme(pred, faces)
    assert err.shape == (8,) and np.isfinite(err).all()
