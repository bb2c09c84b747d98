"""What the bench reads from a noise-source spelling itself (the kind before the first ``:``): which kinds
are parametric baselines, and which are fitted on the training pairs. The one place where the bench
looks into a spelling."""

from __future__ import annotations

from collections.abc import Sequence

#: noise-source kinds that are parametric baselines (the rows NAFlow noise has to beat)
BASELINE_KINDS = (
    "gaussian",
    "gaussian-per-config",
    "poisson-gaussian",
    "albumentations-gauss",
    "albumentations-iso",
)
#: baseline kinds fitted on the training pairs when the spelling names no baselines file
FITTED_BASELINE_KINDS = ("gaussian-per-config", "poisson-gaussian")


def is_baseline(source: str) -> bool:
    """True for a parametric baseline row (``gaussian:10``, ``poisson-gaussian``, ...)."""
    return source.split(":", 1)[0].strip() in BASELINE_KINDS


def any_fitted_baseline(specs: Sequence[str]) -> bool:
    """True when a spelling of ``specs`` is of a kind whose baselines can be fitted on the training pairs."""
    return any(n.split(":")[0] in FITTED_BASELINE_KINDS for n in specs)
