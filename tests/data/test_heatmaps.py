"""Heatmap targets and decoding: hand-computed values and encode -> decode round trips."""

import math

import numpy as np
import pytest
import torch

from lmklib.data import heatmaps as HM


def test_gaussian_values_and_masking():
    pts = torch.tensor([[[3.0, 2.0], [float("nan"), 1.0], [5.5, 4.0]]])
    maps = HM.gaussian_heatmaps(pts, (8, 10), sigma=1.5, mask=torch.tensor([[True, True, False]]))
    assert maps.shape == (1, 3, 8, 10) and maps.dtype == torch.float32
    assert maps[0, 0, 2, 3] == 1.0
    assert math.isclose(maps[0, 0, 3, 5].item(), math.exp(-(4 + 1) / (2 * 1.5**2)), rel_tol=1e-6)
    assert maps[0, 1].abs().sum() == 0 and maps[0, 2].abs().sum() == 0   # NaN point, masked point
    # unbatched input and square size
    assert HM.gaussian_heatmaps(pts[0, :1], 6, 1.0).shape == (1, 6, 6)


def test_argmax_exact_on_integer_points():
    rng = np.random.default_rng(0)
    pts = torch.tensor(rng.integers(1, 31, (4, 7, 2)), dtype=torch.float32)
    maps = HM.gaussian_heatmaps(pts, (32, 32), 2.0)
    for method in ("argmax", "quarter_offset", "dark"):   # soft_argmax is biased at borders
        torch.testing.assert_close(HM.decode_heatmaps(maps, method), pts, atol=1e-3, rtol=0)
    pts_s, scores = HM.decode_heatmaps(maps, "argmax", return_scores=True)
    assert torch.equal(pts_s, pts) and torch.allclose(scores, torch.ones(4, 7))


@pytest.mark.parametrize("method,tol", [("soft_argmax", 1e-3), ("dark", 1e-3),
                                        ("quarter_offset", 0.25 + 1e-6), ("argmax", 0.5 + 1e-6)])
def test_subpixel_round_trip(method, tol):
    rng = np.random.default_rng(1)
    pts = torch.tensor(rng.uniform(12, 52, (8, 5, 2)), dtype=torch.float32)
    maps = HM.gaussian_heatmaps(pts, (64, 64), 2.0)
    err = (HM.decode_heatmaps(maps, method) - pts).abs().max().item()
    assert err <= tol, (method, err)


def test_dark_with_modulation_and_quarter_offset_direction():
    pts = torch.tensor([[[20.3, 30.8], [40.6, 12.2]]])
    maps = HM.gaussian_heatmaps(pts, (48, 64), 2.0)
    dark = HM.decode_heatmaps(maps, "dark", blur_kernel=11)
    assert (dark - pts).abs().max() < 0.05
    q = HM.decode_heatmaps(maps, "quarter_offset")
    torch.testing.assert_close(q, torch.tensor([[[20.25, 30.75], [40.75, 12.25]]]))


def test_empty_maps_decode_to_nan_and_bad_method():
    maps = torch.zeros(1, 2, 16, 16)
    maps[0, 1] = HM.gaussian_heatmaps(torch.tensor([[5.0, 6.0]]), 16, 1.0)[0]
    for method in HM.METHODS:
        out = HM.decode_heatmaps(maps, method)
        assert torch.isnan(out[0, 0]).all() and torch.allclose(out[0, 1], torch.tensor([5.0, 6.0]),
                                                                atol=1e-3)
    with pytest.raises(ValueError, match="valid"):
        HM.decode_heatmaps(maps, "mean")


def test_soft_argmax_is_differentiable():
    maps = HM.gaussian_heatmaps(torch.tensor([[[7.2, 9.6]]]), 20, 1.5).requires_grad_(True)
    out = HM.soft_argmax(maps, beta=None)
    out.sum().backward()
    assert maps.grad is not None and torch.isfinite(maps.grad).all()
    torch.testing.assert_close(out, torch.tensor([[[7.2, 9.6]]]), atol=1e-4, rtol=0)


