"""One small training loop shared by the paper notebooks.

``fit`` is seeded per epoch: at the start of epoch ``e`` every random generator (Python, NumPy,
torch, and the data loader's own generator if it has one) is reseeded from ``(seed, e)``. An epoch
therefore draws the same shuffling, augmentation and dropout whether the run started at epoch 0 or
resumed from a checkpoint written after epoch ``e - 1``, which is what makes resume exact.

The checkpoint (written atomically after every epoch) holds the model, optimizer and scheduler
states, the finished epoch, the history so far, the seed and an optional tag naming the
profile/config; it is read with ``weights_only=True``. A resume checks the file before using it:
another seed or tag, or weights of another architecture, raise a one-line ``ValueError`` naming the
file and the mismatch instead of silently mixing two runs.
"""

from __future__ import annotations

import io
import random
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import numpy as np
import torch
from torch import nn

from .reports import atomic_write_bytes

LossOutput = "torch.Tensor | tuple[torch.Tensor, Mapping[str, float]]"


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def epoch_seed(seed: int, epoch: int) -> int:
    """The seed of one epoch: distinct per (seed, epoch), stable across runs and resumes."""
    return int(np.random.SeedSequence([seed, epoch]).generate_state(1)[0])


def to_device(batch: Any, device: str | torch.device) -> Any:
    """Move every tensor inside a (nested) batch to ``device``."""
    if isinstance(batch, torch.Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, Mapping):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def save_checkpoint(path: str | Path, state: dict) -> None:
    buf = io.BytesIO()
    torch.save(state, buf)
    atomic_write_bytes(path, buf.getvalue())


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu") -> dict:
    """Load a checkpoint written by :func:`save_checkpoint` (``weights_only=True``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint not found: {path}")
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as e:  # a truncated or foreign file: say which one
        raise ValueError(f"{path}: not a readable lmklib checkpoint ({e})") from None


def _shorten(names: list[str], limit: int = 5) -> str:
    shown = ", ".join(names[:limit])
    return shown + (f" (+{len(names) - limit} more)" if len(names) > limit else "")


def load_model_state(model: nn.Module, state: Mapping[str, Any], source: str | Path) -> None:
    """``model.load_state_dict(state)``, but a state of another architecture raises a one-line
    ``ValueError`` naming ``source`` (the checkpoint file) and what differs: keys the model has
    and the file lacks, keys the file has and the model lacks, tensors of another shape."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} in the file, {tuple(own[k].shape)} in the model"
              for k in own if k in state and hasattr(state[k], "shape")
              and tuple(state[k].shape) != tuple(own[k].shape)]
    problems = [f"{what}: {_shorten(names)}" for what, names in
                (("missing keys", missing), ("unexpected keys", unexpected),
                 ("shape mismatch", shapes)) if names]
    if problems:
        raise ValueError(f"{source}: checkpoint does not fit {type(model).__name__} "
                         f"({'; '.join(problems)})")
    model.load_state_dict(state)


def load_weights(model: nn.Module, path: str | Path,
                 map_location: str | torch.device = "cpu") -> nn.Module:
    """Load the model weights of a checkpoint written by :func:`fit` into ``model`` (checked as
    in :func:`load_model_state`) and return the model."""
    load_model_state(model, load_checkpoint(path, map_location)["model"], path)
    return model


def _check_resume(path: str | Path, state: Mapping[str, Any], seed: int, tag: str | None) -> None:
    """Refuse to continue a checkpoint written by another run: a different seed or tag."""
    for what, wanted in (("seed", seed), ("tag", tag)):
        stored = state.get(what)
        if stored != wanted:
            raise ValueError(f"{path}: checkpoint was written with {what} {stored!r}, this run "
                             f"asks for {what} {wanted!r} (delete the file to start afresh, or "
                             f"pass {what}={stored!r} to continue it)")


def channels_last(model: nn.Module) -> nn.Module:
    """``model`` with its weights in channels-last memory, for training on a CPU: oneDNN then
    runs the convolutions (the depthwise ones above all) without layout conversions, and their
    outputs follow the weights' layout. Measured on two CPU cores, a training step: SD-HRNet's
    quick student at batch 16, 96 px, 155-195 ms -> 123-131, its teacher 345-372 -> 279-315,
    its supernet 330-359 -> 277-294; Fast DHM at batch 50, 64 px, x1 23.5 -> 20.0 ms, x2
    52 -> 44 ms. The same outputs to float rounding. The modules and parameters stay the same
    objects (an optimizer built before or after sees them)."""
    return model.to(memory_format=torch.channels_last)


def make_scheduler(opt: torch.optim.Optimizer, kind: str, epochs: int, steps_per_epoch: int,
                   milestones=(), gamma: float = 0.5, reset_lr: float | None = None):
    """``(scheduler, when it steps)`` for :func:`fit`: ``"constant"`` (none), ``"onecycle"`` (per
    batch, peaking at each group's rate), ``"multistep"`` (x ``gamma`` at the ``milestones``
    epochs), ``"reset"`` (each group's rate set to ``reset_lr`` from the first milestone epoch on,
    as Fast DHM's "after 60 epochs, the learning rate is reset to 0.00001")."""
    if kind == "constant":
        return None, "epoch"
    if kind == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=[g["lr"] for g in opt.param_groups],
            total_steps=max(1, epochs * steps_per_epoch)), "batch"
    if kind == "multistep":
        return torch.optim.lr_scheduler.MultiStepLR(opt, list(milestones), gamma), "epoch"
    if kind == "reset":
        if reset_lr is None or not milestones:
            raise ValueError("schedule 'reset' needs reset_lr and a milestone epoch")
        at = int(list(milestones)[0])
        factors = [reset_lr / g["lr"] for g in opt.param_groups]
        return torch.optim.lr_scheduler.LambdaLR(
            opt, [lambda e, f=f: 1.0 if e < at else f for f in factors]), "epoch"
    raise ValueError(f"schedule must be constant, onecycle, multistep or reset, got {kind!r}")


