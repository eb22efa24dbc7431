"""ACN / 1-bit ACN / XNOR-Net layers (Chen et al. 2020): parameter counts, forward, the
hand-computed gradients of Eqs. (11), (12), (15), (16), and the asynchronous update (Eq. 14)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lmklib import profile
from lmklib.data.heatmaps import gaussian_heatmaps, image_to_heatmap
from lmklib.models.acn import (KERNEL_STRUCTURES, MODES, AConv2d, XNORConv2d, acn_net,
                               amplitude_loss, inference_storage_bits, make_optimizer, mse_loss)
from lmklib.models.cpm import CPM, decode_heatmaps

# Table 2 reports 0.06M / 0.09M / 0.15M / 0.16M; the exact counts of our backbone.
EXPECTED_PARAMS = {"10-20-40-80": 61_840, "20-40-60-80": 88_250, "40-60-80-100": 147_050,
                   "20-20-40-40-60-60-80-80": 164_450}
PAPER_PARAMS_M = {"10-20-40-80": 0.06, "20-40-60-80": 0.09, "40-60-80-100": 0.15,
                  "20-20-40-40-60-60-80-80": 0.16}


@pytest.mark.parametrize("structure", list(KERNEL_STRUCTURES))
def test_parameter_counts_match_table2(structure):
    net = acn_net(structure, "cnn")
    n = profile.count_parameters(net)
    assert n == EXPECTED_PARAMS[structure]
    assert round(n / 1e6, 2) == PAPER_PARAMS_M[structure]
    # ACN adds only the (training-time) amplitude matrices, one kernel-sized matrix per layer.
    acn = acn_net(structure, "acn")
    amps = sum(m.amplitude.numel() for m in acn.modules() if isinstance(m, AConv2d))
    assert profile.count_parameters(acn) == n + amps


@pytest.mark.parametrize("mode", MODES)
def test_output_shape(mode):
    net = acn_net("10-20-40-80", mode)
    assert net(torch.randn(3, 1, 39, 39)).shape == (3, 5, 2)
    assert len(net.feature_maps(torch.randn(1, 1, 39, 39))) == 4


def test_aconv_forward_is_conv_with_mean_amplitude_times_sign():
    torch.manual_seed(0)
    conv = AConv2d(3, 4, 3, padding=1)
    with torch.no_grad():
        conv.amplitude.uniform_(0.1, 0.9)
    x = torch.randn(2, 3, 6, 6)
    ref = F.conv2d(x, conv.amplitude.mean() * torch.sign(conv.weight), conv.bias, padding=1)
    torch.testing.assert_close(conv(x), ref)           # training path
    with torch.no_grad():
        torch.testing.assert_close(conv(x), ref)       # inference path
    conv1 = AConv2d(3, 4, 3, binarize_input=True)
    ref1 = F.conv2d(torch.sign(x), conv1.amplitude.mean() * torch.sign(conv1.weight), conv1.bias)
    torch.testing.assert_close(conv1(x), ref1)


def _hand_case():
    """Two 2x1 filters on one input channel; X0 has an element beyond the STE's |x| <= 1."""
    conv = AConv2d(1, 2, (2, 1), bias=False, theta=0.1)
    with torch.no_grad():
        conv.weight.copy_(torch.tensor([[[[1.5], [-0.2]]], [[[-0.3], [0.1]]]]))
        conv.amplitude.copy_(torch.tensor([[[0.2], [0.4]]]))       # A^ = 0.3
    x = torch.tensor([[[[1.0], [2.0]]]])                             # [1, 1, 2, 1]
    return conv, x


def test_gradients_of_task_loss_match_eqs_11_and_15():
    conv, x = _hand_case()
    y = conv(x).flatten()                                            # y_i = A^ sum x * D_i
    torch.testing.assert_close(y, torch.tensor([0.3 * (1 - 2), 0.3 * (-1 + 2)]))
    (y[0] + 2 * y[1]).backward()                                     # dL/dX^_0 = x, dL/dX^_1 = 2x
    # Eq. 11: dL/dX^ * A^ * 1{|X| <= 1}
    torch.testing.assert_close(conv.weight.grad.flatten(), torch.tensor([0.0, 0.6, 0.6, 1.2]))
    # Eq. 15: sum_i dL/dX^_i (.) D_i = [1, 2](.)[1, -1] + [2, 4](.)[-1, 1]
    torch.testing.assert_close(conv.amplitude.grad.flatten(), torch.tensor([-1.0, 2.0]))


