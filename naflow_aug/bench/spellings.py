"""What the bench reads from a noise-source spelling, from the noise registry: which kinds are parametric
baselines (the rows NAFlow noise has to beat)."""

from __future__ import annotations

from naflow_aug.noise.registry import NOISE_KINDS, parse_noise_spec

#: noise-source kinds that are parametric baselines
BASELINE_KINDS = tuple(name for name, kind in NOISE_KINDS.items() if kind.baseline)


def is_baseline(source: str) -> bool:
    """True for a parametric baseline row (``gaussian:10``, ``poisson-gaussian``, ...); False for every other
    row (model noise, ``real``, HDF5 files, checkpoints)."""
    try:
        return parse_noise_spec(source).info.baseline
    except ValueError:  # not a noise spelling: an HDF5 or checkpoint row
        return False