def fit(model: nn.Module, train_loader: Iterable, loss_fn: Callable[[nn.Module, Any], Any],
        optimizer: torch.optim.Optimizer, epochs: int, *, scheduler: Any = None,
        scheduler_step: str = "epoch", val_fn: Callable[[nn.Module], Mapping[str, float]] | None = None,
        seed: int = 0, device: str | torch.device = "cpu", checkpoint: str | Path | None = None,
        tag: str | None = None, progress: bool = True, desc: str = "train",
        grad_clip: float | None = None, stop_after: int | None = None) -> "pd.DataFrame":
    """Train ``model`` for ``epochs`` epochs and return the per-epoch history.

    Args:
        loss_fn: ``loss_fn(model, batch)`` returning the loss, or ``(loss, {name: float})`` for
            extra per-batch metrics (averaged over the epoch into the history).
        scheduler_step: call ``scheduler.step()`` after every ``"batch"`` or every ``"epoch"``.
        val_fn: ``val_fn(model) -> {name: float}``, called in eval mode without gradients after
            each epoch; its values are stored as ``val_<name>``.
        checkpoint: file to resume from (when it exists) and to save to after every epoch. A file
            written with another ``seed`` or ``tag``, or for another architecture, raises
            ``ValueError`` naming the file and the mismatch.
        tag: names the profile/config of the run (e.g. ``"smoke"``); stored in the checkpoint and
            required to match on resume.
        stop_after: end after this many epochs of the current call (to simulate a killed run).
    Returns:
        DataFrame with one row per epoch: ``epoch``, ``train_loss``, batch metrics, ``val_*``,
        ``lr``, ``seconds``.
    """
    import pandas as pd
    from tqdm.auto import tqdm

    if scheduler_step not in ("epoch", "batch"):
        raise ValueError(f"scheduler_step must be 'epoch' or 'batch', got {scheduler_step!r}")
    model.to(device)
    history: list[dict] = []
    start_epoch = 0
    if checkpoint is not None and Path(checkpoint).is_file():
        state = load_checkpoint(checkpoint, device)
        _check_resume(checkpoint, state, seed, tag)
        load_model_state(model, state["model"], checkpoint)
        try:
            optimizer.load_state_dict(state["optimizer"])
            if scheduler is not None and state.get("scheduler") is not None:
                scheduler.load_state_dict(state["scheduler"])
        except (ValueError, KeyError, RuntimeError) as e:   # another optimizer or schedule
            raise ValueError(f"{checkpoint}: optimizer/scheduler state does not fit this run "
                             f"({' '.join(str(e).split())})") from None
        start_epoch, history = int(state["epoch"]) + 1, list(state["history"])

    bar = tqdm(range(start_epoch, epochs), desc=desc, disable=not progress, leave=False)
    for done, epoch in enumerate(bar):
        if stop_after is not None and done >= stop_after:
            break
        s = epoch_seed(seed, epoch)
        seed_everything(s)
        generator = getattr(train_loader, "generator", None)
        if isinstance(generator, torch.Generator):
            generator.manual_seed(s)
        model.train()
        t0, total, count, sums = time.perf_counter(), 0.0, 0, {}
        for batch in train_loader:
            out = loss_fn(model, to_device(batch, device))
            loss, extras = (out if isinstance(out, tuple) else (out, {}))
            if not torch.isfinite(loss):
                raise FloatingPointError(f"{desc}: loss became {loss.item()} at epoch {epoch}")
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            if grad_clip is not None:
                nn.utils.clip_grad_norm_(model.parameters(), grad_clip)
            optimizer.step()
            if scheduler is not None and scheduler_step == "batch":
                scheduler.step()
            total, count = total + float(loss.detach()), count + 1
            for k, v in extras.items():
                sums[k] = sums.get(k, 0.0) + float(v)
        if scheduler is not None and scheduler_step == "epoch":
            scheduler.step()
        row = {"epoch": epoch, "train_loss": total / max(count, 1),
               **{k: v / max(count, 1) for k, v in sums.items()}}
        if val_fn is not None:
            model.eval()
            with torch.no_grad():
                row.update({f"val_{k}": float(v) for k, v in val_fn(model).items()})
        row["lr"] = float(optimizer.param_groups[0]["lr"])
        row["seconds"] = time.perf_counter() - t0
        history.append(row)
        bar.set_postfix(loss=f"{row['train_loss']:.4g}")
        if checkpoint is not None:
            save_checkpoint(checkpoint, {
                "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "epoch": epoch, "history": history, "seed": seed, "tag": tag})
    return pd.DataFrame(history)


@torch.no_grad()
def predict(model: nn.Module, loader: Iterable, fn: Callable[[nn.Module, Any], torch.Tensor],
            device: str | torch.device = "cpu") -> torch.Tensor:
    """Concatenate ``fn(model, batch)`` over a loader, in eval mode, on the CPU."""
    model.eval()
    return torch.cat([fn(model, to_device(b, device)).cpu() for b in loader])
