"""lmklib.models.kaggle (notebook 05, He & Yang's Kaggle keypoints report): exact shapes and
parameter counts, the masked loss, the normalisation round trip, the paper's initialisation
variances and window sampling. Training and data: tests/papers/test_kaggle_keypoints_he.py."""

import math

import pytest
import torch

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
    net = K.MODELS[name]()
    assert count_parameters(net) == params
    assert net(torch.zeros(3, 1, 96, 96)).shape == (3, 30)


def test_known_parameter_counts_spelled_out():
    assert (MLP_PARAMS, CNN_PARAMS, CNN_SMALL_PARAMS, REFINER_PARAMS) == (
        924_730, 8_051_502, 2_066_718, 267_390)


def test_tiny_variants_run_and_are_small():
    for name in ("mlp_tiny", "cnn_tiny"):
        net = K.MODELS[name]()
        assert net(torch.zeros(2, 1, 96, 96)).shape == (2, 30)
        assert count_parameters(net) < 80_000


def test_refiner_and_cascade_shapes():
    ref = K.MODELS["refiner"]()
    assert count_parameters(ref) == REFINER_PARAMS
    centres = torch.full((2, 15, 2), 40.0)
    assert ref(torch.zeros(2, 1, 96, 96), centres).shape == (2, 15, 2)
    cascade = K.CascadeCNN(K.MODELS["cnn_tiny"](), K.MODELS["refiner_tiny"](), K.Normalisation.paper())
    assert cascade(torch.zeros(2, 1, 96, 96)).shape == (2, 30)


def test_refiner_with_zero_head_returns_its_input_estimates():
    ref = K.MODELS["refiner_tiny"]()
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
