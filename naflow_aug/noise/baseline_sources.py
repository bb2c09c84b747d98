"""The noise sources that need no NAFlow: white Gaussian noise, the fitted per-configuration baselines,
the real noisy image itself and albumentations' noise, each under the contract of
:mod:`naflow_aug.noise.source`."""

from __future__ import annotations

import math

import torch

from naflow_aug.images import round_nearest, to_float
from naflow_aug.noise.baselines import Baselines, sample_gaussian, sample_poisson_gaussian
from naflow_aug.noise.params import NoiseParams
from naflow_aug.noise.source import (
    NoiseSource,
    fill_labels,
    generators_after_pick,
    item_generator,
    pick_configs,
)


class GaussianSource(NoiseSource):
    """``gaussian:<sigma>``: white Gaussian noise, sigma in 0-255 units."""

    def __init__(self, spec: str, sigma: float) -> None:
        super().__init__(spec)
        if not (math.isfinite(sigma) and sigma >= 0):
            raise ValueError(f"noise source {spec!r}: sigma must be a finite number >= 0 (0-255 units)")
        self.sigma = float(sigma)

    def _apply(self, clean, params, reference) -> torch.Tensor:
        gens = [item_generator(s) for s in params.seeds]
        return sample_gaussian(clean, torch.full((clean.shape[0],), self.sigma / 255.0), gens)


class BaselineSource(NoiseSource):
    """``gaussian-per-config`` and ``poisson-gaussian``: fitted noise of each item's configuration."""

    def __init__(self, spec: str, baselines: Baselines, *, kind: str) -> None:
        super().__init__(spec)
        if kind not in ("gaussian-per-config", "poisson-gaussian"):
            raise ValueError(f"unknown baseline kind {kind!r}")
        self.baselines = baselines
        self.kind = kind
        self.classes = tuple(baselines.classes)

    def _draw(self, clean, reference, configs, seeds) -> NoiseParams:
        configs = fill_labels(configs, pick_configs(seeds, self.classes))
        for name in configs:
            self.baselines[name]  # noqa: B018 -- raises a clear error for an unfitted configuration
        return NoiseParams(source=self.spec, seeds=seeds, configs=tuple(configs))

    def _apply(self, clean, params, reference) -> torch.Tensor:
        if params.configs is None:
            raise ValueError(f"params for {self.spec!r} must record each item's configuration")
        gens = generators_after_pick(params.seeds, len(self.classes))
        if self.kind == "gaussian-per-config":
            return sample_gaussian(clean, self.baselines.gaussian_std(params.configs), gens)
        a, b = self.baselines.poisson_gaussian(params.configs)
        return sample_poisson_gaussian(clean, a, b, gens)


class RealSource(NoiseSource):
    """``real``: the reference noisy image itself."""

    needs_reference = True
    replay_needs_reference = True

    def _apply(self, clean, params, reference) -> torch.Tensor:
        return reference.to(clean.device, clean.dtype).clone()


class AlbumentationsSource(NoiseSource):
    """``albumentations-gauss`` / ``albumentations-iso``: the library's noise, configured as a user would
    (probability 1, the documented ranges), seeded per item."""

    def __init__(self, spec: str, kind: str) -> None:
        super().__init__(spec)
        if kind not in ("albumentations-gauss", "albumentations-iso"):
            raise ValueError(f"unknown albumentations noise {kind!r}")
        self.kind = kind

    def _make(self):
        import albumentations as A

        if self.kind == "albumentations-gauss":
            # std as a fraction of the maximum value: about 5 to 25 in 0-255 units
            return A.GaussNoise(std_range=(0.02, 0.1), mean_range=(0.0, 0.0), per_channel=True, p=1.0)
        return A.ISONoise(color_shift=(0.01, 0.05), intensity=(0.1, 0.5), p=1.0)

    def _apply(self, clean, params, reference) -> torch.Tensor:
        # users feed albumentations uint8 HWC images (ISONoise's strength assumes the 0-255 scale)
        out = []
        hwc = round_nearest(clean.detach().to("cpu", torch.float32)).permute(0, 2, 3, 1).numpy()
        for b, seed in enumerate(params.seeds):
            t = self._make()
            t.set_random_seed(int(seed))
            out.append(torch.from_numpy(t(image=hwc[b].copy())["image"]).permute(2, 0, 1))
        return to_float(torch.stack(out).to(clean.device), clean.dtype).clamp_(0.0, 1.0)