def test_gradients_of_amplitude_loss_match_eqs_4_12_and_16():
    conv, _ = _hand_case()
    la = conv.amplitude_loss()
    # X - A^ D: X0 - 0.3 D0 = [1.2, 0.1], X1 - 0.3 D1 = [0, -0.2]
    torch.testing.assert_close(la, torch.tensor(0.5 * 0.1 * (1.44 + 0.01 + 0.0 + 0.04)))
    la.backward()
    torch.testing.assert_close(conv.weight.grad.flatten(),                  # Eq. 12
                               0.1 * torch.tensor([1.2, 0.1, 0.0, -0.2]))
    torch.testing.assert_close(conv.amplitude.grad.flatten(),               # Eq. 16
                               -0.1 * torch.tensor([1.2 * 1 + 0.0 * -1, 0.1 * -1 + -0.2 * 1]))


def test_amplitudes_stay_non_negative_and_follow_eq_14():
    conv, x = _hand_case()
    opt = make_optimizer(conv, eta1=1e-3, eta2=0.5)
    assert [g["lr"] for g in opt.param_groups] == [1e-3, 0.5]
    before = conv.amplitude.detach().clone()
    (conv(x)[0, 0] - 5 * conv(x)[0, 1]).sum().backward()
    g = conv.amplitude.grad.clone()
    opt.step()
    # Adam's first step moves by lr * g / (|g| + eps): A <- |A - 0.5 sign(g)|
    expected = (before - 0.5 * g / (g.abs() + 1e-8)).abs()
    torch.testing.assert_close(conv.amplitude.detach(), expected)
    assert (before - 0.5 * torch.sign(g) < 0).any()   # the step did cross zero ...
    assert (conv.amplitude >= 0).all()                  # ... and the amplitude stayed >= 0


@pytest.mark.slow
def test_amplitudes_non_negative_through_training():
    torch.manual_seed(0)
    net = acn_net("10-20-40-80", "acn1bit")
    opt = make_optimizer(net, eta1=1e-2, eta2=1e-1)   # large steps: amplitudes cross zero
    x, y = torch.randn(4, 1, 39, 39), torch.rand(4, 5, 2)
    for _ in range(3):
        loss = mse_loss(net(x), y) + amplitude_loss(net)
        opt.zero_grad()
        loss.backward()
        opt.step()
        assert all((m.amplitude >= 0).all() for m in net.modules() if isinstance(m, AConv2d))


def test_mse_loss_is_eq_5():
    pred, gt = torch.zeros(2, 5, 2), torch.ones(2, 5, 2)
    assert float(mse_loss(pred, gt)) == pytest.approx(2 * 5 * 2 / (2 * 2 * 5))


def test_xnor_conv_is_sign_conv_times_alpha_and_k():
    torch.manual_seed(0)
    conv = XNORConv2d(3, 4, 3, padding=1, binarize_input=True)
    x = torch.randn(2, 3, 5, 5)
    alpha = conv.weight.abs().mean(dim=(1, 2, 3)).view(1, -1, 1, 1)
    k = F.avg_pool2d(x.abs().mean(1, keepdim=True), 3, 1, 1, count_include_pad=True)
    ref = F.conv2d(torch.sign(x), torch.sign(conv.weight), None, padding=1) * alpha * k \
        + conv.bias.view(1, -1, 1, 1)
    torch.testing.assert_close(conv(x), ref)
    with torch.no_grad():
        torch.testing.assert_close(conv(x), ref)


def test_memory_accounting_counts_binary_kernels_as_one_bit():
    cnn, acn = acn_net("20-40-60-80", "cnn"), acn_net("20-40-60-80", "acn")
    conv_w = sum(m.weight.numel() for m in acn.modules() if isinstance(m, AConv2d))
    other = profile.count_parameters(cnn) - conv_w
    assert inference_storage_bits(cnn) == 32 * profile.count_parameters(cnn)
    assert inference_storage_bits(acn) == conv_w + 32 * 4 + 32 * other
    # lmklib.profile sees the binary kernels through `binary_weight_names`
    assert profile.storage_bits(acn) < profile.storage_bits(cnn)


@pytest.mark.parametrize("mode", MODES)
def test_cpm_shapes_and_heatmap_round_trip(mode):
    net = CPM(num_points=5, mode=mode, vgg_widths=(4, 4, 8, 8), stage_channels=8, stage_kernel=3)
    outs = net(torch.randn(2, 3, 32, 32))
    assert len(outs) == 3 and outs[-1].shape == (2, 5, 8, 8)
    pts = torch.tensor([[[5.0, 9.0], [20.0, 13.0], [1.5, 30.0], [16.0, 16.0], [27.0, 3.0]]])
    back = decode_heatmaps(gaussian_heatmaps(image_to_heatmap(pts, 4), 8, 1.0), 4)
    assert (back - pts).abs().max() <= 2.0     # within half a heatmap pixel
