"""Parameter counts, storage and FLOPs of small layers whose answers are known by hand."""

import pytest
import torch
from torch import nn

from lmklib import profile


def test_conv_and_linear_counts():
    conv = nn.Conv2d(3, 20, 4)          # 20*3*4*4 = 960 weights + 20 biases
    assert profile.count_parameters(conv) == 980
    assert profile.count_parameters(conv, biases=False) == 960
    net = nn.Sequential(conv, nn.ReLU(), nn.Flatten(), nn.Linear(10, 2))
    assert profile.count_parameters(net) == 980 + 22
    assert profile.count_parameters(net, biases=False) == 960 + 20
    assert profile.model_size_bytes(net) == (980 + 22) * 4


def test_parameter_table_lists_each_layer():
    net = nn.Sequential(nn.Conv2d(3, 20, 4, bias=False), nn.Linear(5, 7))
    table = profile.parameter_table(net, biases=False)
    assert table["params"].tolist() == [960, 35]


class Binary(nn.Linear):
    binary_weight_names = ("weight",)


def test_storage_bits_counts_binary_weights_as_one_bit():
    net = nn.Sequential(Binary(8, 4), nn.Linear(4, 2))
    # 32 binary weights (1 bit), 4 float biases, 8+2 float params of the second layer
    assert profile.storage_bits(net) == 32 * 1 + 4 * 32 + 10 * 32


def test_flops_of_known_layers():
    x = torch.zeros(1, 3, 39, 39)
    conv = nn.Conv2d(3, 20, 4)   # output 36x36, each output 3*4*4 MACs -> 2 FLOPs per MAC
    assert profile.flops(conv, x) == 2 * 20 * 36 * 36 * 3 * 4 * 4
    lin = nn.Linear(120, 10)
    assert profile.flops(lin, torch.zeros(5, 120)) == 2 * 5 * 120 * 10


def test_latency_restores_threads_and_reports_batch():
    before = torch.get_num_threads()
    lat = profile.latency(nn.Linear(4, 2), torch.zeros(8, 4), threads=1, warmup=1, runs=5)
    assert torch.get_num_threads() == before
    assert lat.batch == 8 and lat.runs == 5 and lat.p90_ms >= lat.median_ms > 0
    assert lat.per_item_ms == pytest.approx(lat.median_ms / 8)
    table = profile.latency_table(nn.Linear(4, 2), torch.zeros(1, 4), batch=4, threads=(1,),
                                  warmup=1, runs=3)
    assert table["batch"].tolist() == [1, 4]


def test_latency_restores_the_models_mode_and_device():
    model = nn.Sequential(nn.Linear(4, 2), nn.Dropout(0.5)).train()
    profile.latency(model, torch.zeros(2, 4), warmup=1, runs=2)
    assert model.training and next(model.parameters()).device.type == "cpu"
    assert profile.latency(nn.ReLU(), torch.zeros(2, 4), warmup=1, runs=2).runs == 2   # no weights


def test_latency_of_any_callable_with_several_inputs():
    calls = []
    lat = profile.latency(lambda a, b: calls.append((a.shape, b.shape, torch.is_grad_enabled())),
                          (torch.zeros(3, 2), torch.zeros(3, 5)), warmup=2, runs=4)
    assert calls == [((3, 2), (3, 5), False)] * 6          # warm-up + timed, without autograd
    assert lat.batch == 3 and lat.runs == 4
    assert profile.latency(lambda: None, (), warmup=0, runs=1).batch == 1   # no inputs


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_latency_on_the_gpu_moves_the_model_there_and_back():
    model = nn.Linear(4, 2)
    lat = profile.latency(model, torch.zeros(2, 4), warmup=1, runs=3, device="cuda")
    assert lat.runs == 3 and lat.median_ms > 0 and next(model.parameters()).device.type == "cpu"


def test_bound_ratio_counts_the_models_flops_and_pairs_the_blocks():
    conv = nn.Conv2d(3, 8, 3, padding=1)
    x = torch.randn(1, 3, 16, 16)
    threads = torch.get_num_threads()
    r = profile.bound_ratio(conv, (x,), blocks=3, runs=2)          # odd: medians are members
    assert r.mflop == 2 * 8 * 3 * 9 * 16 * 16 / 1e6                 # 0.110592
    assert r.bound_ms == pytest.approx(r.mflop * 1e6 / (r.gflops * 1e9) * 1e3, rel=1e-12)
    assert r.ratio > 0 and r.median_ms > 0 and torch.get_num_threads() == threads
    # a callable flops() cannot count (a TorchScript graph) takes its count from the caller
    graph = torch.jit.trace(conv, x)
    g = profile.bound_ratio(graph, (x,), blocks=3, runs=2, work=2 * r.mflop * 1e6)
    assert g.mflop == 2 * r.mflop and g.bound_ms == pytest.approx(
        g.mflop * 1e6 / (g.gflops * 1e9) * 1e3, rel=1e-12) and g.median_ms > 0
