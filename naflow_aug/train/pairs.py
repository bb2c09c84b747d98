"""The training data: (noisy, clean) pairs of a SIDD-Medium folder (or a cache of one), split by scene
instance into training and held-out pairs."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from naflow_aug.data import sidd
from naflow_aug.data.sidd import _load_uint8
from naflow_aug.train.config import TrainConfig

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class _Pair:
    noisy: Path
    clean: Path
    label: str
    instance: str
    height: int
    width: int


def _scan_pairs(root: Path) -> list[_Pair]:
    """The pairs of a SIDD-Medium folder or of a cache of one (``naflow-aug prepare``)."""
    return [_Pair(p.noisy_path, p.clean_path, p.cls, p.instance, p.height, p.width)
            for p in sidd.scan_sidd_medium(root)]


def _split_pairs(pairs: list[_Pair], config: TrainConfig) -> tuple[list[_Pair], list[_Pair], str]:
    """(train, validation, description) split by scene instance."""
    if config.split:
        train_ids, val_ids = (set(ids) for ids in sidd.load_split(config.split))
        left_out = sorted({p.instance for p in pairs} - val_ids - train_ids)
        if left_out:
            logger.warning("%d instances are in neither part of split %s; left out: %s",
                           len(left_out), config.split, left_out[:10])
        train = [p for p in pairs if p.instance in train_ids]
        val = [p for p in pairs if p.instance in val_ids]
        return train, val, f"split {config.split}: validation instances {sorted(val_ids)}"
    instances = sorted({p.instance for p in pairs})
    rng = np.random.default_rng(config.seed)
    n_val = max(1, round(len(instances) * config.val_fraction)) if len(instances) > 1 else 0
    val_ids = set(rng.choice(instances, size=n_val, replace=False).tolist()) if n_val else set()
    train = [p for p in pairs if p.instance not in val_ids]
    val = [p for p in pairs if p.instance in val_ids]
    return train, val, f"validation instances {sorted(val_ids)} (held out at random, seed {config.seed})"


def _read_pair(pair: _Pair) -> tuple[torch.Tensor, torch.Tensor]:
    noisy, clean = _load_uint8(pair.noisy), _load_uint8(pair.clean)
    if noisy.shape != clean.shape:
        raise ValueError(f"{pair.noisy} is {tuple(noisy.shape)} but {pair.clean} is {tuple(clean.shape)}")
    return noisy, clean
