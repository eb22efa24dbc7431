"""lmklib.papers.sd_hrnet_lin2023 (SD-HRNet, Lin et al. 2023): Eq. 3's KD loss and Eq. 4's
student losses recomputed by hand, the inter-ocular scores on hand-placed faces, the masked
inputs, the alternating optimizer, Eq. 2's loss, the parameter / FLOPs-ratio threshold, the
lower-face occluder, and the whole recipe (search, slim, teacher, distillation, card) on tiny
synthetic faces, with its determinism; the model card of policy-less (synthetic) faces and the decoding of
all-negative logit maps (once NaN, silently dropped by the NME)."""

from __future__ import annotations

import copy
import dataclasses
import json
import math

import numpy as np
import pytest
import torch

from lmklib.data import heatmaps
from lmklib.data.faces import CropPolicy, FaceCrops
from lmklib.data.transforms import random_occlusion
from lmklib.models.hrnet import live_ops, spec_ops, threshold_keep, tiny_supernet
from lmklib.papers import sd_hrnet_lin2023 as T
from lmklib.papers.sd_hrnet_lin2023 import distillation as D
from lmklib.papers.sd_hrnet_lin2023 import slimming as S
from lmklib.profile import count_parameters, flops


pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def cfg():
    c = T.resolve_profile("smoke")
    assert c["size"] == 32 and c["slim"]["epochs"] == c["distill"]["epochs"] == 1
    return c


# --------------------------------------------------------------------------- Eq. 3 / Eq. 4
def _kl(t: list[float], s: list[float]) -> float:
    """KL(softmax(t) || softmax(s)) over a flat list, with math.exp / math.log."""
    zt, zs = sum(math.exp(v) for v in t), sum(math.exp(v) for v in s)
    p = [math.exp(v) / zt for v in t]
    q = [math.exp(v) / zs for v in s]
    return sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))


def test_kd_loss_is_the_kl_of_the_pixel_softmaxes():
    # target logits ln 1..ln 4 -> p = (0.1, 0.2, 0.3, 0.4); a flat student -> q = 1/4 each
    target = torch.log(torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]], dtype=torch.float64))
    student = torch.zeros(1, 1, 2, 2, dtype=torch.float64)
    hand = 0.1 * math.log(0.4) + 0.2 * math.log(0.8) + 0.3 * math.log(1.2) + 0.4 * math.log(1.6)
    assert hand == pytest.approx(0.10644, abs=1e-5)
    assert float(D.kd_loss(target, student)) == pytest.approx(hand, rel=1e-12)
    # KL(p || q), not KL(q || p): the other direction is another number
    rev = sum(0.25 * math.log(0.25 / p) for p in (0.1, 0.2, 0.3, 0.4))
    assert float(D.kd_loss(student, target)) == pytest.approx(rev, rel=1e-12)
    assert abs(rev - hand) > 1e-2
    # equal maps: 0 (whatever the values)
    x = torch.tensor([[[[0.3, -1.2], [2.0, 0.7]]]], dtype=torch.float64)
    assert float(D.kd_loss(x, x.clone())) == pytest.approx(0.0, abs=1e-15)
    # a constant shift of a map does not change its softmax
    assert float(D.kd_loss(target, student + 5.0)) == pytest.approx(hand, rel=1e-12)


def test_kd_loss_averages_over_samples_and_landmarks():
    t = torch.tensor([[[[0.0, 1.0], [2.0, 3.0]], [[1.0, 0.0], [0.0, 0.0]]],
                      [[[-1.0, 0.5], [0.5, 2.0]], [[0.0, 0.0], [0.0, 4.0]]]], dtype=torch.float64)
    s = torch.tensor([[[[0.0, 0.0], [0.0, 0.0]], [[0.0, 1.0], [2.0, 0.0]]],
                      [[[1.0, 1.0], [0.0, 0.0]], [[3.0, 0.0], [0.0, 1.0]]]], dtype=torch.float64)
    per_map = [_kl(t[n, m].flatten().tolist(), s[n, m].flatten().tolist())
               for n in range(2) for m in range(2)]
    assert min(per_map) > 0.05 and len(set(round(v, 6) for v in per_map)) == 4
    assert float(D.kd_loss(t, s)) == pytest.approx(sum(per_map) / 4, rel=1e-12)


