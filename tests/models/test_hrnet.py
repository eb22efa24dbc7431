"""HRNet / HRSuperNet (lmklib.models.hrnet): parameter counts from a hand formula (tiny nets and
the paper-width HRNetV2-W18 and HRSuperNet), one LSFF fusion (Eq. 1 + ReLU) recomputed by hand
with explicit convolution / BN / bilinear math, the masked supernet, ``live_ops`` on a hand-made
spec, and pruning (threshold keep-set, removed and dead blocks, sliced head, same output)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lmklib import profile
from lmklib.models.hrnet import (HRNet, hrnetv2_spec, hrnetv2_w18, hrsupernet, live_ops,
                                 op_name, prune, pruned_spec, spec_ops, supernet_spec,
                                 threshold_keep, tiny_supernet)

TINY = (2, 4, 8, 16)


pytestmark = pytest.mark.usefixtures("one_thread")


# --------------------------------------------------------------------------- parameter counts
def _unit(kind: str, c: int) -> int:
    """MBConv (expansion 1): dw 9C + pw C^2 + two BNs 4C; BasicBlock: two 3x3 + two BNs."""
    return {"mbconv": c * c + 13 * c, "basic": 18 * c * c + 4 * c}[kind]


def _conv3(cin: int, cout: int) -> int:
    return 9 * cin * cout + 2 * cout          # 3x3, no bias, + BN


def _conv1(cin: int, cout: int) -> int:
    return cin * cout + 2 * cout              # 1x1, no bias, + BN


def _transform(cin: int, cout: int, j: int, b: int) -> int:
    """T_{b<-j}: identity / 3x3 (channels only) / 1x1 + upsample / (b-j) strided 3x3s."""
    if j == b:
        return 0 if cin == cout else _conv3(cin, cout)
    if j > b:
        return _conv1(cin, cout)
    return (b - j - 1) * _conv3(cin, cin) + _conv3(cin, cout)


def _bottleneck(cin: int, p: int) -> int:
    """1x1 cin->p, 3x3 p->p, 1x1 p->4p (BN each), 1x1 + BN projection when cin != 4p."""
    return _conv1(cin, p) + _conv3(p, p) + _conv1(p, 4 * p) + (_conv1(cin, 4 * p) if cin != 4 * p
                                                               else 0)


def hrnet_params(spec: dict, k: int, learn_alphas: bool = True) -> int:
    """By hand from the module docstring: stem, stage 1, per stage the ops and the encoders of
    the blocks that have inputs, the head on the last stage's blocks, one alpha per op."""
    c0, widths = spec["stem"], spec["widths"]
    n = 27 * c0 + 2 * c0 + 9 * c0 * c0 + 2 * c0                         # stem
    if spec["stem_unit"] == "bottleneck":
        n += sum(_bottleneck(c0 if i == 0 else 4 * c0, c0) for i in range(spec["stem_units"]))
        prev = [4 * c0]
    else:
        n += spec["stem_units"] * _unit(spec["stem_unit"], c0)
        prev = [c0]
    n_ops = 0
    for st in spec["stages"]:
        cur = []
        for b, srcs in enumerate(st["inputs"]):
            cur.append(widths[b] if srcs else 0)
            n += sum(_transform(prev[j], widths[b], j, b) for j in srcs)
            n += st["units"] * _unit(spec["unit"], widths[b]) if srcs else 0
            n_ops += len(srcs)
        prev = cur
    c = sum(prev)
    n += c * c + c + 2 * c + c * k + k                                 # head
    return n + (n_ops if learn_alphas else 0)


def n_params(model) -> int:
    return sum(p.numel() for p in model.parameters())


def test_tiny_supernet_parameter_count_by_hand():
    # stem 268, stage 1 68, stage 2 ops 76+152+456+912 and encoders 30+68+168+464 = 730,
    # stages 3-4 ops 68+192+648+2344 + encoders 730 each, head 900+30+60+150+5, 36 alphas
    n = 268 + 68 + 1596 + 730 + 2 * (3252 + 730) + 1145 + 36
    assert n == 11_807
    assert n_params(tiny_supernet()) == n == hrnet_params(tiny_supernet().spec, 5)


