"""Triple knowledge distillation (Sec. 3.2, Eq. 3-4): two peer students (copies of the S-HRNet)
fine-tuned together, each on its own randomly masked input, learning from the ground truth, from
their ensemble ``P_E = (P_S1 + P_S2) / 2`` and from a frozen teacher::

    L_KD(P2 || P1) = mean_{n,m} KL( softmax(P2_{n,m}) || softmax(P1_{n,m}) )       (Eq. 3)
    L_Si = heatmap loss(P_Si, G) + lambda1 L_KD(P_E || P_Si) + lambda2 L_KD(P_T || P_Si)  (Eq. 4)

The softmax runs over the pixels of each landmark's map. Our readings where the paper is
silent: the targets of the KD terms (``P_E`` and ``P_T``) carry no gradient (deep mutual
learning's convention); the teacher sees the unmasked face, each student its own mask; the
students start from the slimmed supernet's weights. Each component can be switched off for
Table 6: ``teacher`` (lambda2 term), ``peers`` (lambda1 term; without it the two students are
independent), ``masked`` (the occluding rectangles).
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ...data.transforms import random_occlusion
from ...train import channels_last, fit, make_scheduler
from . import augmented, device, heatmap_criterion, loader, scheme_of, targets

COMPONENTS = ("teacher", "peers", "masked")


def kd_loss(target: torch.Tensor, student: torch.Tensor) -> torch.Tensor:
    """Eq. 3, ``L_KD(target || student)``: the KL divergence from the softmax of the student's
    map to the softmax of the target's, per sample and landmark, averaged. ``[N, M, H, W]``."""
    logp = F.log_softmax(target.flatten(-2), dim=-1)
    logq = F.log_softmax(student.flatten(-2), dim=-1)
    return (logp.exp() * (logp - logq)).sum(-1).mean()


class PeerStudents(nn.Module):
    """The students trained together (one module, so one optimizer and checkpoint): two peers,
    or with ``pair=False`` a single student (``s2`` is None; Table 6's teacher-only row)."""

    def __init__(self, student: nn.Module, pair: bool = True):
        super().__init__()
        self.s1 = copy.deepcopy(student)
        self.s2 = copy.deepcopy(student) if pair else None

    def forward(self, x1: torch.Tensor, x2: torch.Tensor | None = None):
        p1 = self.s1(x1)
        return p1, (None if self.s2 is None else self.s2(x1 if x2 is None else x2))


def student_losses(p1: torch.Tensor, p2: torch.Tensor | None, target: torch.Tensor,
                   p_teacher: torch.Tensor | None, cfg: dict, use: dict[str, bool]):
    """Eq. 4 for each student: ``(L_S1 + L_S2, parts)`` (``p2`` None: one student, no peer
    term)."""
    d = cfg["distill"]
    total, parts = 0.0, {}
    ens = None if p2 is None else ((p1 + p2) / 2).detach()
    for name, p in (("s1", p1), ("s2", p2)):
        if p is None:
            continue
        loss = heatmap_criterion(p, target, cfg)
        parts[f"{name}_heatmap"] = float(loss.detach())
        if use["peers"] and ens is not None:
            k = kd_loss(ens, p)
            parts[f"{name}_kd_peers"] = float(k.detach())
            loss = loss + d["lambda1"] * k
        if use["teacher"] and p_teacher is not None:
            k = kd_loss(p_teacher, p)
            parts[f"{name}_kd_teacher"] = float(k.detach())
            loss = loss + d["lambda2"] * k
        total = total + loss
    return total, parts


def distill(student: nn.Module, teacher: nn.Module | None, faces, cfg: dict, seed: int = 0,
            teacher_on: bool = True, peers: bool = True, masked: bool = True,
            desc: str = "distillation", progress: bool = False, checkpoint=None):
    """Fine-tune copies of ``student`` with Eq. 4 (``cfg["distill"]``); returns
    ``(PeerStudents, history)``. ``teacher_on`` / ``peers`` / ``masked`` switch the components;
    without ``peers`` a single student is trained (the ensemble term needs two)."""
    d = cfg["distill"]
    use = {"teacher": teacher_on and teacher is not None, "peers": peers, "masked": masked}
    torch.manual_seed(seed)
    pair = channels_last(PeerStudents(student, pair=peers))
    if use["teacher"]:
        teacher = channels_last(teacher.to(device(cfg))).eval()
        for p in teacher.parameters():
            p.requires_grad_(False)
    dl, scheme = loader(faces, cfg, seed), scheme_of(faces)
    opt = torch.optim.Adam(pair.parameters(), lr=d["lr"])
    sched, when = make_scheduler(opt, d["schedule"], d["epochs"], len(dl), d["milestones"],
                                 gamma=0.1)
    occ = d["occlusion"]

    def loss_fn(m, batch):
        xb, yb = augmented(batch, scheme)
        if use["masked"]:
            x1 = random_occlusion(xb, **occ)
            x2 = random_occlusion(xb, **occ) if m.s2 is not None else None
        else:
            x1 = x2 = xb
        p1, p2 = m(x1, x2)
        pt = None
        if use["teacher"]:
            with torch.no_grad():
                pt = teacher(xb)
        return student_losses(p1, p2, targets(yb, cfg), pt, cfg, use)

    hist = fit(pair, dl, loss_fn, opt, d["epochs"], scheduler=sched, scheduler_step=when,
               seed=seed, progress=progress, desc=desc, device=device(cfg),
               checkpoint=checkpoint, tag=desc)
    return pair.cpu().eval(), hist
