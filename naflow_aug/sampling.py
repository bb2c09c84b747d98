"""Compatibility: the noise sources moved to :mod:`naflow_aug.noise`; these names still import from here."""

from naflow_aug.noise.baseline_sources import AlbumentationsSource, BaselineSource, GaussianSource, RealSource
from naflow_aug.noise.model_source import MODEL_KINDS, ModelSource, resolve_model
from naflow_aug.noise.params import NoiseParams
from naflow_aug.noise.registry import NOISE_SOURCE_FORMS, make_noise_source, parse_noise_spec
from naflow_aug.noise.source import NoiseSource, check_images, draw_seeds, item_generator

__all__ = [
    "MODEL_KINDS",
    "NOISE_SOURCE_FORMS",
    "AlbumentationsSource",
    "BaselineSource",
    "GaussianSource",
    "ModelSource",
    "NoiseParams",
    "NoiseSource",
    "RealSource",
    "check_images",
    "draw_seeds",
    "item_generator",
    "make_noise_source",
    "parse_noise_spec",
    "resolve_model",
]
