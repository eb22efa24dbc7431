"""lmklib.models.kaggle and lmklib.kaggle_data (notebook 05, He & Yang's Kaggle keypoints report):
exact shapes and parameter counts, the masked loss, the normalisation round trip, the paper's
initialisation variances, window sampling, flips, and the Kaggle-format data paths."""

import math

import numpy as np
import pytest
import torch

from lmklib import kaggle_data as kd
from lmklib.data.schemes import KAGGLE15
from lmklib.models import kaggle as K
from lmklib.profile import count_parameters

# hand-computed: weights + biases per layer
MLP_PARAMS = 9216 * 100 + 100 + 100 * 30 + 30                                   # 924,730
CNN_PARAMS = (32 * 9 + 32) + (64 * 32 * 4 + 64) + (128 * 64 * 4 + 128) \
    + (128 * 11 * 11 * 500 + 500) + (500 * 500 + 500) + (500 * 30 + 30)         # 8,051,502
CNN_SMALL_PARAMS = (16 * 9 + 16) + (32 * 16 * 4 + 32) + (64 * 32 * 4 + 64) \
    + (64 * 11 * 11 * 256 + 256) + (256 * 256 + 256) + (256 * 30 + 30)         # 2,066,718
# 15 groups: conv 1->8 3x3, conv 8->16 3x3, 24 -> 22 -> 11 -> 9 -> 4, FC 256->64->2 per point
REFINER_PARAMS = 15 * ((8 * 9 + 8) + (16 * 8 * 9 + 16) + (256 * 64 + 64) + (64 * 2 + 2))


@pytest.mark.parametrize("name, params", [("mlp", MLP_PARAMS), ("cnn", CNN_PARAMS),
                                          ("cnn_small", CNN_SMALL_PARAMS)])
def test_regressor_output_shape_and_parameter_count(name, params):
    net = K.build(name)
    assert count_parameters(net) == params
    assert net(torch.zeros(3, 1, 96, 96)).shape == (3, 30)


def test_known_parameter_counts_spelled_out():
    assert (MLP_PARAMS, CNN_PARAMS, CNN_SMALL_PARAMS, REFINER_PARAMS) == (
        924_730, 8_051_502, 2_066_718, 267_390)


def test_tiny_variants_run_and_are_small():
    for name in ("mlp_tiny", "cnn_tiny"):
        net = K.build(name)
        assert net(torch.zeros(2, 1, 96, 96)).shape == (2, 30)
        assert count_parameters(net) < 80_000


def test_refiner_and_cascade_shapes():
    ref = K.build("refiner")
    assert count_parameters(ref) == REFINER_PARAMS
    centres = torch.full((2, 15, 2), 40.0)
    assert ref(torch.zeros(2, 1, 96, 96), centres).shape == (2, 15, 2)
    cascade = K.CascadeCNN(K.build("cnn_tiny"), K.build("refiner_tiny"), K.Normalisation.paper())
    assert cascade(torch.zeros(2, 1, 96, 96)).shape == (2, 30)


def test_refiner_with_zero_head_returns_its_input_estimates():
    ref = K.build("refiner_tiny")
    torch.nn.init.zeros_(ref.head[-1].weight)
    torch.nn.init.zeros_(ref.head[-1].bias)
    centres = torch.rand(2, 15, 2) * 90
    assert torch.equal(ref(torch.rand(2, 1, 96, 96), centres), centres)


def test_masked_mse_ignores_nan_targets():
    pred = torch.zeros(2, 2, requires_grad=True)
    target = torch.tensor([[1.0, float("nan")], [3.0, float("nan")]])
    loss = K.masked_mse(pred, target)
    assert loss.item() == pytest.approx((1 + 9) / 2)
    loss.backward()
    assert torch.equal(pred.grad[:, 1], torch.zeros(2))          # missing -> no gradient
    assert pred.grad[:, 0].tolist() == pytest.approx([-1.0, -3.0])  # d/dp (p-y)^2 / 2


def test_masked_mse_all_missing_is_zero_and_differentiable():
    pred = torch.ones(1, 30, requires_grad=True)
    loss = K.masked_mse(pred, torch.full((1, 30), float("nan")))
    loss.backward()
    assert loss.item() == 0.0 and torch.isfinite(pred.grad).all()


def test_masked_mse_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match=r"differ"):
        K.masked_mse(torch.zeros(2, 30), torch.zeros(2, 28))


def test_normalisation_is_the_papers_and_round_trips():
    norm = K.Normalisation.paper()
    assert (norm.image_scale, norm.centre, norm.half) == (256.0, 48.0, 48.0)
    pts = torch.tensor([[[0.0, 96.0], [48.0, float("nan")]]])
    y = norm.points(pts)
    assert y[0, :3].tolist() == [-1.0, 1.0, 0.0] and math.isnan(y[0, 3])
    assert torch.allclose(norm.pixels(y), pts, equal_nan=True)
    assert norm.images(torch.tensor([0, 128, 255], dtype=torch.uint8)).tolist() == [
        0.0, 0.5, 255 / 256]
    off = K.Normalisation.off()
    assert torch.allclose(off.pixels(off.points(pts)), pts, equal_nan=True)
    assert off.images(torch.tensor([200], dtype=torch.uint8)).item() == 200.0


