"""Fast Deep Evolutionary 3D Diffusion Heat Maps (Fast DHM) and DHM, with the paper's ablations.

Sun, Shao, Xia & Fu, "Real-time Memory Efficient Large-pose Face Alignment via Deep
Evolutionary Network" (``shared/papers/fast_dhm_sun.txt``, called "the paper" below), extending DHM (Sun et al.,
BMVC 2018). Layout: the fast CNN plan -> blocks -> :class:`FastRecurrent` (Eq. 7) ->
:class:`FastDHM` -> the reduced VGG -> :class:`DHMNet` (Eq. 1-2, 4, Algorithm 1) -> factories.

Coordinates: crop pixels are 0-based with pixel centres at integers (the library convention,
:mod:`lmklib.data.heatmaps`); both models output ``[N, K, 2]`` points in *normalised crop
units* ``(x / S, y / S)``, so they share one loss. 3D shapes live in an image-like frame:
x right, y down, z away from the viewer, in crop pixels once posed.

**Fast DHM** (Sec. III-C, Fig. 2b, Fig. 4). The text does not spell out Fig. 2b; our reading:

* input ``cat(image, prior)``: the prior is fixed (``P = 3``: the mean-initialisation 3D DHM;
  ``P = 1``: a 2D Gaussian map of the mean landmarks, the "2D-RNN" ablation; ``P = 0``: none);
* stem: 3x3 conv, stride 2, ``C + P -> 16n``, BN, ReLU;
* depthwise-separable blocks (depthwise 3x3 stride s + BN + ReLU, pointwise 1x1 + BN + ReLU)
  with the plan ``(32n, 2), (64n, 2), (64n, 1), (128n, 2), (128n r, 1)``
  (:func:`fast_cnn_channels`; ``n`` = ``width``, "Fast DHM xn"; ``r`` = ``rnn_width``), so the
  features ``F_0`` are ``[128 n r, S/16, S/16]``. Convolutions before a BN have no bias.
* the fast recurrent module, ``T`` steps with shared weights (Eq. 7)::

      F_{t+1} = F_t + tanh(D_i (x) F_t + D_h (x) (W_hh (x) h_t) + b)
      h_0 = F_0,   h_{t+1} = tanh(...)  (the increment)

  ``D_i``, ``D_h`` depthwise 3x3 (padding 1), ``W_hh`` pointwise 1x1; Eq. 7's operator order
  ``D_h W_hh (x) h`` is read as "pointwise first, then depthwise". ``h_0 = F_0`` because "the
  output of the pointwise convolution layer is considered as the initial hidden state h0".
  The paper does not say what ``h_{t+1}`` is; we transplant the vanilla RNN of Eq. 4, whose new
  hidden state is the ``tanh`` output, i.e. the increment. One bias ``b`` (on ``D_i``) sits
  inside the ``tanh``; the other two convolutions have none (a second bias would be redundant).
* ``rnn_width`` ("recurrent module sizes", Fig. 7/8, on Fast DHM x2): the paper gives no
  definition; we widen the last pointwise layer by ``r``, so the recurrence runs on
  ``128 n r`` channels (the CNN's last width times ``r``).
* read-out: ``FC(flatten(F_T))`` -> ``2K``, added to the mean shape (the output is "the increment
  of locations", Sec. IV-C). The FC starts at zero, so the untrained net returns exactly the mean
  initialisation; the rest of the network receives gradient from the first update on, as with a
  zero-initialised residual branch.
* ``steps = 0`` is the "3D-CNN" ablation (a plain CNN, no recurrent parameters); ``P = 1`` the
  "2D-RNN" one (:data:`VARIANTS`).

**DHM** (Sec. III-B). A reduced VGG (four ``conv3x3 + BN + ReLU + maxpool2`` blocks of
``16w, 32w, 64w, 128w`` channels, ``S -> S/16``) reads ``cat(I, DHM(shape_t))``; its flattened
output is ``C_conv2`` of Eq. 4 and the vanilla RNN updates the 3DMM parameters::

      h_{t+1} = tanh(W_ih C_conv2(cat(I, DHM_t)) + W_hh h_t),   h_0 = 0
      q_{t+1} = q_t + W_ho h_{t+1},   q_0 = 0,   p = param_mean + param_std * q

(the paper writes ``p_{t+1} = p_t + W_ho h_t``, which with ``h_0 = 0`` would waste the first
step; we use the new state). ``W_ih`` carries the one bias, ``W_hh`` and ``W_ho`` none, and
``W_ho`` starts at zero (step 0 and the untrained output are the mean initialisation).
``p = [pose (12), p_id (n_id), p_exp (n_exp)]``: the pose is a 3x4 camera ``[sR | t]`` in crop
pixels (row-major), our stand-in for the paper's ``f, R, t_2d`` (Eq. 2); ``S = S_mean + E_id
p_id + E_exp p_exp`` (Eq. 1), the posed shape ``[sR | t] [S; 1]``, and its first two rows are the
weak-perspective projection (Eq. 2). The DHM is regenerated from the posed shape at every step
(Algorithm 1) by :func:`lmklib.data.heatmaps.diffusion_heatmaps`. By default its input is
detached (``detach_dhm``: the paper does not say): the map is a rendering of the current
estimate, like a cascade's re-cropped features, and gradients reach the parameters through the
``q`` chain and the hidden state.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from ..data.heatmaps import diffusion_heatmaps
from .layers import (ClearsDerived, ConvBNAct, DerivedCache, FastConv2d, MaxPool2x2, Plan,
                     conv_sources, depthwise_pair_hwc, fold_plan, foldable, inference,
                     run_plan, stem3x3)

VARIANTS: dict[str, dict] = {
    "fast_dhm": dict(prior_channels=3, steps=4),   # 3D DHM prior + fast recurrent module
    "3d_cnn": dict(prior_channels=3, steps=0),     # Sec. IV-C: the RNN replaced by a plain CNN
    "2d_rnn": dict(prior_channels=1, steps=4),     # Sec. IV-C: a 2D map of the mean landmarks
}
"""The paper's Fig. 5a settings as :class:`FastDHM` arguments (the prior maps themselves are
built by the paper module)."""


# --------------------------------------------------------------------------- fast CNN
def fast_cnn_channels(width: int = 1, rnn_width: int = 1) -> list[tuple[int, int]]:
    """The fast CNN's ``(channels, stride)`` plan: the first entry is the full 3x3 stem conv,
    the others the depthwise-separable blocks (depthwise stride ``s``, then pointwise to
    ``channels``). The strides multiply to 16; the last width is ``128 width rnn_width``."""
    w = int(width)
    return [(16 * w, 2), (32 * w, 2), (64 * w, 2), (64 * w, 1), (128 * w, 2),
            (128 * w * int(rnn_width), 1)]


def conv_bn_relu(cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1
                 ) -> nn.Sequential:
    """``conv (no bias, 'same' padding) -> BN -> ReLU``."""
    return ConvBNAct(nn.Conv2d(cin, cout, kernel, stride, kernel // 2, groups=groups, bias=False),
                     nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class SeparableBlock(nn.Sequential):
    """Depthwise 3x3 (stride ``stride``) + BN + ReLU, then pointwise 1x1 + BN + ReLU
    (Sec. III-C1; MobileNet's block)."""

    def __init__(self, cin: int, cout: int, stride: int = 1):
        super().__init__(conv_bn_relu(cin, cin, 3, stride, groups=cin),
                         conv_bn_relu(cin, cout, 1))


class FastRecurrent(nn.Module):
    """One step of Eq. 7 on ``[N, C, H, W]`` features, weights shared across steps.

    ``forward(f, h) -> (f + inc, inc)`` with ``inc = tanh(d_i(f) + d_h(w_hh(h)))``: ``d_i`` and
    ``d_h`` depthwise 3x3 (padding 1; ``d_i`` holds the module's only bias), ``w_hh`` pointwise.
    """

    def __init__(self, channels: int):
        super().__init__()
        c = channels
        self.d_i = FastConv2d(c, c, 3, padding=1, groups=c, bias=True)
        self.w_hh = FastConv2d(c, c, 1, bias=False)
        self.d_h = FastConv2d(c, c, 3, padding=1, groups=c, bias=False)

    def forward(self, f: torch.Tensor, h: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        inc = self.d_i(f).add_(self.d_h(self.w_hh(h))).tanh_()
        return f + inc, inc


def _as_float(t) -> torch.Tensor | None:
    return None if t is None else torch.as_tensor(t, dtype=torch.float32)


def _check_input(x: torch.Tensor, channels: int, size: int) -> None:
    if x.dim() != 4 or x.shape[1] != channels or tuple(x.shape[-2:]) != (size, size):
        raise ValueError(f"expected input [N, {channels}, {size}, {size}], got {list(x.shape)}")


class _FastPlan(NamedTuple):
    """Fast DHM's whole inference, prepared once (:meth:`FastDHM.forward`)."""

    stem_w: torch.Tensor            # the stem's folded weights on the image channels
    stem_b: torch.Tensor            # [O, S/2, S/2]: its folded bias plus its conv of the prior
    stride: int
    layers: list                    # (Plan, act) of the separable blocks
    # the recurrent module, channels-last: D_i, D_h tap-major [9, C] and D_i's bias as numpy
    # arrays (depthwise_pair_hwc), W_hh transposed [C, C]; None without steps
    recurrent: tuple | None
    fc_w: torch.Tensor              # [2K, D], its columns in channels-last order
    fc_b: torch.Tensor              # [2K, 1]: the FC's bias plus the mean shape


class FastDHM(ClearsDerived, nn.Module):
    """Fast DHM (Sec. III-C): ``[image, prior maps]`` -> depthwise-separable CNN (Fig. 2b) ->
    fast recurrent module (Eq. 7), ``T`` steps -> FC -> K landmarks (module docstring).

    Args:
        prior: optional float ``[P, S, S]``, the fixed maps stacked on the image (``P = 3``: the
            mean-initialisation 3D DHM; ``P = 1``: a 2D Gaussian map of the mean landmarks, the
            "2D-RNN" ablation). A buffer; without it ``prior_channels`` zero maps are made (to
            be filled by ``load_state_dict``).
        mean: optional ``[K, 2]``, the initial landmarks in normalised crop units
            ``(x / S, y / S)``; output = ``mean + FC(F_T)``. A buffer; default all 0.5 (the
            crop centre), to be filled by ``load_state_dict``.
        n_points: K (checked against ``mean`` when both are given).
        prior_channels: P (0 = no prior; derived from ``prior`` when only that is given).
        in_channels: image channels (3).
        size: input side S (a multiple of 16; the FC sees ``(S/16)^2`` positions).
        width: channel multiplier n of "Fast DHM xn" (:func:`fast_cnn_channels`).
        steps: T recurrent steps; 0 = no recurrent module (the "3D-CNN" ablation).
        rnn_width: the recurrence runs on ``rnn_width`` times the CNN's last width (our reading
            of Fig. 7/8's "recurrent module sizes").
    ``forward(x)``: ``x`` ``[N, C, S, S]`` float, already standardised -> ``[N, K, 2]``
    normalised crop units. ``config`` holds every argument but the tensors, so
    ``FastDHM(**config)`` + ``load_state_dict`` rebuilds a saved model.

    Inference (eval mode, no autograd, CPU float32; :meth:`forward`) runs one prepared plan of
    the whole network instead of its modules: the BNs folded, the prior's share of the stem
    convolution and the FC's bias plus the mean shape computed once, kept until a parameter,
    buffer or module changes. The same function, its float sums ordered differently.
    """

    def __init__(self, prior: torch.Tensor | None = None, mean: torch.Tensor | None = None, *,
                 n_points: int | None = None, prior_channels: int | None = None,
                 in_channels: int = 3, size: int = 64, width: int = 1, steps: int = 4,
                 rnn_width: int = 1):
        super().__init__()
        if size % 16 or size <= 0:
            raise ValueError(f"size must be a positive multiple of 16, got {size}")
        if width < 1 or rnn_width < 1 or steps < 0:
            raise ValueError(f"need width >= 1, rnn_width >= 1, steps >= 0; got {width}, "
                             f"{rnn_width}, {steps}")
        prior_t = _as_float(prior)
        if prior_t is not None and (prior_t.dim() != 3 or tuple(prior_t.shape[1:]) != (size, size)):
            raise ValueError(f"prior must be [P, {size}, {size}], got {list(prior_t.shape)}")
        p = prior_t.shape[0] if prior_t is not None else (prior_channels or 0)
        if prior_channels is not None and p != prior_channels:
            raise ValueError(f"prior has {p} channels, prior_channels says {prior_channels}")
        mean_t = _as_float(mean)
        if mean_t is not None and (mean_t.dim() != 2 or mean_t.shape[1] != 2):
            raise ValueError(f"mean must be [K, 2], got {list(mean_t.shape)}")
        k = mean_t.shape[0] if mean_t is not None else (n_points or 68)
        if n_points is not None and k != n_points:
            raise ValueError(f"mean has {k} points, n_points says {n_points}")
        # the arguments, to rebuild the network from a model card (FastDHM(**config))
        self.config = dict(n_points=k, prior_channels=p, in_channels=in_channels, size=size,
                           width=width, steps=steps, rnn_width=rnn_width)
        self.n_points, self.in_channels, self.size, self.steps = k, in_channels, size, steps
        self.register_buffer("prior", prior_t.clone() if prior_t is not None
                             else torch.zeros(p, size, size))
        self.register_buffer("mean", mean_t.clone() if mean_t is not None
                             else torch.full((k, 2), 0.5))

        plan = fast_cnn_channels(width, rnn_width)
        layers: list[nn.Module] = [conv_bn_relu(in_channels + p, plan[0][0], 3, plan[0][1])]
        for (cin, _), (cout, stride) in zip(plan[:-1], plan[1:]):
            layers.append(SeparableBlock(cin, cout, stride))
        self.cnn = nn.Sequential(*layers)
        c = plan[-1][0]
        self.recurrent = FastRecurrent(c) if steps > 0 else None
        self.fc = nn.Linear(c * (size // 16) ** 2, 2 * k)
        nn.init.zeros_(self.fc.weight)   # untrained output = the mean initialisation
        nn.init.zeros_(self.fc.bias)
        self._fast = DerivedCache()

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """``F_0`` ``[N, 128 n r, S/16, S/16]``: the CNN on ``cat(x, prior)``."""
        _check_input(x, self.in_channels, self.size)
        if self.prior.shape[0]:
            prior = self.prior.to(x.dtype).expand(x.shape[0], -1, -1, -1)
            x = torch.cat([x, prior], 1)
        return self.cnn(x)

    def steps_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """``[F_0, ..., F_T]``, the features after each recurrent step (Eq. 7)."""
        f = self.features(x)
        out, h = [f], f
        for _ in range(self.steps):
            f, h = self.recurrent(f, h)
            out.append(f)
        return out

    def read_out(self, f: torch.Tensor) -> torch.Tensor:
        """``mean + FC(flatten(f))`` -> ``[N, K, 2]`` normalised crop units."""
        return self.mean + self.fc(f.flatten(1)).view(-1, self.n_points, 2)

    def steps_points(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The FC read-out of ``F_0 .. F_T`` (T + 1 tensors ``[N, K, 2]``; Fig. 3); the last is
        :meth:`forward`."""
        return [self.read_out(f) for f in self.steps_features(x)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = None if self.training else self._inference(x)
        if y is not None:
            return y
        f = self.features(x)
        h = f
        for _ in range(self.steps):
            f, h = self.recurrent(f, h)
        return self.read_out(f)

    # ------------------------------------------------------------------ inference fast path
    # At batch 1 this network does ~7 MFLOP; run module by module, its per-call costs (module
    # calls, per-layer cache checks) took longer than the arithmetic (issue #15). The model
    # checks one cache for all its tensors and runs the plans back to back.
    def _convs(self) -> list | None:
        """``(conv, bn, act)`` of every convolution in order (the CNN's, then the recurrent
        module's d_i, w_hh, d_h), read from the modules' dicts; None when a module is not the
        kind built here (replaced by a caller)."""
        convs = []
        for block in self.cnn._modules.values():
            for layer in (block._modules.values() if type(block) is SeparableBlock
                          else (block,)):
                if type(layer) is not ConvBNAct:
                    return None
                mods = layer._modules
                convs.append((mods["0"], mods["1"], layer._act))
        if self.steps:
            if type(self.recurrent) is not FastRecurrent:
                return None
            rec = self.recurrent._modules
            for name in ("d_i", "w_hh", "d_h"):
                if type(rec[name]) is not FastConv2d:
                    return None
                convs.append((rec[name], None, None))
        return convs

    def _inference(self, x: torch.Tensor) -> torch.Tensor | None:
        """:meth:`forward` by the prepared plan, or None where it does not apply (autograd,
        tracing, a BN in training mode, a module replaced, a tensor off the CPU or not
        float32): the modules then run."""
        if x.dtype != torch.float32 or x.device.type != "cpu":
            return None
        convs = self._convs()
        if convs is None or not all(foldable(c, bn) for c, bn, _ in convs):
            return None
        fc, buffers = self.fc._parameters, self._buffers
        sources = [t for c, bn, _ in convs for t in conv_sources(c, bn)]
        sources += [fc["weight"], fc["bias"], buffers["prior"], buffers["mean"]]
        if not inference(x, *sources):
            return None
        _check_input(x, self.in_channels, self.size)
        plan: _FastPlan | None = self._fast.get(sources, lambda: self._prepare(convs))
        if plan is None:
            return None
        f = stem3x3(x, plan.stem_w, plan.stem_b, plan.stride, "relu")
        for layer, act in plan.layers:
            f = run_plan(f, layer, act)
        n, c = f.shape[:2]
        f = f.permute(0, 2, 3, 1).contiguous()          # [N, H, W, C] from here on
        if plan.recurrent is not None:                  # Eq. 7
            d_i, d_h, b_i, w_hh = plan.recurrent
            h = f
            for _ in range(self.steps):
                g = torch.mm(h.view(-1, c), w_hh).view(f.shape)
                h = depthwise_pair_hwc(f, g, d_i, d_h, b_i).tanh_()
                f = f + h
        if n == 1:       # (a matrix-vector product: a third faster than the row form here)
            out = torch.addmm(plan.fc_b, plan.fc_w, f.view(-1, 1))
        else:
            out = torch.addmm(plan.fc_b.view(-1), f.view(n, -1), plan.fc_w.t())
        return out.view(n, self.n_points, 2)

    def _prepare(self, convs: list) -> _FastPlan | None:
        """The plan of :meth:`_inference`; None when a layer was replaced by one of another
        geometry (the stem is a 3x3 convolution with padding 1, Eq. 7's are those of
        :class:`FastRecurrent`)."""
        plans = [(fold_plan(c, bn), act) for c, bn, act in convs]

        def taps(plan: Plan):                      # [C, 1, 3, 3] -> tap-major [9, C]
            return plan.w.view(-1, 9).t().contiguous().numpy()
        n_blocks = len(plans) - (3 if self.steps else 0)
        stem, act = plans[0]
        if act != "relu" or stem.kind != "conv" or stem.w.shape[2:] != (3, 3) \
                or stem.geometry[1:] != ((1, 1), (1, 1), 1) or len(set(stem.geometry[0])) != 1:
            return None
        c = self.in_channels
        with torch.inference_mode(False), torch.no_grad():
            # the prior is fixed: its share of the (linear) stem convolution is a constant map
            stem_b = F.conv2d(self.prior[None], stem.w[:, c:], stem.b, stem.geometry[0], 1)[0] \
                if self.prior.shape[0] else stem.b
            fc_b = (self.fc.bias.detach() + self.mean.reshape(-1)).view(-1, 1)
            w = self.fc.weight.detach()
            channels = plans[n_blocks - 1][0].w.shape[0]
            fc_w = w.view(w.shape[0], channels, -1).transpose(1, 2).reshape(w.shape[0], -1)
        recurrent = None
        if self.steps:
            (d_i, _), (w_hh, _), (d_h, _) = plans[n_blocks:]
            if (d_i.kind, w_hh.kind, d_h.kind) != ("dw3x3", "1x1", "dw3x3") or d_i.b is None \
                    or d_h.b is not None or w_hh.b is not None \
                    or d_i.geometry[0] != (1, 1) or d_h.geometry[0] != (1, 1):
                return None
            recurrent = (taps(d_i), taps(d_h), d_i.b.numpy(), w_hh.w.t().contiguous())
        return _FastPlan(stem.w[:, :c].contiguous(), stem_b.contiguous(), stem.geometry[0][0],
                         plans[1:n_blocks], recurrent, fc_w.contiguous(), fc_b.contiguous())


# --------------------------------------------------------------------------- DHM
def reduced_vgg(in_channels: int, width: int = 1) -> nn.Sequential:
    """Four ``conv3x3 (no bias) + BN + ReLU + maxpool2`` blocks, ``16w, 32w, 64w, 128w``
    channels: ``[N, C, S, S] -> [N, 128w, S/16, S/16]``."""
    layers: list[nn.Module] = []
    cin = in_channels
    for c in (16 * width, 32 * width, 64 * width, 128 * width):
        layers += [conv_bn_relu(cin, c, 3), MaxPool2x2()]
        cin = c
    return nn.Sequential(*layers)


POSE_PARAMS = 12
"""The pose part of ``p``: a 3x4 camera ``[sR | t]`` in crop pixels, row-major."""


class DHMNet(nn.Module):
    """DHM (Sec. III-B, Sun et al. BMVC 2018): a reduced-VGG CNN on ``[image, DHM_t]`` and a
    vanilla RNN (Eq. 4) updating 3DMM parameters whose projected points are the output
    (Eq. 1-2); the DHM is regenerated from the current shape at every step (Algorithm 1).

    Args:
        shape_mean: ``[K, 3]`` mean shape S_mean (x right, y down, z away from the viewer).
        id_basis: ``[K, 3, n_id]`` identity basis E_id.
        exp_basis: ``[K, 3, n_exp]`` expression basis E_exp.
        param_mean, param_std: ``[12 + n_id + n_exp]``; ``p = param_mean + param_std * q``,
            the network works on ``q`` (``q_0 = 0``: the mean initialisation). ``p[:12]`` is
            the ``[sR | t]`` camera in crop pixels, row-major.
        (All five are buffers; left out, placeholders of the right shape are made (zeros, std
        ones) to be filled by ``load_state_dict``.)
        n_points, n_id, n_exp: K and the basis sizes (checked against the tensors when given).
        in_channels: image channels (3); the CNN reads ``in_channels + 3``.
        size: input side S (a multiple of 16).
        width: the reduced VGG's channel multiplier.
        hidden: the RNN state size.
        steps: T recurrent steps.
        sigma: the DHM's Gaussian standard deviation in pixels (the paper: 1).
        detach_dhm: feed the DHM without gradient (default; the paper does not say).
    ``forward(x)``: ``[N, C, S, S]`` standardised -> ``[N, K, 2]`` normalised crop units
    (posed x, y over S). ``config`` holds every argument but the tensors.
    """

    def __init__(self, shape_mean: torch.Tensor | None = None,
                 id_basis: torch.Tensor | None = None, exp_basis: torch.Tensor | None = None,
                 param_mean: torch.Tensor | None = None, param_std: torch.Tensor | None = None,
                 *, n_points: int | None = None, n_id: int | None = None,
                 n_exp: int | None = None, in_channels: int = 3, size: int = 64,
                 width: int = 1, hidden: int = 256, steps: int = 4, sigma: float = 1.0,
                 detach_dhm: bool = True):
        super().__init__()
        if size % 16 or size <= 0:
            raise ValueError(f"size must be a positive multiple of 16, got {size}")

        def given(t, axis, name, value, default):
            if t is None:
                return value if value is not None else default
            n = t.shape[axis]
            if value is not None and value != n:
                raise ValueError(f"{name} has {n} along axis {axis}, the argument says {value}")
            return n

        shape_mean, id_basis, exp_basis = map(_as_float, (shape_mean, id_basis, exp_basis))
        param_mean, param_std = _as_float(param_mean), _as_float(param_std)
        k = given(shape_mean, 0, "shape_mean", n_points, 68)
        n_id = given(id_basis, 2, "id_basis", n_id, 40)
        n_exp = given(exp_basis, 2, "exp_basis", n_exp, 10)
        n_params = POSE_PARAMS + n_id + n_exp
        shapes = {"shape_mean": (k, 3), "id_basis": (k, 3, n_id), "exp_basis": (k, 3, n_exp),
                  "param_mean": (n_params,), "param_std": (n_params,)}
        tensors = {"shape_mean": shape_mean, "id_basis": id_basis, "exp_basis": exp_basis,
                   "param_mean": param_mean, "param_std": param_std}
        for name, want in shapes.items():
            t = tensors[name]
            if t is not None and tuple(t.shape) != want:
                raise ValueError(f"{name} must be {list(want)}, got {list(t.shape)}")
            fill = torch.ones(want) if name == "param_std" else torch.zeros(want)
            self.register_buffer(name, t.clone() if t is not None else fill)
        # the arguments, to rebuild the network from a model card (DHMNet(**config))
        self.config = dict(n_points=k, n_id=n_id, n_exp=n_exp, in_channels=in_channels,
                           size=size, width=width, hidden=hidden, steps=steps,
                           sigma=float(sigma), detach_dhm=bool(detach_dhm))
        self.n_points, self.n_id, self.n_exp, self.n_params = k, n_id, n_exp, n_params
        self.in_channels = in_channels
        self.size, self.steps, self.sigma, self.detach_dhm = size, steps, sigma, detach_dhm

        self.cnn = reduced_vgg(in_channels + 3, width)
        flat = 128 * width * (size // 16) ** 2
        self.w_ih = nn.Linear(flat, hidden)                  # the one bias inside the tanh
        self.w_hh = nn.Linear(hidden, hidden, bias=False)
        self.w_ho = nn.Linear(hidden, n_params, bias=False)
        nn.init.zeros_(self.w_ho.weight)                     # untrained output = mean init

    def params(self, q: torch.Tensor) -> torch.Tensor:
        """``p = param_mean + param_std * q`` ``[N, 12 + n_id + n_exp]``."""
        return self.param_mean + self.param_std * q

    def posed_shape(self, q: torch.Tensor) -> torch.Tensor:
        """``[sR | t] (S_mean + E_id p_id + E_exp p_exp)`` (Eq. 1-2) -> ``[N, K, 3]`` crop px;
        ``[..., :2]`` is the weak-perspective projection."""
        p = self.params(q)
        pid = p[:, POSE_PARAMS:POSE_PARAMS + self.id_basis.shape[2]]
        pexp = p[:, POSE_PARAMS + self.id_basis.shape[2]:]
        shape = (self.shape_mean + torch.einsum("kdi,ni->nkd", self.id_basis, pid)
                 + torch.einsum("kde,ne->nkd", self.exp_basis, pexp))
        cam = p[:, :POSE_PARAMS].view(-1, 3, 4)
        return shape @ cam[:, :, :3].transpose(1, 2) + cam[:, None, :, 3]

    def diffusion_maps(self, posed: torch.Tensor) -> torch.Tensor:
        """The 3D DHM ``[N, 3, S, S]`` of posed shapes ``[N, K, 3]`` (crop px)."""
        if self.detach_dhm:
            posed = posed.detach()
        return diffusion_heatmaps(posed[..., :2], posed, self.size, self.sigma)

    def steps_shapes(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Algorithm 1: the posed shapes ``[N, K, 3]`` (crop px) of steps ``0 .. T`` (step 0 the
        mean initialisation)."""
        _check_input(x, self.in_channels, self.size)
        n = x.shape[0]
        q = x.new_zeros(n, self.n_params)
        h = x.new_zeros(n, self.w_hh.in_features)
        shapes = [self.posed_shape(q)]
        for _ in range(self.steps):
            dhm = self.diffusion_maps(shapes[-1]).to(x.dtype)
            phi = self.cnn(torch.cat([x, dhm], 1)).flatten(1)
            h = torch.tanh(self.w_ih(phi) + self.w_hh(h))
            q = q + self.w_ho(h)
            shapes.append(self.posed_shape(q))
        return shapes

    def steps_points(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The projected points of steps ``0 .. T`` (T + 1 tensors ``[N, K, 2]``, normalised
        crop units); the last is :meth:`forward`."""
        return [s[..., :2] / self.size for s in self.steps_shapes(x)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.steps_shapes(x)[-1][..., :2] / self.size


# --------------------------------------------------------------------------- factories
def fast_dhm(width: int = 1, variant: str = "fast_dhm", **kw) -> FastDHM:
    """``fast_dhm(2)`` = "Fast DHM x2"; ``variant`` one of :data:`VARIANTS`; ``kw`` override
    (e.g. ``prior=``, ``mean=``, ``size=``)."""
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {list(VARIANTS)}, got {variant!r}")
    return FastDHM(**{**VARIANTS[variant], "width": width, **kw})


def fast_dhm_tiny(**kw) -> FastDHM:
    """A 32-px, two-step Fast DHM (3-channel prior unless ``prior`` is given) for smoke runs
    and tests."""
    base = dict(size=32, width=1, steps=2) if "prior" in kw else dict(
        size=32, width=1, steps=2, prior_channels=3)
    return FastDHM(**{**base, **kw})


def dhm_tiny(**kw) -> DHMNet:
    """A 32-px, two-step DHM with a 32-unit RNN and small bases, for smoke runs and tests."""
    return DHMNet(**{**dict(size=32, width=1, hidden=32, steps=2), **kw})