def test_kd_loss_gradient_reaches_the_target_unless_the_caller_detaches_it():
    t = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(0), requires_grad=True)
    s = torch.randn(2, 3, 4, 4, generator=torch.Generator().manual_seed(1), requires_grad=True)
    D.kd_loss(t, s).backward()
    assert t.grad.abs().sum() > 0 and s.grad.abs().sum() > 0
    t.grad, s.grad = None, None
    D.kd_loss(t.detach(), s).backward()
    assert t.grad is None and s.grad.abs().sum() > 0


def _maps(seed: int, shape=(2, 3, 4, 4)) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


@pytest.mark.parametrize("loss", ["smoke", "mse"])
def test_student_losses_are_eq4_with_a_detached_ensemble(cfg, loss, monkeypatch):
    cfg = cfg if loss == "smoke" else {**cfg, "loss": "mse"}
    lam1, lam2 = cfg["distill"]["lambda1"], cfg["distill"]["lambda2"]
    assert (lam1, lam2) == (4.0, 1.0)
    target, pt = _maps(0).abs(), _maps(3)
    a1, a2 = _maps(1), _maps(2)
    p1, p2 = a1.clone().requires_grad_(), a2.clone().requires_grad_()
    use = {"teacher": False, "peers": True, "masked": False}
    total, parts = D.student_losses(p1, p2, target, pt, cfg, use)
    # by hand: the ensemble a constant (E); each student its heatmap loss + lambda1 KD(E || Si)
    e = (a1 + a2) / 2
    q1, q2 = a1.clone().requires_grad_(), a2.clone().requires_grad_()
    hand = (T.heatmap_criterion(q1, target, cfg) + lam1 * D.kd_loss(e, q1)
            + T.heatmap_criterion(q2, target, cfg) + lam1 * D.kd_loss(e, q2))
    assert float(total.detach()) == pytest.approx(float(hand.detach()), rel=1e-12)
    assert set(parts) == {"s1_heatmap", "s1_kd_peers", "s2_heatmap", "s2_kd_peers"}
    hm1 = float(((a1 - target) ** 2).mean()) if loss == "mse" else \
        float(heatmaps.heatmap_loss(a1, target, cfg["loss"]))
    assert parts["s1_heatmap"] == pytest.approx(hm1, rel=1e-12)
    assert parts["s2_kd_peers"] == pytest.approx(float(D.kd_loss(e, a2)), rel=1e-12)
    total.backward()
    hand.backward()
    assert torch.allclose(p1.grad, q1.grad, rtol=1e-10, atol=1e-14)
    assert torch.allclose(p2.grad, q2.grad, rtol=1e-10, atol=1e-14)
    # E is a mean of logits, so KL(E || S1) + KL(E || S2) is stationary in E: an undetached E
    # would give the same gradient here; what shows the detach is what kd_loss receives
    seen, kd = [], D.kd_loss

    def spy(t, s):
        seen.append(t.requires_grad)
        return kd(t, s)

    monkeypatch.setattr(D, "kd_loss", spy)
    D.student_losses(p1, p2, target, pt, cfg, use)
    assert seen == [False, False]
    monkeypatch.undo()

    # the teacher's term too: + lambda2 KD(T || Si)
    full = {"teacher": True, "peers": True, "masked": True}
    total, parts = D.student_losses(a1, a2, target, pt, cfg, full)
    hand = sum(float(T.heatmap_criterion(a, target, cfg)) + lam1 * float(D.kd_loss(e, a))
               + lam2 * float(D.kd_loss(pt, a)) for a in (a1, a2))
    assert float(total) == pytest.approx(hand, rel=1e-12)
    assert parts["s2_kd_teacher"] == pytest.approx(float(D.kd_loss(pt, a2)), rel=1e-12)

    # one student: no peer term, one heatmap term
    for u in (use, full):
        total, parts = D.student_losses(a1, None, target, pt, cfg, u)
        hand = float(T.heatmap_criterion(a1, target, cfg)) + \
            (lam2 * float(D.kd_loss(pt, a1)) if u["teacher"] else 0.0)
        assert float(total) == pytest.approx(hand, rel=1e-12)
        assert set(parts) == {"s1_heatmap"} | ({"s1_kd_teacher"} if u["teacher"] else set())


