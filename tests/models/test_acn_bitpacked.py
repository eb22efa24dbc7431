"""Bit-packed XNOR/popcount inference equals the float emulation of 1-bit ACN / XNOR-Net."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lmklib.models.acn import AConv2d, XNORConv2d, acn_net, binarize
from lmklib.models.acn_bitpacked import (BitpackedLandmarkNet, PackedBinaryConv, pack_bits,
                                         popcount)


def test_pack_bits_and_popcount_known_values():
    bits = np.zeros((2, 70), bool)
    bits[0, [0, 3, 64, 69]] = True
    bits[1, :] = True
    p = pack_bits(bits)
    assert p.dtype == np.uint64 and p.shape == (2, 2)
    assert p[0, 0] == 0b1001 and p[0, 1] == 0b100001
    assert popcount(p).sum(-1).tolist() == [4, 70]


def test_kernel_is_the_pm1_dot_product_by_hand():
    # one output pixel of a 1x2 kernel on 2 channels, the right tap in the zero padding:
    # signs (+1, -1) against kernel (+1, +1) at the left tap -> 1 - 1 = 0; then 5 * 0 + 0.5
    conv = AConv2d(2, 1, (1, 2), padding="same", binarize_input=True, bias=True).eval()
    with torch.no_grad():
        conv.weight.fill_(0.3)
        conv.amplitude.fill_(5.0)
        conv.bias.fill_(0.5)
    packed = PackedBinaryConv(conv)
    x = torch.tensor([[[[2.0]], [[-1.0]]]])          # [1, 2, 1, 1]
    assert packed.integer_conv(x).flatten().tolist() == [0.0]
    assert packed(x).flatten().tolist() == [0.5]
    x = torch.tensor([[[[0.0]], [[3.0]]]])           # sign(0) = +1: both +1 -> 2
    assert packed(x).flatten().tolist() == [10.5]


# odd sizes: channel counts below, at and above a 64-bit word, even and odd kernels, every padding
@pytest.mark.parametrize("cin,cout,kernel,padding,hw", [
    (1, 3, 3, 0, (5, 7)), (63, 5, 3, 1, (6, 5)), (64, 7, 2, "same", (4, 9)),
    (65, 4, 3, "same", (7, 3)), (130, 9, 4, 2, (5, 6)), (20, 40, 3, 0, (18, 18))])
@pytest.mark.parametrize("cls", [AConv2d, XNORConv2d])
def test_packed_conv_is_bit_exact_on_odd_layers(cls, cin, cout, kernel, padding, hw):
    torch.manual_seed(cin * 7 + cout)
    conv = cls(cin, cout, kernel, padding=padding, binarize_input=True).eval()
    x = torch.randn(2, cin, *hw)
    x[0, 0, 0, 0] = 0.0                              # sign(0) = +1 in both paths
    packed = PackedBinaryConv(conv)
    ints = F.conv2d(binarize(x), binarize(conv.weight), None, padding=padding)
    assert torch.equal(packed.integer_conv(x), ints)
    with torch.no_grad():
        assert torch.equal(packed(x), conv(x))


@pytest.mark.parametrize("cls,padding,kernel", [(AConv2d, 0, 3), (AConv2d, "same", 2),
                                                (XNORConv2d, 1, 3), (XNORConv2d, "same", 2)])
def test_packed_conv_equals_float_conv_of_signs(cls, padding, kernel):
    torch.manual_seed(0)
    conv = cls(5, 6, kernel, padding=padding, binarize_input=True).eval()
    x = torch.randn(3, 5, 7, 7)
    packed = PackedBinaryConv(conv)
    ints = F.conv2d(binarize(x), binarize(conv.weight), None, padding=padding)
    assert torch.equal(packed.integer_conv(x), ints)
    with torch.no_grad():
        assert torch.equal(packed(x), conv(x))


@pytest.mark.parametrize("structure", ["10-20-40-80", "20-20-40-40-60-60-80-80"])
@pytest.mark.parametrize("mode", ["acn1bit", "xnor"])
def test_bitpacked_network_equals_float_emulation_exactly(structure, mode):
    torch.manual_seed(1)
    net = acn_net(structure, mode)
    with torch.no_grad():   # non-trivial BatchNorm statistics
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    net.eval()
    x = torch.randn(4, 1, 39, 39)
    with torch.no_grad():
        ref = net(x)
    assert torch.equal(BitpackedLandmarkNet(net)(x), ref)


def test_only_one_bit_models_are_packed():
    with pytest.raises(ValueError, match="only 1-bit models"):
        BitpackedLandmarkNet(acn_net("10-20-40-80", "acn"))
