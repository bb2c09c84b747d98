"""The transforms in DataLoader workers: one torch thread, and seeds that differ per worker and epoch.

A seeded transform copied into DataLoader workers would draw the same seeds in every worker, and, without
``persistent_workers``, repeat them every epoch (each epoch starts fresh workers from the same copy). The
worker's ``torch.initial_seed()`` is DataLoader's base seed plus the worker id, and the base seed is drawn
anew for every epoch from the main process's torch generator; mixing it into the transform's own seed makes
the draws differ per worker and per epoch and stay reproducible under ``torch.manual_seed`` in the main
process.
"""

from __future__ import annotations

import torch

from naflow_aug.runtime.seeding import derive_seed


def mix_seeds(seed: int, worker_seed: int) -> int:
    """A seed in [0, 2**63) that depends on both inputs (a hash, so nearby inputs do not collide)."""
    return derive_seed(seed, worker_seed)


class WorkerSeeding:
    """Tracks the DataLoader worker a transform copy runs in; ``enter()`` on every call."""

    def __init__(self) -> None:
        self._worker_seed: int | None = None

    def enter(self) -> int | None:
        """The worker's seed when this is the copy's first call in a new worker process (then torch is also
        limited to one thread: workers x threads must not oversubscribe the CPU); else None."""
        info = torch.utils.data.get_worker_info()
        if info is None or info.seed == self._worker_seed:
            return None
        torch.set_num_threads(1)
        self._worker_seed = int(info.seed)
        return self._worker_seed
