"""lmklib.export: every model family to ONNX, run by onnxruntime against torch on a fixture batch
of synthetic faces (3 faces, then 1: the batch axis is dynamic). Known answers: the outputs agree
to 1e-5 (float32 sums taken in another order; pixel outputs, up to 96, to 4 float32 steps at 96),
and a binary convolution, integers times one scale, exactly."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

pytest.importorskip("onnxruntime")
pytest.importorskip("onnx")                    # torch's exporter writes the graph with it

from lmklib.data.synthetic import generate
from lmklib.export import max_difference, run_onnx, to_onnx
from lmklib.models import kaggle as K
from lmklib.models.acn import MODES, AConv2d, acn_net, binarize
from lmklib.models.ccnn import CCNN, CCNNConfig, canonical_frame
from lmklib.models.cpm import CPM

TOL = 1e-5
TOL_PX = 4 * float(np.spacing(np.float32(K.IMAGE_SIZE)))      # 3.1e-5 px: 4 float32 steps at 96


pytestmark = pytest.mark.usefixtures("one_thread")


def faces(size: int, scheme: str, gray: bool = False, n: int = 3
          ) -> tuple[torch.Tensor, torch.Tensor]:
    """Synthetic faces: uint8 images ``[n, C, size, size]`` and their points ``[n, K, 2]`` px."""
    d = generate(n, size=size, seed=0, scheme=scheme, grayscale=gray)
    images = torch.from_numpy(d["images"])
    images = images.permute(0, 3, 1, 2) if images.dim() == 4 else images[:, None]
    return images.contiguous(), torch.from_numpy(d["landmarks"]).float()


def standardised(images: torch.Tensor) -> torch.Tensor:
    """Each image to zero mean, unit standard deviation (what the ACN notebook feeds)."""
    x = images.float()
    return (x - x.mean((1, 2, 3), keepdim=True)) / (x.std((1, 2, 3), keepdim=True) + 1.0)


def names(path) -> tuple[list[str], list[str]]:
    """The graph's input and output names."""
    import onnx

    graph = onnx.load(str(path)).graph
    return [i.name for i in graph.input], [o.name for o in graph.output]


def assert_exports(model: torch.nn.Module, tmp_path, *batch: torch.Tensor, tol: float = TOL,
                   example: tuple[torch.Tensor, ...] | None = None) -> None:
    """Export with ``example`` (default: the family's, a batch of one), check the graph, then
    compare onnxruntime with torch on ``batch`` (3 faces) and on its first face alone."""
    import onnx

    path = to_onnx(model.eval(), tmp_path / "model.onnx", example=example)
    onnx.checker.check_model(str(path))
    for inputs in (batch, tuple(x[:1] for x in batch)):
        diff = max_difference(model, path, *inputs)
        assert diff <= tol, (len(inputs[0]), diff)


# --------------------------------------------------------------------------- CCNN
@pytest.mark.parametrize("relative", [True, False], ids=["windows+", "windows-"])
def test_ccnn_cascade_exports_whole(tmp_path, relative):
    torch.manual_seed(0)
    model = CCNN(CCNNConfig(relative=relative)).eval()
    images, _ = faces(80, "cuhk5")
    frames = canonical_frame(80, 0.25).expand(3, 4).clone()
    absolute = torch.tensor([[0.2, 0.1, 0.5, 0.5]] * 3)              # windows- only
    batch = (images, frames) if relative else (images, frames, absolute)
    assert_exports(model, tmp_path, *batch)
    assert names(tmp_path / "model.onnx") == (["images", "frames", "absolute"][:len(batch)],
                                              ["stage1", "stage2", "stage3"])


# --------------------------------------------------------------------------- ACN
@pytest.mark.parametrize("structure", ["20-40-60-80", "20-20-40-40-60-60-80-80"])
@pytest.mark.parametrize("mode", MODES)
def test_acn_landmark_net_every_mode(tmp_path, mode, structure):
    torch.manual_seed(0)
    images, _ = faces(39, "cuhk5", gray=True)
    assert_exports(acn_net(structure, mode), tmp_path, standardised(images))


def test_binary_convolution_is_exact(tmp_path):
    """A 1-bit AConv: integers (+-1 inputs and kernels) times the layer's one scale, plus the
    bias; onnxruntime gives the same bits unless its graph rewrites fold the scale into the
    kernel (then 1e-5). Any module exports when given an example."""
    torch.manual_seed(0)
    conv = AConv2d(8, 16, 3, binarize_input=True).eval()
    x = torch.randn(3, 8, 12, 12)
    path = to_onnx(conv, tmp_path / "aconv.onnx", example=(x[:1],))
    with torch.no_grad():
        ref = conv(x)
        counts = F.conv2d(binarize(x), binarize(conv.weight))
        scaled = counts * conv.amplitude.mean() + conv.bias.view(1, -1, 1, 1)
    assert torch.equal(counts, counts.round()) and torch.equal(ref, scaled)   # the premise
    assert np.array_equal(run_onnx(path, x, optimize=False)[0], ref.numpy())
    assert np.abs(run_onnx(path, x)[0] - ref.numpy()).max() <= TOL


