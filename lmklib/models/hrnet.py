"""High-resolution networks built from LSFF stages: HRSuperNet (SD-HRNet, Lin et al. 2023), its
slimmed S-HRNet, HRNetV2-W18 (Sun et al. 2019, the teacher) and the residual-unit variants of
Fig. 6 -- one class, :class:`HRNet`, read from one JSON-able ``spec``.

Lin, Zheng, Zhao & Liang, "SD-HRNet: Slimming and Distilling High-Resolution Network for
Efficient Face Alignment" (``shared/papers/sd_hrnet_lin2023.txt``, "the paper").

**Layout** (Sec. 3.1, Fig. 3). A stem of two 3x3 stride-2 convolutions (``3 -> stem -> stem``,
BN + ReLU each; ``H/4``), then *stage 1*: ``stem_units`` encoding units on one branch at
``H/4`` (HRSuperNet: four MBConvs at 64 channels, the authors' code; HRNetV2: four
bottlenecks, 64 -> 256). Then the LSFF stages. Stage ``s`` has up to four branches ``b`` at
``H/4 / 2^b`` with ``widths[b]`` channels; the block of branch ``b`` reads the previous stage's
blocks ``j`` listed in ``spec["stages"][s]["inputs"][b]`` (Eq. 1)::

    Y_b = E_b( ReLU( sum_j alpha_{s,b,j} * T_{b<-j}(X_j) ) )

* ``T_{b<-j}`` (Fig. 3): identity when ``j == b`` and the channels agree; a 3x3 convolution + BN
  when only the channels differ (stage 1's 64 channels into branch 0); a 1x1 convolution + BN,
  then bilinear upsampling by ``2^(j-b)`` when ``j > b``; ``b - j`` stride-2 3x3 convolutions
  when ``j < b`` (the intermediate ones keep ``j``'s channels and add BN + ReLU, the last maps to
  ``widths[b]`` + BN) -- HRNet's fuse and transition layers.
* the ReLU after the sum is HRNet's (its fuse layers end in one); Eq. 1 writes none. A block
  whose only input is an identity skips it, as HRNet's transitions do.
* ``E_b``: ``units`` stacked encoding units of ``unit`` kind: ``"mbconv"`` (MBConv, 3x3,
  expansion 1: depthwise 3x3 + BN + ReLU6, pointwise 1x1 + BN, identity shortcut) or
  ``"basic"`` (HRNet's residual unit: two 3x3 conv + BN, shortcut, ReLU). ``units = 0`` is a
  pure fusion stage (how HRNet's consecutive fuse and transition layers are written here).
* ``alpha`` (the importance factors): one scalar per operation, learnable when
  ``learn_alphas`` (a supernet), else fixed at 1 (buffers: HRNetV2 is plain HRNet).
* head (Sec. 3.1): every last-stage branch upsampled (bilinear) to ``H/4`` and concatenated
  (HRNetV2's representation), a 1x1 convolution + BN + ReLU and a 1x1 convolution to the ``K``
  heatmaps ``[N, K, H/4, W/4]``.

**Pruning** (Sec. 3.1, used by :mod:`lmklib.papers.sd_hrnet_lin2023.slimming`):
:meth:`HRNet.forward` with ``keep`` runs the supernet with a set of operations switched off (a
removed block outputs zeros); :func:`pruned_spec` turns a keep-set into the spec of a real, smaller network
whose modules carry the same names, so its state is a subset of the supernet's (the head's first
convolution sliced to the surviving branches) and it computes what the masked supernet computes.

Modules are named ``s{stage}b{branch}`` (encoders) and ``s{stage}b{branch}f{source}``
(operations and their alphas); ``stage`` counts from 2 (stage 1 is ``stage1``).
"""

from __future__ import annotations

import copy
from typing import Any, Iterable

import torch
import torch.nn.functional as F
from torch import nn

from .layers import ClearsDerived, DerivedCache, conv_bn_act

UNITS = ("mbconv", "basic", "bottleneck")