# --------------------------------------------------------------------------- scores
def test_inter_ocular_nme_and_scores_on_hand_placed_faces():
    rng = np.random.default_rng(0)
    gt = rng.uniform(5, 60, (3, 68, 2))
    gt[:, 36] = [20.0, 30.0]
    gt[:, 45] = [30.0, 30.0]            # outer eye corners 10 px apart
    faces = FaceCrops.from_images(np.zeros((3, 3, 64, 64), np.uint8), gt, np.zeros((3, 4)),
                                  scheme="ibug68")
    shift = np.array([0.5, 0.9, 1.2])
    pred = faces.points.numpy().astype(np.float64).copy()
    pred[..., 0] += shift[:, None]
    e = T.inter_ocular_nme(pred, faces)
    assert np.allclose(e, [0.05, 0.09, 0.12], atol=1e-6)
    s = T.scores(e)
    assert s["nme"] == pytest.approx(26 / 3, abs=1e-3)
    assert s["fr10"] == pytest.approx(100 / 3, abs=1e-3)
    assert s["fr8"] == pytest.approx(200 / 3, abs=1e-3)
    # CED to 10 %: the 5 % face counts from 5 to 10, the 9 % one from 9 to 10, the 12 % never;
    # the trapezoids on the 1e-5 grid add half a step at each jump (1/600 % each)
    assert s["auc10"] == pytest.approx(100 * ((10 - 5) + (10 - 9)) / 3 / 10, abs=1e-2)
    assert set(s) == {"nme", "fr10", "fr8", "auc10"}


# --------------------------------------------------------------------------- masked inputs
def _rect(mask: torch.Tensor) -> tuple[int, int]:
    """The sides of the one axis-aligned rectangle ``mask`` (2-D bool) is; fails otherwise."""
    rows, cols = mask.any(1).nonzero().flatten(), mask.any(0).nonzero().flatten()
    assert len(rows) and len(cols)
    assert rows[-1] - rows[0] + 1 == len(rows) and cols[-1] - cols[0] + 1 == len(cols)
    box = torch.zeros_like(mask)
    box[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1] = True
    assert torch.equal(box, mask)
    return len(rows), len(cols)


def test_random_occlusion_masks_one_rectangle_of_the_right_size():
    x = torch.ones(24, 3, 40, 60)
    torch.manual_seed(0)
    y = random_occlusion(x, p=1.0, min_frac=0.1, max_frac=0.5, value=-2.0)
    assert torch.equal(x, torch.ones_like(x))                       # not in place
    assert set(y.unique().tolist()) == {-2.0, 1.0}
    sides = []
    for img in y:
        m = img == -2.0
        assert torch.equal(m[0], m[1]) and torch.equal(m[0], m[2])   # every channel
        sides.append(_rect(m[0]))
    h, w = np.array(sides).T
    # sides within [0.1, 0.5] of 40 rows and of 60 columns (integers here: no rounding slack)
    assert h.min() >= 4 and h.max() <= 20 and w.min() >= 6 and w.max() <= 30
    assert len(set(sides)) > 12                                     # random sizes
    torch.manual_seed(0)
    assert torch.equal(random_occlusion(x, p=1.0, min_frac=0.1, max_frac=0.5, value=-2.0), y)
    # fixed fractions: every side exactly that fraction
    z = random_occlusion(x, min_frac=0.25, max_frac=0.25, value=0.0)
    assert all(_rect(img[0] == 0.0) == (10, 15) for img in z)
    assert torch.equal(random_occlusion(x, p=0.0), x)
    half = random_occlusion(torch.ones(200, 1, 8, 8), p=0.5)
    hit = (half == 0).flatten(1).any(1).float().mean()
    assert 0.35 < hit < 0.65
    for lo, hi in ((0.0, 0.5), (0.6, 0.5), (0.1, 1.2), (-0.1, 0.2)):
        with pytest.raises(ValueError, match="min_frac"):
            random_occlusion(x, min_frac=lo, max_frac=hi)


