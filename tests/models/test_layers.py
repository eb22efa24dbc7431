import pytest
import torch
import torch.nn.functional as F

from lmklib.models.layers import MaxPool2x2, max_pool2x2


@pytest.mark.parametrize("shape", [(1, 1, 4, 4), (2, 3, 7, 9), (3, 16, 94, 94)])
@pytest.mark.parametrize("channels_last", [False, True])
def test_inference_pool_equals_aten(shape, channels_last):
    torch.manual_seed(0)
    x = torch.randn(*shape)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        assert torch.equal(max_pool2x2(x), F.max_pool2d(x, 2))


def test_too_small_map_is_atens_error():
    with torch.no_grad(), pytest.raises(RuntimeError, match="too small"):
        max_pool2x2(torch.zeros(1, 5, 1, 3))


def test_known_answer_and_nan():
    x = torch.tensor([[[[1., 5., 2., 0., 9.],
                        [3., 4., float("nan"), 1., 9.],
                        [7., 0., 8., 6., 9.]]]])
    with torch.no_grad():
        y = max_pool2x2(x)
    assert y.shape == (1, 1, 1, 2)                   # odd rows and columns are dropped, as ATen
    assert y[0, 0, 0, 0] == 5 and torch.isnan(y[0, 0, 0, 1])


def test_training_keeps_atens_gradient():
    # ties: ATen gives the whole gradient to one element of a window, torch.maximum would split it
    x = torch.zeros(1, 1, 2, 2, requires_grad=True)
    MaxPool2x2()(x).sum().backward()
    assert sorted(x.grad.flatten().tolist()) == [0.0, 0.0, 0.0, 1.0]
