"""CCNN (Duan et al. 2021): exact parameter counts, window geometry, shake, batched == per-net."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lmklib.models.ccnn import (CCNN, CCNNConfig, LocalNet, PAPER_PARAMETERS, Stage1Net,
                                apply_affine, augmentation_affine, average_points, canonical_frame,
                                ccnn, from_window, image_frames, invert_affine, sample_windows,
                                shake, to_window)
from lmklib.profile import count_parameters, parameter_table


# --------------------------------------------------------------------------- parameter counts
def test_total_weights_match_the_paper():
    model = ccnn()
    assert count_parameters(model, biases=False) == PAPER_PARAMETERS == 643_920
    # 4 bytes each: 2,575,680 B = 2.456 MiB, the paper's "2.46 MB"
    assert round(count_parameters(model, biases=False) * 4 / 2**20, 2) == 2.46


def test_table2_layer_counts():
    table = parameter_table(Stage1Net(10), biases=False).set_index("layer")["params"]
    assert table.to_dict() == {"conv1": 960, "conv2": 7200, "conv3": 21600, "fc1": 64800,
                               "fc2": 1200}
    assert parameter_table(Stage1Net(6), biases=False).set_index("layer")["params"]["fc2"] == 720


def test_stage_counts():
    model = ccnn()
    assert count_parameters(model.stage1, biases=False) == 95_760 + 2 * 95_280
    assert count_parameters(LocalNet(), biases=False) == 960 + 7200 + 160 * 60 + 60 * 2
    assert count_parameters(model.stage2, biases=False) == 10 * 17_880
    assert len(model.stage1) + len(model.stage2) + len(model.stage3) == 23


# --------------------------------------------------------------------------- geometry
def test_point_maps_to_window_centre_and_back():
    centres = torch.tensor([[0.3, 0.7], [0.5, 0.5]])
    sizes = torch.tensor([[0.16, 0.16], [1.0, 0.8]])
    assert torch.allclose(to_window(centres, centres, sizes), torch.full((2, 2), 0.5))
    p = torch.rand(2, 2)
    assert torch.allclose(from_window(to_window(p, centres, sizes), centres, sizes), p)
    # window corners are 0 and 1
    assert torch.allclose(to_window(centres - sizes / 2, centres, sizes), torch.zeros(2, 2))


def _dot_image(x: int, y: int, size: int = 64) -> torch.Tensor:
    img = torch.zeros(1, 3, size, size)
    img[0, :, y, x] = 255.0
    return img


@pytest.mark.parametrize("out_size", [15, 39])
def test_window_centred_on_a_point_has_it_in_its_centre_pixel(out_size):
    # A raw image with face box (10, 10)-(50, 50): the dot at pixel (30, 22) is box (0.5, 0.3).
    img = _dot_image(30, 22)
    frames = image_frames(torch.tensor([[10.0, 10.0, 50.0, 50.0]]))
    centre = torch.tensor([[[0.5, 0.3]]])
    size = torch.full((1, 1, 2), out_size / 40)          # one source pixel per output pixel
    crop = sample_windows(img, frames, centre, size, out_size)[0, 0, 0]
    iy, ix = divmod(int(crop.argmax()), out_size)
    assert (ix, iy) == (out_size // 2, out_size // 2)
    assert crop.max() == pytest.approx(255.0)


def test_canonical_frame_round_trip():
    fr = canonical_frame(80, 0.25)
    # box unit -0.25 is the left edge of pixel 0 (x = -0.5), 1.25 the right edge of pixel 79
    assert float(fr[0] + (-0.25) * fr[2]) == pytest.approx(-0.5)
    assert float(fr[0] + 1.25 * fr[2]) == pytest.approx(79.5)


def test_augmentation_is_a_rigid_motion_and_flip_is_an_involution():
    aff = augmentation_affine(torch.tensor([-15.0, 12.0, 0.0]), torch.tensor([0.0, 1.0, 1.0]))
    p = torch.rand(3, 5, 2)
    q = apply_affine(p, aff)
    d = lambda a: torch.cdist(a, a)  # noqa: E731
    assert torch.allclose(d(p), d(q), atol=1e-5)
    flip = augmentation_affine(torch.tensor([0.0]), torch.tensor([1.0]))
    assert torch.allclose(apply_affine(apply_affine(p[:1], flip), flip), p[:1], atol=1e-6)
    assert torch.allclose(apply_affine(q, invert_affine(aff)), p, atol=1e-5)


# --------------------------------------------------------------------------- shake
def test_shake_statistics():
    gen = torch.Generator().manual_seed(0)
    c = torch.zeros(50_000, 10, 2)
    moved = shake(c, CCNNConfig().shake_std, gen)
    assert abs(float(moved.mean())) < 2e-4
    assert float(moved.var()) == pytest.approx(1e-4, rel=0.02)       # shake ~ N(0, 1e-4)
    # x and y shake independently
    corr = np.corrcoef(moved[..., 0].flatten(), moved[..., 1].flatten())[0, 1]
    assert abs(corr) < 0.02
    assert torch.equal(shake(c[:3], 0.0), c[:3])


# --------------------------------------------------------------------------- batched inference
@pytest.mark.parametrize("stage", [1, 2, 3])
def test_batched_equals_per_net(stage):
    torch.manual_seed(0)
    group = ccnn().stage(stage).eval()
    side = 39 if stage == 1 else 15
    x = torch.randn(5, len(group), 3, side, side)
    with torch.no_grad():
        assert torch.allclose(group(x), group.forward_each(x), atol=1e-5)


def test_batched_gradients_equal_per_net():
    # float64: in float32 a different summation order can flip a max-pool near-tie
    torch.manual_seed(0)
    group = ccnn(dropout=0.0).stage2.double()
    x = torch.randn(4, 10, 3, 15, 15, dtype=torch.float64)
    group(x).square().sum().backward()
    g1 = [p.grad.clone() for p in group.parameters()]
    group.zero_grad()
    group.forward_each(x).square().sum().backward()
    assert all(torch.allclose(a, p.grad, atol=1e-10) for a, p in zip(g1, group.parameters()))


def test_full_cascade_shapes_and_determinism():
    model = ccnn().eval()
    img = torch.randint(0, 255, (2, 3, 120, 100), dtype=torch.uint8)
    frames = image_frames(torch.tensor([[20.0, 20.0, 80.0, 80.0], [10.0, 30.0, 70.0, 90.0]]))
    with torch.no_grad():
        p = model(img, frames)
        q = model(img, frames)
    assert [t.shape for t in p] == [torch.Size([2, 5, 2])] * 3
    assert all(torch.equal(a, b) for a, b in zip(p, q))


# --------------------------------------------------------------------------- Eq. 4
def test_average_points_eq4():
    preds = torch.zeros(1, 3, 10)
    preds[0, 0] = torch.arange(10.0)                   # F1: all 5 points
    preds[0, 1, :6] = 100.0                            # EN1: LE, RE, N
    preds[0, 2, :6] = 1000.0                           # NM1: N, LM, RM
    out = average_points(preds, [(0, 1, 2, 3, 4), (0, 1, 2), (2, 3, 4)])
    assert out[0, 0].tolist() == [50.0, 50.5]                        # (F1 + EN1) / 2
    assert out[0, 2].tolist() == pytest.approx([(4 + 100 + 1000) / 3, (5 + 100 + 1000) / 3])
    assert out[0, 4].tolist() == [504.0, 504.5]                      # (F1 + NM1) / 2


def test_windows_minus_decodes_absolute_coordinates():
    model = CCNN(CCNNConfig(relative=False))
    absolute = torch.tensor([[0.2, 0.1, 0.5, 0.5]])           # box in image-normalised units
    p = torch.tensor([[0.3, 0.4]])                            # box units
    t = absolute[:, :2] + p * absolute[:, 2:]
    out = torch.cat([t.repeat(1, 5), F_pad(t.repeat(1, 3)), F_pad(t.repeat(1, 3))])[None]
    c, s = CCNNConfig().stage1_windows()
    dec = model.decode_stage1(out, c[None], s[None], absolute)
    assert torch.allclose(dec, p.expand(1, 5, 2), atol=1e-6)


def F_pad(t: torch.Tensor) -> torch.Tensor:
    return torch.nn.functional.pad(t, (0, 10 - t.shape[-1]))


def test_window_extent_known_answers():
    """Eq. 5: "half" (default) expands the anchor by a*h / b*w on each side, "full" makes that
    the whole window; any other reading is rejected."""
    half, full = CCNNConfig(), CCNNConfig(window_extent="full")
    assert half.window_extent == "half"
    assert torch.allclose(half.local_window_sizes(2)[0], torch.tensor([0.32, 0.32]))
    assert torch.allclose(half.local_window_sizes(2)[5], torch.tensor([0.36, 0.36]))
    assert torch.allclose(half.local_window_sizes(3)[4], torch.tensor([0.16, 0.16]))
    assert torch.allclose(full.local_window_sizes(3),
                          torch.tensor([[0.08, 0.08]] * 5 + [[0.09, 0.09]] * 5))
    with pytest.raises(ValueError, match="window_extent must be 'half' or 'full'"):
        CCNNConfig(window_extent="side").local_window_sizes(2)


# --------------------------------------------------------------------------- inference details
def test_standardise_known_answer_and_torch_std():
    from lmklib.models.ccnn import standardise

    crop = torch.tensor([1.0, 3.0]).view(1, 1, 1, 1, 2)          # mean 2, unbiased std sqrt(2)
    assert torch.allclose(standardise(crop, eps=0.0).flatten(), torch.tensor([-1.0, 1.0]) / 2 ** 0.5)
    x = torch.rand(2, 3, 3, 15, 15, generator=torch.Generator().manual_seed(0)) * 255
    ref = (x - x.mean((-3, -2, -1), keepdim=True)) / (x.std((-3, -2, -1), keepdim=True) + 1e-5)
    assert torch.allclose(standardise(x), ref, atol=1e-5)
    # a permuted (non-contiguous) crop set, as sample_windows returns it
    y = x.permute(0, 2, 1, 3, 4).contiguous().permute(0, 2, 1, 3, 4)
    assert not y.is_contiguous() and torch.allclose(standardise(y), ref, atol=1e-5)


def test_packed_weights_cache_sees_in_place_changes_and_replaced_layers():
    group = ccnn().stage2.eval()
    x = torch.rand(1, 10, 3, 15, 15)
    with torch.no_grad():
        before = group(x)
        assert torch.equal(group(x), before)                     # cached
        group.nets[3].fc2.bias.add_(1.0)                          # an in-place update (optimizer)
        after = group(x)
        assert torch.allclose(after[:, 3] - before[:, 3], torch.ones(2))
        assert torch.equal(after[:, :3], before[:, :3])
        group.nets[3].fc2 = torch.nn.Linear(60, 2)               # a replaced layer
        torch.nn.init.zeros_(group.nets[3].fc2.weight)
        torch.nn.init.constant_(group.nets[3].fc2.bias, 7.0)
        assert torch.equal(group(x)[:, 3], torch.full((1, 2), 7.0))