# --------------------------------------------------------------------------- slimming
def test_alternating_steps_weights_then_alphas_and_restores_its_turn():
    w = torch.nn.Parameter(torch.tensor([1.0, 2.0]))
    a = torch.nn.Parameter(torch.tensor([3.0]))
    opt = S.Alternating(torch.optim.SGD([w], lr=0.5, momentum=0.9),
                        torch.optim.SGD([a], lr=0.1))
    assert opt.param_groups is opt.weights.param_groups and opt.param_groups[0]["lr"] == 0.5
    seen = []
    for _ in range(4):
        opt.zero_grad()
        assert w.grad is None and a.grad is None
        w.grad, a.grad = torch.tensor([1.0, -2.0]), torch.tensor([4.0])
        w0, a0 = w.detach().clone(), a.detach().clone()
        opt.step()
        seen.append((not torch.equal(w, w0), not torch.equal(a, a0)))
    assert seen == [(True, False), (False, True), (True, False), (False, True)]
    # SGD with momentum 0.9 on w: -0.5 g, then -0.5 (0.9 g + g); plain SGD on a: -0.1 g twice
    g = torch.tensor([1.0, -2.0])
    assert torch.allclose(w.detach(), torch.tensor([1.0, 2.0]) - 0.5 * 2.9 * g)
    assert torch.allclose(a.detach(), torch.tensor([3.0 - 2 * 0.4]))
    opt.step()   # turn 4 -> 5 (weights)
    state = opt.state_dict()
    assert state["turn"] == 5
    again = S.Alternating(torch.optim.SGD([w], lr=0.5, momentum=0.9), torch.optim.SGD([a], lr=0.1))
    again.load_state_dict(state)
    assert again.turn == 5
    buf = again.weights.state_dict()["state"][0]["momentum_buffer"]
    assert torch.equal(buf, opt.weights.state_dict()["state"][0]["momentum_buffer"])
    w.grad, a.grad = torch.zeros(2), torch.tensor([1.0])
    a0 = a.detach().clone()
    again.step()                                                    # turn 5: the alphas
    assert torch.allclose(a.detach(), a0 - 0.1)


def _hand_alphas(model, values) -> None:
    with torch.no_grad():
        for k, v in zip(sorted(model.alphas), values):
            model.alphas[k].fill_(float(v))


@pytest.mark.parametrize("loss", ["smoke", "mse"])
def test_slimming_loss_is_heatmap_loss_plus_l1_of_the_alphas(cfg, loss):
    cfg = cfg if loss == "smoke" else {**cfg, "loss": "mse"}
    torch.manual_seed(0)
    model = tiny_supernet(num_points=5, stages=3)
    n = len(model.alphas)
    assert n == 4 + 16
    vals = [(-1) ** i * (0.05 * i + 0.01) for i in range(n)]
    _hand_alphas(model, vals)
    pred, target = _maps(5, (2, 5, 8, 8)), _maps(6, (2, 5, 8, 8)).abs()
    lam = 0.3
    hm, total = S.slimming_loss(pred, target, model, lam, cfg)
    assert total.requires_grad and not hm.requires_grad
    l1 = sum(abs(v) for v in model.alpha_values().values())
    assert l1 == pytest.approx(sum(abs(v) for v in vals), rel=1e-6)
    hand_hm = float(((pred - target) ** 2).mean()) if loss == "mse" else \
        float(heatmaps.heatmap_loss(pred, target, cfg["loss"]))
    assert float(hm) == pytest.approx(hand_hm, rel=1e-12)
    assert float(total.detach()) == pytest.approx(float(hm) + lam * l1, rel=1e-6)
    assert float(S.l1_alphas(model).detach()) == pytest.approx(l1, rel=1e-6)
    # d/d alpha of lam |alpha| (the maps do not depend on the model here): lam sign(alpha)
    total.backward()
    for k, v in model.alphas.items():
        assert float(v.grad) == pytest.approx(lam * math.copysign(1.0, float(v.detach())), rel=1e-6)


