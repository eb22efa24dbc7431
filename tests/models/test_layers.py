import pytest
import torch
import torch.nn.functional as F

from lmklib.models.layers import MaxPool2x2, max_pool2x2


@pytest.mark.parametrize("shape", [(1, 1, 4, 4), (2, 3, 7, 9), (3, 16, 94, 94)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_inference_pool_equals_aten(shape, channels_last):
    torch.manual_seed(0)
    x = torch.randn(*shape)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        assert torch.equal(max_pool2x2(x), F.max_pool2d(x, 2))


def test_too_small_map_is_atens_error():
    with torch.no_grad(), pytest.raises(RuntimeError, match="too small"):
        max_pool2x2(torch.zeros(1, 5, 1, 3))


def test_known_answer_and_nan():
    x = torch.tensor([[[[1., 5., 2., 0., 9.],
                        [3., 4., float("nan"), 1., 9.],
                        [7., 0., 8., 6., 9.]]]])
    with torch.no_grad():
        y = max_pool2x2(x)
    assert y.shape == (1, 1, 1, 2)                   # odd rows and columns are dropped, as ATen
    assert y[0, 0, 0, 0] == 5 and torch.isnan(y[0, 0, 0, 1])


def test_training_keeps_atens_gradient():
    # ties: ATen gives the whole gradient to one element of a window, torch.maximum would split it
    x = torch.zeros(1, 1, 2, 2, requires_grad=True)
    MaxPool2x2()(x).sum().backward()
    assert sorted(x.grad.flatten().tolist()) == [0.0, 0.0, 0.0, 1.0]



@pytest.mark.parametrize("shape", [(1, 1, 2, 2), (2, 3, 7, 9), (1, 16, 94, 94), (2, 5, 3, 17)])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("act, torch_act", [("relu", F.relu), ("relu6", F.relu6)])
def test_pool_then_activation_equals_activation_then_pool(shape, channels_last, act, torch_act):
    # the C loop pools then activates; max commutes with a non-decreasing function: exact
    torch.manual_seed(sum(shape))
    x = torch.randn(*shape) * 5
    x[0, 0, 0, 0] = float("nan")
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        got = max_pool2x2(x, act)
    ref = F.max_pool2d(torch_act(x), 2)
    assert got.is_contiguous(memory_format=torch.channels_last if channels_last
                             else torch.contiguous_format)
    assert torch.equal(got.nan_to_num(-99), ref.nan_to_num(-99)) and torch.isnan(got[0, 0, 0, 0])
    trained = max_pool2x2(x.requires_grad_(), act)                     # autograd: ATen's ops
    assert trained.grad_fn is not None and torch.equal(trained.nan_to_num(-99), ref.nan_to_num(-99))


def test_pool_loop_rejects_wrong_sizes():
    with pytest.raises(ValueError, match="maxpool2x2: out holds 8 bytes, expected 4"):
        _loops.maxpool2x2(bytes(16), bytearray(8), 1, 2, 2, 1, 0)
    with pytest.raises(ValueError, match=r"plane 1 x 2 x 1 \(needs >= 2 x 2 x 1\)"):
        _loops.maxpool2x2(bytes(8), bytearray(0), 1, 1, 2, 1, 0)

# --------------------------------------------------------------------------- convolutions
from torch import nn  # noqa: E402

from lmklib.models import _loops  # noqa: E402
from lmklib.models.layers import (ConvBNAct, DerivedCache, FastConv2d,  # noqa: E402
                                  depthwise3x3, depthwise_pair_hwc, extract_patches,
                                  fold_batchnorm, group_linear, grouped3x3, run_sequential,
                                  stem3x3)


def _torch_act(y, act):
    return y if act is None else F.relu(y) if act == "relu" else F.relu6(y)


# (batch 1, or channels not a multiple of 8: where the loop runs; else ATen's kernel)
@pytest.mark.parametrize("n, c, h, w, stride", [(1, 1, 1, 1, 1), (1, 3, 7, 9, 1), (1, 5, 9, 7, 2),
                                                (3, 16, 32, 32, 2), (1, 7, 10, 5, 3),
                                                (1, 128, 4, 4, 1), (2, 3, 17, 19, 1),
                                                (2, 5, 19, 17, 2), (2, 18, 6, 6, 1),
                                                (2, 8, 6, 6, 1)])
@pytest.mark.parametrize("act", [None, "relu", "relu6"])
def test_depthwise_loop_equals_conv2d(n, c, h, w, stride, act):
    torch.manual_seed(n * 100 + c + h + stride)
    x, weight, bias = torch.randn(n, c, h, w) * 4, torch.randn(c, 1, 3, 3), torch.randn(c)
    ref = _torch_act(F.conv2d(x, weight, bias, stride, 1, 1, c), act)
    with torch.inference_mode():
        got = depthwise3x3(x, weight, bias, stride, act)
        no_bias = depthwise3x3(x, weight, None, stride, act)
    assert got.shape == ref.shape
    # the same sums in another order: float32 rounding of terms up to ~4 * 4 * 9
    assert torch.allclose(got, ref, rtol=0, atol=2e-5)
    assert torch.allclose(no_bias, _torch_act(F.conv2d(x, weight, None, stride, 1, 1, c), act),
                          rtol=0, atol=2e-5)


def test_depthwise_known_answer_padding_and_nan():
    # one channel, all-ones kernel: each output is the sum of its 3x3 neighbourhood (zero padded)
    x = torch.arange(1., 13.).view(1, 1, 3, 4)
    with torch.no_grad():
        y = depthwise3x3(x, torch.ones(1, 1, 3, 3), torch.tensor([-30.]), 2, "relu")
    # stride 2 -> outputs at (0, 0), (0, 2), (2, 0), (2, 2): sums 14, 33 (3+4+2+7+8+6+... ) etc.
    sums = torch.tensor([[1 + 2 + 5 + 6, 2 + 3 + 4 + 6 + 7 + 8],
                         [5 + 6 + 9 + 10, 6 + 7 + 8 + 10 + 11 + 12]], dtype=torch.float32)
    assert torch.equal(y[0, 0], (sums - 30).clamp_min(0))
    x[0, 0, 0, 0] = float("nan")
    with torch.no_grad():
        y = depthwise3x3(x, torch.ones(1, 1, 3, 3), None, 1, "relu6")
    assert torch.isnan(y[0, 0, :2, :2]).all() and y[0, 0, 2, 3] == 6   # NaN stays NaN, as torch


def test_depthwise_non_contiguous_input_and_bad_shapes():
    torch.manual_seed(1)
    x = torch.randn(2, 6, 8, 8).contiguous(memory_format=torch.channels_last)[:, ::2]
    weight = torch.randn(3, 1, 3, 3)
    with torch.no_grad():
        assert torch.allclose(depthwise3x3(x, weight), F.conv2d(x, weight, None, 1, 1, 1, 3),
                              atol=2e-5)
    with pytest.raises(ValueError, match=r"weight \[C, 1, 3, 3\]"):
        depthwise3x3(x, torch.randn(3, 1, 5, 5))
    with pytest.raises(ValueError, match="x holds 4 bytes, expected 8"):
        _loops.depthwise3x3(bytes(4), bytes(36), None, bytearray(8), 1, 1, 1, 2, 1, 1, 2, 0)


@pytest.mark.filterwarnings("ignore:`torch.jit.trace:FutureWarning")
@pytest.mark.parametrize("n, c, o, h, w, stride", [(1, 1, 1, 1, 1, 1), (1, 3, 16, 64, 64, 2),
                                                   (1, 6, 5, 9, 7, 2), (1, 2, 17, 10, 5, 3),
                                                   (2, 3, 4, 7, 8, 1), (3, 3, 16, 33, 31, 2)])
@pytest.mark.parametrize("bias", [None, "vector", "map"])
@pytest.mark.parametrize("act", [None, "relu6"])
def test_stem3x3_equals_conv2d(n, c, o, h, w, stride, bias, act):
    torch.manual_seed(n + c + o + h + stride)
    x, weight = torch.randn(n, c, h, w) * 4, torch.randn(o, c, 3, 3)
    ho, wo = (h - 1) // stride + 1, (w - 1) // stride + 1
    b = None if bias is None else torch.randn(o) if bias == "vector" else torch.randn(o, ho, wo)
    y = F.conv2d(x, weight, None, stride, 1)
    ref = _torch_act(y if b is None else y + (b.view(o, 1, 1) if b.dim() == 1 else b), act)
    with torch.inference_mode():
        got = stem3x3(x, weight, b, stride, act)        # batch 1: the C loop; else ATen's
        loop = torch.empty_like(ref)                    # the C loop on the whole batch
        _loops.conv3x3(x.numpy(), weight.numpy(), None if b is None else b.numpy(),
                           loop.numpy(), n, c, h, w, o, 1, stride, 1, ho, wo,
                           {None: 0, "relu6": 2}[act])
    # the same sums in another order: float32 rounding of terms up to ~4 * 4 * 9 * c
    assert got.shape == ref.shape
    assert torch.allclose(got, ref, rtol=0, atol=1e-4)
    assert torch.allclose(loop, ref, rtol=0, atol=1e-4)


def test_stem3x3_known_answer_and_bad_shapes():
    # two input channels of ones, all-ones kernels: each output counts its taps inside the image
    # (4, 6 or 9, twice), plus the bias map
    x = torch.ones(1, 2, 3, 3)
    bias = torch.arange(9.).view(1, 3, 3)
    with torch.no_grad():
        y = stem3x3(x, torch.ones(1, 2, 3, 3), bias)
    taps = torch.tensor([[4., 6, 4], [6, 9, 6], [4, 6, 4]])
    assert torch.equal(y[0, 0], 2 * taps + bias[0])
    with pytest.raises(ValueError, match=r"weight \[O, C, 3, 3\]"):
        stem3x3(x, torch.ones(1, 3, 3, 3))
    with pytest.raises(ValueError, match="conv3x3: bias holds 8 bytes, expected 4"):
        _loops.conv3x3(bytes(36), bytes(36), bytes(8), bytearray(36), 1, 1, 3, 3, 1, 1, 1, 1,
                           3, 3, 0)


@pytest.mark.parametrize("n, c, o, groups, h, w, padding", [
    (1, 1, 16, 1, 96, 96, 0), (1, 15, 120, 15, 24, 24, 0), (1, 120, 240, 15, 11, 11, 0),
    (2, 6, 4, 2, 7, 9, 1), (3, 4, 8, 4, 3, 3, 0), (1, 3, 3, 3, 5, 4, 1), (2, 8, 8, 1, 6, 5, 0)])
@pytest.mark.parametrize("act", [None, "relu"])
def test_grouped3x3_equals_conv2d(n, c, o, groups, h, w, padding, act):
    torch.manual_seed(n + c + o + h + padding)
    x, weight = torch.randn(n, c, h, w) * 4, torch.randn(o, c // groups, 3, 3)
    for bias in (torch.randn(o), None):
        ref = _torch_act(F.conv2d(x, weight, bias, 1, padding, 1, groups), act)
        with torch.inference_mode():
            got = grouped3x3(x, weight, bias, padding, groups, act)
        assert got.shape == ref.shape and got.is_contiguous()
        # the same sums in another order: float32 rounding of terms up to ~4 * 4 * 9 * 8
        assert torch.allclose(got, ref, rtol=0, atol=1e-4)


def test_grouped3x3_known_answer_and_bad_shapes():
    # valid padding, two groups of one channel each, all-ones kernels: each output sums its
    # 3x3 window; group 1's input is twice group 0's
    x = torch.arange(20.).view(1, 1, 4, 5) * torch.tensor([1., 2.]).view(1, 2, 1, 1)
    with torch.no_grad():
        y = grouped3x3(x, torch.ones(4, 1, 3, 3), torch.tensor([0., -1., 0., 0.]), 0, 2)
    sums = torch.tensor([[54., 63., 72.], [99., 108., 117.]])
    assert torch.equal(y[0], torch.stack([sums, sums - 1, 2 * sums, 2 * sums]))
    with pytest.raises(ValueError, match="grouped3x3 needs"):
        grouped3x3(x, torch.ones(4, 2, 3, 3), None, 0, 2)
    with pytest.raises(ValueError, match="grouped3x3 needs"):
        grouped3x3(x[0], torch.ones(4, 1, 3, 3), None, 0, 2)          # no batch axis
    with pytest.raises(ValueError, match="conv3x3: 1 -> 1 channels in 1 groups, stride 2, "
                                         "padding 0"):
        _loops.conv3x3(bytes(36), bytes(36), None, bytearray(4), 1, 1, 3, 3, 1, 1, 2, 0, 1,
                           1, 0)


@pytest.mark.parametrize("n, groups, i, o", [(1, 15, 256, 64), (3, 15, 64, 2), (2, 1, 7, 33)])
def test_group_linear_equals_einsum(n, groups, i, o):
    torch.manual_seed(n + groups + i + o)
    x, weight, bias = torch.randn(n, groups, i), torch.randn(groups, i, o), torch.randn(groups, o)
    ref = torch.einsum("ngi,gio->ngo", x, weight)
    with torch.inference_mode():
        got, no_bias = group_linear(x, weight, bias), group_linear(x, weight)
    assert torch.allclose(got, ref + bias, rtol=0, atol=1e-4)
    assert torch.allclose(no_bias, ref, rtol=0, atol=1e-4)
    # known answer: ones through ones give the input width
    with torch.no_grad():
        assert torch.equal(group_linear(torch.ones(1, 2, 3), torch.ones(2, 3, 4)),
                           torch.full((1, 2, 4), 3.))
    with pytest.raises(ValueError, match="group_linear needs"):
        group_linear(x, weight[:, :-1])


@pytest.mark.skipif(not torch.backends.cpu.get_cpu_capability().startswith("AVX"),
                    reason="ATen's grid_sample rounds with FMA in its AVX2/AVX-512 builds only")
def test_extract_patches_loop_equals_grid_sample():
    # the C loop (inference) against grid_sample (autograd on): centres inside, on the border,
    # outside the image, NaN (the image centre) and infinite (clamped)
    torch.manual_seed(0)
    images = torch.rand(3, 1, 96, 80)
    centres = torch.rand(3, 15, 2) * 120 - 12
    centres[0, 0, 0] = float("nan")
    centres[1, 2] = torch.tensor([79., 95.])
    centres[1, 3] = torch.tensor([0., 0.])
    centres[2, 4, 1] = float("inf")
    centres[2, 5, 0] = -float("inf")
    for patch in (1, 3, 24, 25):
        ref = extract_patches(images, centres.clone().requires_grad_(), patch)
        with torch.inference_mode():
            got = extract_patches(images, centres, patch)
        # the same float operations as grid_sample's AVX2/AVX-512 kernel (FMA), in its order
        assert torch.equal(got, ref.detach())


def test_run_sequential_equals_the_modules():
    from lmklib.models import kaggle as K

    torch.manual_seed(3)
    norm = K.Normalisation.paper(K.IMAGE_SIZE)
    x = torch.rand(2, 1, K.IMAGE_SIZE, K.IMAGE_SIZE)
    for model in (K.cnn_small(activation="relu"), K.cnn_tiny(activation="tanh"),
                  K.cnn_tiny(activation="sigmoid"), K.mlp_tiny(),
                  K.CascadeCNN(K.cnn_tiny(), K.refiner(), norm)):
        model.eval()
        ref = model(x)                       # autograd on: every module runs as written
        with torch.inference_mode():
            got = model(x)
        assert torch.allclose(got, ref, rtol=1e-4, atol=1e-5), model
    seq = nn.Sequential(nn.Conv2d(4, 8, 3, padding=1, groups=2), nn.ReLU(), MaxPool2x2(),
                        nn.ReLU6(), MaxPool2x2(), nn.Flatten())
    x = torch.randn(1, 4, 9, 9) * 8
    with torch.inference_mode():
        assert torch.allclose(run_sequential(seq, x), seq(x), rtol=0, atol=1e-5)


@pytest.mark.parametrize("n, h, w, c", [(1, 4, 4, 128), (2, 4, 4, 16), (1, 1, 1, 7),
                                        (1, 5, 3, 130), (2, 3, 6, 1)])
def test_depthwise_pair_hwc_equals_two_conv2d(n, h, w, c):
    torch.manual_seed(n + h + w + c)
    a, b = torch.randn(n, c, h, w), torch.randn(n, c, h, w)
    wa, wb, bias = torch.randn(c, 1, 3, 3), torch.randn(c, 1, 3, 3), torch.randn(c)
    ref = F.conv2d(a, wa, bias, 1, 1, 1, c) + F.conv2d(b, wb, None, 1, 1, 1, c)

    def hwc(t):
        return t.permute(0, 2, 3, 1).contiguous()

    def taps(k):
        return k.view(c, 9).t().contiguous().numpy()

    got = depthwise_pair_hwc(hwc(a), hwc(b), taps(wa), taps(wb), bias.numpy())
    assert torch.allclose(got, hwc(ref), rtol=0, atol=2e-5)
    # known answer: ones everywhere, a's kernel ones, b's kernel twos: 3 x (valid taps) + bias
    ones = torch.ones(n, h, w, c)
    steps = torch.arange(c, dtype=torch.float32)                  # integer biases: exact sums
    got = depthwise_pair_hwc(ones, ones, taps(torch.ones_like(wa)), taps(2 * torch.ones_like(wb)),
                             steps.numpy())
    count = F.conv2d(torch.ones(1, 1, h, w), torch.ones(1, 1, 3, 3), None, 1, 1)[0, 0]
    assert torch.equal(got, (3 * count[..., None] + steps).expand(n, h, w, c))
    with pytest.raises(ValueError, match="depthwise3x3_pair_hwc: wb holds 4 bytes"):
        _loops.depthwise3x3_pair_hwc(a.numpy(), b.numpy(), taps(wa), bytes(4),
                                         bias.numpy(), torch.empty(n, h, w, c).numpy(), n, h, w,
                                         c)


def test_training_and_tracing_keep_torch_ops():
    x = torch.randn(1, 2, 5, 5, requires_grad=True)
    weight = torch.randn(2, 1, 3, 3, requires_grad=True)
    depthwise3x3(x, weight, act="relu").sum().backward()       # autograd: the torch path
    ref_x = x.detach().requires_grad_()
    _torch_act(F.conv2d(ref_x, weight.detach(), None, 1, 1, 1, 2), "relu").sum().backward()
    assert torch.equal(x.grad, ref_x.grad)
    block = ConvBNAct(nn.Conv2d(2, 2, 3, 1, 1, groups=2, bias=False), nn.BatchNorm2d(2),
                      nn.ReLU()).eval()
    with torch.no_grad():                          # tracing (ONNX export): the modules' ops
        traced = torch.jit.trace(block, x.detach())
        torch._C._jit_pass_inline(traced.graph)
        graph = str(traced.graph)
    assert "aten::_convolution" in graph and "aten::batch_norm" in graph


def test_torch_compile_keeps_torch_ops():
    # Dynamo cannot trace the C loops: under torch.compile the models run ATen's ops (before
    # this rule, compiling Fast DHM or an HRNet failed on the loops' buffers)
    from lmklib.models.fast_dhm import fast_dhm_tiny
    from lmklib.models.hrnet import tiny_supernet

    torch.manual_seed(0)
    for model, x in ((fast_dhm_tiny().eval(), torch.randn(1, 3, 32, 32)),
                     (tiny_supernet().eval(), torch.randn(1, 3, 32, 32))):
        compiled = torch.compile(model, backend="eager")
        with torch.inference_mode():
            assert torch.allclose(compiled(x), model(x), rtol=1e-4, atol=1e-5)
    torch._dynamo.reset()


def test_1x1_conv_equals_conv2d():
    # batch 1: one matrix product; a batch: ATen's 1x1 convolution with the prepared weights
    torch.manual_seed(2)
    conv = FastConv2d(6, 4, 1).eval()
    for n in (1, 3):
        x = torch.randn(n, 6, 5, 7)
        with torch.inference_mode():
            got = F.relu6(conv(x))
        assert torch.allclose(got, F.relu6(F.conv2d(x, conv.weight, conv.bias)), atol=1e-5)


def test_fold_batchnorm_known_answer():
    bn = nn.BatchNorm2d(2, eps=0.0).eval()
    bn.running_mean.copy_(torch.tensor([1., -2.]))
    bn.running_var.copy_(torch.tensor([4., 0.25]))
    with torch.no_grad():
        bn.weight.copy_(torch.tensor([3., 1.]))
        bn.bias.copy_(torch.tensor([0.5, 0.]))
    w, b = fold_batchnorm(torch.ones(2, 1, 1, 1), torch.tensor([1., 0.]), bn)
    # s = gamma / sqrt(var): 1.5 and 2; w = 1 * s; b = (bias - mean) s + beta = 0.5 and 4
    assert w.flatten().tolist() == [1.5, 2.0] and b.tolist() == [0.5, 4.0]


@torch.no_grad()
def _random_bn(bn):
    bn.running_mean.normal_()
    bn.running_var.uniform_(0.5, 2)
    bn.weight.normal_()
    bn.bias.normal_()


@pytest.mark.parametrize("conv", [nn.Conv2d(8, 8, 3, 2, 1, groups=8, bias=False),
                                  nn.Conv2d(8, 5, 1, bias=True), nn.Conv2d(8, 5, 3, 1, 1)])
@pytest.mark.parametrize("act", [None, nn.ReLU(inplace=True), nn.ReLU6()])
def test_conv_bn_act_folds_at_inference_and_sees_updates(conv, act):
    torch.manual_seed(3)
    block = ConvBNAct(conv, nn.BatchNorm2d(conv.out_channels), act)
    _random_bn(block[1])
    x = torch.randn(2, 8, 9, 9)
    assert list(block.state_dict()) == ["0.weight", *["0.bias"] * (conv.bias is not None),
                                        "1.weight", "1.bias", "1.running_mean", "1.running_var",
                                        "1.num_batches_tracked"]   # nn.Sequential's keys
    block.eval()
    ref = block(x)                                  # grad enabled, parameters need it: modules
    with torch.inference_mode():
        assert torch.allclose(block(x), ref, atol=1e-5)
    with torch.no_grad():                           # an in-place update is seen
        block[1].running_var.mul_(3)
        ref = nn.Sequential(*block)(x)
        assert torch.allclose(block(x), ref, atol=1e-5)
    block[0].weight = nn.Parameter(torch.randn_like(block[0].weight))   # so is a replaced one
    with torch.no_grad():
        assert torch.allclose(block(x), nn.Sequential(*block)(x), atol=1e-5)
    with torch.no_grad():                           # new memory for a parameter is seen
        block[1].weight.data = torch.randn_like(block[1].weight)
        assert torch.allclose(block(x), nn.Sequential(*block)(x), atol=1e-5)
        block.half().float()                        # conversions (rounding) clear the cache
        assert torch.allclose(block(x), nn.Sequential(*block)(x), atol=1e-5)
    block.train()                                   # training: batch statistics, not folded
    assert torch.equal(block(x), nn.Sequential(*block)(x))


@pytest.mark.parametrize("args", [(6, 6, 3, 1, 1, 1, 6, True), (6, 6, 3, 2, 1, 1, 6, False),
                                  (6, 4, 1, 1, 0, 1, 1, False), (6, 4, 3, 1, 1, 1, 2, True)])
def test_fast_conv2d_is_a_conv2d(args):
    torch.manual_seed(5)
    fast = FastConv2d(*args[:7], bias=args[7]).eval()
    plain = nn.Conv2d(*args[:7], bias=args[7])
    plain.load_state_dict(fast.state_dict())            # the same state dict
    x = torch.randn(2, 6, 7, 8)
    with torch.inference_mode():
        assert torch.allclose(fast(x), plain(x), atol=1e-5)
        fast.weight.mul_(-1)                            # prepared weights follow an update
        assert torch.allclose(fast(x), -plain(x) + 2 * (plain.bias.view(-1, 1, 1)
                                                       if args[7] else 0), atol=1e-5)


def test_conv_bn_act_refuses_other_activations():
    with pytest.raises(ValueError, match="ReLU or ReLU6"):
        ConvBNAct(nn.Conv2d(1, 1, 1), nn.BatchNorm2d(1), nn.Tanh())


def test_derived_cache_rebuilds_on_change_only():
    a, calls = torch.zeros(3), []
    cache = DerivedCache()
    build = lambda: calls.append(1) or len(calls)   # noqa: E731
    assert cache.get([a], build) == 1 and cache.get([a], build) == 1
    a.add_(1)
    assert cache.get([a], build) == 2
    assert cache.get([torch.zeros(3)], build) == 3           # another tensor, same values
    with torch.inference_mode():
        b = torch.zeros(1)
    assert cache.get([b], build) == 4 and cache.get([b], build) == 5   # no version: not kept


@pytest.mark.parametrize("name", ["fast_dhm", "dhm", "hrnet"])
def test_models_inference_path_equals_module_path(name):
    from lmklib.models.fast_dhm import dhm_tiny, fast_dhm_tiny
    from lmklib.models.hrnet import tiny_supernet
    torch.manual_seed(4)
    model = {"fast_dhm": fast_dhm_tiny, "dhm": dhm_tiny, "hrnet": tiny_supernet}[name]()
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            _random_bn(m)
        if isinstance(m, nn.Linear):
            nn.init.normal_(m.weight, std=0.05)
    model.eval()
    x = torch.randn(2, 3, *[model.size] * 2 if hasattr(model, "size") else (32, 32))
    ref = model(x)                     # autograd on: every module runs as written
    with torch.inference_mode():
        got = model(x)
    assert torch.allclose(got, ref, rtol=1e-4, atol=1e-5)


def test_flop_counter_sees_the_fast_paths_work():
    # lmklib.profile.flops counts ATen's ops: under its dispatch mode the compiled loop and the
    # matrix products step aside, so the count is the convolutions' (a multiply-add = 2 FLOPs)
    from lmklib.profile import flops
    dw = ConvBNAct(nn.Conv2d(6, 6, 3, 2, 1, groups=6, bias=False), nn.BatchNorm2d(6), nn.ReLU())
    pw = FastConv2d(6, 4, 1)
    x = torch.randn(1, 6, 9, 9)
    assert flops(dw, x) == 2 * 6 * 9 * 5 * 5
    assert flops(pw, x) == 2 * 4 * 6 * 9 * 9