@pytest.mark.parametrize("scheme, var", [("he", 2 / 4000), ("xavier", 2 / (4000 + 3000))])
def test_init_variances_follow_sec_3_3(scheme, var):
    lin = K.init_weights(torch.nn.Sequential(torch.nn.Linear(4000, 3000)), scheme)[0]
    bound = math.sqrt(3 * var)
    assert lin.weight.abs().max().item() <= bound * (1 + 1e-6)
    assert lin.weight.var().item() == pytest.approx(var, rel=0.01)
    assert torch.count_nonzero(lin.bias) == 0


def test_init_counts_conv_receptive_field_and_groups():
    conv = torch.nn.Conv2d(15 * 4, 15 * 8, 3, groups=15)       # per group: 4 in, 8 out, 3x3
    K.init_weights(torch.nn.Sequential(conv), "xavier")
    bound = math.sqrt(3 * 2 / ((4 + 8) * 9))
    assert conv.weight.abs().max().item() <= bound * (1 + 1e-6)
    assert conv.weight.abs().max().item() > 0.95 * bound
    with pytest.raises(ValueError, match="'he' or 'xavier'"):
        K.init_weights(conv, "lecun")


def test_extract_patches_samples_pixels_at_integer_centres():
    y, x = torch.meshgrid(torch.arange(96.0), torch.arange(96.0), indexing="ij")
    image = (x + 100 * y)[None, None]
    patch = K.extract_patches(image, torch.tensor([[[10.0, 20.0], [10.5, 20.0]]]), 3)
    expected = torch.tensor([[9 + 100 * 19, 10 + 1900, 11 + 1900], [9 + 2000, 10 + 2000, 11 + 2000],
                             [9 + 2100, 10 + 2100, 11 + 2100]], dtype=torch.float32)
    assert torch.allclose(patch[0, 0], expected)
    assert torch.allclose(patch[0, 1], expected + 0.5)       # bilinear half-pixel shift


def test_random_flip_mirrors_points_and_swaps_sides():
    torch.manual_seed(0)
    images = torch.zeros(64, 1, 96, 96, dtype=torch.uint8)
    images[:, 0, 10, 5] = 255                                  # a dot at x = 5
    points = torch.rand(64, 15, 2) * 95
    out_images, out_points = K.random_flip(images, points, KAGGLE15.flip_perm)
    flipped = out_images[:, 0, 10, 90] == 255                  # (96 - 1) - 5
    assert 0 < flipped.sum() < 64
    perm = list(KAGGLE15.flip_perm)
    assert torch.allclose(out_points[flipped, :, 0], 95 - points[flipped][:, perm, 0])
    assert torch.allclose(out_points[flipped, :, 1], points[flipped][:, perm, 1])
    assert torch.equal(out_points[~flipped], points[~flipped])


def test_profiles_define_every_size():
    keys = set(K.PROFILES["quick"])
    for name in ("smoke", "quick", "paper"):
        assert set(K.get_profile(name)) == keys
        for field in ("mlp", "cnn", "ablation_cnn", "refiner"):
            assert K.get_profile(name)[field] in K.MODELS
    with pytest.raises(ValueError, match="profile must be one of"):
        K.get_profile("huge")


def test_ablation_arms_cover_the_four_studies():
    arms = K.ablation_arms(K.get_profile("quick"), seed=3)
    studies = {a["study"] for a in arms}
    assert studies == {"normalisation", "activation", "init", "dropout"}
    init = [a for a in arms if a["study"] == "init"]
    assert len(init) == 2 * K.get_profile("quick")["init_seeds"]
    assert {a["config"]["seed"] for a in init} == {3, 4, 5}
    assert all(a["config"]["init"] == "xavier" for a in arms if a["study"] == "activation")


# --------------------------------------------------------------------------- data
def _tiny_data(n=12, seed=0, missing=True):
    rng = np.random.default_rng(seed)
    images = torch.from_numpy(rng.integers(0, 256, (n, 1, 96, 96), dtype=np.uint8))
    points = torch.from_numpy(rng.uniform(20, 76, (n, 15, 2)).astype(np.float32))
    if missing:
        points[::2, 4:] = float("nan")
    split = kd.KeypointSplit(images, points, list(range(n)))
    return kd.KeypointData(split, split.subset(range(4)), split.subset(range(4, 8)), "synthetic", "")


@pytest.mark.slow
def test_training_with_missing_keypoints_stays_finite():
    data = _tiny_data()
    hist = K.train_regressor(K.build("cnn_tiny"), data, epochs=2, batch_size=4)
    assert list(hist["epoch"]) == [0, 1]
    assert np.isfinite(hist[["train_rmse", "val_rmse"]].to_numpy()).all()
    r = K.run_config(data, "mlp_tiny", epochs=1, batch_size=4)
    assert np.isfinite(r["test_rmse"]) and set(r["per_keypoint"]) == set(KAGGLE15.names)
    c = K.run_cascade(data, K.run_config(data, "cnn_tiny", epochs=1, batch_size=4), "refiner_tiny",
                      epochs=1, batch_size=4)
    assert np.isfinite(c["test_rmse"]) and c["sigma"] > 0


