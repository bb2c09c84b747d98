"""The training data: (noisy, clean) pairs of a SIDD-Medium folder (or a cache of one), split by scene
instance into training and held-out pairs."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import torch

from naflow_aug.data import sidd
from naflow_aug.data.images import load_uint8
from naflow_aug.data.pairs import Pair, split_pairs
from naflow_aug.train.config import TrainConfig

logger = logging.getLogger(__name__)


def scan_pairs(root: Path) -> list[Pair]:
    """The pairs of a SIDD-Medium folder or of a cache of one (``naflow-aug prepare``), sizes filled in."""
    return list(sidd.scan_sidd_medium(root))


def split_training_pairs(pairs: list[Pair], config: TrainConfig) -> tuple[list[Pair], list[Pair], str]:
    """(train, validation, description) split by scene instance."""
    if config.split:
        train_ids, val_ids = sidd.load_split(config.split)
        left_out = sorted({p.instance for p in pairs} - set(val_ids) - set(train_ids))
        if left_out:
            logger.warning("%d instances are in neither part of split %s; left out: %s",
                           len(left_out), config.split, left_out[:10])
        train, val = split_pairs(pairs, (train_ids, val_ids))
        return train, val, f"split {config.split}: validation instances {val_ids}"
    instances = sorted({p.instance for p in pairs})
    rng = np.random.default_rng(config.seed)
    n_val = max(1, round(len(instances) * config.val_fraction)) if len(instances) > 1 else 0
    val_ids = set(rng.choice(instances, size=n_val, replace=False).tolist()) if n_val else set()
    train, val = split_pairs(pairs, (set(instances) - val_ids, val_ids))
    return train, val, f"validation instances {sorted(val_ids)} (held out at random, seed {config.seed})"


def read_pair(pair: Pair) -> tuple[torch.Tensor, torch.Tensor]:
    noisy, clean = load_uint8(pair.noisy_path), load_uint8(pair.clean_path)
    if noisy.shape != clean.shape:
        raise ValueError(
            f"{pair.noisy_path} is {tuple(noisy.shape)} but {pair.clean_path} is {tuple(clean.shape)}"
        )
    return noisy, clean
