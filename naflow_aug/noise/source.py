"""The noise-source contract: :class:`NoiseSource` and the randomness every source follows.

Every source has one call: ``noisy, params = source(clean, reference=None, configs=None, generator=None)``
with clean (B, 3, H, W) float in [0, 1], and ``source.replay(clean, params, reference=None)`` reproduces
``noisy`` exactly. Randomness contract: one int64 seed per item is drawn from ``generator`` (else torch's
default generator) first; item b's randomness then comes only from ``torch.Generator("cpu")`` seeded with
``seeds[b]`` (first a uniform configuration pick, drawn whether or not the source uses it, then the noise),
so a batch equals its items run one at a time, as in ``NAFlow.sample``.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Sequence
from typing import Any

import torch

from naflow_aug.flow.seeds import as_seeds, check_seed, draw_seeds
from naflow_aug.noise.params import NoiseParams

# ------------------------------------------------------------------------------------------- randomness


def item_generator(seed: int | torch.Tensor) -> torch.Generator:
    """The CPU generator that all of one item's randomness comes from."""
    return torch.Generator("cpu").manual_seed(check_seed(seed))


# --------------------------------------------------------------------------------------------- checking


def check_images(x: Any, name: str = "clean") -> torch.Tensor:
    """Validate (B, 3, H, W) float images in [0, 1] with B >= 1; raise TypeError/ValueError otherwise."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor (B, 3, H, W) float in [0, 1], got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be a float tensor in [0, 1] (convert uint8 with /255), got dtype {x.dtype}"
        )
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"{name} must have shape (B, 3, H, W) (RGB), got {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(x.shape)}); need at least one image")
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"{name} has an empty side: shape {tuple(x.shape)}")
    lo, hi = torch.stack(torch.aminmax(x.detach())).tolist()  # one read-back (GPU sync); NaN propagates
    if math.isnan(lo) or math.isnan(hi):
        raise ValueError(f"{name} contains NaN")
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"{name} values must lie in [0, 1], got min {lo:.4g} and max {hi:.4g}")
    return x


def check_reference(reference: Any, clean: torch.Tensor, spec: str) -> torch.Tensor:
    if reference is None:
        raise ValueError(f"noise source {spec!r} needs a reference noisy image (reference=...), got None")
    reference = check_images(reference, "reference")
    if reference.shape != clean.shape:
        raise ValueError(
            f"reference shape {tuple(reference.shape)} does not match clean shape {tuple(clean.shape)}"
        )
    return reference


# ------------------------------------------------------------------------------------------------ sources


class NoiseSource:
    """Base class: subclasses implement ``_draw`` (parameters) and ``_apply`` (deterministic noise)."""

    needs_reference = False
    #: whether replay needs the reference again (``real`` returns it)
    replay_needs_reference = False
    #: names an item's configuration pick refers to (integer configs index into these), or None
    classes: tuple[str, ...] | None = None

    def __init__(self, spec: str) -> None:
        self.spec = spec

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r})"

    def __call__(
        self,
        clean: torch.Tensor,
        *,
        reference: torch.Tensor | None = None,
        configs: Sequence[str] | Sequence[int] | torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        seeds: torch.Tensor | Sequence[int] | None = None,
        labels: Sequence[str] | Sequence[int] | torch.Tensor | None = None,
    ) -> tuple[torch.Tensor, NoiseParams]:
        """Noisy images for clean (B, 3, H, W) float in [0, 1], and the params that replay them.

        ``reference``: the real noisy images (``nas``, ``real``). ``configs``: each item's configuration
        (names, or ids into ``source.classes``; ``labels`` is its old name) for ``random`` and the
        per-configuration baselines; without them they pick a random configuration per item. ``seeds`` (B,)
        replaces the draw from ``generator``.
        """
        if labels is not None:
            if configs is not None:
                raise TypeError("give configs= or labels= (its old name), not both")
            configs = labels
        clean = check_images(clean)
        ref = check_reference(reference, clean, self.spec) if self.needs_reference else None
        n = clean.shape[0]
        if seeds is None:
            seeds = draw_seeds(n, generator)
        else:
            seeds = as_seeds(seeds, n)
        return self._draw_and_apply(clean, ref, self._config_names(configs, n), seeds)

    def _draw_and_apply(self, clean, reference, configs, seeds) -> tuple[torch.Tensor, NoiseParams]:
        """``_draw``, then ``_apply`` what it drew; a source whose two halves share work overrides it."""
        params = self._draw(clean, reference, configs, seeds)
        return self._apply(clean, params, reference), params

    def replay(
        self, clean: torch.Tensor, params: NoiseParams, *, reference: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Reproduce the noisy images of a previous call from its params."""
        clean = check_images(clean)
        if not isinstance(params, NoiseParams):
            raise TypeError(f"params must be NoiseParams, got {type(params).__name__}")
        if len(params) != clean.shape[0]:
            raise ValueError(f"params hold {len(params)} items, clean holds {clean.shape[0]}")
        if params.source != self.spec:
            raise ValueError(f"params come from noise source {params.source!r}, not {self.spec!r}")
        ref = check_reference(reference, clean, self.spec) if self.replay_needs_reference else None
        return self._apply(clean, params, ref)

    def _config_names(self, configs: Any, n: int) -> list[str | None] | None:
        """Each item's configuration name; None (for the whole batch or an item): the item's random pick."""
        if configs is None:
            return None
        if isinstance(configs, str):
            configs = [configs] * n
        if isinstance(configs, torch.Tensor):
            if configs.dtype == torch.bool or configs.is_floating_point():
                raise TypeError(f"configs must be configuration names or integer ids, not {configs.dtype}")
            configs = configs.reshape(-1).tolist()
        configs = list(configs)
        if len(configs) != n:
            raise ValueError(f"got {len(configs)} configs for a batch of {n} images")
        names = []
        for config in configs:
            if config is None or isinstance(config, str):
                names.append(config)
            elif self.classes is not None and _is_config_id(config, len(self.classes)):
                names.append(self.classes[int(config)])
            else:
                raise ValueError(
                    f"config {config!r} is neither a configuration name nor an id into "
                    f"{list(self.classes or [])}"
                )
        return names

    def _draw(
        self,
        clean: torch.Tensor,
        reference: torch.Tensor | None,
        configs: list[str | None] | None,
        seeds: torch.Tensor,
    ) -> NoiseParams:
        return NoiseParams(source=self.spec, seeds=seeds)

    def _apply(
        self, clean: torch.Tensor, params: NoiseParams, reference: torch.Tensor | None
    ) -> torch.Tensor:
        raise NotImplementedError


def pick_configs(seeds: torch.Tensor, classes: Sequence[str]) -> list[str]:
    """Each item's uniformly random configuration: the first draw of its generator."""
    return [classes[int(torch.randint(len(classes), (1,), generator=item_generator(s)))] for s in seeds]


def fill_labels(configs: list[str | None] | None, picked: list[str]) -> list[str]:
    """The given configurations where there are any, else the random picks."""
    if configs is None:
        return picked
    return [pick if config is None else config for config, pick in zip(configs, picked, strict=True)]


def generators_after_pick(seeds: torch.Tensor, num_classes: int) -> list[torch.Generator]:
    """Item generators advanced past the configuration pick of :func:`pick_configs`."""
    gens = []
    for s in seeds:
        g = item_generator(s)
        torch.randint(num_classes, (1,), generator=g)
        gens.append(g)
    return gens



def _is_config_id(config: Any, num_classes: int) -> bool:
    """An integer id in [0, num_classes); a bool is not one (True would silently be configuration 1)."""
    return isinstance(config, numbers.Integral) and not isinstance(config, bool) and 0 <= config < num_classes
