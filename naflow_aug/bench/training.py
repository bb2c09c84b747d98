"""Training one denoiser: Adam + MSE on random-patch batches, per-epoch validation and checkpoints,
resumable from the last checkpoint; DDP under torchrun."""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from naflow_aug.bench.batches import Batch
from naflow_aug.bench.presets import BenchPreset
from naflow_aug.denoisers.dncnn import DnCNN, checkpoint_name, latest_checkpoint
from naflow_aug.runs import RunDir, atomic_torch_save
from naflow_aug.runtime.distributed import current_context
from naflow_aug.runtime.seeding import epoch_generator

log = logging.getLogger(__name__)


def make_dncnn(preset: BenchPreset) -> DnCNN:
    """The preset's DnCNN; with ``zero_init_last`` the last conv starts at zero (the network starts as
    the identity, so a short CPU run learns to remove noise instead of first undoing a random init)."""
    model = DnCNN(preset.dncnn)
    if preset.zero_init_last:
        last = model.model[-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
    return model


def train_denoiser(
    model: nn.Module,
    batches: Callable[[torch.Generator], Batch],
    preset: BenchPreset,
    run: RunDir | str | os.PathLike,
    *,
    validate: Callable[[nn.Module], Mapping[str, float]] | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    desc: str = "train",
) -> nn.Module:
    """Train ``model`` (noisy -> clean) with Adam + MSE for ``preset.epochs`` x ``preset.steps_per_epoch``.

    ``batches(generator) -> (noisy, clean)``. Each epoch ends with ``validate(model)`` (every
    ``val_every`` epochs and at the last one; logged to ``metrics.jsonl``) and a checkpoint
    ``checkpoint_G3_<epoch>.pth`` (``epoch``, ``model_state_dict``, ``optimizer_state_dict``) in ``run``;
    a later call resumes from the last one. Under torch.distributed (torchrun) the model is wrapped in
    DDP, every rank draws its own batches and rank 0 validates and writes. Returns the trained model.
    """
    run = run if isinstance(run, RunDir) else RunDir(run)
    ctx = current_context()
    rank, world = ctx.rank, ctx.world
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=preset.lr)
    start = _resume(model, optimizer, run, rank)
    if start >= preset.epochs:
        return model.eval()
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device] if device.type == "cuda" else None
        )
    for epoch in range(start + 1, preset.epochs + 1):
        record = _train_epoch(
            net, optimizer, batches, preset, epoch, rank=rank, device=device, progress=progress, desc=desc
        )
        if rank == 0:
            if validate is not None and (epoch % preset.val_every == 0 or epoch == preset.epochs):
                record.update({f"val_{k}": v for k, v in validate(model).items()})
            run.log(record)
            _save_checkpoint(model, optimizer, run.path, epoch, keep=preset.keep_checkpoints)
            log.info("%s epoch %d: %s", desc, epoch, record)
        ctx.barrier()
    return model.eval()


def _resume(model: nn.Module, optimizer: torch.optim.Optimizer, run: RunDir, rank: int) -> int:
    """Load the last checkpoint of ``run`` into ``model`` and ``optimizer``; its epoch (0: none)."""
    found = latest_checkpoint(run.path)
    if found is None:
        return 0
    path, start = found
    state = torch.load(path, map_location="cpu", weights_only=True)
    model.load_state_dict(state["model_state_dict"], strict=True)
    if "optimizer_state_dict" in state:
        optimizer.load_state_dict(state["optimizer_state_dict"])
    log.info("resuming %s from %s (epoch %d)", run.path, path.name, start)
    if rank == 0:
        run.truncate_log(lambda r: r.get("epoch", 0) <= start)
    return start


def _train_epoch(
    net: nn.Module,
    optimizer: torch.optim.Optimizer,
    batches: Callable[[torch.Generator], Batch],
    preset: BenchPreset,
    epoch: int,
    *,
    rank: int,
    device: torch.device,
    progress: bool,
    desc: str,
) -> dict[str, Any]:
    """The steps of 1-based ``epoch``; returns its log record (mean loss, learning rate, seconds)."""
    for group in optimizer.param_groups:
        group["lr"] = preset.lr_at(epoch)
    generator = epoch_generator(preset.seed, epoch, rank)
    net.train()
    t0 = time.perf_counter()
    total, count = torch.zeros((), dtype=torch.float64, device=device), 0  # summed on the device
    bar = tqdm(
        range(preset.steps_per_epoch),
        desc=f"{desc} {epoch}/{preset.epochs}",
        disable=not progress or rank != 0,
        leave=False,
    )
    for _ in bar:
        noisy, clean = batches(generator)
        noisy, clean = noisy.to(device, non_blocking=True), clean.to(device, non_blocking=True)
        loss = F.mse_loss(net(noisy), clean)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        total, count = total + loss.detach(), count + 1  # the loss stays on the device
        if not bar.disable and count % 50 == 1:  # a read-back stalls a GPU: not on every step
            bar.set_postfix(loss=f"{float(total) / count:.2e}")
    return {
        "epoch": epoch,
        "step": epoch * preset.steps_per_epoch,
        "loss": float(total) / max(count, 1),
        "lr": preset.lr_at(epoch),
        "epoch_seconds": round(time.perf_counter() - t0, 3),
    }


def _save_checkpoint(
    model: nn.Module, optimizer: torch.optim.Optimizer, directory: Path, epoch: int, *, keep: int
) -> None:
    """``checkpoint_G3_<epoch>.pth`` (written atomically); only the last ``keep`` are kept."""
    state = {
        "epoch": epoch,
        "model_state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer_state_dict": optimizer.state_dict(),
    }
    atomic_torch_save(state, directory / checkpoint_name(epoch))
    _prune_checkpoints(directory, keep)


def _prune_checkpoints(directory: Path, keep: int) -> None:
    found = sorted(p for p in directory.glob("checkpoint_G3_*.pth") if re.search(r"_\d{8}\.pth$", p.name))
    for p in found[:-keep]:
        p.unlink(missing_ok=True)
