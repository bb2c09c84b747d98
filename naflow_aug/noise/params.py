"""What one call of a noise source drew (:class:`NoiseParams`), enough to replay it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class NoiseParams:
    """What one call drew, enough to replay it.

    ``seeds`` (B,) int64; ``weights`` (B, K) mixture over ``classes`` (the model's configurations) for
    model sources; ``configs`` the configuration name of each item where the source picks one (``random``,
    per-configuration baselines).
    """

    source: str
    seeds: torch.Tensor
    weights: torch.Tensor | None = None
    classes: tuple[str, ...] | None = None
    configs: tuple[str, ...] | None = None
    #: (B, 3) per-channel noise std the output was scaled to (``nas`` with level ``reference``), or None
    noise_std: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.seeds.shape[0])

    def select(self, index: int | slice | Sequence[int]) -> NoiseParams:
        """The params of some items (a batch's items can be replayed one at a time)."""
        idx = (
            [index]
            if isinstance(index, int)
            else (list(range(len(self)))[index] if isinstance(index, slice) else list(index))
        )
        return NoiseParams(
            source=self.source,
            seeds=self.seeds[idx],
            weights=None if self.weights is None else self.weights[idx],
            classes=self.classes,
            configs=None if self.configs is None else tuple(self.configs[i] for i in idx),
            noise_std=None if self.noise_std is None else self.noise_std[idx],
        )

    @staticmethod
    def cat(parts: Sequence[NoiseParams]) -> NoiseParams:
        if not parts:
            raise ValueError("NoiseParams.cat needs at least one part")
        first = parts[0]
        if any(p.source != first.source or p.classes != first.classes for p in parts):
            raise ValueError("NoiseParams.cat: parts come from different sources or class lists")
        return NoiseParams(
            source=first.source,
            seeds=torch.cat([p.seeds for p in parts]),
            weights=None if first.weights is None else torch.cat([p.weights for p in parts]),
            classes=first.classes,
            configs=None if first.configs is None else tuple(c for p in parts for c in p.configs),
            noise_std=None if first.noise_std is None else torch.cat([p.noise_std for p in parts]),
        )

    def to_dict(self) -> dict:
        """JSON-ready (seeds as ints, weights as nested lists)."""
        return {
            "source": self.source,
            "seeds": [int(s) for s in self.seeds],
            "weights": None if self.weights is None else self.weights.tolist(),
            "classes": None if self.classes is None else list(self.classes),
            "configs": None if self.configs is None else list(self.configs),
            "noise_std": None if self.noise_std is None else self.noise_std.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> NoiseParams:
        return cls(
            source=data["source"],
            seeds=torch.tensor(data["seeds"], dtype=torch.int64),
            weights=None
            if data.get("weights") is None
            else torch.tensor(data["weights"], dtype=torch.float32),
            classes=None if data.get("classes") is None else tuple(data["classes"]),
            configs=None if data.get("configs") is None else tuple(data["configs"]),
            noise_std=None
            if data.get("noise_std") is None
            else torch.tensor(data["noise_std"], dtype=torch.float32),
        )