def _flops_case():
    """A tiny supernet (20 operations) with |alpha| = 0.01 .. 0.20 in a shuffled order, signs
    alternating; its FLOPs at 32 px, the sorted |alpha| and the FLOPs after pruning at each."""
    torch.manual_seed(0)
    model = tiny_supernet(num_points=5, stages=3).eval()
    n = len(model.alphas)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(1)).tolist()
    _hand_alphas(model, [(-1) ** p * (p + 1) / 100 for p in perm])
    x = torch.zeros(1, 3, 32, 32)
    cands = sorted({abs(v) for v in model.alpha_values().values()})
    assert len(cands) == n

    def slim_flops(t):
        try:
            return flops(S.slim(model, t), x)
        except ValueError:      # nothing reaches the head
            return 0

    return model, flops(model, x), cands, slim_flops


def test_threshold_for_ratio_is_the_smallest_alpha_within_the_budget():
    model, full, cands, slim_flops = _flops_case()
    for ratio in (0.9, 0.8, 0.6):
        t = S.threshold_for_ratio(model, ratio, 32, measure="flops")
        i = min(range(len(cands)), key=lambda j: abs(cands[j] - t))
        assert t == pytest.approx(cands[i] + 1e-12, abs=1e-15)
        assert 0 < slim_flops(t) <= ratio * full
        if i > 0:   # one candidate lower keeps more than the budget
            assert slim_flops(cands[i - 1] + 1e-12) > ratio * full
    assert S.threshold_for_ratio(model, 0.6, 32, "flops") > \
        S.threshold_for_ratio(model, 0.9, 32, "flops")
    # the parameter budget (the default measure; no input size needed)
    full_p = count_parameters(model)
    for ratio in (0.7, 0.4):
        t = S.threshold_for_ratio(model, ratio)
        i = min(range(len(cands)), key=lambda j: abs(cands[j] - t))
        assert count_parameters(S.slim(model, t)) <= ratio * full_p
        if i > 0:
            assert count_parameters(S.slim(model, cands[i - 1] + 1e-12)) > ratio * full_p


def test_profile_threshold_is_the_ratios_or_the_papers():
    model = _flops_case()[0]
    by_ratio = {"slim": {"params_ratio": 0.7, "threshold": 0.0017}}
    assert S.profile_threshold(model, by_ratio) == S.threshold_for_ratio(model, 0.7)
    assert S.profile_threshold(model, {"slim": {"params_ratio": None, "threshold": 0.0017}}) == 0.0017


def test_threshold_for_ratio_below_the_smallest_network_raises():
    model, full, cands, slim_flops = _flops_case()
    smallest = min(f for f in (slim_flops(c + 1e-12) for c in cands) if f > 0)
    assert slim_flops(cands[-1] + 1e-12) == 0 and smallest > 0.5 * full
    with pytest.raises(ValueError, match=f"no threshold keeps at most 0.5 of the flops: the "
                                         f"smallest slimmed network keeps {smallest / full:.3f}"):
        S.threshold_for_ratio(model, 0.5, 32, measure="flops")
    with pytest.raises(ValueError, match="measure"):
        S.threshold_for_ratio(model, 0.5, 32, measure="latency")
    with pytest.raises(ValueError, match="size"):
        S.threshold_for_ratio(model, 0.5, measure="flops")


# --------------------------------------------------------------------------- occluded test set
@pytest.mark.parametrize("fill", ["noise", "constant"])
def test_occluded_lower_face_covers_nose_to_chin_across_the_jaw(cfg, fill):
    c = {**cfg, "size": 64}
    faces = T.synthetic_faces(4, c, seed=0)
    occ = T.occluded_lower_face(faces, seed=3, fill=fill)
    assert torch.equal(occ.points, faces.points) and torch.equal(occ.gt, faces.gt)
    assert occ.images.dtype == torch.uint8 and occ.images.shape == faces.images.shape
    for i in range(len(faces)):
        p = faces.points[i].numpy().astype(np.float64)
        x0, x1 = p[:17, 0].min(), p[:17, 0].max()
        pad = 0.05 * (x1 - x0)
        r0, r1 = max(0, math.floor(p[29, 1])), min(63, math.ceil(p[8, 1] + pad))
        c0, c1 = max(0, math.floor(x0 - pad)), min(63, math.ceil(x1 + pad))
        assert r1 - r0 > 8 and c1 - c0 > 8
        inside = torch.zeros(64, 64, dtype=torch.bool)
        inside[r0:r1 + 1, c0:c1 + 1] = True
        a, b = faces.images[i], occ.images[i]
        assert torch.equal(a[:, ~inside], b[:, ~inside])
        changed = (a != b).any(0)
        assert changed[inside].float().mean() > 0.5
        if fill == "constant":    # one grey over the whole rectangle, every channel
            assert b[:, inside].unique().numel() == 1
    again = T.occluded_lower_face(faces, seed=3, fill=fill)
    assert torch.equal(again.images, occ.images)
    assert not torch.equal(T.occluded_lower_face(faces, seed=4, fill=fill).images, occ.images)


