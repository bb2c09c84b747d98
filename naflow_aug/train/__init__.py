"""Train NAFlow on (clean, noisy) pairs: the paper's protocol, a CPU preset, exact resume, DDP.

``train(config, run_dir)`` is the whole job as a library function; ``naflow-aug train`` calls it.

Exact resume. Every random draw of a training step (which pairs, crops, flips/rotations, the noise on the
clean condition, the dequantization noise) comes from a ``torch.Generator`` seeded from
``(config.seed, step, rank)``, so the data stream needs no iterator state: a run resumed from the
checkpoint of step ``s`` draws exactly what the uninterrupted run drew at step ``s + 1``. The checkpoint
holds the model, the optimiser, the scheduler, the step, the non-finite counter, the running loss window
and torch's global RNG states (restored on resume only, for anything inside the model that draws from
them).

Multi-GPU: start with ``torchrun --nproc_per_node N``; ``WORLD_SIZE``/``LOCAL_RANK`` select DDP (NCCL on
CUDA, gloo on the CPU; :mod:`naflow_aug.runtime.distributed`). ``batch_size`` is per process. Rank 0
validates, logs and writes the run directory.

================  =======================================================================================
module            what it holds
================  =======================================================================================
``config``        :class:`TrainConfig`, :data:`PRESETS`, :func:`preset`, :func:`load_train_config`,
                  :func:`config_for_resume`, the run directory's file names
``pairs``         the (noisy, clean) pairs of the data folder and their train / held-out split
``batches``       ``StepBatches``: step -> that step's batch, a pure function of (seed, step, rank)
``objective``     the model to train, its parameter groups, the learning-rate schedule, the loss module
``state``         what a checkpoint holds for an exact resume, reading it back
``loop``          the steps (finite check, optimiser, logging, validation and checkpoints), ``Session``
``validation``    :func:`evaluate`: held-out metrics
``prior_refit``   :func:`refit_prior`: the closed-form refit of the per-configuration Gaussians
``job``           :func:`train`
================  =======================================================================================
"""

from __future__ import annotations

from naflow_aug.train.batches import StepBatches
from naflow_aug.train.config import (
    BEST_MODEL_NAME,
    CHECKPOINT_NAME,
    MODEL_NAME,
    PRESETS,
    TrainConfig,
    config_for_resume,
    load_train_config,
    preset,
)
from naflow_aug.train.job import train
from naflow_aug.train.loop import NonFiniteLossError
from naflow_aug.train.pairs import read_pair, scan_pairs, split_training_pairs
from naflow_aug.train.prior_refit import refit_prior
from naflow_aug.train.validation import evaluate

__all__ = [
    "BEST_MODEL_NAME",
    "CHECKPOINT_NAME",
    "MODEL_NAME",
    "PRESETS",
    "NonFiniteLossError",
    "StepBatches",
    "TrainConfig",
    "config_for_resume",
    "evaluate",
    "load_train_config",
    "preset",
    "read_pair",
    "refit_prior",
    "scan_pairs",
    "split_training_pairs",
    "train",
]
