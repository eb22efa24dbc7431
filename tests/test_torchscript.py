"""lmklib.export.to_torchscript: the traced and frozen graph gives the eager model's outputs
(to 1e-5: the traced graph max-pools with ATen's kernel, eager with strided maxima, the same
values) on a batch of 3 and of 1 (the batch axis is dynamic), survives torch.jit.save / load,
and refuses what to_onnx refuses. Runs without the ONNX extra."""

from __future__ import annotations

import pytest
import torch

from lmklib.export import to_torchscript
from lmklib.models.ccnn import CCNN, CCNNConfig, canonical_frame

TOL = 1e-5

pytestmark = pytest.mark.usefixtures("one_thread")


def assert_same(model: torch.nn.Module, *batch: torch.Tensor, example=None) -> None:
    """The graph's inputs are the model's forward's, but a CCNN's ``absolute`` (windows-) comes
    third, where ``CCNN.forward`` has ``stages``."""
    scripted = to_torchscript(model.eval(), example=example)
    eager = (lambda *x: model(x[0], x[1], 3, *x[2:])) if isinstance(model, CCNN) else model
    for inputs in (batch, tuple(x[:1] for x in batch)):
        with torch.inference_mode():
            ref, got = eager(*inputs), scripted(*inputs)
        ref = list(ref) if isinstance(ref, (list, tuple)) else [ref]
        got = list(got) if isinstance(got, (list, tuple)) else [got]
        assert [g.shape for g in got] == [r.shape for r in ref]
        diff = max(float((g - r).abs().max()) for g, r in zip(got, ref))
        assert diff <= TOL, (len(inputs[0]), diff)


@pytest.mark.parametrize("relative", [True, False], ids=["windows+", "windows-"])
def test_ccnn_cascade(relative):
    torch.manual_seed(0)
    model = CCNN(CCNNConfig(relative=relative))
    images = torch.randint(0, 256, (3, 3, 80, 80), dtype=torch.uint8)
    frames = canonical_frame(80, 0.25).expand(3, 4).clone()
    absolute = torch.tensor([[0.2, 0.1, 0.5, 0.5]] * 3)
    batch = (images, frames) if relative else (images, frames, absolute)
    assert_same(model, *batch)


def test_fast_dhm():
    from lmklib.models.fast_dhm import fast_dhm

    torch.manual_seed(0)
    model = fast_dhm(1, size=32, steps=2)
    for p in model.parameters():              # the read-outs start at zero: give them weights
        if p.dim() == 2:
            torch.nn.init.normal_(p, std=0.01)
    assert_same(model, torch.randn(3, 3, 32, 32))


def test_kaggle_cascade_with_an_explicit_example():
    from lmklib.data.synthetic import generate
    from lmklib.models import kaggle as K

    torch.manual_seed(0)
    model = K.CascadeCNN(K.init_weights(K.cnn_small()), K.init_weights(K.refiner()),
                         K.Normalisation.paper())
    # faces, as the models see them: on uniform noise the untrained refiner amplifies the
    # float32 reordering of eager's fast paths (C loops, channels-last batches) to ~2e-5
    faces = generate(3, size=K.IMAGE_SIZE, seed=0, scheme="kaggle15", grayscale=True)["images"]
    x = K.Normalisation.paper().images(torch.from_numpy(faces).permute(0, 3, 1, 2))
    assert_same(model, x, example=(x[:2],))


@pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")
def test_save_load_round_trip(tmp_path):
    torch.manual_seed(0)
    model = CCNN()
    scripted = to_torchscript(model.eval())
    torch.jit.save(scripted, str(tmp_path / "ccnn.pt"))
    loaded = torch.jit.load(str(tmp_path / "ccnn.pt"))
    images = torch.randint(0, 256, (2, 3, 80, 80), dtype=torch.uint8)
    frames = canonical_frame(80, 0.25).expand(2, 4).clone()
    with torch.inference_mode():
        assert all(torch.equal(a, b) for a, b in zip(loaded(images, frames), scripted(images, frames)))


def test_refuses_training_mode_and_unknown_models():
    with pytest.raises(ValueError, match="to_torchscript: CCNN is in training mode"):
        to_torchscript(CCNN().train())
    with pytest.raises(ValueError, match="to_torchscript: unknown model Bilinear"):
        to_torchscript(torch.nn.Bilinear(2, 2, 1).eval())