# --------------------------------------------------------------------------- the recipe
@pytest.fixture(scope="module")
def faces(cfg):
    return T.synthetic_faces(24, cfg, seed=0)


@pytest.fixture(scope="module")
def searched(cfg, faces):
    old = torch.get_num_threads()   # built before the autouse fixture sets one thread
    torch.set_num_threads(1)
    try:
        model, hist = S.search(T.make_supernet(cfg, seed=0), faces, cfg, seed=0)
    finally:
        torch.set_num_threads(old)
    return model, hist, model.alpha_values()


def test_alpha_gradient_rms_is_each_losss_pull_on_the_alphas_and_changes_nothing(cfg, faces):
    model = T.make_supernet(cfg, seed=0)
    before = copy.deepcopy(model.state_dict())
    got = S.alpha_gradient_rms(model, faces, cfg, batches=1, seed=3)
    assert set(got) == {"mse", "softmax_ce"}
    after = model.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)   # batch-norm statistics too
    for loss in got:   # by hand: the first batch, drawn and augmented as the search draws it
        net, c = copy.deepcopy(model).train(), {**cfg, "loss": loss}
        torch.manual_seed(3)
        xb, yb = T.augmented(next(iter(T.loader(faces, cfg, 3))), T.scheme_of(faces))
        value = T.heatmap_criterion(net(xb), T.targets(yb, c), c)
        g = torch.cat([x.reshape(-1) for x in torch.autograd.grad(value, net.alpha_parameters())])
        assert got[loss] == pytest.approx(float(g.square().mean().sqrt()), rel=1e-5)
    assert got["softmax_ce"] != pytest.approx(got["mse"], rel=1e-3)


def test_search_history_and_slim(cfg, faces, searched):
    model, hist, alphas = searched
    assert len(hist) == 1 and {"heatmap_loss", "l1", "train_loss"} <= set(hist.columns)
    # Eq. 2: the total is the heatmap loss + lambda * L1 (the epoch means, both batches)
    assert hist["train_loss"][0] == pytest.approx(
        hist["heatmap_loss"][0] + cfg["slim"]["l1"] * hist["l1"][0], rel=1e-6)
    n_ops = len(spec_ops(model.spec))
    assert n_ops == 4 + 2 * 16 and len(alphas) == n_ops
    # 24 faces in batches of 16: two steps, the second on the alphas -- they moved from 1
    assert any(abs(v - 1.0) > 1e-3 for v in alphas.values())
    assert hist["l1"][0] == pytest.approx(n_ops, rel=0.05)
    # prune the lower half of the alphas
    t = float(np.median([abs(v) for v in alphas.values()]))
    keep = threshold_keep(model, t)
    assert all(abs(alphas[k]) >= t for k in keep) and 0 < len(keep) < n_ops
    small = S.slim(model, t).eval()
    live = live_ops(model.spec, keep)
    assert set(small.alpha_values()) == live and set(small.alphas) == live
    assert all(small.alpha_values()[k] == pytest.approx(alphas[k]) for k in live)
    assert S.keep_fraction(model, t) == pytest.approx(len(live) / n_ops)
    x = T.loader(faces, cfg, 0).dataset.tensors[0][:4]
    with torch.no_grad():
        assert torch.allclose(small(x), model.eval()(x, keep), atol=1e-5)
    # the undistilled S-HRNet: the students' settings, or as many epochs as asked (Fig. 6: one)
    tuned, h = T.fine_tune(S.slim(model, t), faces, cfg, epochs=2)
    assert len(h) == 2 and cfg["distill"]["epochs"] == 1
    summ = S.summary(model, small, cfg["size"])
    assert summ["supernet_ops"] == n_ops and summ["slimmed_ops"] == len(live)
    assert summ["slimmed_flops"] < summ["supernet_flops"]
    assert summ["slimmed_params"] < summ["supernet_params"]


