"""Job-level seed derivations: one implementation of each, so a job's draws are pure functions of its seed.

A long job (generate, train, bench) is resumable and sharded because every random draw comes from a
generator whose seed is derived from the job's seed and the draw's coordinates (sample index, step,
rank, epoch), never from a stream that a crash or another process could shift. The derivations:

- :func:`sample_seeds`: sample ``i``'s noise seed in a generated data set (splitmix64 of seed and ``i``);
- :func:`derive_seed`: a seed in ``[0, 2**63)`` hashed from integer words (numpy's ``SeedSequence``);
- :func:`numpy_generator`: a numpy generator keyed by integer words (generate's random crop boxes);
- :func:`step_generator`: one training step's torch generator, from ``(seed, step, rank, stream)``;
- :func:`epoch_generator`: one denoiser-training epoch's torch generator, from ``(seed, epoch, rank)``;
- :func:`build_seeded`: module construction under a seed, the caller's global RNG left untouched.

Per-item sampling seeds as users give them (exact int64 values, validated) are
``naflow_aug.flow.seeds``; this module derives seeds, that one checks them. Every value derived here is
recorded in outputs or checkpoints: changing a formula changes outputs.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TypeVar

import numpy as np
import torch

T = TypeVar("T")

_MASK64 = (1 << 64) - 1


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = (x + np.uint64(0x9E3779B97F4A7C15)) & np.uint64(_MASK64)
    x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & np.uint64(_MASK64)
    x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & np.uint64(_MASK64)
    return x ^ (x >> np.uint64(31))


def sample_seeds(seed: int, indices: Sequence[int] | np.ndarray) -> np.ndarray:
    """Sample ``i``'s noise seed (int64 >= 0): a pure function of the global seed and ``i``."""
    idx = np.asarray(indices, dtype=np.uint64)
    with np.errstate(over="ignore"):
        base = _splitmix64(np.array([seed], dtype=np.uint64))[0]
        mixed = _splitmix64(idx ^ base)
    return (mixed >> np.uint64(1)).astype(np.int64)


def derive_seed(*words: int) -> int:
    """A seed in ``[0, 2**63)`` that depends on every word (a hash: nearby inputs do not collide).

    Each word is taken modulo ``2**64`` (negative seeds are accepted).
    """
    state = np.random.SeedSequence([int(w) & _MASK64 for w in words])
    return int(state.generate_state(1, np.uint64)[0] >> np.uint64(1))


def numpy_generator(*words: int) -> np.random.Generator:
    """A numpy generator (PCG64) keyed by non-negative integer words."""
    return np.random.Generator(np.random.PCG64(np.random.SeedSequence(list(words))))


def step_generator(seed: int, step: int, rank: int, stream: int = 0) -> torch.Generator:
    """The CPU generator of one training step's draws: a pure function of (seed, step, rank, stream).

    Only the low 32 bits of ``seed`` count (as they always have: recorded runs resume with them).
    """
    return torch.Generator("cpu").manual_seed(derive_seed(seed & 0xFFFFFFFF, step, rank, stream))


def epoch_generator(seed: int, epoch: int, rank: int) -> torch.Generator:
    """The CPU generator of one denoiser-training epoch on one rank: a resumed run draws exactly the
    batches of an uninterrupted one."""
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 1_009 + rank)


def build_seeded(factory: Callable[[], T], seed: int) -> T:
    """``factory()`` with torch's global RNG seeded by ``seed`` inside, and left as it was outside.

    Module constructors (``nn.init``) draw from the global RNG and take no generator, so initial weights
    that depend only on a seed need this; the caller's random state is not touched.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()
