"""Noise functions: what makes a batch's noise (:class:`NoiseFunction`), and any ``--noise`` spelling of
``naflow_aug.noise`` as one (:class:`SourceNoise`, :func:`load_noise`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

import torch

from naflow_aug.checkpoints import load
from naflow_aug.noise.baseline_sources import BaselineSource
from naflow_aug.noise.registry import NoiseSpec, make_noise_source, parse_noise_spec


class NoiseFunction(Protocol):
    """Makes noise for a batch: ``(clean (B,3,H,W) in [0,1], reference (B,3,H,W) or None, seeds (B,) int64,
    labels (B names) or None) -> (noisy (B,3,H,W) in [0,1], weights (B,K) float)``; item ``b`` depends only
    on its own inputs and ``seeds[b]``. ``classes`` names the K weights; ``mode`` is recorded per sample."""

    mode: str
    classes: Sequence[str]
    needs_reference: bool
    device: torch.device

    def __call__(
        self,
        clean: torch.Tensor,
        reference: torch.Tensor | None,
        seeds: torch.Tensor,
        labels: Sequence[str] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


class SourceNoise:
    """A noise source of ``naflow_aug.noise`` (any ``--noise`` spelling) as a noise function.

    Model sources record their mixture weights over the model's classes; baselines that pick a
    configuration record it one-hot; sources without classes (``gaussian:<sigma>``, ``real``, the
    albumentations ones) record one pseudo-class named after the source, with weight 1.
    """

    def __init__(self, source: Any):
        self.source = source
        self.mode = source.spec
        self.needs_reference = bool(source.needs_reference)
        model = getattr(source, "model", None)
        self.device = next(model.parameters()).device if model is not None else torch.device("cpu")
        self.classes = list(source.classes) if source.classes else [source.spec]
        self._use_labels = isinstance(source, BaselineSource)

    def __call__(self, clean, reference, seeds, labels=None):
        if self._use_labels and labels is not None and any(label is None for label in labels):
            labels = None
        noisy, params = self.source(
            clean, reference=reference, configs=labels if self._use_labels else None, seeds=seeds
        )
        if params.weights is not None:
            weights = params.weights
        elif params.configs is not None:
            weights = torch.zeros(len(seeds), len(self.classes))
            weights[torch.arange(len(seeds)), [self.classes.index(c) for c in params.configs]] = 1.0
        else:
            weights = torch.ones(len(seeds), 1)
        return noisy, weights


def load_noise(
    model: str, noise: str | NoiseSpec, device: str | torch.device | None
) -> tuple[SourceNoise, str]:
    """The noise function for ``noise`` (loading ``model``, a bundled name or a checkpoint path, when the
    source needs one) and the model checkpoint's SHA-256 ("" for sources without a model)."""
    spec = parse_noise_spec(noise)
    if not spec.needs_model:
        return SourceNoise(make_noise_source(spec, device=device)), ""
    loaded = load(model, device=device)
    source = make_noise_source(spec, loaded, device=device)
    return SourceNoise(source), str(getattr(loaded, "checkpoint_sha256", ""))
