"""Fitted noise baselines: per-configuration Gaussian and signal-dependent Poisson-Gaussian noise.

One function, :func:`fit_baselines`, fits both from (clean, noisy, configuration) pairs in one streaming
pass; :class:`Baselines` saves and loads them as JSON. The samplers here are pure: they take one
``torch.Generator`` per batch item (the randomness contract lives in :mod:`naflow_aug.noise.source`).

Poisson-Gaussian model, per configuration and colour channel: ``var(noisy - clean | clean = x) = a*x + b``,
fitted by robust weighted least squares over clean-intensity bins. Bins where the noisy image clips at 0
or 1 are left out, since clipping shrinks the variance there.
"""

from __future__ import annotations

import logging
import math
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch

from naflow_aug.data.images import load_image
from naflow_aug.runs import atomic_write_json, read_json

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
KIND = "naflow-aug-baselines"


@dataclass(frozen=True)
class ConfigBaseline:
    """Fitted noise of one configuration. Standard deviations and variances in [0, 1] image units."""

    gaussian_std: float
    pg_a: tuple[float, float, float]
    pg_b: tuple[float, float, float]
    pixels: int = 0
    pairs: int = 0

    def to_dict(self) -> dict:
        return {
            "gaussian_std": self.gaussian_std,
            "poisson_gaussian": {"a": list(self.pg_a), "b": list(self.pg_b)},
            "pixels": self.pixels,
            "pairs": self.pairs,
        }

    @classmethod
    def from_dict(cls, data: dict) -> ConfigBaseline:
        pg = data["poisson_gaussian"]
        return cls(
            gaussian_std=float(data["gaussian_std"]),
            pg_a=tuple(float(v) for v in pg["a"]),
            pg_b=tuple(float(v) for v in pg["b"]),
            pixels=int(data.get("pixels", 0)),
            pairs=int(data.get("pairs", 0)),
        )


@dataclass(frozen=True)
class Baselines:
    """Fitted baselines for a set of configurations (``classes``, in a fixed order)."""

    configs: dict[str, ConfigBaseline]
    fit: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        if not self.configs:
            raise ValueError("Baselines need at least one configuration, got none")

    @property
    def classes(self) -> list[str]:
        return list(self.configs)

    def gaussian_std(self, names: Sequence[str]) -> torch.Tensor:
        """(B,) float32 std of each named configuration."""
        return torch.tensor([self[n].gaussian_std for n in names], dtype=torch.float32)

    def poisson_gaussian(self, names: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """(B, 3) a and (B, 3) b of each named configuration."""
        a = torch.tensor([self[n].pg_a for n in names], dtype=torch.float32)
        b = torch.tensor([self[n].pg_b for n in names], dtype=torch.float32)
        return a, b

    def __getitem__(self, name: str) -> ConfigBaseline:
        try:
            return self.configs[name]
        except KeyError:
            raise ValueError(
                f"configuration {name!r} has no fitted baseline; fitted configurations: {self.classes}"
            ) from None

    def to_dict(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "kind": KIND,
            "classes": self.classes,
            "configs": {name: c.to_dict() for name, c in self.configs.items()},
            "fit": self.fit,
        }

    @classmethod
    def from_dict(cls, data: dict, where: str = "baselines") -> Baselines:
        """Baselines from their JSON form; ValueError naming ``where`` (the file) for anything malformed."""
        kind = data.get("kind") if isinstance(data, dict) else type(data).__name__
        if kind != KIND:
            raise ValueError(
                f"{where} is not a naflow-aug baselines file (expected kind {KIND!r}, got {kind!r})"
            )
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{where}: baselines format_version {data.get('format_version')!r} is not supported "
                f"(expected {FORMAT_VERSION})"
            )
        try:
            configs = {name: ConfigBaseline.from_dict(data["configs"][name]) for name in data["classes"]}
            return cls(configs=configs, fit=dict(data.get("fit", {})))
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"{where} is malformed ({type(err).__name__}: {err})") from err

    def save(self, path: str | os.PathLike) -> Path:
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> Baselines:
        return cls.from_dict(read_json(path, "baselines file"), where=str(path))


# ------------------------------------------------------------------------------------------------ fitting


