"""Compatibility: fitted baselines moved to :mod:`naflow_aug.noise.baselines`; these names still import from
here."""

from naflow_aug.noise.baselines import (
    Baselines,
    ConfigBaseline,
    fit_baselines,
    fit_baselines_from_files,
    sample_gaussian,
    sample_poisson_gaussian,
)

__all__ = [
    "Baselines",
    "ConfigBaseline",
    "fit_baselines",
    "fit_baselines_from_files",
    "sample_gaussian",
    "sample_poisson_gaussian",
]
