"""ONNX export of the models the notebooks reproduce, and onnxruntime to run the result.

One graph per model with a dynamic batch axis: the CCNN cascade whole (each stage's windows cut
by ``grid_sample`` where the previous stage put its points), every ACN and CPM mode, and the
Kaggle report's MLP, CNN, patch refiner and cascade, Fast DHM and DHM (its diffusion heat maps
regenerated inside the graph at every recurrent step), and every HRNet (HRSuperNet, a pruned or
slimmed S-HRNet, HRNetV2: its alphas, parameters or buffers, are constants of the graph, which
is the whole network's forward, ``keep=None``, never the masked supernet's). The graph is the
*inference* computation: the model must be in eval mode (no dropout, BatchNorm's running
statistics) and is traced under ``torch.no_grad()``, the branch in which
:class:`lmklib.models.acn.AConv2d` and :class:`~lmklib.models.acn.XNORConv2d` convolve exact
+-1 signs and scale afterwards (what the bit-packed path computes), not their straight-through
training branch.

Exporter: torch's TorchScript-based one (``torch.onnx.export(..., dynamo=False)``), deprecated
since PyTorch 2.9 but present in 2.14. It needs only the ``onnx`` package (the extra
``pip install -e ".[onnx]"``, with ``onnxruntime`` to run the graphs); the torch.export-based
default exports these models too but also needs ``onnxscript`` and ``onnx-ir``.

Graph inputs and outputs (N is the dynamic batch; other sizes are fixed by the example):

======================  =============================================  ==========================
model                   inputs                                         outputs
======================  =============================================  ==========================
ccnn.CCNN               ``images`` uint8 [N,3,S,S] canonical crops,    ``stage1``, ``stage2``,
                        ``frames`` [N,4] (+ ``absolute`` [N,4] for     ``stage3``: [N,5,2] box
                        windows-), as ``CCNN.forward``                 units
acn.LandmarkNet         ``image`` [N,C,39,39] standardised             ``points`` [N,K,2]
cpm.CPM                 ``image`` [N,C,H,W] standardised               ``heatmaps1`` .. one per
                                                                       stage, [N,K,H/4,W/4]
fast_dhm.FastDHM,       ``image`` [N,3,S,S] standardised (the prior    ``points`` [N,68,2]
DHMNet                  maps and the regenerated DHMs are inside)      normalised crop units
kaggle.MLP,             ``image`` [N,1,96,96], pixels / 256            ``points`` [N,30]
KeypointCNN, CascadeCNN                                                normalised
kaggle.PatchRefiner     ``image``, ``centres`` [N,15,2] pixels         ``points`` [N,15,2] pixels
hrnet.HRNet             ``image`` [N,C,S,S] standardised, S a          ``heatmaps``
                        multiple of 32                                 [N,K,S/4,S/4]
======================  =============================================  ==========================
"""

from __future__ import annotations

import importlib.util
import warnings
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch import nn

from .models.acn import LandmarkNet
from .models.ccnn import CCNN, canonical_frame
from .models.cpm import CPM
from .models.fast_dhm import DHMNet, FastDHM
from .models.hrnet import HRNet
from .models.kaggle import IMAGE_SIZE, MLP, CascadeCNN, KeypointCNN, PatchRefiner

OPSET = 17              # GridSample (the CCNN's windows, the refiner's patches) needs >= 16
# the default examples' sizes, the "quick" profiles': the CCNN's canonical crop (side in px,
# margin in box units on each side), a CPM's input side and an HRNet's (the SD-HRNet notebook's
# quick profile, lmklib.papers.sd_hrnet_lin2023: 96 px faces)
CCNN_CROP = (80, 0.25)
CPM_SIZE = 64
HRNET_SIZE = 96
FAMILIES = (CCNN, LandmarkNet, CPM, FastDHM, DHMNet, MLP, KeypointCNN, CascadeCNN, PatchRefiner,
            HRNet)


class _Cascade(nn.Module):
    """A CCNN whose inputs are the graph's: ``absolute`` (windows-) third, in place of
    ``CCNN.forward``'s ``stages`` (always 3: the graph gives every stage)."""

    def __init__(self, model: CCNN):
        super().__init__()
        self.model = model

    def forward(self, images, frames, absolute=None) -> list[torch.Tensor]:
        return self.model(images, frames, 3, absolute)