class _Accumulator:
    """Streaming per-channel, per-bin sums of the residual ``noisy - clean`` (float64)."""

    def __init__(self, bins: int) -> None:
        self.bins = bins
        shape = (3, bins)
        self.count = torch.zeros(shape, dtype=torch.float64)
        self.sum_x = torch.zeros(shape, dtype=torch.float64)
        self.sum_r = torch.zeros(shape, dtype=torch.float64)
        self.sum_r2 = torch.zeros(shape, dtype=torch.float64)
        self.clipped = torch.zeros(shape, dtype=torch.float64)
        self.pairs = 0

    def add(self, clean: torch.Tensor, noisy: torch.Tensor) -> None:
        x = clean.detach().to("cpu", torch.float64).reshape(3, -1)
        y = noisy.detach().to("cpu", torch.float64).reshape(3, -1)
        r = y - x
        idx = (x * self.bins).long().clamp_(0, self.bins - 1)
        clip = ((y <= 0.0) | (y >= 1.0)).to(torch.float64)
        for acc, values in (
            (self.count, torch.ones_like(x)),
            (self.sum_x, x),
            (self.sum_r, r),
            (self.sum_r2, r * r),
            (self.clipped, clip),
        ):
            acc.scatter_add_(1, idx, values)
        self.pairs += 1


def _robust_line_fit(
    x: torch.Tensor, v: torch.Tensor, n: torch.Tensor, iters: int = 10
) -> tuple[float, float]:
    """Fit ``v ~ a*x + b`` (a >= 0, b >= 0) to binned variances with counts ``n``.

    Weights follow the sampling error of a variance (sd(var) ~ var * sqrt(2/n)); a Huber step on the
    standardised residuals keeps a few bad bins (edges, misalignment) from pulling the line.
    """
    x, v, n = x.double(), v.double(), n.double()
    pred = v.clamp_min(1e-12)
    huber = torch.ones_like(v)
    a = b = 0.0
    for _ in range(iters):
        w = n / (2.0 * pred.clamp_min(1e-12) ** 2) * huber
        a, b = _weighted_line(x, v, w)
        if b < 0.0:  # variance cannot be negative at x = 0: refit through the origin
            b = 0.0
            a = float((w * x * v).sum() / (w * x * x).sum().clamp_min(1e-30))
        if a < 0.0:  # variance does not fall with brightness: constant
            a = 0.0
            b = float((w * v).sum() / w.sum())
        pred = a * x + b
        z = (v - pred).abs() / (pred.clamp_min(1e-12) * torch.sqrt(2.0 / n))
        # never below the theoretical spread, so a perfect fit does not down-weight everything
        z = z / max(float(z.median()) / 0.6745, 1.0)
        huber = torch.where(z <= 1.345, torch.ones_like(z), 1.345 / z)
    return float(a), float(b)


def _weighted_line(x: torch.Tensor, v: torch.Tensor, w: torch.Tensor) -> tuple[float, float]:
    sw = w.sum()
    mx, mv = (w * x).sum() / sw, (w * v).sum() / sw
    sxx = (w * (x - mx) ** 2).sum()
    if float(sxx) <= 0.0:
        return 0.0, float(mv)
    a = (w * (x - mx) * (v - mv)).sum() / sxx
    return float(a), float(mv - a * mx)


