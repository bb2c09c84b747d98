"""The train job: checks, the process group, resume, data, model, optimiser, the steps, the results."""

from __future__ import annotations

import logging
import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from naflow_aug.checkpoints import model_from_training_checkpoint, save_checkpoint
from naflow_aug.data.pairs import Pair
from naflow_aug.devices import check_device
from naflow_aug.runtime.distributed import DistContext, rank_device, setup_distributed
from naflow_aug.runtime.rundir import RunDir
from naflow_aug.runtime.seeding import build_seeded
from naflow_aug.train.batches import StepBatches
from naflow_aug.train.config import CHECKPOINT_NAME, MODEL_NAME, TrainConfig
from naflow_aug.train.loop import Session, run_steps
from naflow_aug.train.objective import Objective, Schedule, build_model, param_groups
from naflow_aug.train.pairs import read_pair, scan_pairs, split_training_pairs
from naflow_aug.train.prior_refit import refit_prior
from naflow_aug.train.state import TrainProgress, model_extra, read_resume_state, restore
from naflow_aug.train.validation import make_val_set

logger = logging.getLogger(__name__)


def train(config: TrainConfig, run_dir: str | os.PathLike, *, resume: bool = False,
          progress: bool = True) -> dict[str, Any]:
    """Train NAFlow as ``config`` says, writing ``run_dir``; returns the results (also ``results.json``).

    ``resume=True`` continues from ``run_dir/checkpoint.pt`` (starts fresh when there is none; returns
    the stored results when the run has finished). A resumed run may extend ``steps``; any other change
    of the configuration is refused. Raises :class:`NonFiniteLossError` when more than
    ``config.max_nonfinite`` steps had a non-finite loss.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if not config.data:
        raise ValueError("TrainConfig.data is empty: give the folder of (clean, noisy) pairs")
    if not Path(config.data).is_dir():
        raise ValueError(f"TrainConfig.data {config.data!r} is not a folder of (clean, noisy) pairs")
    check_device(config.device)
    run_path = Path(run_dir)
    ckpt_path = run_path / CHECKPOINT_NAME
    if not resume and ckpt_path.exists():
        raise ValueError(f"{run_path} already holds a training run; pass resume=True or another run_dir")
    ddp = setup_distributed(config.device)
    threads_before = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return _train(config, run_path, resume=resume, progress=progress, ddp=ddp)
    finally:
        torch.set_num_threads(threads_before)
        ddp.teardown()


def _train(config: TrainConfig, run_path: Path, *, resume: bool, progress: bool,
           ddp: DistContext) -> dict[str, Any]:
    run = RunDir(run_path) if ddp.main else None
    state, finished = read_resume_state(config, run_path, resume)
    if finished is not None:
        return finished
    device = rank_device(config.device, ddp)
    assert device is not None
    if device.type == "cuda":
        torch.cuda.set_device(device)

    train_pairs, val_pairs, split_desc = split_training_pairs(scan_pairs(Path(config.data)), config)
    if not train_pairs:
        raise ValueError(f"no training pairs in {config.data} ({split_desc})")
    model, train_pairs = _model_and_pairs(config, state, run_path / CHECKPOINT_NAME, train_pairs)
    classes = list(model.classes)
    model.to(device)
    model.train()

    optimizer = torch.optim.Adam(param_groups(model, config), betas=config.betas,
                                 weight_decay=config.weight_decay)  # fmt: skip
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, Schedule(config.lr_milestones, config.lr_gamma, config.warmup_steps)
    )
    counters = TrainProgress()
    if state is not None:
        counters = restore(state, optimizer, scheduler, device)
        if run is not None:
            run.truncate_log(lambda r: int(r.get("step", 0)) <= counters.start_step)
        logger.info("resumed %s at step %d", run_path, counters.start_step)
    if run is not None:
        run.write_config(config)

    class_index = {c: i for i, c in enumerate(classes)}
    images = [read_pair(p) for p in train_pairs] if config.preload else None
    batches = StepBatches(train_pairs, [class_index[p.cls] for p in train_pairs], len(classes), config,
                           ddp.rank, images)  # fmt: skip
    loader = torch.utils.data.DataLoader(
        batches,
        batch_size=None,
        sampler=range(counters.start_step, config.steps),
        num_workers=config.num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )
    val = make_val_set(val_pairs, classes, config) if ddp.main else None
    objective = _objective(model, batches, ddp, device, fresh=state is None)
    if run is not None:
        logger.info("training %s: %d train pairs, %d held-out pairs (%s), %d classes, %d parameters",
                    run_path, len(train_pairs), len(val_pairs), split_desc, len(classes),
                    sum(p.numel() for p in model.parameters()))  # fmt: skip

    session = Session(config, run, run_path, model, optimizer, scheduler, device, counters, val)
    last = run_steps(session, loader, objective, ddp, show_progress=progress)
    results = {
        "steps": config.steps,
        "train_seconds": counters.elapsed,
        "nonfinite_steps": counters.nonfinite,
        "last_train": last,
        "final_val": {},
        "best_val_nll": counters.best,
        "split": split_desc,
        "train_pairs": len(train_pairs),
        "val_pairs": len(val_pairs),
        "classes": classes,
        "model": str(run_path / MODEL_NAME),
        "world_size": ddp.world,
        "device": str(device),
    }
    _finish(session, results, train_pairs, ddp, progress=progress)
    return results


def _model_and_pairs(config: TrainConfig, state: dict[str, Any] | None, ckpt_path: Path,
                     train_pairs: list[Pair]) -> tuple[nn.Module, list[Pair]]:
    """The model (from the checkpoint, else built from the seed) and the training pairs of its classes."""
    if state is not None:
        model = model_from_training_checkpoint(state, str(ckpt_path))
    else:
        # The initial weights are a function of the seed; torch's global RNG is left as it was.
        labels = sorted({p.cls for p in train_pairs})
        model = build_seeded(lambda: build_model(config, labels), config.seed)
    classes = list(model.classes)
    known = set(classes)
    dropped = sorted({p.cls for p in train_pairs} - known)
    if dropped:
        logger.warning("training pairs of classes the model does not have are left out: %s", dropped)
        train_pairs = [p for p in train_pairs if p.cls in known]
    if not train_pairs:
        raise ValueError(f"none of the training pairs' classes is one of the model's {classes}")
    return model, train_pairs


def _objective(model: nn.Module, batches: StepBatches, ddp: DistContext, device: torch.device, *,
               fresh: bool) -> nn.Module:
    """The loss module; under torchrun wrapped in DDP (a fresh run first initialises ActNorm)."""
    objective: nn.Module = Objective(model)
    if ddp.world > 1:
        if fresh:
            # ActNorm's data-dependent init on this rank's first batch; DDP then broadcasts rank 0's.
            first = batches[0]
            with torch.no_grad():
                objective(*(first[k].to(device) for k in ("noisy", "clean", "labels")))
        objective = nn.parallel.DistributedDataParallel(
            objective, device_ids=[device.index] if device.type == "cuda" else None
        )
    return objective


def _finish(s: Session, results: dict[str, Any], train_pairs: Sequence[Pair], ddp: DistContext, *,
            progress: bool) -> None:
    """After the last step: the optional prior refit, the final validation, the saved model and results."""
    config, run = s.config, s.run
    refit = None
    if config.refit_prior and ddp.main:
        if run is not None:  # the trained state, before the refit: a longer resume continues it
            s.save(config.steps, s.progress.elapsed)
        t = time.perf_counter()
        refit = refit_prior(s.model, ((*read_pair(p), p.cls) for p in train_pairs),
                            max_size=config.refit_max_size, progress=progress)  # fmt: skip
        refit["seconds"] = time.perf_counter() - t
        logger.info("refit the Gaussians of %d configurations on %d training pairs (%.0f s)",
                    len(refit["classes"]), refit["pairs"], refit["seconds"])  # fmt: skip
    results["final_val"] = s.validate(config.steps) if ddp.main else {}
    if refit is not None:
        results["prior_refit"] = refit
        if run is not None:
            extra = model_extra(config, config.steps)
            extra["train"]["prior_refit"] = {"pairs": refit["pairs"], "max_size": config.refit_max_size}
            save_checkpoint(s.model, s.run_path / MODEL_NAME, extra=extra)
    elif run is not None:
        s.save(config.steps, s.progress.elapsed)
    if run is not None:
        run.write_results(results)
    ddp.barrier()