def _traced(model: nn.Module) -> nn.Module:
    """The module whose positional inputs are the graph's."""
    return _Cascade(model).eval() if isinstance(model, CCNN) else model


def _signature(model: nn.Module) -> tuple[tuple[str, ...], str, tuple[torch.Tensor, ...]]:
    """A family's input names, output name (numbered when there are several) and default
    example, a batch of one."""
    if isinstance(model, CCNN):
        size, margin = CCNN_CROP
        images = torch.zeros(1, 3, size, size, dtype=torch.uint8)
        frames = canonical_frame(size, margin)[None]
        if model.config.relative:
            return ("images", "frames"), "stage", (images, frames)
        absolute = torch.tensor([[0.0, 0.0, 1.0, 1.0]])              # the box is the image
        return ("images", "frames", "absolute"), "stage", (images, frames, absolute)
    if isinstance(model, LandmarkNet):
        c, s = model.config["in_channels"], model.input_size
        return ("image",), "points", (torch.zeros(1, c, s, s),)
    if isinstance(model, CPM):
        c = model.config["in_channels"]
        return ("image",), "heatmaps", (torch.zeros(1, c, CPM_SIZE, CPM_SIZE),)
    if isinstance(model, HRNet):                            # forward(x), keep=None: the whole net
        c = model.config["in_channels"]
        return ("image",), "heatmaps", (torch.zeros(1, c, HRNET_SIZE, HRNET_SIZE),)
    if isinstance(model, (FastDHM, DHMNet)):                # the image; the DHM is inside
        return ("image",), "points", (torch.zeros(1, model.config["in_channels"], model.config["size"],
                                                  model.config["size"]),)
    side = IMAGE_SIZE
    if isinstance(model, MLP):                             # its first layer reads side^2 pixels
        side = round(model.net[1].in_features ** 0.5)
    image = torch.zeros(1, 1, side, side)
    if isinstance(model, PatchRefiner):
        centres = torch.full((1, model.num_points, 2), (side - 1) / 2)   # the image centre
        return ("image", "centres"), "points", (image, centres)
    return ("image",), "points", (image,)


def _prepared(model: nn.Module, example: Sequence[torch.Tensor] | None, who: str
              ) -> tuple[nn.Module, tuple, tuple[str, ...], str]:
    """``(module to trace, example inputs, input names, output name)`` for ``model``, checked
    as :func:`to_onnx` documents (eval mode; a known family or an ``example``)."""
    name = type(model).__name__
    if model.training:
        raise ValueError(f"{who}: {name} is in training mode; call model.eval() first")
    if isinstance(model, FAMILIES):
        inputs, output, default = _signature(model)
    elif example is not None:
        inputs, output, default = tuple(f"input{i}" for i in range(len(example))), "output", ()
    else:
        raise ValueError(f"{who}: unknown model {name} (known: "
                         f"{', '.join(f.__name__ for f in FAMILIES)}); pass example= to export it")
    return _traced(model), tuple(default if example is None else example), inputs, output