# --------------------------------------------------------------------------- CPM
@pytest.mark.parametrize("mode", MODES)
def test_cpm_every_mode(tmp_path, mode):
    torch.manual_seed(0)
    model = CPM(68, mode, (4, 4, 8, 8), stage_channels=8, stages=3, stage_kernel=3)
    images, _ = faces(64, "ibug68")
    assert_exports(model, tmp_path, standardised(images))
    assert names(tmp_path / "model.onnx") == (["image"], ["heatmaps1", "heatmaps2", "heatmaps3"])


# --------------------------------------------------------------------------- Kaggle
@pytest.mark.parametrize("name", sorted(K.MODELS))
def test_kaggle_every_factory(tmp_path, name):
    torch.manual_seed(0)
    model = K.init_weights(K.MODELS[name]())
    images, points = faces(96, "kaggle15", gray=True)
    x = K.Normalisation.paper().images(images)
    if name.startswith("refiner"):                       # pixel estimates ~2 px off the truth
        centres = points + 2 * torch.randn(points.shape, generator=torch.Generator().manual_seed(0))
        assert_exports(model, tmp_path, x, centres, tol=TOL_PX)
    else:
        assert_exports(model, tmp_path, x)


def test_kaggle_cascade(tmp_path):
    torch.manual_seed(0)
    model = K.CascadeCNN(K.init_weights(K.cnn()), K.init_weights(K.refiner()),
                         K.Normalisation.paper())
    images, _ = faces(96, "kaggle15", gray=True)
    assert_exports(model, tmp_path, K.Normalisation.paper().images(images))
    assert names(tmp_path / "model.onnx") == (["image"], ["points"])


# --------------------------------------------------------------------------- refusals
def test_refuses_a_model_in_training_mode(tmp_path):
    with pytest.raises(ValueError, match=r"^to_onnx: LandmarkNet is in training mode; call "
                                         r"model\.eval\(\) first$"):
        to_onnx(acn_net("20-40-60-80", "acn"), tmp_path / "net.onnx")
    assert not (tmp_path / "net.onnx").exists()


def test_unknown_model_needs_an_example(tmp_path):
    with pytest.raises(ValueError, match=r"^to_onnx: unknown model Bilinear \(known: CCNN, "
                                         r"LandmarkNet, .*\); pass example= to export it$"):
        to_onnx(torch.nn.Bilinear(2, 2, 1).eval(), tmp_path / "x.onnx")


@pytest.mark.parametrize("family", ["fast_dhm", "3d_cnn", "2d_rnn", "dhm"])
def test_fast_dhm_and_dhm(tmp_path, family):
    from lmklib.models.fast_dhm import dhm_tiny, fast_dhm

    torch.manual_seed(0)
    model = dhm_tiny() if family == "dhm" else fast_dhm(1, family, size=32, steps=2)
    for p in model.parameters():              # the read-outs start at zero: give them weights
        if p.dim() == 2:
            torch.nn.init.normal_(p, std=0.01)
    size = model.config["size"]
    assert_exports(model, tmp_path, torch.randn(3, 3, size, size))


# --------------------------------------------------------------------------- HRNet
def tiny_hrnet(pruned: bool):
    """A tiny HRSuperNet (stages 2 and 3) with alphas away from 1, or the slimmed net pruned
    from it: the whole last-stage branch 3 (every ``s3b3f*``) and one more operation gone."""
    from lmklib.models import hrnet

    torch.manual_seed(0)
    model = hrnet.tiny_supernet(num_points=68, stages=3)
    with torch.no_grad():
        for a in model.alphas.values():
            a.uniform_(0.2, 1.5)
    if pruned:
        keep = {n for n in model.alpha_values() if not n.startswith("s3b3f") and n != "s3b0f2"}
        model = hrnet.prune(model, keep)
        assert model.spec["stages"][-1]["inputs"][3] == [] and model.out_branches == [0, 1, 2]
        assert "s3b0f2" not in model.alphas and isinstance(model.alphas["s3b0f1"],
                                                           torch.nn.Parameter)
    return model.eval()


@pytest.mark.parametrize("pruned", [False, True], ids=["supernet", "slimmed"])
def test_hrnet(tmp_path, pruned):
    """Exported with an explicit example (2 faces at 64 px), run on 3 faces and on 1."""
    model = tiny_hrnet(pruned)
    images, _ = faces(64, "ibug68")
    x = standardised(images)
    assert_exports(model, tmp_path, x, example=(x[:2],))
    assert names(tmp_path / "model.onnx") == (["image"], ["heatmaps"])


def test_hrnet_default_example(tmp_path):
    """The default example: a batch of one at the SD-HRNet quick profile's 96 px."""
    import onnx

    model = tiny_hrnet(pruned=False)
    images, _ = faces(96, "ibug68")
    x = standardised(images)
    assert_exports(model, tmp_path, x)
    image = onnx.load(str(tmp_path / "model.onnx")).graph.input[0]
    assert [d.dim_param or d.dim_value for d in image.type.tensor_type.shape.dim] == \
        ["batch", 3, 96, 96]
    assert run_onnx(tmp_path / "model.onnx", x)[0].shape == (3, 68, 24, 24)
