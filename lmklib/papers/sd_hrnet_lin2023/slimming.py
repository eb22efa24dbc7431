"""Network-level architecture slimming (Sec. 3.1, Eq. 2): train a supernet on the heatmap loss
plus ``lambda * sum |alpha|``, the importance factors and the weights optimised alternately,
then prune every transformation-and-aggregation operation whose ``|alpha|`` is under the
threshold (and every block left without one) into a standalone S-HRNet
(:func:`lmklib.models.hrnet.prune`).

"Alternately" (the paper's Algorithm 1 is an image we do not have): batch by batch, one Adam
step on the weights, then one on the alphas, both on Eq. 2 over the training faces (the
architecture gradient is first-order, as in DARTS' first-order variant; DARTS' held-out split is
not used -- 2,012 faces are few already).
"""

from __future__ import annotations

import copy
from typing import Any

import torch

from ...models.hrnet import HRNet, live_ops, prune, spec_ops, threshold_keep
from ...profile import count_parameters, flops
from ...train import channels_last, fit, make_scheduler
from . import augmented, device, heatmap_criterion, loader, scheme_of, targets


def l1_alphas(model: HRNet) -> torch.Tensor:
    """``sum |alpha|`` over every operation (Eq. 2's penalty)."""
    return sum(a.abs() for a in model.alpha_parameters())