def test_hide_keypoints_keeps_kaggles_four_points():
    data = _tiny_data(n=200, missing=False)
    hidden = kd.hide_keypoints(data.train, 0.5, seed=1)
    keep = [KAGGLE15.names.index(n) for n in kd.KAGGLE_ALWAYS]
    assert torch.isfinite(hidden.points[:, keep]).all()
    partial = ~torch.isfinite(hidden.points).all(dim=(1, 2))
    assert 60 < int(partial.sum()) < 140
    assert torch.isnan(hidden.points[partial][:, [i for i in range(15) if i not in keep]]).all()
    assert torch.isfinite(data.train.points).all()              # the input is not modified


def test_resolve_source(tmp_path):
    assert kd.resolve_source("auto", tmp_path) == "synthetic"
    with pytest.raises(FileNotFoundError, match="training.csv"):
        kd.resolve_source("kaggle", tmp_path)
    with pytest.raises(FileNotFoundError, match="300-W"):
        kd.resolve_source("300w", tmp_path)
    with pytest.raises(ValueError, match="dataset must be one of"):
        kd.resolve_source("mnist", tmp_path)


def test_kaggle_csv_is_loaded_and_split(tmp_path):
    from lmklib.data.fixtures import write_kaggle_fixture

    write_kaggle_fixture(tmp_path / "kaggle", n=10, n_test=3)
    assert kd.resolve_source("auto", tmp_path) == "kaggle"
    data = kd.load_keypoint_data("auto", tmp_path, val_fraction=0.2, test_fraction=0.2)
    assert (len(data.train), len(data.val), len(data.test)) == (6, 2, 2)
    assert data.train.images.shape[1:] == (1, 96, 96) and data.train.images.dtype == torch.uint8
    assert data.test_csv.name == "test.csv" and data.lookup_csv.name == "IdLookupTable.csv"
    assert sorted(data.train.ids + data.val.ids + data.test.ids) == list(range(1, 11))


def test_crop_faces_keeps_points_on_their_pixels():
    """A bright dot drawn at a 68-point landmark is found again at the mapped Kaggle point."""
    from lmklib.data.schemes import convert_points

    rng = np.random.default_rng(0)
    pts68 = np.stack([rng.uniform(30, 100, (68, 2)) for _ in range(2)])
    images = torch.zeros(2, 1, 128, 128, dtype=torch.uint8)
    nose = pts68[:, 30].round()
    pts68[:, 30] = nose
    for i, (x, y) in enumerate(nose.astype(int)):
        images[i, 0, y - 2:y + 3, x - 2:x + 3] = 255
    crops, pts15 = kd.crop_faces(images, pts68, size=96, crop_scale=1.2, jitter=0.05)
    assert crops.shape == (2, 1, 96, 96) and pts15.shape == (2, 15, 2)
    assert np.allclose(convert_points(pts68, "ibug68", "kaggle15")[:, 10] - pts68[:, 30], 0)
    yy, xx = np.mgrid[:96, :96]
    for i in range(2):
        w = crops[i, 0].numpy().astype(np.float64)
        cx, cy = (w * xx).sum() / w.sum(), (w * yy).sum() / w.sum()   # the dot's centroid
        assert abs(cx - pts15[i, 10, 0]) < 0.3 and abs(cy - pts15[i, 10, 1]) < 0.3


def test_build_from_w300_writes_a_kaggle_format_set(tmp_path):
    from lmklib.data.fixtures import write_300w_fixture
    from lmklib.data.formats.kaggle import read_id_lookup, read_kaggle_csv

    write_300w_fixture(tmp_path / "300w_subset", n_per_folder=2,
                       folders=("afw", "helen/trainset", "helen/testset"))
    assert kd.resolve_source("auto", tmp_path) == "300w"
    out = kd.build_from_w300(tmp_path / "300w_subset", tmp_path / "built")
    ids, images, points = read_kaggle_csv(out / "training.csv")
    assert images.shape == (4, 96, 96) and points.shape == (4, 15, 2)
    assert np.isfinite(points).all() and (points > 0).all() and (points < 95).all()
    _, test_images, test_points = read_kaggle_csv(out / "test.csv")
    assert test_images.shape == (2, 96, 96) and np.isnan(test_points).all()
    assert len(read_id_lookup(out / "IdLookupTable.csv")) == 2 * 30
    stamp = (out / "training.csv").stat().st_mtime_ns
    kd.build_from_w300(tmp_path / "300w_subset", tmp_path / "built")   # cached: not rewritten
    assert (out / "training.csv").stat().st_mtime_ns == stamp
    data = kd.load_keypoint_data("300w", tmp_path, val_fraction=0.25)
    assert (len(data.train), len(data.val), len(data.test)) == (3, 1, 2)
    assert "NOT Kaggle" in data.description
