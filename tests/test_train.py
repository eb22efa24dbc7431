"""The shared training loop: determinism and exact resume."""

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from lmklib import train


def make_run(tmp_path, name):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(64, 6, generator=g)
    y = x @ torch.randn(6, 2, generator=g)
    loader = DataLoader(TensorDataset(x, y), batch_size=8, shuffle=True)
    torch.manual_seed(123)
    model = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2))
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sched = torch.optim.lr_scheduler.StepLR(opt, step_size=3, gamma=0.5)

    def loss_fn(m, batch):
        xb, yb = batch
        loss = nn.functional.mse_loss(m(xb), yb)
        return loss, {"abs": float((m(xb) - yb).abs().mean().detach())}

    def val_fn(m):
        return {"mse": float(nn.functional.mse_loss(m(x), y))}

    kwargs = dict(scheduler=sched, val_fn=val_fn, seed=7, checkpoint=tmp_path / f"{name}.pt",
                  progress=False)
    return model, loader, loss_fn, opt, kwargs


def test_history_columns_and_learning(tmp_path):
    model, loader, loss_fn, opt, kw = make_run(tmp_path, "a")
    hist = train.fit(model, loader, loss_fn, opt, 6, **kw)
    assert list(hist["epoch"]) == list(range(6))
    assert {"train_loss", "abs", "val_mse", "lr", "seconds"} <= set(hist.columns)
    assert hist["val_mse"].iloc[-1] < hist["val_mse"].iloc[0]
    assert hist["lr"].tolist() == pytest.approx([0.05] * 2 + [0.025] * 3 + [0.0125])


def test_resume_after_kill_gives_identical_weights(tmp_path):
    m1, l1, f1, o1, kw1 = make_run(tmp_path, "straight")
    train.fit(m1, l1, f1, o1, 6, **kw1)

    # "killed" after 2 epochs ...
    m2, l2, f2, o2, kw2 = make_run(tmp_path, "resumed")
    train.fit(m2, l2, f2, o2, 6, stop_after=2, **kw2)
    # ... restarted in a fresh process-like state (new model, optimizer, scheduler, RNG noise)
    torch.manual_seed(999)
    m3, l3, f3, o3, kw3 = make_run(tmp_path, "resumed")
    hist = train.fit(m3, l3, f3, o3, 6, **kw3)
    assert list(hist["epoch"]) == list(range(6))
    for (n, a), b in zip(m1.state_dict().items(), m3.state_dict().values()):
        assert torch.equal(a, b), n


def test_same_seed_same_numbers(tmp_path):
    h = []
    for name in ("x", "y"):
        model, loader, loss_fn, opt, kw = make_run(tmp_path, name)
        h.append(train.fit(model, loader, loss_fn, opt, 3, **kw)["train_loss"].tolist())
    assert h[0] == h[1]


def test_corrupt_checkpoint_is_named(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(ValueError, match="bad.pt"):
        train.load_checkpoint(bad)
    with pytest.raises(FileNotFoundError, match="missing.pt"):
        train.load_checkpoint(tmp_path / "missing.pt")


def test_nan_loss_stops_with_a_message(tmp_path):
    model = nn.Linear(2, 1)
    loader = [(torch.tensor([[float("nan"), 0.0]]), torch.zeros(1, 1))]
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    with pytest.raises(FloatingPointError, match="epoch 0"):
        train.fit(model, loader, lambda m, b: nn.functional.mse_loss(m(b[0]), b[1]), opt, 1,
                  progress=False)


def test_checkpoint_of_another_architecture_is_named(tmp_path):
    model, loader, loss_fn, opt, kw = make_run(tmp_path, "small")
    train.fit(model, loader, loss_fn, opt, 1, **kw)
    wider = nn.Sequential(nn.Linear(6, 32), nn.ReLU(), nn.Dropout(0.3), nn.Linear(32, 2))
    with pytest.raises(ValueError, match=r"small\.pt: checkpoint does not fit Sequential \("
                                         r"shape mismatch: 0\.weight \(16, 6\) in the file, "
                                         r"\(32, 6\) in the model, 0\.bias \(16,\)") as e:
        train.fit(wider, loader, loss_fn, torch.optim.SGD(wider.parameters(), lr=0.05), 2, **kw)
    assert "\n" not in str(e.value)
    deeper = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Dropout(0.3), nn.Linear(16, 2),
                           nn.ReLU(), nn.Linear(2, 2))
    with pytest.raises(ValueError, match=r"small\.pt: .*\(missing keys: 5\.weight, 5\.bias\)$"):
        train.load_weights(deeper, kw["checkpoint"])
    shallow = nn.Sequential(nn.Linear(6, 16))
    with pytest.raises(ValueError, match=r"small\.pt: .*\(unexpected keys: 3\.weight, 3\.bias\)$"):
        train.load_weights(shallow, kw["checkpoint"])
    same, *_ = make_run(tmp_path, "other")
    assert torch.equal(train.load_weights(same, kw["checkpoint"])[0].weight, model[0].weight)


