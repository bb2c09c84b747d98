"""Exact resume: what a training checkpoint holds besides the weights (optimiser, scheduler, counters,
torch's RNG states), reading it back, and refusing a resume with another configuration."""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from naflow_aug.checkpoints import TRAINING_FORMAT, read_training_checkpoint, state_sha256
from naflow_aug.runtime.configs import config_from_dict, config_to_dict
from naflow_aug.train.config import CHECKPOINT_NAME, TrainConfig

logger = logging.getLogger(__name__)

# what a resumed run may change: the length of the run and where it runs
_RESUMABLE_CHANGES = ("steps", "device", "num_workers", "threads")


@dataclass
class TrainProgress:
    """The counters a checkpoint carries: the step the run (re)starts at, the non-finite steps, the
    training seconds before this start, the running loss window and the best validation NLL."""

    start_step: int = 0
    nonfinite: int = 0
    elapsed: float = 0.0
    window: dict[str, Any] = field(default_factory=lambda: {"sum": 0.0, "n": 0})
    best: dict[str, Any] = field(default_factory=lambda: {"val_nll": math.inf, "step": -1})


def read_resume_state(config: TrainConfig, run_path: Path,
                      resume: bool) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(the checkpoint to resume from or None, the stored results when the run has already finished)."""
    ckpt_path = run_path / CHECKPOINT_NAME
    if not (resume and ckpt_path.exists()):
        return None, None
    state = read_training_checkpoint(ckpt_path)
    saved = config_from_dict(TrainConfig, state["config"], where=f"{ckpt_path} config")
    diffs = _config_differences(saved, config, ignore=_RESUMABLE_CHANGES)
    if diffs:
        raise ValueError(f"cannot resume {run_path} with a different configuration: {'; '.join(diffs)}")
    if (run_path / "results.json").is_file() and saved.steps == config.steps:
        logger.info("%s has finished; nothing to do", run_path)
        return state, json.loads((run_path / "results.json").read_text())
    return state, None


def restore(state: Mapping[str, Any], optimizer: torch.optim.Optimizer,
            scheduler: torch.optim.lr_scheduler.LRScheduler, device: torch.device) -> TrainProgress:
    """Load the optimiser, the scheduler and torch's RNG states of ``state``; its counters."""
    optimizer.load_state_dict(state["optimizer"])
    scheduler.load_state_dict(state["scheduler"])
    progress = TrainProgress(
        start_step=int(state["step"]),
        nonfinite=int(state["nonfinite"]),
        elapsed=float(state["elapsed"]),
        window=dict(state["window"]),
        best=dict(state["best"]),
    )
    _set_rng_state(state["rng"], device)
    return progress


def checkpoint_state(config: TrainConfig, model: nn.Module, optimizer: torch.optim.Optimizer,
                     scheduler: torch.optim.lr_scheduler.LRScheduler, device: torch.device,
                     progress: TrainProgress, step: int, elapsed_s: float) -> dict[str, Any]:
    """The training checkpoint after ``step`` steps (``checkpoint.pt``)."""
    return {
        "format": TRAINING_FORMAT,
        "step": step,
        "config": config_to_dict(config),
        "model_config": config_to_dict(model.config),
        "model": (model_state := model.state_dict()),
        "model_sha256": state_sha256(model_state),
        "optimizer": optimizer.state_dict(),
        "scheduler": scheduler.state_dict(),
        "rng": _rng_state(device),
        "nonfinite": progress.nonfinite,
        "elapsed": elapsed_s,
        "window": dict(progress.window),
        "best": dict(progress.best),
    }


def model_extra(config: TrainConfig, step: int) -> dict[str, Any]:
    """What a saved model records of the run that trained it."""
    return {"train": {"step": step, "preset": config.preset, "seed": config.seed, "data": config.data,
                      "split": config.split, "init": config.init}}


def _rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _config_differences(a: TrainConfig, b: TrainConfig, ignore: Sequence[str] = ()) -> list[str]:
    da, db = config_to_dict(a), config_to_dict(b)
    return [f"{k}: {da.get(k)!r} -> {db.get(k)!r}" for k in da if k not in ignore and da.get(k) != db.get(k)]