def fit_baselines(
    pairs: Iterable[tuple[torch.Tensor, torch.Tensor, str | Sequence[str]]],
    *,
    bins: int = 32,
    min_bin_pixels: int = 256,
    max_clipped_fraction: float = 0.05,
) -> Baselines:
    """Fit the Gaussian and Poisson-Gaussian baselines of every configuration seen in ``pairs``.

    ``pairs`` yields ``(clean, noisy, config)``: clean and noisy ``(3, H, W)`` or ``(B, 3, H, W)`` float in
    [0, 1], config a name such as ``"S6_03200"`` (or one name per batch item). Streams: memory does not
    grow with the number of pairs.
    """
    if bins < 2:
        raise ValueError(f"bins must be at least 2, got {bins}")
    accs: dict[str, _Accumulator] = {}
    for item in pairs:
        if not (isinstance(item, tuple | list) and len(item) == 3):
            raise TypeError(f"fit_baselines expects (clean, noisy, config) tuples, got {type(item).__name__}")
        clean, noisy, names = item
        if clean.shape != noisy.shape:
            raise ValueError(f"clean and noisy shapes differ: {tuple(clean.shape)} vs {tuple(noisy.shape)}")
        if clean.dim() == 3:
            clean, noisy = clean[None], noisy[None]
        if clean.dim() != 4 or clean.shape[1] != 3:
            raise ValueError(f"expected (3, H, W) or (B, 3, H, W) images, got shape {tuple(clean.shape)}")
        if isinstance(names, str):
            names = [names] * clean.shape[0]
        if len(names) != clean.shape[0]:
            raise ValueError(f"got {len(names)} configuration names for a batch of {clean.shape[0]}")
        for b, name in enumerate(names):
            accs.setdefault(str(name), _Accumulator(bins)).add(clean[b], noisy[b])
    if not accs:
        raise ValueError("fit_baselines got no pairs")

    configs: dict[str, ConfigBaseline] = {}
    for name in sorted(accs):
        acc = accs[name]
        total = acc.count.sum()
        mean_r = acc.sum_r.sum() / total
        var_all = acc.sum_r2.sum() / total - mean_r**2
        a_list, b_list = [], []
        for c in range(3):
            n = acc.count[c]
            ok = (n >= min_bin_pixels) & (acc.clipped[c] <= max_clipped_fraction * n)
            if int(ok.sum()) < 2:
                log.warning(
                    "configuration %s channel %d: fewer than 2 usable bins, constant variance", name, c
                )
                ok = n >= 2
            n_ok = n[ok]
            mean_x = acc.sum_x[c][ok] / n_ok
            mr = acc.sum_r[c][ok] / n_ok
            var = (acc.sum_r2[c][ok] / n_ok - mr**2) * n_ok / (n_ok - 1)
            if len(n_ok) >= 2:
                a, b = _robust_line_fit(mean_x, var, n_ok)
            else:
                a, b = 0.0, float(var_all)
            a_list.append(a)
            b_list.append(b)
        configs[name] = ConfigBaseline(
            gaussian_std=math.sqrt(max(float(var_all), 0.0)),
            pg_a=tuple(a_list),
            pg_b=tuple(b_list),
            pixels=int(total) // 3,
            pairs=acc.pairs,
        )
        log.info(
            "baseline %s: gaussian std %.5f, a %s, b %s", name, configs[name].gaussian_std, a_list, b_list
        )
    fit = {"bins": bins, "min_bin_pixels": min_bin_pixels, "max_clipped_fraction": max_clipped_fraction}
    return Baselines(configs=configs, fit=fit)


def fit_baselines_from_files(
    records: Iterable[tuple[str | os.PathLike, str | os.PathLike, str]], *, progress: bool = False, **kwargs
) -> Baselines:
    """:func:`fit_baselines` over image files: ``records`` yields (clean_path, noisy_path, config)."""
    from tqdm.auto import tqdm


    def pairs():
        for clean_path, noisy_path, name in tqdm(
            records, desc="fit baselines", unit="pair", disable=not progress, leave=False
        ):
            yield load_image(clean_path), load_image(noisy_path), name

    return fit_baselines(pairs(), **kwargs)


# ----------------------------------------------------------------------------------------------- sampling


def _per_item_noise(shape: tuple[int, ...], generators: Sequence[torch.Generator]) -> torch.Tensor:
    """(B, *shape) standard normal noise, item b drawn from ``generators[b]`` on the CPU."""
    return torch.stack([torch.randn(shape, generator=g, dtype=torch.float32) for g in generators])


def sample_gaussian(
    clean: torch.Tensor, std: torch.Tensor, generators: Sequence[torch.Generator]
) -> torch.Tensor:
    """``clean + std_b * eps`` clamped to [0, 1]. clean (B, 3, H, W) float; std (B,) in [0, 1] units."""
    eps = _per_item_noise(tuple(clean.shape[1:]), generators).to(clean.device, clean.dtype)
    std = std.to(clean.device, clean.dtype).view(-1, 1, 1, 1)
    return (clean + std * eps).clamp_(0.0, 1.0)


def sample_poisson_gaussian(
    clean: torch.Tensor, a: torch.Tensor, b: torch.Tensor, generators: Sequence[torch.Generator]
) -> torch.Tensor:
    """``clean + sqrt(a*clean + b) * eps`` clamped to [0, 1]; a, b (B, 3) per item and channel."""
    eps = _per_item_noise(tuple(clean.shape[1:]), generators).to(clean.device, clean.dtype)
    a = a.to(clean.device, clean.dtype).view(-1, 3, 1, 1)
    b = b.to(clean.device, clean.dtype).view(-1, 3, 1, 1)
    std = (a * clean + b).clamp_min(0.0).sqrt()
    return (clean + std * eps).clamp_(0.0, 1.0)