@pytest.mark.parametrize("spec,k,learn", [
    (supernet_spec(TINY, stem=4, stages=4, units=1), 5, True),
    (supernet_spec(TINY, stem=4, stages=4, units=1, unit="basic"), 5, True),
    (supernet_spec(TINY, stem=4, stages=3, units=2, last_units=0), 5, True),
    (hrnetv2_spec(widths=TINY, stem=4, units=1), 3, False),
    (hrnetv2_spec(widths=TINY, stem=4, units=1), 3, True),
])
def test_parameter_count_matches_formula(spec, k, learn):
    model = HRNet(spec, k, learn_alphas=learn)
    assert n_params(model) == hrnet_params(spec, k, learn)
    assert profile.count_parameters(model) == hrnet_params(spec, k, learn)
    n_ops = len(spec_ops(spec))
    assert len(model.alpha_parameters()) == (n_ops if learn else 0)
    n_alpha_buffers = sum(1 for name, _ in model.named_buffers() if name.startswith("alpha_"))
    assert n_alpha_buffers == (0 if learn else n_ops)


def test_tiny_basic_and_last_units_counts():
    assert n_params(tiny_supernet(unit="basic")) == hrnet_params(
        supernet_spec(TINY, stem=4, stages=4, units=1, unit="basic"), 5)
    m = HRNet(supernet_spec(TINY, stem=4, stages=3, units=2, last_units=0), 5)
    assert n_params(m) == hrnet_params(m.spec, 5)
    assert len(m.encoders["s3b0"]) == 0 and len(m.encoders["s2b0"]) == 2


def test_paper_width_parameter_counts():
    assert hrnet_params(hrnetv2_spec(), 68, learn_alphas=False) == 9_654_398
    assert n_params(hrnetv2_w18()) == 9_654_398
    assert hrnet_params(supernet_spec(), 68) == 3_527_762
    assert n_params(hrsupernet()) == 3_527_762
    assert hrnet_params(supernet_spec(last_units=0), 68) == 3_403_562
    assert n_params(hrsupernet(last_units=0)) == 3_403_562


# --------------------------------------------------------------------------- helpers
def _warm(model: HRNet, seed: int = 0) -> HRNet:
    """Random BN affines, two train-mode passes (non-trivial running stats), then eval."""
    torch.manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.3, 0.3)
        model.train()
        for _ in range(2):
            model(torch.randn(2, 3, 64, 64))
    return model.eval()


def _set_alphas(model: HRNet, values: dict[str, float]) -> None:
    with torch.no_grad():
        for k, v in values.items():
            model.alpha(k).fill_(v)


def _bn(x, bn):
    s = (bn.running_var + bn.eps).rsqrt()
    return ((x - bn.running_mean[:, None, None]) * s[:, None, None] * bn.weight[:, None, None]
            + bn.bias[:, None, None])


def _hand_transform(t, x, j: int, b: int, size):
    """T_{b<-j} with explicit F.conv2d / BN / F.interpolate (the module docstring's recipe)."""
    if j == b:
        if t.is_identity:
            return x
        return _bn(F.conv2d(x, t.op[0].weight, padding=1), t.op[1])
    if j > b:
        y = _bn(F.conv2d(x, t.op[0].weight), t.op[1])
        assert t.op[0].weight.shape[-1] == 1 and len(t.op) == 2
        return F.interpolate(y, size=size, mode="bilinear", align_corners=False)
    steps = b - j
    assert len(t.op) == 3 * steps - 1
    y = x
    for s in range(steps):
        y = _bn(F.conv2d(y, t.op[3 * s].weight, stride=2, padding=1), t.op[3 * s + 1])
        if s < steps - 1:
            y = F.relu(y)
    return y


def _capture(model: HRNet):
    """Hooks: every encoder's input (pre-hook) and output, and stage 1's output."""
    ins, outs, hooks = {}, {}, []
    for name, enc in model.encoders.items():
        hooks.append(enc.register_forward_pre_hook(
            lambda m, a, name=name: ins.__setitem__(name, a[0].detach().clone())))
        hooks.append(enc.register_forward_hook(
            lambda m, a, o, name=name: outs.__setitem__(name, o.detach().clone())))
    hooks.append(model.stage1.register_forward_hook(
        lambda m, a, o: outs.__setitem__("stage1", o.detach().clone())))
    return ins, outs, hooks


def _distinct_alphas(model: HRNet) -> dict[str, float]:
    names = [op_name(*o) for o in spec_ops(model.spec)]
    return {n: (0.3 + 0.05 * i) * (-1 if i % 3 == 2 else 1) for i, n in enumerate(names)}