def test_resume_with_another_seed_or_tag_is_refused(tmp_path):
    model, loader, loss_fn, opt, kw = make_run(tmp_path, "tagged")   # seed 7
    train.fit(model, loader, loss_fn, opt, 3, tag="smoke", stop_after=1, **kw)
    assert train.load_checkpoint(kw["checkpoint"])["tag"] == "smoke"
    with pytest.raises(ValueError, match=r"tagged\.pt: checkpoint was written with seed 7, "
                                         r"this run asks for seed 8 "):
        train.fit(model, loader, loss_fn, opt, 3, tag="smoke", **{**kw, "seed": 8})
    with pytest.raises(ValueError, match=r"tagged\.pt: checkpoint was written with tag 'smoke', "
                                         r"this run asks for tag 'quick' "):
        train.fit(model, loader, loss_fn, opt, 3, tag="quick", **kw)
    with pytest.raises(ValueError, match=r"with tag 'smoke', this run asks for tag None"):
        train.fit(model, loader, loss_fn, opt, 3, **kw)
    hist = train.fit(model, loader, loss_fn, opt, 3, tag="smoke", **kw)   # the same run resumes
    assert list(hist["epoch"]) == [0, 1, 2]


def test_resume_with_another_optimizer_is_named(tmp_path):
    model, loader, loss_fn, opt, kw = make_run(tmp_path, "opt")
    train.fit(model, loader, loss_fn, opt, 1, **kw)
    head_only = torch.optim.SGD(model[3].parameters(), lr=0.05)
    with pytest.raises(ValueError, match=r"opt\.pt: optimizer/scheduler state does not fit"):
        train.fit(model, loader, loss_fn, head_only, 2, **{**kw, "scheduler": None})


def test_reset_schedule_sets_the_rate_at_the_milestone():
    from lmklib.train import make_scheduler

    opt = torch.optim.Adam([torch.nn.Parameter(torch.zeros(1))], lr=5e-3)
    sched, when = make_scheduler(opt, "reset", 4, 10, (2,), reset_lr=1e-5)
    assert when == "epoch"
    rates = []
    for _ in range(4):
        rates.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert rates == pytest.approx([5e-3, 5e-3, 1e-5, 1e-5])
    with pytest.raises(ValueError, match="reset_lr"):
        make_scheduler(opt, "reset", 4, 10, ())


def test_channels_last_keeps_the_modules_and_lays_conv_weights_out_channels_last():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 3 * 3, 2))
    params = list(model.parameters())
    assert train.channels_last(model) is model
    assert all(a is b for a, b in zip(model.parameters(), params))   # an optimizer sees them
    w = model[0].weight
    assert w.is_contiguous(memory_format=torch.channels_last) and not w.is_contiguous()
    x = torch.randn(2, 3, 5, 5)
    assert model(x).shape == (2, 2)