def slimming_loss(pred: torch.Tensor, target: torch.Tensor, model: HRNet, lam: float,
                  cfg: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 2: ``(heatmap loss, heatmap loss + lam * sum |alpha|)``."""
    hm = heatmap_criterion(pred, target, cfg)
    return hm, hm + lam * l1_alphas(model)


def alpha_gradient_rms(model: HRNet, faces, cfg: dict, losses=("mse", "softmax_ce"),
                       batches: int = 4, seed: int = 0) -> dict[str, float]:
    """How hard each heatmap loss of ``losses`` pulls on the alphas: the root mean square of
    ``d loss / d alpha`` over every alpha and the first ``batches`` training batches (the same
    batches and augmentation for each loss; ``model`` is not changed). Eq. 2's ``lambda`` acts
    against this pull: Adam scales each alpha's step by its gradient's size."""
    net, scheme = copy.deepcopy(model).train(), scheme_of(faces)
    alphas = net.alpha_parameters()
    out = {}
    for loss in losses:
        c = {**cfg, "loss": loss}
        torch.manual_seed(seed)
        squares, count = 0.0, 0
        for i, batch in enumerate(loader(faces, cfg, seed)):
            if i == batches:
                break
            xb, yb = augmented(batch, scheme)
            grads = torch.autograd.grad(heatmap_criterion(net(xb), targets(yb, c), c), alphas)
            squares += sum(float(g.square().sum()) for g in grads)
            count += sum(g.numel() for g in grads)
        out[loss] = (squares / count) ** 0.5
    return out


class Alternating:
    """Two optimizers taking turns (``step`` calls the weights' one, then the alphas', then the
    weights'...); the rest of the optimizer interface :func:`lmklib.train.fit` uses
    (``zero_grad``, ``param_groups`` = the weights', ``state_dict`` / ``load_state_dict``)."""

    def __init__(self, weights: torch.optim.Optimizer, alphas: torch.optim.Optimizer):
        self.weights, self.alphas, self.turn = weights, alphas, 0

    @property
    def param_groups(self):
        return self.weights.param_groups

    def zero_grad(self, set_to_none: bool = True):
        self.weights.zero_grad(set_to_none=set_to_none)
        self.alphas.zero_grad(set_to_none=set_to_none)

    def step(self):
        (self.weights if self.turn % 2 == 0 else self.alphas).step()
        self.turn += 1

    def state_dict(self) -> dict[str, Any]:
        return {"weights": self.weights.state_dict(), "alphas": self.alphas.state_dict(),
                "turn": self.turn}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.weights.load_state_dict(state["weights"])
        self.alphas.load_state_dict(state["alphas"])
        self.turn = int(state["turn"])


def search(model: HRNet, faces, cfg: dict, seed: int = 0, desc: str = "slimming",
           progress: bool = False, checkpoint=None):
    """Train a supernet with Eq. 2 (``cfg["slim"]``); returns ``(model, history)``. The history
    carries the heatmap loss and the L1 sum per epoch."""
    s = cfg["slim"]
    dl, scheme = loader(faces, cfg, seed), scheme_of(faces)
    channels_last(model)
    w_opt = torch.optim.Adam(model.weight_parameters(), lr=s["lr"], betas=(0.9, 0.999),
                             weight_decay=s["weight_decay"])
    a_opt = torch.optim.Adam(model.alpha_parameters(), lr=s["alpha_lr"])
    sched, when = make_scheduler(w_opt, s["schedule"], s["epochs"], len(dl), s["milestones"],
                                 gamma=0.1)
    opt = Alternating(w_opt, a_opt)

    def loss_fn(m, batch):
        xb, yb = augmented(batch, scheme)
        hm, total = slimming_loss(m(xb), targets(yb, cfg), m, s["l1"], cfg)
        return total, {"heatmap_loss": float(hm.detach()), "l1": float(l1_alphas(m).detach())}

    hist = fit(model, dl, loss_fn, opt, s["epochs"], scheduler=sched, scheduler_step=when,
               seed=seed, progress=progress, desc=desc, device=device(cfg),
               checkpoint=checkpoint, tag=desc)
    return model.cpu().eval(), hist


def slim(model: HRNet, threshold: float) -> HRNet:
    """The S-HRNet: ``model`` without the operations under ``threshold`` (and the blocks and
    operations that no longer reach the head), as a standalone network with its weights."""
    return prune(model, threshold_keep(model, threshold))


def costs(model: HRNet, size: int) -> dict[str, int]:
    """Parameters and FLOPs (:func:`lmklib.profile.flops`: a multiply-add is 2) of ``model`` at
    ``size`` x ``size`` input, with and without its two-convolution head (the paper's counts
    leave it unsaid)."""
    f = flops(model, torch.zeros(1, model.config["in_channels"], size, size))
    head_in = torch.zeros(1, model.head[0].in_channels, size // 4, size // 4)
    n = count_parameters(model)
    return {"params": n, "params_no_head": n - count_parameters(model.head),
            "flops": f, "flops_no_head": f - flops(model.head, head_in)}


def summary(supernet: HRNet, slimmed: HRNet, size: int) -> dict[str, Any]:
    """What the pruning kept: operations, blocks, and :func:`costs` of both networks."""
    out: dict[str, Any] = {}
    for name, m in (("supernet", supernet), ("slimmed", slimmed)):
        out[f"{name}_ops"] = len(spec_ops(m.spec))
        out[f"{name}_blocks"] = len(m.encoders)
        out.update({f"{name}_{k}": v for k, v in costs(m, size).items()})
    return out


def profile_threshold(model: HRNet, cfg: dict) -> float:
    """The pruning threshold of a profile for a searched ``model``: the one that keeps
    ``cfg["slim"]["params_ratio"]`` of its parameters (:func:`threshold_for_ratio`) when the
    profile sets a ratio, else the paper's ``cfg["slim"]["threshold"]``."""
    ratio = cfg["slim"]["params_ratio"]
    return threshold_for_ratio(model, ratio) if ratio else cfg["slim"]["threshold"]


def keep_fraction(model: HRNet, threshold: float) -> float:
    """Fraction of the supernet's operations alive after pruning at ``threshold``."""
    return len(live_ops(model.spec, threshold_keep(model, threshold))) / len(spec_ops(model.spec))


def threshold_for_ratio(model: HRNet, ratio: float, size: int | None = None,
                        measure: str = "params") -> float:
    """The smallest pruning threshold (one of the ``|alpha|`` values) whose slimmed network keeps
    at most ``ratio`` of the supernet's parameters (``measure="params"``) or FLOPs at ``size``
    px (``"flops"``): a bisection over the sorted alphas. Our way to prune a short search whose
    alphas have not travelled down to the paper's threshold, at the paper's own ratio (SD-HRNet
    keeps 0.98 M of HRSuperNet's 3.27 M parameters). A ratio no slimmed network reaches raises
    ``ValueError``."""
    if measure not in ("params", "flops"):
        raise ValueError(f"measure must be 'params' or 'flops', got {measure!r}")
    x = None if size is None else torch.zeros(1, model.config["in_channels"], size, size)
    if measure == "flops" and x is None:
        raise ValueError("measure='flops' needs the input size")
    cost = (lambda m: count_parameters(m)) if measure == "params" else (lambda m: flops(m, x))
    full = cost(model)
    cands = sorted({abs(v) for v in model.alpha_values().values()})

    def usable(i: int) -> bool:     # something still reaches the head
        try:
            slim(model, cands[i] + 1e-12)
            return True
        except ValueError:
            return False

    def fits(i: int) -> bool:
        return cost(slim(model, cands[i] + 1e-12)) <= ratio * full

    # usable and cost both fall as the threshold rises: bisect on the usable prefix
    hi = len(cands) - 1
    while hi >= 0 and not usable(hi):
        hi -= 1
    if hi < 0:
        raise ValueError(f"no threshold keeps at most {ratio} of the {measure}: every "
                         f"pruning leaves nothing reaching the head")
    least = cost(slim(model, cands[hi] + 1e-12))          # the smallest slimmed network
    if least > ratio * full:
        raise ValueError(f"no threshold keeps at most {ratio} of the {measure}: the smallest "
                         f"slimmed network keeps {least / full:.3f}")
    lo = 0
    while lo < hi:
        mid = (lo + hi) // 2
        if fits(mid):
            hi = mid
        else:
            lo = mid + 1
    return cands[lo] + 1e-12