# --------------------------------------------------------------------------- LSFF (Eq. 1)
def test_lsff_fusion_by_hand():
    torch.manual_seed(0)
    model = tiny_supernet()
    alphas = _distinct_alphas(model)
    model = HRNet(model.spec, 5, alphas=alphas)
    _warm(model)
    assert model.alpha_values() == pytest.approx(alphas, abs=1e-7)
    ins, outs, hooks = _capture(model)
    with torch.no_grad():
        y = model(torch.randn(2, 3, 64, 64))
    for h in hooks:
        h.remove()
    assert y.shape == (2, 5, 16, 16)
    kinds = set()
    for stage in (2, 3, 4):
        src = ([outs["stage1"]] if stage == 2 else
               [outs[f"s{stage - 1}b{j}"] for j in range(4)])
        for b, srcs in enumerate(model.spec["stages"][stage - 2]["inputs"]):
            size = (16 // 2 ** b, 16 // 2 ** b)
            total = 0
            for j in srcs:
                t = model.ops[op_name(stage, b, j)]
                kinds.add("identity" if t.is_identity else
                          "up" if j > b else "down" if j < b else "3x3")
                a = alphas[op_name(stage, b, j)]
                total = total + a * _hand_transform(t, src[j], j, b, size)
            hand = F.relu(total)
            got = ins[f"s{stage}b{b}"]
            assert got.shape == hand.shape == (2, TINY[b], *size)
            torch.testing.assert_close(got, hand, atol=1e-5, rtol=0)
    assert kinds == {"identity", "up", "down", "3x3"}


def test_single_identity_input_skips_relu():
    """A block whose only (kept) input is the identity gets alpha * x, negatives included."""
    model = _warm(tiny_supernet())
    _set_alphas(model, {"s3b1f1": -0.75})
    keep = set(model.alpha_values()) - {f"s3b1f{j}" for j in (0, 2, 3)}
    ins, outs, hooks = _capture(model)
    with torch.no_grad():
        model(torch.randn(2, 3, 64, 64), keep)
    for h in hooks:
        h.remove()
    torch.testing.assert_close(ins["s3b1"], -0.75 * outs["s2b1"], atol=1e-6, rtol=0)
    assert (ins["s3b1"] < 0).any()


# --------------------------------------------------------------------------- keep / mask
def test_keep_all_is_the_plain_forward():
    model = _warm(tiny_supernet())
    _set_alphas(model, _distinct_alphas(model))
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        y = model(x)
        assert y.shape == (2, 5, 16, 16)
        torch.testing.assert_close(model(x, set(model.alpha_values())), y, atol=0, rtol=0)
        # switching one op off changes the output (the mask is not ignored)
        assert (model(x, set(model.alpha_values()) - {"s3b2f0"}) - y).abs().max() > 1e-4


# --------------------------------------------------------------------------- live_ops
def test_live_ops_hand_made_spec():
    spec = {"widths": [2, 4], "stem": 4, "stem_unit": "mbconv", "stem_units": 1,
            "unit": "mbconv", "upsample": "bilinear",
            "stages": [{"inputs": [[0], [0]], "units": 1},
                       {"inputs": [[0, 1], [0, 1]], "units": 1},
                       {"inputs": [[0, 1], [1]], "units": 1}]}
    every = {op_name(*o) for o in spec_ops(spec)}
    assert len(every) == 2 + 4 + 3
    assert live_ops(spec, every) == every
    assert live_ops(spec, set()) == set()
    # s2b1 has no input -> the ops reading it (s3b0f1, s3b1f1) go, though kept
    assert live_ops(spec, every - {"s2b1f0"}) == every - {"s2b1f0", "s3b0f1", "s3b1f1"}
    # nothing reads s3b1 (s4b0f1, s4b1f1 off) -> s3b1 is dead and its ops go; s4b1 has no
    # input; s2b1 stays (s3b0 reads it)
    dead = {"s2b0f0", "s2b1f0", "s3b0f0", "s3b0f1", "s4b0f0"}
    assert live_ops(spec, every - {"s4b0f1", "s4b1f1"}) == dead
    # ops not in keep never come back
    assert live_ops(spec, {"s2b0f0", "s4b0f0"}) == set()
    assert live_ops(spec, {"s2b0f0", "s3b0f0", "s4b0f0", "s4b1f1"}) == {"s2b0f0", "s3b0f0",
                                                                          "s4b0f0"}
    p = pruned_spec(spec, every - {"s4b0f1", "s4b1f1"})
    assert [st["inputs"] for st in p["stages"]] == [[[0], [0]], [[0, 1], []], [[0], []]]
    with pytest.raises(ValueError):
        pruned_spec(spec, every - {"s4b0f0", "s4b0f1", "s4b1f1"})


# --------------------------------------------------------------------------- pruning
def test_threshold_keep():
    model = tiny_supernet()
    names = sorted(model.alpha_values())
    torch.manual_seed(1)
    values = {n: float(torch.randint(-16, 17, ()).item()) / 16 for n in names}
    values.update({names[0]: 0.5, names[1]: -0.5, names[2]: 0.4375, names[3]: -0.4375})
    _set_alphas(model, values)
    keep = threshold_keep(model, 0.5)
    assert keep == {n for n, v in values.items() if abs(v) >= 0.5}
    assert {names[0], names[1]} <= keep and not {names[2], names[3]} & keep
    assert threshold_keep(model, 0.0) == set(names)
    assert threshold_keep(model, 1.01) == set()


SMALL = (["s2b3f0"] + [f"s3b1f{j}" for j in range(4)] + [f"s4b3f{j}" for j in range(4)]
         + [f"s4b{b}f2" for b in range(3)])
# s2b3 has no input; s3b1 has no input; s3b2 is fed but nothing reads it (dead); branch 3 of
# the last stage is removed (the head keeps 2 + 4 + 8 channels)
LIVE = {"s2b0f0", "s2b1f0", "s2b2f0", "s3b0f0", "s3b0f1", "s3b0f2", "s3b3f0", "s3b3f1",
        "s3b3f2", "s4b0f0", "s4b0f3", "s4b1f0", "s4b1f3", "s4b2f0", "s4b2f3"}


def test_prune_removes_blocks_and_computes_the_masked_supernet():
    model = _warm(tiny_supernet())
    values = {n: 0.5 + 0.01 * i for i, n in enumerate(sorted(model.alpha_values()))}
    values.update({n: (-0.05 if i % 2 else 0.02) for i, n in enumerate(SMALL)})
    values["s3b0f1"] = -0.8                   # large negative alphas stay
    _set_alphas(model, values)
    keep = threshold_keep(model, 0.1)
    assert keep == set(values) - set(SMALL)
    assert live_ops(model.spec, keep) == LIVE

    pruned = prune(model, keep).eval()
    assert set(pruned.alpha_values()) == LIVE
    assert pruned.alpha_values() == pytest.approx({n: values[n] for n in LIVE}, abs=1e-7)
    assert set(pruned.encoders) == {"s2b0", "s2b1", "s2b2", "s3b0", "s3b3", "s4b0", "s4b1",
                                    "s4b2"}
    assert not {"s2b3", "s3b1", "s3b2", "s4b3"} & set(pruned.encoders)
    assert pruned.out_branches == [0, 1, 2]
    assert pruned.head[0].weight.shape == (14, 14, 1, 1)
    assert pruned.head[3].weight.shape == (5, 14, 1, 1)
    assert n_params(pruned) == hrnet_params(pruned.spec, 5) < n_params(model)
    assert set(pruned.state_dict()) < set(model.state_dict())

    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        y = pruned(x)
        masked = model(x, keep)
        torch.testing.assert_close(y, masked, atol=1e-5, rtol=0)
        torch.testing.assert_close(model(x, LIVE), masked, atol=1e-5, rtol=0)
        assert (y - model(x)).abs().max() > 1e-3   # the pruning did change the function


def test_prune_dead_block_only_and_no_alpha_network():
    """A block nobody reads in a plain (buffer-alpha) HRNetV2; the head keeps every branch."""
    model = _warm(HRNet(hrnetv2_spec(widths=TINY, stem=4, units=1), 3, learn_alphas=False))
    every = set(model.alpha_values())
    last = len(model.spec["stages"]) + 1
    assert model.spec["stages"][-2]["inputs"] == [[0, 1, 2, 3]] * 4
    # the second-to-last stage's block 2 is read only by the last stage's ops s{last}b*f2
    off = {op_name(last, b, 2) for b in range(4)}
    keep = every - off
    live = live_ops(model.spec, keep)
    assert live == keep - {op_name(last - 1, 2, j) for j in range(4)}
    pruned = prune(model, keep).eval()
    assert f"s{last - 1}b2" not in pruned.encoders and f"s{last}b2" in pruned.encoders
    assert set(pruned.alpha_values()) == live
    assert not pruned.learn_alphas and len(pruned.alpha_parameters()) == 0
    assert pruned.head[0].weight.shape == model.head[0].weight.shape
    assert n_params(pruned) == hrnet_params(pruned.spec, 3, False) < n_params(model)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(pruned(x), model(x, keep), atol=1e-5, rtol=0)


def test_pruning_the_whole_last_stage_raises():
    model = tiny_supernet()
    keep = {n for n in model.alpha_values() if not n.startswith("s4")}
    with pytest.raises(ValueError):
        prune(model, keep)
    # the last stage's ops kept, but everything before them cut: nothing reaches the head either
    keep = {n for n in model.alpha_values() if not n.startswith("s3")}
    with pytest.raises(ValueError):
        pruned_spec(model.spec, keep)
