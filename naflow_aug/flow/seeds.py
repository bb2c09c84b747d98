"""Seeds as users give them: exact int64 values or a clear error, never a silent truncation or wrap.

``torch.as_tensor([1.7], dtype=torch.int64)`` truncates to 1, NaN becomes an arbitrary integer, and a
uint64 seed above 2**63 - 1 wraps negative; all three would make noise that no recorded seed replays.
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import torch
from torch import Tensor

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1


def check_seed(seed: Any, name: str = "seed") -> int:
    """One seed as a Python int in the int64 range; TypeError for bools, floats and other non-integers."""
    if isinstance(seed, Tensor):
        if seed.numel() != 1:
            raise ValueError(f"{name} must be one integer, got a tensor of shape {tuple(seed.shape)}")
        if seed.dtype == torch.bool or seed.is_floating_point() or seed.is_complex():
            raise TypeError(f"{name} must be an integer, got a {seed.dtype} tensor")
        seed = seed.item()
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {type(seed).__name__} {seed!r}")
    value = int(seed)
    if not INT64_MIN <= value <= INT64_MAX:
        raise ValueError(f"{name} must fit in int64 [{INT64_MIN}, {INT64_MAX}], got {value}")
    return value


def as_seeds(seeds: Tensor | Sequence[int], batch: int) -> Tensor:
    """One int64 seed per item, (batch,) on the CPU; every value checked as by `check_seed`."""
    if isinstance(seeds, Tensor):
        if seeds.dtype == torch.bool or seeds.is_floating_point() or seeds.is_complex():
            raise TypeError(f"seeds must be integers, got a {seeds.dtype} tensor")
        if seeds.dtype in (torch.uint16, torch.uint32, torch.uint64):  # values above int64 would wrap
            seeds = seeds.detach().cpu().reshape(-1).tolist()
        else:
            values = seeds.detach().cpu().to(torch.int64).reshape(-1)
    if not isinstance(seeds, Tensor):
        if isinstance(seeds, (str, bytes)) or not isinstance(seeds, Sequence | range):
            try:
                seeds = list(seeds)  # numpy arrays and other iterables of integers
            except TypeError:
                raise TypeError(f"seeds must be a sequence of integers, got {type(seeds).__name__}") from None
        values = torch.tensor([check_seed(s, f"seeds[{i}]") for i, s in enumerate(seeds)], dtype=torch.int64)
    if values.numel() != batch:
        raise ValueError(f"seeds must hold one int64 per item ({batch}), got {values.numel()}")
    return values


def draw_seeds(n: int, generator: torch.Generator | None = None) -> Tensor:
    """(n,) int64 seeds in [0, 2**63 - 1) from ``generator`` (None: torch's default one), on the host."""
    device = generator.device if generator is not None else "cpu"
    return torch.randint(0, INT64_MAX, (n,), generator=generator, dtype=torch.int64, device=device).cpu()
