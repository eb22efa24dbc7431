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

from typing import Any

import torch

from ...models.hrnet import HRNet, live_ops, prune, spec_ops, threshold_keep
from ...profile import count_parameters, flops
from ...train import fit, make_scheduler
from . import augmented, device, heatmap_criterion, loader, scheme_of, targets


def l1_alphas(model: HRNet) -> torch.Tensor:
    """``sum |alpha|`` over every operation (Eq. 2's penalty)."""
    return sum(a.abs() for a in model.alpha_parameters())


def slimming_loss(pred: torch.Tensor, target: torch.Tensor, model: HRNet, lam: float,
                  cfg: dict) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 2: ``(heatmap loss, heatmap loss + lam * sum |alpha|)``."""
    hm = heatmap_criterion(pred, target, cfg)
    return hm, hm + lam * l1_alphas(model)


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


def summary(supernet: HRNet, slimmed: HRNet, size: int) -> dict[str, Any]:
    """What the pruning kept: operations, blocks, parameters and FLOPs (with and without the
    head) of both networks at ``size`` x ``size`` input."""
    x = torch.zeros(1, supernet.config["in_channels"], size, size)

    def blocks(m):
        return len(m.encoders)

    def head_flops(m):
        c = m.head[0].in_channels
        return flops(m.head, torch.zeros(1, c, size // 4, size // 4))

    out = {}
    for name, m in (("supernet", supernet), ("slimmed", slimmed)):
        f = flops(m, x)
        out[f"{name}_ops"] = len(spec_ops(m.spec))
        out[f"{name}_blocks"] = blocks(m)
        out[f"{name}_params"] = count_parameters(m)
        out[f"{name}_params_no_head"] = count_parameters(m) - count_parameters(m.head)
        out[f"{name}_flops"] = f
        out[f"{name}_flops_no_head"] = f - head_flops(m)
    return out


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

    def fits(i: int) -> bool:
        try:
            return cost(slim(model, cands[i] + 1e-12)) <= ratio * full
        except ValueError:          # nothing left reaches the head
            return False

    ok = [i for i in (len(cands) - 1,) if fits(i)]
    lo, hi = 0, len(cands) - 1
    if not ok:        # the ratio is only reached when nothing is left: take the largest usable
        while hi >= 0:
            try:
                slim(model, cands[hi] + 1e-12)
                break
            except ValueError:
                hi -= 1
        if hi < 0 or not fits(hi):
            raise ValueError(f"no threshold keeps at most {ratio} of the {measure}")
    while lo < hi:
        mid = (lo + hi) // 2
        if fits(mid):
            hi = mid
        else:
            lo = mid + 1
    return cands[lo] + 1e-12
