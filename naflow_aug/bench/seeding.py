"""The bench's seed derivation: one training generator per (seed, epoch, rank).

Kept in this one module so that the bench can move to a shared seeding module in one place."""

from __future__ import annotations

import torch


def epoch_generator(seed: int, epoch: int, rank: int) -> torch.Generator:
    """The generator of 1-based ``epoch`` on ``rank``: every batch of that epoch is drawn from it.

    One generator per (epoch, rank): a resumed run draws exactly the batches of an uninterrupted one."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 1_009 + rank)
