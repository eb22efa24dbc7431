"""Fast DHM and DHM (Sun et al.): parameter counts from a hand formula, one step of Eq. 7 by
hand, the mean initialisation and the camera of DHM by hand, model-card round trips, and a tiny
learnability check."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lmklib import profile
from lmklib.data.heatmaps import gaussian_heatmaps
from lmklib.models.fast_dhm import (VARIANTS, DHMNet, FastDHM, dhm_tiny, fast_cnn_channels,
                                    fast_dhm, fast_dhm_tiny)


def _hand_dhm(points, shape3d, size, sigma=1.0):
    """The 3D DHM by hand, [N, K] at a time: channel j = sum_k n_j(k) G_k, n_j the per-face
    min-max normalised axis j, G_k the unit-peak Gaussian of landmark k."""
    lo, hi = shape3d.amin(-2, keepdim=True), shape3d.amax(-2, keepdim=True)
    n = (shape3d - lo) / (hi - lo)
    g = gaussian_heatmaps(points, size, sigma)                           # [N, K, H, W]
    return (n[..., :, :, None, None] * g[..., :, None, :, :]).sum(-4)    # [N, 3, H, W]


# --------------------------------------------------------------------------- parameter counts
def fast_dhm_params(c: int, p: int, k: int, size: int, width: int, steps: int,
                    rnn_width: int) -> int:
    """By hand: stem 3x3 conv + BN (2 per channel); per separable block a depthwise 3x3 + BN
    and a pointwise 1x1 + BN (no conv biases); Eq. 7's D_i (3x3 + bias), W_hh (1x1), D_h (3x3);
    FC with bias."""
    plan = fast_cnn_channels(width, rnn_width)
    c0 = plan[0][0]
    n = (c + p) * c0 * 9 + 2 * c0
    for (cin, _), (cout, _) in zip(plan[:-1], plan[1:]):
        n += cin * 9 + 2 * cin + cin * cout + 2 * cout
    cf = plan[-1][0]
    if steps:
        n += (cf * 9 + cf) + cf * cf + cf * 9
    return n + cf * (size // 16) ** 2 * 2 * k + 2 * k


def dhm_params(c: int, k: int, n_id: int, n_exp: int, size: int, width: int, hidden: int) -> int:
    """By hand: four 3x3 convs + BN on c + 3 input channels; W_ih (with bias), W_hh, W_ho."""
    n, cin = 0, c + 3
    for cout in (16 * width, 32 * width, 64 * width, 128 * width):
        n += cin * cout * 9 + 2 * cout
        cin = cout
    flat = cin * (size // 16) ** 2
    return n + flat * hidden + hidden + hidden * hidden + hidden * (12 + n_id + n_exp)


def test_fast_cnn_plan_ends_at_a_sixteenth():
    plan = fast_cnn_channels(2, 3)
    assert plan == [(32, 2), (64, 2), (128, 2), (128, 1), (256, 2), (768, 1)]
    assert torch.tensor([s for _, s in plan]).prod() == 16


def test_default_fast_dhm_parameter_count():
    # by hand: 896 + 752 + 2528 + 4928 + 9152 + 18048 (CNN) + 18816 (Eq. 7) + 278664 (FC)
    assert profile.count_parameters(fast_dhm(1)) == 333_784


@pytest.mark.parametrize("width", [1, 2])
@pytest.mark.parametrize("steps", [0, 4])
@pytest.mark.parametrize("rnn_width", [1, 2])
@pytest.mark.parametrize("p", [3, 1, 0])
def test_fast_dhm_parameter_count(width, steps, rnn_width, p):
    m = FastDHM(prior_channels=p, width=width, steps=steps, rnn_width=rnn_width)
    assert profile.count_parameters(m) == fast_dhm_params(3, p, 68, 64, width, steps, rnn_width)


@pytest.mark.parametrize("width,hidden,n_id,n_exp", [(1, 256, 40, 10), (2, 128, 199, 29)])
def test_dhm_parameter_count(width, hidden, n_id, n_exp):
    m = DHMNet(width=width, hidden=hidden, n_id=n_id, n_exp=n_exp)
    assert profile.count_parameters(m) == dhm_params(3, 68, n_id, n_exp, 64, width, hidden)


def test_steps_zero_has_no_recurrent_parameters():
    m = FastDHM(prior_channels=3, steps=0)
    assert m.recurrent is None
    assert not [n for n, _ in m.named_parameters() if n.startswith("recurrent")]
    assert len(m.steps_points(torch.randn(2, 3, 64, 64))) == 1


# --------------------------------------------------------------------------- Eq. 7 by hand
def test_recurrent_steps_match_eq7_by_hand():
    torch.manual_seed(0)
    m = FastDHM(prior=torch.rand(1, 16, 16), mean=torch.rand(5, 2), size=16, steps=2).eval()
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        feats = m.steps_features(x)
        f0 = m.cnn(torch.cat([x, m.prior.expand(2, -1, -1, -1)], 1))
        r = m.recurrent
        c = f0.shape[1]

        def step(f, h):
            inc = torch.tanh(F.conv2d(f, r.d_i.weight, r.d_i.bias, padding=1, groups=c)
                             + F.conv2d(F.conv2d(h, r.w_hh.weight), r.d_h.weight, padding=1,
                                        groups=c))
            return f + inc, inc

        f1, h1 = step(f0, f0)                     # h_0 = F_0
        f2, _ = step(f1, h1)                      # h_1 = the first increment
    assert len(feats) == 3 and feats[0].shape == (2, 128, 1, 1)
    torch.testing.assert_close(feats[0], f0)
    torch.testing.assert_close(feats[1], f1)
    torch.testing.assert_close(feats[2], f2)


# --------------------------------------------------------------------------- outputs
@pytest.mark.parametrize("variant", list(VARIANTS))
def test_untrained_output_is_the_mean_and_steps_read_out(variant):
    torch.manual_seed(1)
    p = VARIANTS[variant]["prior_channels"]
    mean = torch.rand(68, 2)
    m = fast_dhm(1, variant, prior=torch.rand(p, 32, 32), mean=mean, size=32).eval()
    x = torch.randn(3, 3, 32, 32)
    with torch.no_grad():
        out = m(x)
        assert out.shape == (3, 68, 2)
        torch.testing.assert_close(out, mean.expand(3, -1, -1), rtol=0, atol=0)
        m.fc.weight.normal_(0, 0.01)                 # now each step reads out differently
        with torch.enable_grad():                    # the modules (parameters need a gradient)
            steps = [s.detach() for s in m.steps_points(x)]
            torch.testing.assert_close(steps[-1], m(x).detach(), rtol=0, atol=0)
        assert len(steps) == m.steps + 1
        torch.testing.assert_close(steps[-1], m(x))  # the inference plan: sums reordered
        if m.steps:
            assert not torch.allclose(steps[0], steps[-1])


def test_bad_shapes_raise():
    with pytest.raises(ValueError, match="multiple of 16"):
        FastDHM(size=40)
    with pytest.raises(ValueError, match="prior must be"):
        FastDHM(prior=torch.zeros(3, 32, 32), size=64)
    with pytest.raises(ValueError, match="prior_channels says 1"):
        FastDHM(prior=torch.zeros(3, 64, 64), prior_channels=1)
    with pytest.raises(ValueError, match=r"expected input \[N, 3, 32, 32\]"):
        fast_dhm_tiny()(torch.zeros(1, 3, 64, 64))
    with pytest.raises(ValueError, match="id_basis must be"):
        DHMNet(id_basis=torch.zeros(68, 2, 4))


# --------------------------------------------------------------------------- DHM
def _morphable(k=68, n_id=4, n_exp=2, seed=0):
    """A small random 3DMM and a mean camera s=0.8, R=I, t=(16, 15, 3) in a 32-px crop."""
    g = torch.Generator().manual_seed(seed)
    shape_mean = torch.randn(k, 3, generator=g) * 6
    id_basis = torch.randn(k, 3, n_id, generator=g) * 0.5
    exp_basis = torch.randn(k, 3, n_exp, generator=g) * 0.5
    param_mean = torch.zeros(12 + n_id + n_exp)
    param_mean[:12] = torch.tensor([0.8, 0, 0, 16, 0, 0.8, 0, 15, 0, 0, 0.8, 3])
    param_mean[12:] = torch.randn(n_id + n_exp, generator=g) * 0.3
    param_std = torch.ones(12 + n_id + n_exp)
    param_std[:12] = torch.tensor([.1, .1, .1, 2, .1, .1, .1, 2, .1, .1, .1, 2])
    return dict(shape_mean=shape_mean, id_basis=id_basis, exp_basis=exp_basis,
                param_mean=param_mean, param_std=param_std)


def test_dhm_untrained_output_is_the_mean_projection():
    mm = _morphable()
    m = dhm_tiny(**mm).eval()
    pm = mm["param_mean"]
    shape = mm["shape_mean"] + mm["id_basis"] @ pm[12:16] + mm["exp_basis"] @ pm[16:18]
    hand = torch.stack([0.8 * shape[:, 0] + 16, 0.8 * shape[:, 1] + 15], -1) / 32
    with torch.no_grad():
        out = m(torch.randn(2, 3, 32, 32))
        steps = m.steps_points(torch.randn(2, 3, 32, 32))
        shapes = m.steps_shapes(torch.randn(1, 3, 32, 32))
    torch.testing.assert_close(out, hand.expand(2, -1, -1))
    assert len(steps) == 3 and len(shapes) == 3 and shapes[0].shape == (1, 68, 3)
    torch.testing.assert_close(shapes[0][0, :, 2], 0.8 * shape[:, 2] + 3)


def test_dhm_translation_parameters_shift_every_point():
    mm = _morphable()
    m = dhm_tiny(**mm)
    q = torch.zeros(1, 18)
    base = m.posed_shape(q)
    q[0, 3], q[0, 7] = 1.5, -0.5                  # t_x += 1.5 * 2 px, t_y -= 0.5 * 2 px
    moved = m.posed_shape(q)
    torch.testing.assert_close(moved - base, torch.tensor([3.0, -1.0, 0.0]).expand(1, 68, 3))
    with torch.no_grad():
        m.param_mean[3] += 4.0                    # the same through param_mean: 4 px = 4/32
        x = torch.randn(1, 3, 32, 32)
        before = dhm_tiny(**mm).eval()(x)
        after = m.eval()(x)
    torch.testing.assert_close(after - before, torch.tensor([4 / 32, 0.0]).expand(1, 68, 2))


@pytest.mark.parametrize("detach", [True, False])
def test_dhm_maps_follow_the_shape(detach):
    m = dhm_tiny(**_morphable(), sigma=1.5, detach_dhm=detach)
    q = torch.zeros(2, 18, requires_grad=True)
    posed = m.posed_shape(q + torch.tensor([0.0] * 3 + [1.0] + [0.0] * 14))
    maps = m.diffusion_maps(posed)
    assert maps.shape == (2, 3, 32, 32)
    torch.testing.assert_close(maps, _hand_dhm(posed[..., :2].detach(), posed.detach(), 32, 1.5))
    assert maps.requires_grad is not detach


# --------------------------------------------------------------------------- model cards
def _randomise(model: torch.nn.Module, seed: int = 0) -> None:
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for t in list(model.parameters()) + list(model.buffers()):
            if t.is_floating_point():
                t.copy_(torch.rand(t.shape, generator=g) * 0.2 + 0.4 if t.dim() == 1
                        else torch.randn(t.shape, generator=g) * 0.1)


def test_fast_dhm_round_trip():
    m = fast_dhm(2, "2d_rnn", prior=torch.rand(1, 32, 32), mean=torch.rand(68, 2), size=32,
                 rnn_width=2)
    _randomise(m)
    m.eval()
    copy = FastDHM(**m.config)
    copy.load_state_dict(m.state_dict())
    copy.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(copy(x), m(x))
    assert m.config == dict(n_points=68, prior_channels=1, in_channels=3, size=32, width=2,
                            steps=4, rnn_width=2)


def test_dhm_round_trip():
    m = dhm_tiny(**_morphable(), sigma=1.5)
    _randomise(m, 1)
    with torch.no_grad():
        m.load_state_dict({**m.state_dict(), **{k: v for k, v in _morphable().items()}})
    m.eval()
    copy = DHMNet(**m.config)
    copy.load_state_dict(m.state_dict())
    copy.eval()
    x = torch.randn(2, 3, 32, 32)
    with torch.no_grad():
        assert torch.equal(copy(x), m(x))
    assert m.config["n_id"] == 4 and m.config["n_exp"] == 2 and m.config["sigma"] == 1.5


# --------------------------------------------------------------------------- learnability
def _fit(model, x, y, lr, steps=30):
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    first = None
    for _ in range(steps):
        loss = (model(x) - y).pow(2).mean()
        first = loss.item() if first is None else first
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        return first, (model(x) - y).pow(2).mean().item()


def test_tiny_fast_dhm_learns_fixed_targets():
    torch.manual_seed(0)
    m = fast_dhm_tiny(mean=torch.rand(68, 2) * 0.5 + 0.25)
    x = torch.randn(8, 3, 32, 32)
    y = m.mean + 0.05 * torch.randn(8, 68, 2)
    first, last = _fit(m, x, y, lr=1e-3)
    assert last < first / 10


def test_tiny_dhm_learns_fixed_targets():
    torch.manual_seed(0)
    m = dhm_tiny(**_morphable())
    x = torch.randn(8, 3, 32, 32)
    with torch.no_grad():
        y = m.posed_shape(0.5 * torch.randn(8, 18))[..., :2] / 32
    first, last = _fit(m, x, y, lr=3e-3)
    assert last < first / 20


# --------------------------------------------------------------------------- inference plan
def _modules_out(m: FastDHM, x: torch.Tensor) -> torch.Tensor:
    with torch.enable_grad():          # parameters need a gradient: every module runs as written
        return m(x).detach()


@pytest.mark.parametrize("variant,n", [("fast_dhm", 1), ("fast_dhm", 2), ("3d_cnn", 1),
                                       ("2d_rnn", 2)])
def test_inference_plan_equals_modules_and_follows_every_change(variant, n):
    from torch import nn

    from lmklib.models.layers import ConvBNAct
    torch.manual_seed(6)
    p = VARIANTS[variant]["prior_channels"]
    m = fast_dhm(1, variant, prior=torch.rand(p, 32, 32), mean=torch.rand(68, 2), size=32)
    for bn in (b for b in m.modules() if isinstance(b, nn.BatchNorm2d)):
        bn.running_mean.normal_(0, 0.1), bn.running_var.uniform_(0.5, 2)
        nn.init.normal_(bn.weight, 1, 0.1), nn.init.normal_(bn.bias, 0, 0.1)
    nn.init.normal_(m.fc.weight, 0, 0.05), nn.init.normal_(m.fc.bias, 0, 0.05)
    m.eval()
    x = torch.randn(n, 3, 32, 32)

    def check():
        with torch.no_grad():
            got = m._inference(x)
            assert got is not None                                   # the plan ran
            torch.testing.assert_close(got, _modules_out(m, x), rtol=1e-5, atol=1e-5)

    check()
    for change in (lambda: m.cnn[1][0][1].running_var.mul_(3),   # a statistic, in place
                   lambda: m.prior.add_(0.5),          # the fixed maps (the stem's constant)
                   lambda: m.mean.add_(0.1),           # the read-out's constant
                   lambda: m.fc.weight.mul_(-1)):
        with torch.no_grad():
            change()
        check()
    m.fc.bias = nn.Parameter(torch.randn_like(m.fc.bias))      # a parameter replaced
    check()
    with torch.no_grad():
        m.cnn[2][1][0].weight.data = torch.randn_like(m.cnn[2][1][0].weight)   # new memory
    check()
    old = m.cnn[2][1]                                 # a whole layer replaced
    m.cnn[2][1] = ConvBNAct(nn.Conv2d(old[0].in_channels, old[0].out_channels, 1, bias=False),
                            nn.BatchNorm2d(old[0].out_channels), nn.ReLU()).eval()
    check()
    if m.steps:
        with torch.no_grad():
            m.recurrent.d_i.bias.add_(0.3)
        check()
    m.half().float()                                  # conversions (rounding) clear the plan
    check()
    m.cnn[1][0][1].train()                            # a BN on batch statistics: the modules
    with torch.no_grad():
        assert m._inference(x) is None
    m.eval()
    stem = m.cnn[0]                                   # a stem of another geometry: the modules
    m.cnn[0] = ConvBNAct(nn.Conv2d(stem[0].in_channels, stem[0].out_channels, 5, 2, 2,
                                   bias=False), nn.BatchNorm2d(stem[0].out_channels),
                         nn.ReLU()).eval()
    with torch.no_grad():
        assert m._inference(x) is None
        torch.testing.assert_close(m(x), _modules_out(m, x))
    m.cnn[0] = stem
    m.cnn[3] = nn.Identity()                          # not the network built here: the modules
    with torch.no_grad():
        assert m._inference(x) is None
    with torch.no_grad():
        assert m._inference(x.double()) is None       # float32 only
    fresh = fast_dhm(1, variant, prior=torch.rand(p, 32, 32), size=32).eval()
    with torch.no_grad(), pytest.raises(ValueError, match=r"expected input \[N, 3, 32, 32\]"):
        fresh(x[..., :16, :16])                       # the plan's input check is the modules'
