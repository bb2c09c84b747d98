"""Noise sources: the one place that turns clean images into noisy ones, for every front-end.

A source is made from its spelling (:mod:`naflow_aug.noise.registry` lists them), shared by Python, the
transforms and the CLI's ``--noise``::

    source = make_noise_source("config:S6_03200", model)
    noisy, params = source(clean)                # clean (B, 3, H, W) float in [0, 1]
    assert torch.equal(source.replay(clean, params), noisy)

Modules: ``spec`` (a parsed spelling), ``registry`` (the spellings, :func:`make_noise_source`), ``source``
(the contract every source follows), ``params`` (what a call drew), ``model_source`` (NAFlow noise),
``baseline_sources`` (Gaussian, fitted baselines, real, albumentations), ``baselines`` (fitting them) and
``profiles`` (a camera's noise from a few of its pairs).
"""

from naflow_aug.noise.baseline_sources import AlbumentationsSource, BaselineSource, GaussianSource, RealSource
from naflow_aug.noise.baselines import Baselines, ConfigBaseline, fit_baselines, fit_baselines_from_files
from naflow_aug.noise.model_source import MODEL_KINDS, ModelSource, resolve_model
from naflow_aug.noise.params import NoiseParams
from naflow_aug.noise.profiles import NoiseProfile, calibrate, calibrate_folder, profile_source
from naflow_aug.noise.registry import (
    NOISE_KINDS,
    NOISE_SOURCE_FORMS,
    make_noise_source,
    noise_help,
    parse_noise_spec,
)
from naflow_aug.noise.source import NoiseSource, check_images, draw_seeds, item_generator
from naflow_aug.noise.spec import NoiseKind, NoiseSpec

__all__ = [
    "MODEL_KINDS",
    "NOISE_KINDS",
    "NOISE_SOURCE_FORMS",
    "AlbumentationsSource",
    "BaselineSource",
    "Baselines",
    "ConfigBaseline",
    "GaussianSource",
    "ModelSource",
    "NoiseKind",
    "NoiseParams",
    "NoiseProfile",
    "NoiseSource",
    "NoiseSpec",
    "RealSource",
    "calibrate",
    "calibrate_folder",
    "check_images",
    "draw_seeds",
    "fit_baselines",
    "fit_baselines_from_files",
    "item_generator",
    "make_noise_source",
    "noise_help",
    "parse_noise_spec",
    "profile_source",
    "resolve_model",
]