def test_stride_conversion_and_targets():
    # image pixel centre 0 of a stride-4 map is at heatmap -0.375; round trip is exact
    p = torch.tensor([[0.0, 0.0], [129.5, 63.0]])
    torch.testing.assert_close(HM.heatmap_to_image(HM.image_to_heatmap(p, 4), 4), p)
    assert HM.image_to_heatmap(torch.tensor(1.5), 4) == 0.0
    t = HM.heatmap_targets(torch.tensor([[[33.5, 97.5]]]), (256, 128), stride=4, sigma=1.0)
    assert t.shape == (1, 1, 64, 32)
    dec = HM.heatmap_to_image(HM.decode_heatmaps(t, "dark"), 4)
    torch.testing.assert_close(dec, torch.tensor([[[33.5, 97.5]]]), atol=1e-3, rtol=0)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_matches_cpu():
    from lmklib.data import transforms as T

    pts = torch.tensor(np.random.default_rng(2).uniform(5, 25, (3, 4, 2)), dtype=torch.float32)
    maps = HM.gaussian_heatmaps(pts, 32, 1.5)
    for method in HM.METHODS:
        torch.testing.assert_close(HM.decode_heatmaps(maps.cuda(), method).cpu(),
                                   HM.decode_heatmaps(maps, method), atol=1e-4, rtol=0)
    torch.testing.assert_close(HM.gaussian_heatmaps(pts.cuda(), 32, 1.5).cpu(), maps)
    img = torch.rand(2, 3, 40, 40)
    c, h = torch.rand(2, 4, 2) * 40, torch.full((2, 4), 5.0)
    torch.testing.assert_close(T.crop_windows(img.cuda(), c.cuda(), h.cuda(), 11).cpu(),
                               T.crop_windows(img, c, h, 11), atol=1e-5, rtol=0)
    a = T.rotation_affine(20, (20, 20))
    torch.testing.assert_close(T.warp_affine(img.cuda(), a, 40).cpu(), T.warp_affine(img, a, 40),
                               atol=1e-5, rtol=0)


def test_heatmap_loss_known_answers():
    t = HM.gaussian_heatmaps(torch.tensor([[[3.0, 4.0], [float("nan"), 0.0]]]), 8, 1.0)
    # MSE: plain mean over every pixel
    assert HM.heatmap_loss(torch.zeros_like(t), t, "mse").item() == pytest.approx((t ** 2).mean().item())
    # softmax CE: a flat map costs log(H W); the target's own log-probabilities give its entropy
    # (the minimum); the landmark with no target (NaN point) is left out of the mean
    assert HM.heatmap_loss(torch.zeros_like(t), t, "softmax_ce").item() == pytest.approx(math.log(64))
    p = t[0, 0] / t[0, 0].sum()
    entropy = -(p * p.clamp_min(1e-30).log()).sum().item()
    best = torch.stack([p.clamp_min(1e-30).log(), torch.zeros(8, 8)])[None]
    assert HM.heatmap_loss(best, t, "softmax_ce").item() == pytest.approx(entropy, rel=1e-5)
    assert HM.heatmap_loss(best + 0.1 * torch.randn_like(best), t, "softmax_ce").item() > entropy
    with pytest.raises(ValueError, match="unknown heatmap loss"):
        HM.heatmap_loss(t, t, "l1")


def test_diffusion_heatmaps_known_values_and_gradient():
    # Algorithm 1's impulse map convolved with a Gaussian: a sum of Gaussians, each weighted by
    # its landmark's normalised coordinate; with two landmarks per face those are exactly 0 and 1
    pts = torch.tensor([[[3.0, 2.0], [6.0, 5.0]], [[1.0, 1.0], [4.5, 3.0]]], requires_grad=True)
    s3d = torch.tensor([[[0.0, 10.0, -2.0], [4.0, 30.0, 2.0]],
                        [[5.0, 1.0, 7.0], [1.0, 1.0, 3.0]]], requires_grad=True)
    maps = HM.diffusion_heatmaps(pts, s3d, (8, 10), sigma=1.5)
    assert maps.shape == (2, 3, 8, 10) and maps.dtype == torch.float32
    v, u = torch.meshgrid(torch.arange(8.0), torch.arange(10.0), indexing="ij")
    g = lambda x, y: torch.exp(-((u - x) ** 2 + (v - y) ** 2) / (2 * 1.5**2))   # noqa: E731
    for j in range(3):  # face 0: landmark 1 holds the maximum of every axis
        torch.testing.assert_close(maps[0, j], g(6.0, 5.0), atol=1e-6, rtol=0)
    # face 1: x -> landmark 0 is max, y is constant (max == min) -> 0, z -> landmark 0 is max
    torch.testing.assert_close(maps[1, 0], g(1.0, 1.0), atol=1e-6, rtol=0)
    assert maps[1, 1].abs().max() == 0
    torch.testing.assert_close(maps[1, 2], g(1.0, 1.0), atol=1e-6, rtol=0)
    # a value between the extremes, unbatched numpy input, square size
    one = HM.diffusion_heatmaps(np.array([[2.0, 2.0], [0.0, 0.0], [4.0, 4.0]]),
                                np.array([[0.25, 0, 0], [0, 0, 0], [1, 1, 1]]), 5, sigma=1.0)
    assert one.shape == (3, 5, 5)
    assert one[0, 2, 2].item() == pytest.approx(0.25 + math.exp(-8 / 2), rel=1e-6)  # 0 + 0.25 + 1
    assert one[1, 2, 2].item() == pytest.approx(math.exp(-4), rel=1e-6)
    (maps[0, 0] * g(5.0, 4.0)).sum().backward()
    assert pts.grad is not None and pts.grad[0, 1].abs().sum() > 0 and pts.grad[1].abs().sum() == 0
    assert s3d.grad is not None and torch.isfinite(s3d.grad).all()
