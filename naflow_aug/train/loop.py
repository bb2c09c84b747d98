"""The training steps: loss, the finite check agreed by every rank, the optimiser step, logging,
validation and checkpoints at their intervals."""

from __future__ import annotations

import logging
import math
import time
import warnings
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from naflow_aug.checkpoints import save_checkpoint
from naflow_aug.runtime.distributed import DistContext
from naflow_aug.runtime.files import atomic_torch_save
from naflow_aug.runtime.rundir import RunDir
from naflow_aug.train.config import BEST_MODEL_NAME, CHECKPOINT_NAME, MODEL_NAME, TrainConfig
from naflow_aug.train.state import TrainProgress, checkpoint_state, model_extra
from naflow_aug.train.validation import ValSet, evaluate

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Raised when more training steps than ``TrainConfig.max_nonfinite`` had a non-finite loss."""


def _batch_loss(objective: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Mean NLL of a batch (bits per H*W pixel). A seam for tests."""
    return objective(batch["noisy"], batch["clean"], batch["labels"]).mean()


@dataclass
class Session:
    """One training run's live objects; rank 0 (``run`` set) writes checkpoints, models and logs."""

    config: TrainConfig
    run: RunDir | None
    run_path: Path
    model: nn.Module
    optimizer: torch.optim.Optimizer
    scheduler: torch.optim.lr_scheduler.LRScheduler
    device: torch.device
    progress: TrainProgress
    val: ValSet | None

    @property
    def ckpt_path(self) -> Path:
        return self.run_path / CHECKPOINT_NAME

    def save(self, step: int, elapsed_s: float) -> None:
        """``checkpoint.pt`` (everything an exact resume needs) and ``model.pt`` after ``step`` steps."""
        if self.run is None:
            return
        state = checkpoint_state(self.config, self.model, self.optimizer, self.scheduler, self.device,
                                 self.progress, step, elapsed_s)  # fmt: skip
        atomic_torch_save(state, self.ckpt_path)
        save_checkpoint(self.model, self.run_path / MODEL_NAME, extra=model_extra(self.config, step))

    def validate(self, step: int) -> dict[str, float]:
        """Held-out metrics, logged; ``model_best.pt`` when the NLL is the best so far."""
        if self.run is None or self.val is None or not self.val.noisy:
            return {}
        c, t = self.config, time.perf_counter()
        result = evaluate(self.model, self.val, samples=c.val_samples, cond_noise_std=c.cond_noise_std,
                          seed=c.seed, device=self.device)  # fmt: skip
        result = {f"val_{k}": v for k, v in result.items()}
        self.run.log({"step": step, "kind": "val", **result, "val_seconds": time.perf_counter() - t})
        logger.info("step %d validation: %s", step, ", ".join(f"{k} {v:.4f}" for k, v in result.items()))
        best = self.progress.best
        if result.get("val_nll", math.inf) < best["val_nll"]:
            best.update(val_nll=result["val_nll"], step=step)
            save_checkpoint(self.model, self.run_path / BEST_MODEL_NAME, extra=model_extra(c, step))
        return result


def run_steps(s: Session, loader: Iterable[dict[str, torch.Tensor]], objective: nn.Module,
              ddp: DistContext, *, show_progress: bool) -> dict[str, float]:
    """Steps ``start_step .. config.steps - 1``; returns the last logged training record."""
    config, start_step = s.config, s.progress.start_step
    bar = tqdm(total=config.steps, initial=start_step, disable=not (show_progress and ddp.main), desc="train",
               dynamic_ncols=True)  # fmt: skip
    last: dict[str, float] = {}
    t0 = time.perf_counter()
    t_window = t0
    try:
        for step, batch in zip(range(start_step, config.steps), loader, strict=False):
            batch = {k: v.to(s.device, non_blocking=True) for k, v in batch.items()}
            _train_step(s, objective, batch, step, ddp)
            done = step + 1
            bar.update(1)
            if done % config.log_every == 0 or done == config.steps:
                now = time.perf_counter()
                rate = (done - max(start_step, done - config.log_every)) / max(now - t_window, 1e-9)
                t_window = now
                last = _log_window(s, done, rate, s.progress.elapsed + now - t0)
                bar.set_postfix(loss=f"{last['loss']:.3f}", it_s=f"{rate:.2f}")
            is_val = config.val_every and done % config.val_every == 0 and done != config.steps
            if is_val:
                s.validate(done)
            if done % config.checkpoint_every == 0 and done != config.steps:
                s.save(done, s.progress.elapsed + time.perf_counter() - t0)
            if ddp.world > 1 and (is_val or done % config.checkpoint_every == 0):
                ddp.barrier()
    finally:
        bar.close()
    s.progress.elapsed += time.perf_counter() - t0
    return last


def _train_step(s: Session, objective: nn.Module, batch: Mapping[str, torch.Tensor], step: int,
                ddp: DistContext) -> None:
    """One optimiser step; a step whose loss or gradient is not finite (on any rank) is skipped."""
    config, progress, optimizer = s.config, s.progress, s.optimizer
    loss = _batch_loss(objective, batch)
    finite = ddp.all_min_(torch.isfinite(loss.detach()).to(torch.float32))
    optimizer.zero_grad(set_to_none=True)
    flag, loss_value = torch.stack([finite.to(loss.dtype), loss.detach()]).tolist()  # one GPU sync
    ok = flag > 0
    if ok:
        loss.backward()
        grads = [p.grad for p in s.model.parameters() if p.grad is not None]
        norm = torch.nn.utils.clip_grad_norm_(
            s.model.parameters(), config.grad_clip if config.grad_clip > 0 else math.inf
        ) if grads else torch.zeros(())
        ok = bool(torch.isfinite(norm))
        if ok:
            optimizer.step()
    if ok:
        window = progress.window
        window["sum"], window["n"] = window["sum"] + loss_value, window["n"] + 1
    else:
        progress.nonfinite += 1
        optimizer.zero_grad(set_to_none=True)
        logger.warning("step %d: non-finite loss or gradient, skipped (%d so far)", step, progress.nonfinite)
        if progress.nonfinite > config.max_nonfinite:
            raise NonFiniteLossError(
                f"training stopped at step {step}: {progress.nonfinite} steps had a non-finite loss or "
                f"gradient (max_nonfinite={config.max_nonfinite}); lower the learning rate or "
                f"check the data. The last good checkpoint is {s.ckpt_path}"
            )
    with warnings.catch_warnings():
        # a skipped first step leaves optimizer.step() uncalled; the schedule still counts it
        warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
        s.scheduler.step()


def _log_window(s: Session, done: int, rate: float, elapsed_s: float) -> dict[str, Any]:
    """The mean loss of the steps since the last log, the learning rates and the rate; the window restarts."""
    window = s.progress.window
    mean = window["sum"] / window["n"] if window["n"] else float("nan")
    groups = s.optimizer.param_groups
    last = {"loss": mean, "lr": groups[0]["lr"], "latent_lr": groups[1]["lr"],
            "nonfinite": s.progress.nonfinite, "it_s": rate}  # fmt: skip
    if s.run is not None:
        s.run.log({"step": done, "kind": "train", **last, "elapsed_s": elapsed_s})
    s.progress.window = {"sum": 0.0, "n": 0}
    return last