def to_onnx(model: nn.Module, path: str | Path, example: Sequence[torch.Tensor] | None = None
            ) -> Path:
    """Write ``model`` (in eval mode) to ``path`` as an ONNX graph; returns the path.

    Args:
        model: one of the families of the module docstring, or any module when ``example`` is
            given (inputs named ``input0``, ``input1``, ..., outputs ``output``, numbered when
            there are several).
        path: the ``.onnx`` file to write (its folder is created).
        example: the forward's positional inputs, batch first. Their dtypes and non-batch sizes
            are fixed in the graph. A family's default is a batch of one at the notebooks' size
            (uint8 canonical crops of :data:`CCNN_CROP` for the CCNN, :data:`CPM_SIZE` for a
            CPM, :data:`HRNET_SIZE` for an HRNet; the Kaggle CNN's default assumes 96 px).
    Raises:
        ValueError: the model is in training mode, or is not of a known family and ``example``
            is missing.
        ModuleNotFoundError: the ``onnx`` package is not installed.
    """
    model, args, inputs, output = _prepared(model, example, "to_onnx")
    if importlib.util.find_spec("onnx") is None:
        raise ModuleNotFoundError('to_onnx needs the onnx package: pip install -e ".[onnx]"')
    with torch.no_grad():
        out = model(*args)
    n_out = len(out) if isinstance(out, (list, tuple)) else 1
    outputs = (output,) if n_out == 1 else tuple(f"{output}{i + 1}" for i in range(n_out))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        # The exporter is deprecated (chosen anyway: module docstring). Its tracer warns about
        # the constants every model has (window geometry, index lists, the image side): only
        # the batch is dynamic, and tests/test_export.py runs every graph at two batch sizes.
        # A strided slice it cannot fold is computed at run time instead: harmless.
        for message in ("You are using the legacy TorchScript", "The feature will be removed"):
            warnings.filterwarnings("ignore", message, DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", "Constant folding - Only steps=1", UserWarning)
        torch.onnx.export(model, args, str(path), dynamo=False, opset_version=OPSET,
                          input_names=list(inputs), output_names=list(outputs),
                          dynamic_axes={n: {0: "batch"} for n in inputs + outputs})
    return path


def to_torchscript(model: nn.Module, example: Sequence[torch.Tensor] | None = None
                   ) -> torch.jit.ScriptModule:
    """``model`` (in eval mode) traced and frozen as TorchScript: the same graph as
    :func:`to_onnx`'s (same inputs, same constants, the batch dynamic), run by torch without
    Python between the ops. At batch 1 a small network's time is mostly that per-op cost (the
    CCNN cascade's 23 nets are ~200 ops for ~34 MFLOP; ``benchmarks/bench_ccnn.py`` times both).
    ``torch.jit.save`` writes the result; ``torch.jit.load`` reads it without lmklib.

    Its inputs are the family's (the module docstring's table) or ``example``'s, whose dtypes
    and non-batch sizes are fixed in the graph as in :func:`to_onnx`."""
    traced, args, _, _ = _prepared(model, example, "to_torchscript")
    with warnings.catch_warnings(), torch.no_grad():
        for message in ("You are using the legacy TorchScript", "The feature will be removed"):
            warnings.filterwarnings("ignore", message, DeprecationWarning)
        warnings.filterwarnings("ignore", category=torch.jit.TracerWarning)
        warnings.filterwarnings("ignore", r"`torch\.jit\.\w+` is deprecated", FutureWarning)
        return torch.jit.freeze(torch.jit.trace(traced, args, check_trace=False).eval())


def onnx_session(path: str | Path, threads: int = 1, optimize: bool = True):
    """An onnxruntime session (CPU, ``threads`` threads) for the graph at ``path``, as a
    function ``(*inputs) -> [outputs]`` taking the graph's inputs positionally: load once, call
    many times (what a deployment, or a timing, does).

    ``optimize=False`` turns off onnxruntime's graph rewrites. Its defaults fold the scale of a
    binary convolution into the +-1 kernel (Conv-Mul fusion), so the sums are of +-scale, not
    the exact integers times the scale that torch (and the bit-packed path) computes."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = options.inter_op_num_threads = threads
    if not optimize:
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]

    def run(*inputs: torch.Tensor | np.ndarray) -> list[np.ndarray]:
        return session.run(None, {n: np.asarray(x) for n, x in zip(names, inputs)})

    return run


def run_onnx(path: str | Path, *inputs: torch.Tensor | np.ndarray, threads: int = 1,
             optimize: bool = True) -> list[np.ndarray]:
    """The outputs of the graph at ``path`` run by onnxruntime on the positional ``inputs``, in
    the graph's output order (a new :func:`onnx_session` for this one call)."""
    return onnx_session(path, threads, optimize)(*inputs)


def max_difference(model: nn.Module, path: str | Path, *inputs: torch.Tensor) -> float:
    """Largest absolute difference between ``model``'s outputs (torch, no grad) and those of
    its exported graph at ``path`` (onnxruntime) on the same ``inputs`` (the graph's)."""
    with torch.no_grad():
        ref = _traced(model)(*inputs)
    ref = list(ref) if isinstance(ref, (list, tuple)) else [ref]
    got = run_onnx(path, *inputs)
    if [g.shape for g in got] != [tuple(r.shape) for r in ref]:
        raise ValueError(f"{path}: the graph's outputs are {[g.shape for g in got]}, the "
                         f"model's {[tuple(r.shape) for r in ref]}")
    return max(float(np.abs(g - r.numpy()).max()) for g, r in zip(got, ref))