def test_networks_train_in_channels_last_memory(cfg, faces, searched):
    """The search (like every training of the notebook) runs on channels-last weights, the
    faster layout for oneDNN; the network computes what the usual layout computes."""
    model = searched[0].eval()
    kernels = [p for p in model.parameters() if p.dim() == 4 and p.shape[-1] > 1]
    assert kernels and all(p.is_contiguous(memory_format=torch.channels_last) for p in kernels)
    assert not all(p.is_contiguous() for p in kernels)
    plain = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
    assert all(p.is_contiguous() for p in plain.parameters())
    x = T.loader(faces, cfg, 0).dataset.tensors[0][:4]
    with torch.no_grad():
        assert torch.allclose(plain(x), model(x), atol=1e-5)


def _same(a: torch.nn.Module, b: torch.nn.Module) -> bool:
    sa, sb = a.state_dict(), b.state_dict()
    return sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)


def test_teacher_distillation_prediction_and_card(cfg, faces, searched):
    model, _, alphas = searched
    t = float(np.median([abs(v) for v in alphas.values()]))
    student = S.slim(model, t)
    before = {k: v.clone() for k, v in student.state_dict().items()}

    teacher, th = T.train_plain(T.make_teacher(cfg), faces, cfg, cfg["teacher"], seed=0)
    assert len(th) == 1 and np.isfinite(th["train_loss"][0])
    assert not teacher.learn_alphas and not _same(teacher, T.make_teacher(cfg))

    pair, hist = D.distill(student, teacher, faces, cfg, seed=0, masked=True)
    assert {"s1_heatmap", "s1_kd_peers", "s1_kd_teacher", "s2_heatmap", "s2_kd_peers",
            "s2_kd_teacher"} <= set(hist.columns)
    assert all(torch.equal(v, before[k]) for k, v in student.state_dict().items())  # copies
    assert not _same(pair.s1, student)
    assert not _same(pair.s1, pair.s2)          # each peer saw its own masks
    # without masks the two peers see the same batch and get the same gradient: they stay twins
    twins, _ = D.distill(student, teacher, faces, cfg, seed=0, masked=False)
    assert _same(twins.s1, twins.s2) and not _same(twins.s1, student)

    single, sh = D.distill(student, teacher, faces, cfg, seed=0, peers=False)
    assert single.s2 is None
    assert not any("s2" in c or "peers" in c for c in sh.columns) and "s1_kd_teacher" in sh
    # no teacher, no peers: the plain heatmap loss
    alone, ah = D.distill(student, None, faces, cfg, seed=0, peers=False, masked=False)
    assert alone.s2 is None and ah["train_loss"][0] == pytest.approx(ah["s1_heatmap"][0])

    pred = T.predict(pair.s1, faces, cfg)
    assert pred.shape == (24, 68, 2) and pred.dtype == np.float64
    ok = np.isfinite(pred)      # see test_decode_of_logit_maps_is_shift_invariant
    assert np.all((pred[ok] > -1) & (pred[ok] < cfg["size"]))
    e = T.inter_ocular_nme(pred, faces)
    assert e.shape == (24,) and np.all(np.isfinite(e))

    # (synthetic faces carry no crop policy: see test_model_card_of_synthetic_faces)
    framed = dataclasses.replace(faces, policy=CropPolicy(cfg["size"], "RGB", box="image"))
    card = T.model_card(pair.s1, "S-HRNet (smoke)", framed, cfg, 100 * float(e.mean()),
                        "synthetic")
    assert card["architecture"] == "hrnet" and card["scheme"] == "ibug68"
    assert card["crop"]["size"] == cfg["size"] and card["test"]["value"] == pytest.approx(
        100 * float(e.mean()))
    again = T.load_predictor(card, pair.s1.state_dict())
    assert np.allclose(again(faces), faces.to_image(pred), equal_nan=True)
    assert json.loads(json.dumps(card)) == card


