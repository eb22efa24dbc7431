"""Bit-packed XNOR/popcount inference equals the float emulation of 1-bit ACN / XNOR-Net."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lmklib.models.acn import AConv2d, XNORConv2d, acn_net, binarize
from lmklib.models.acn_bitpacked import (BitpackedLandmarkNet, PackedBinaryConv, pack_bits,
                                         popcount, xnor_popcount_matmul)


def test_pack_bits_and_popcount_known_values():
    bits = np.zeros((2, 70), bool)
    bits[0, [0, 3, 64, 69]] = True
    bits[1, :] = True
    p = pack_bits(bits)
    assert p.dtype == np.uint64 and p.shape == (2, 2)
    assert p[0, 0] == 0b1001 and p[0, 1] == 0b100001
    assert popcount(p).sum(-1).tolist() == [4, 70]


def test_xnor_popcount_is_the_pm1_dot_product():
    rng = np.random.default_rng(0)
    a, w = rng.choice([-1, 1], (50, 100)), rng.choice([-1, 1], (7, 100))
    dot = xnor_popcount_matmul(pack_bits(a > 0), pack_bits(w > 0), 100)
    np.testing.assert_array_equal(dot, a @ w.T)
    # zero padding: positions with a = 0 do not count
    a0 = a * (rng.random((50, 100)) > 0.3)
    dot0 = xnor_popcount_matmul(pack_bits(a0 > 0), pack_bits(w > 0), 100, pack_bits(a0 != 0))
    np.testing.assert_array_equal(dot0, a0 @ w.T)


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