# ------------------------------------------------------------------------------------ units
class MBConv(ClearsDerived, nn.Module):
    """MBConv with expansion 1 (MobileNetV2): depthwise 3x3 + BN + ReLU6, pointwise 1x1 + BN,
    plus the identity shortcut. Parameters: ``C^2 + 13 C``."""

    def __init__(self, channels: int):
        super().__init__()
        c = channels
        self.dw = nn.Conv2d(c, c, 3, 1, 1, groups=c, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.pw = nn.Conv2d(c, c, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)
        self._folded = (DerivedCache(), DerivedCache())

    def forward(self, x):
        if not self.training:          # inference: BNs folded, the depthwise conv in C
            y = conv_bn_act(x, self.dw, self.bn1, "relu6", self._folded[0])
            z = None if y is None else conv_bn_act(y, self.pw, self.bn2, None, self._folded[1])
            if z is not None:
                return z.add_(x)
        return x + self.bn2(self.pw(F.relu6(self.bn1(self.dw(x)))))


class BasicBlock(nn.Module):
    """HRNet's residual unit: conv3x3 + BN + ReLU, conv3x3 + BN, + x, ReLU. ``18 C^2 + 4 C``."""

    def __init__(self, channels: int):
        super().__init__()
        c = channels
        self.conv1 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(c)
        self.conv2 = nn.Conv2d(c, c, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(c)

    def forward(self, x):
        return F.relu(x + self.bn2(self.conv2(F.relu(self.bn1(self.conv1(x))))))


class Bottleneck(nn.Module):
    """HRNet's stage-1 bottleneck: 1x1 (in -> planes), 3x3, 1x1 (-> 4 planes), BN each, with a
    1x1 + BN projection shortcut when the channels change."""

    def __init__(self, in_channels: int, planes: int):
        super().__init__()
        out = 4 * planes
        self.conv1 = nn.Conv2d(in_channels, planes, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, out, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(out)
        self.down = None if in_channels == out else nn.Sequential(
            nn.Conv2d(in_channels, out, 1, bias=False), nn.BatchNorm2d(out))

    def forward(self, x):
        y = F.relu(self.bn1(self.conv1(x)))
        y = F.relu(self.bn2(self.conv2(y)))
        y = self.bn3(self.conv3(y))
        return F.relu(y + (x if self.down is None else self.down(x)))


def encoder(kind: str, channels: int, units: int) -> nn.Sequential:
    """``units`` stacked units of ``kind`` at ``channels`` (an empty Sequential for 0)."""
    if kind == "mbconv":
        return nn.Sequential(*[MBConv(channels) for _ in range(units)])
    if kind == "basic":
        return nn.Sequential(*[BasicBlock(channels) for _ in range(units)])
    raise ValueError(f"unit must be 'mbconv' or 'basic', got {kind!r}")


def conv_bn(cin: int, cout: int, k: int, stride: int = 1, relu: bool = False) -> list[nn.Module]:
    layers: list[nn.Module] = [nn.Conv2d(cin, cout, k, stride, k // 2, bias=False),
                               nn.BatchNorm2d(cout)]
    return layers + [nn.ReLU()] if relu else layers


class Transform(nn.Module):
    """``T_{b<-j}``: the operation carrying block ``j``'s output (``cin`` channels, level ``j``)
    to branch ``b`` (``cout`` channels, level ``b``); see the module docstring."""

    def __init__(self, cin: int, cout: int, src: int, dst: int, upsample: str = "bilinear"):
        super().__init__()
        self.src, self.dst, self.mode = src, dst, upsample
        if src == dst:
            self.op = nn.Identity() if cin == cout else nn.Sequential(*conv_bn(cin, cout, 3))
        elif src > dst:
            self.op = nn.Sequential(*conv_bn(cin, cout, 1))
        else:
            steps = dst - src
            layers: list[nn.Module] = []
            for k in range(steps):
                last = k == steps - 1
                layers += conv_bn(cin, cout if last else cin, 3, 2, relu=not last)
            self.op = nn.Sequential(*layers)

    @property
    def is_identity(self) -> bool:
        return isinstance(self.op, nn.Identity)

    def forward(self, x, size: tuple[int, int]):
        y = self.op(x)
        if self.src > self.dst:
            y = F.interpolate(y, size=size, mode=self.mode,
                              **({"align_corners": False} if self.mode == "bilinear" else {}))
        return y


# ------------------------------------------------------------------------------------ specs
def full_inputs(n_in: int, n_out: int) -> list[list[int]]:
    """Every output branch reads every previous block (an LSFF stage of the supernet)."""
    return [list(range(n_in)) for _ in range(n_out)]


def supernet_spec(widths: Iterable[int] = (18, 36, 72, 144), stem: int = 64, stages: int = 10,
                  units: int = 4, unit: str = "mbconv", last_units: int | None = None,
                  upsample: str = "bilinear") -> dict[str, Any]:
    """HRSuperNet (Sec. 3.1, Fig. 3): stage 1 one branch of ``units`` MBConvs at ``stem``
    channels, stages 2..``stages`` four-resolution LSFF blocks fully connected to the previous
    stage, ``units`` units each (``last_units`` for the last stage; the authors' 300-W config
    has none there). ``unit="basic"``: the residual-unit supernet of Fig. 6a."""
    widths = [int(w) for w in widths]
    nb = len(widths)
    st = [{"inputs": full_inputs(1, nb), "units": units}]
    for s in range(3, stages + 1):
        st.append({"inputs": full_inputs(nb, nb),
                   "units": units if (s < stages or last_units is None) else last_units})
    return {"widths": widths, "stem": stem, "stem_unit": unit if unit != "basic" else "basic",
            "stem_units": units, "unit": unit, "stages": st, "upsample": upsample}


def hrnetv2_spec(widths: Iterable[int] = (18, 36, 72, 144), stem: int = 64, units: int = 4,
                 unit: str = "basic", stem_unit: str = "bottleneck", modules=(1, 4, 3),
                 upsample: str = "bilinear") -> dict[str, Any]:
    """HRNetV2 (Sun et al. 2019; W18 by default) in LSFF stages: stage 1 four bottlenecks
    (``stem -> 4 stem``); then for each of HRNet's stages 2-4 (``modules`` modules each, with 2,
    3, 4 branches) a transition (the existing branches kept, the new one a stride-2 conv from
    the last), the modules' units, and their all-to-all fuse layers. A fuse followed by a
    transition is a fusion stage without units. Upsampling bilinear, as the HRNet facial
    landmark code does."""
    widths = [int(w) for w in widths]
    st: list[dict[str, Any]] = [{"inputs": [[0], [0]], "units": units}]   # transition 1
    nb = 2
    for k, m in enumerate(modules):
        for i in range(m):
            last_module = i == m - 1
            if not last_module:
                st.append({"inputs": full_inputs(nb, nb), "units": units})
            else:
                st.append({"inputs": full_inputs(nb, nb), "units": 0})
        if k < len(modules) - 1:                                          # transition
            st.append({"inputs": [[b] for b in range(nb)] + [[nb - 1]], "units": units})
            nb += 1
    return {"widths": widths[:nb], "stem": stem, "stem_unit": stem_unit, "stem_units": units,
            "unit": unit, "stages": st, "upsample": upsample}


def spec_ops(spec: dict[str, Any]) -> list[tuple[int, int, int]]:
    """Every operation ``(stage, branch, source)`` of a spec, stage numbers from 2."""
    return [(s + 2, b, j) for s, st in enumerate(spec["stages"])
            for b, srcs in enumerate(st["inputs"]) for j in srcs]


def op_name(stage: int, branch: int, source: int) -> str:
    return f"s{stage}b{branch}f{source}"


# ------------------------------------------------------------------------------------ network
class HRNet(nn.Module):
    """A high-resolution network of LSFF stages (module docstring).

    Args:
        spec: :func:`supernet_spec`, :func:`hrnetv2_spec`, or a pruned spec
            (:func:`pruned_spec`): ``widths``, ``stem`` channels, ``stem_unit`` /
            ``stem_units`` (stage 1), ``unit`` (``mbconv`` | ``basic``), ``upsample``, and
            ``stages``: per stage ``inputs`` (per output branch, the previous blocks it reads;
            ``[]`` = no block) and ``units``.
        num_points: K heatmaps.
        learn_alphas: alphas are parameters (a supernet, or a slimmed net keeping its factors);
            else fixed buffers.
        alphas: initial values by op name (default 1.0).
        in_channels: 3 (RGB).
    Input ``[N, C, H, W]`` (standardised); output ``[N, K, H/4, W/4]`` (H, W multiples of 32).
    """

    def __init__(self, spec: dict[str, Any], num_points: int = 68, learn_alphas: bool = True,
                 alphas: dict[str, float] | None = None, in_channels: int = 3):
        super().__init__()
        spec = copy.deepcopy(spec)
        self.spec, self.num_points, self.learn_alphas = spec, num_points, learn_alphas
        self.config = dict(spec=spec, num_points=num_points, learn_alphas=learn_alphas,
                           in_channels=in_channels)
        widths, c0 = spec["widths"], spec["stem"]
        self.stem = nn.Sequential(*conv_bn(in_channels, c0, 3, 2, relu=True),
                                  *conv_bn(c0, c0, 3, 2, relu=True))
        if spec["stem_unit"] == "bottleneck":
            planes = c0
            self.stage1 = nn.Sequential(*[Bottleneck(c0 if i == 0 else 4 * planes, planes)
                                          for i in range(spec["stem_units"])])
            c1 = 4 * planes
        else:
            self.stage1 = encoder(spec["stem_unit"], c0, spec["stem_units"])
            c1 = c0
        self.ops = nn.ModuleDict()
        self.encoders = nn.ModuleDict()
        init = alphas or {}
        alpha_params, alpha_buffers = {}, {}
        prev_channels = [c1]
        for s, st in enumerate(spec["stages"]):
            stage = s + 2
            out_channels = []
            for b, srcs in enumerate(st["inputs"]):
                out_channels.append(widths[b] if srcs else 0)
                if not srcs:
                    continue
                for j in srcs:
                    if prev_channels[j] == 0:
                        raise ValueError(f"stage {stage} branch {b} reads block {j}, which the "
                                         f"previous stage does not have")
                    name = op_name(stage, b, j)
                    self.ops[name] = Transform(prev_channels[j], widths[b], j, b, spec["upsample"])
                    value = torch.tensor(float(init.get(name, 1.0)))
                    (alpha_params if learn_alphas else alpha_buffers)[name] = value
                self.encoders[f"s{stage}b{b}"] = encoder(spec["unit"], widths[b], st["units"])
            prev_channels = out_channels
        self.alphas = nn.ParameterDict({k: nn.Parameter(v) for k, v in alpha_params.items()})
        for k, v in alpha_buffers.items():
            self.register_buffer(f"alpha_{k}", v)
        self.out_branches = [b for b, c in enumerate(prev_channels) if c]
        ch = sum(prev_channels)
        self.head = nn.Sequential(nn.Conv2d(ch, ch, 1), nn.BatchNorm2d(ch), nn.ReLU(),
                                  nn.Conv2d(ch, num_points, 1))

    # -- alphas
    def alpha(self, name: str) -> torch.Tensor:
        return self.alphas[name] if self.learn_alphas else getattr(self, f"alpha_{name}")

    def alpha_values(self) -> dict[str, float]:
        """Every operation's alpha by op name (:func:`op_name`)."""
        return {op_name(*o): float(self.alpha(op_name(*o)).detach()) for o in spec_ops(self.spec)}

    def alpha_parameters(self) -> list[nn.Parameter]:
        return list(self.alphas.values())

    def weight_parameters(self) -> list[nn.Parameter]:
        ids = {id(p) for p in self.alphas.values()}
        return [p for p in self.parameters() if id(p) not in ids]

    # -- forward
    def forward(self, x: torch.Tensor, keep: set[str] | None = None) -> torch.Tensor:
        """Heatmaps; ``keep`` (op names) switches every other operation off (the masked
        supernet: a block left without inputs is removed and outputs nothing)."""
        x = self.stage1(self.stem(x))
        feats: list[torch.Tensor | None] = [x]
        h, w = x.shape[-2:]
        for s, st in enumerate(self.spec["stages"]):
            stage = s + 2
            new: list[torch.Tensor | None] = []
            for b, srcs in enumerate(st["inputs"]):
                size = (-(-h // 2 ** b), -(-w // 2 ** b))
                terms = []
                for j in srcs:
                    name = op_name(stage, b, j)
                    if feats[j] is None or (keep is not None and name not in keep):
                        continue
                    op = self.ops[name]
                    terms.append((op, self.alpha(name) * op(feats[j], size)))
                if not terms:
                    new.append(None)
                    continue
                y = sum(t for _, t in terms)
                if not (len(terms) == 1 and terms[0][0].is_identity):
                    y = F.relu(y)
                new.append(self.encoders[f"s{stage}b{b}"](y))
            feats = new
        outs, present = [], []
        for b, f in enumerate(feats):
            if b >= len(self.spec["widths"]) or self.spec["stages"][-1]["inputs"][b] == []:
                continue
            present += [f is not None] * self.spec["widths"][b]
            if f is None:     # masked away: zeros where the slimmed net has no channels
                f = x.new_zeros(x.shape[0], self.spec["widths"][b], h, w)
            outs.append(f if b == 0 else F.interpolate(f, size=(h, w), mode="bilinear",
                                                      align_corners=False))
        z = torch.cat(outs, 1)
        if all(present):
            return self.head(z)
        # the slimmed net's head is sliced on both sides (prune), so a masked-away branch's
        # channels of the head's hidden layer go too, not only its input channels
        on = torch.tensor(present, dtype=z.dtype, device=z.device)[:, None, None]
        return self.head[3](self.head[:3](z) * on)


def live_ops(spec: dict[str, Any], keep: Iterable[str]) -> set[str]:
    """The operations of ``keep`` that still matter: a block keeps only if some kept operation
    feeds it, an operation only if its source block survives and its own block reaches the head
    (blocks whose output nothing reads are dead code and go with their operations)."""
    keep = set(keep)
    stages = spec["stages"]
    alive_prev = {0}
    fed: list[set[int]] = []
    for s, st in enumerate(stages):
        stage = s + 2
        alive = {b for b, srcs in enumerate(st["inputs"])
                 if any(j in alive_prev and op_name(stage, b, j) in keep for j in srcs)}
        fed.append(alive)
        alive_prev = alive
    # backwards: a block is useful if the head (last stage) or a useful later block reads it
    useful = set(fed[-1])
    result: set[str] = set()
    for s in range(len(stages) - 1, -1, -1):
        stage = s + 2
        prev_alive = fed[s - 1] if s > 0 else {0}
        needed_prev = set()
        for b in useful:
            for j in stages[s]["inputs"][b]:
                name = op_name(stage, b, j)
                if name in keep and j in prev_alive:
                    result.add(name)
                    needed_prev.add(j)
        useful = needed_prev
    return result


def pruned_spec(spec: dict[str, Any], keep: Iterable[str]) -> dict[str, Any]:
    """The spec of the network holding only :func:`live_ops` of ``keep``: absent operations are
    dropped from ``inputs``; a branch with no inputs left is an absent block (``[]``)."""
    live = live_ops(spec, keep)
    out = copy.deepcopy(spec)
    for s, st in enumerate(out["stages"]):
        st["inputs"] = [[j for j in srcs if op_name(s + 2, b, j) in live]
                        for b, srcs in enumerate(st["inputs"])]
    if not any(out["stages"][-1]["inputs"]):
        raise ValueError("pruning removed every block of the last stage: nothing reaches the head")
    return out


def head_channel_index(spec: dict[str, Any], pruned: dict[str, Any]) -> torch.Tensor:
    """Indices of the supernet head's input channels that the pruned net keeps."""
    idx, start = [], 0
    for b, w in enumerate(spec["widths"]):
        if spec["stages"][-1]["inputs"][b]:
            if pruned["stages"][-1]["inputs"][b]:
                idx += list(range(start, start + w))
            start += w
    return torch.tensor(idx, dtype=torch.long)


def prune(model: HRNet, keep: Iterable[str]) -> HRNet:
    """A standalone :class:`HRNet` with only the live operations of ``keep`` and their blocks,
    carrying ``model``'s weights and alphas (it computes ``model(x, keep)`` exactly)."""
    spec = pruned_spec(model.spec, keep)
    small = HRNet(spec, model.num_points, learn_alphas=model.learn_alphas,
                  alphas=model.alpha_values(), in_channels=model.config["in_channels"])
    state = model.state_dict()
    own = small.state_dict()
    idx = head_channel_index(model.spec, spec)
    for k in own:
        v = state[k]
        if k.startswith("head.0.") and k.endswith("weight"):
            v = v[idx][:, idx]
        elif k.startswith("head.0.") and k.endswith("bias") or k.startswith("head.1.") and \
                v.ndim == 1:
            v = v[idx]
        elif k.startswith("head.3.weight"):
            v = v[:, idx]
        own[k] = v.clone()
    small.load_state_dict(own)
    return small.to(next(model.parameters()).device)


def threshold_keep(model: HRNet, threshold: float) -> set[str]:
    """The operations whose ``|alpha| >= threshold`` (the paper prunes those under it)."""
    return {k for k, v in model.alpha_values().items() if abs(v) >= threshold}


# ------------------------------------------------------------------------------------ factories
def hrsupernet(num_points: int = 68, **kw) -> HRNet:
    """HRSuperNet at the paper's widths (18/36/72/144, stem 64, ten stages, four MBConvs)."""
    return HRNet(supernet_spec(**kw), num_points)


def hrnetv2_w18(num_points: int = 68, learn_alphas: bool = False, **kw) -> HRNet:
    """HRNetV2-W18 with the facial-landmark head (the teacher; a supernet with alphas)."""
    return HRNet(hrnetv2_spec(**kw), num_points, learn_alphas=learn_alphas)


def tiny_supernet(num_points: int = 5, stages: int = 4, unit: str = "mbconv") -> HRNet:
    """A few-thousand-parameter HRSuperNet for tests (widths 2/4/8/16, stem 4)."""
    return HRNet(supernet_spec((2, 4, 8, 16), stem=4, stages=stages, units=1, unit=unit),
                 num_points)