def test_same_seed_same_search(cfg, faces, searched):
    _, hist, alphas = searched
    torch.rand(7)   # move the global generator: the supernet and the search seed themselves
    model2, hist2 = S.search(T.make_supernet(cfg, seed=0), faces, cfg, seed=0)
    cols = [c for c in hist.columns if c != "seconds"]
    assert hist[cols].equals(hist2[cols])
    assert model2.alpha_values() == alphas


def test_model_card_of_synthetic_faces(cfg):
    faces = T.synthetic_faces(2, cfg, seed=0)
    assert faces.policy is None
    card = T.model_card(T.make_teacher(cfg), "teacher", faces, cfg, 10.0, "synthetic")
    assert card["crop"]["size"] == cfg["size"]


def test_decode_of_logit_maps_is_shift_invariant(cfg):
    assert cfg["loss"] == "softmax_ce"
    maps = _maps(7, (2, 68, 8, 8)).float()
    up = T.decode(maps - maps.amin((-2, -1), keepdim=True) + 0.1, cfg)    # every map > 0
    assert np.all(np.isfinite(up))
    assert np.array_equal(T.decode(maps - 100.0, cfg), up)               # the same logits


def test_paper_kd_is_sec_4_3_on_300w_and_only_quick_departs_from_it():
    """The paper profile distils with Sec. 4.3's 300-W weights (lambda1 = 4, lambda2 = 1) and a
    mask on every input; quick departs from them and trains them beside its own (kd_literal);
    with_paper_kd puts them back and keeps the rest of the settings."""
    paper, quick = T.resolve_profile("paper"), T.resolve_profile("quick")
    assert {k: paper["distill"][k] for k in T.PAPER_KD_300W} == T.PAPER_KD_300W
    assert T.PAPER_KD_300W == {"lambda1": 4.0, "lambda2": 1.0,
                               "occlusion": {"p": 1.0, "min_frac": 0.1, "max_frac": 0.5}}
    assert not paper["kd_literal"] and quick["kd_literal"]
    assert (quick["distill"]["lambda1"], quick["distill"]["occlusion"]["p"]) == (1.0, 0.25)
    lit = T.with_paper_kd(quick)
    assert {k: lit["distill"][k] for k in T.PAPER_KD_300W} == T.PAPER_KD_300W
    assert {k: v for k, v in lit["distill"].items() if k not in T.PAPER_KD_300W} == \
        {k: v for k, v in quick["distill"].items() if k not in T.PAPER_KD_300W}
    lit["distill"]["occlusion"]["p"] = 0.5                 # a copy: the constant stays
    assert T.PAPER_KD_300W["occlusion"]["p"] == 1.0 and quick["distill"]["lambda1"] == 1.0


def test_paper_profile_builds_the_papers_networks_and_runs_one_step():
    """The paper profile (Sec. 4.3) is the same code path: its supernet and teacher are the
    paper-width HRSuperNet and HRNetV2-W18, and one search step runs (on 2 faces at 64 px)."""
    cfg = T.resolve_profile("paper")
    assert (cfg["size"], cfg["batch_size"], cfg["slim"]["epochs"], cfg["distill"]["epochs"]) == (256, 16, 60, 60)
    assert cfg["loss"] == "mse" and cfg["decode"] == "quarter_offset"
    assert sum(p.numel() for p in T.make_supernet(cfg).parameters()) == 3_527_762
    assert sum(p.numel() for p in T.make_teacher(cfg).parameters()) == 9_654_398
    small = {**cfg, "size": 64, "device": "cpu", "slim": {**cfg["slim"], "epochs": 1}}
    faces = T.synthetic_faces(2, small, seed=0)
    model, hist = S.search(T.make_supernet(small), faces, small)
    assert len(hist) == 1 and np.isfinite(hist["heatmap_loss"]).all()
