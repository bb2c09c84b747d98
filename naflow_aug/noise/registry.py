"""The noise-source spellings: one table (kind -> argument rule, builder, help text) that the parser, every
``--noise`` help, the transforms and :func:`make_noise_source` read.

::

    random                         a random configuration of the model per image (the default)
    config:S6_03200                one configuration of the model
    weights:<file.json | w1,w2,... | NAME=w,NAME=w>   a mixture over the model's configurations
    nas[:reference|model]          noise-aware sampling from a reference (clean, noisy) pair
    profile:<path.json>            a saved noise profile (see naflow_aug.noise.profiles)
    profile-ref:<path.json>        the same at each reference (real noisy) image's noise level
    gaussian:<sigma>               white Gaussian noise, sigma in 0-255 units
    gaussian-per-config[:<baselines.json>]   fitted Gaussian of each configuration
    poisson-gaussian[:<baselines.json>]      fitted signal-dependent a*x + b of each configuration
    real                           the reference noisy image itself
    albumentations-gauss           A.GaussNoise as a user would configure it
    albumentations-iso             A.ISONoise as a user would configure it

A new kind is one :class:`~naflow_aug.noise.spec.NoiseKind` in :data:`NOISE_KINDS` (and one case in the
registry's contract test, which fails without it).
"""

from __future__ import annotations

import os
import textwrap
from dataclasses import dataclass, field
from typing import Any

import torch

from naflow_aug import tiling
from naflow_aug.flow.noise_level import LEVELS
from naflow_aug.noise.baseline_sources import AlbumentationsSource, BaselineSource, GaussianSource, RealSource
from naflow_aug.noise.baselines import Baselines
from naflow_aug.noise.model_source import MODEL_KINDS, ModelSource, resolve_model
from naflow_aug.noise.profiles import NoiseProfile
from naflow_aug.noise.source import NoiseSource
from naflow_aug.noise.spec import NoiseKind, NoiseSpec, parse_spelling, valid_forms
from naflow_aug.weights import parse_weights


@dataclass(frozen=True)
class BuildInputs:
    """What a builder may use besides the spelling: the resolved model (model kinds only), the fitted
    baselines given to :func:`make_noise_source`, and the model sources' options."""

    model: Any = None
    baselines: Baselines | str | os.PathLike | None = None
    options: dict[str, Any] = field(default_factory=dict)


# ------------------------------------------------------------------------------------------------ builders


def _model_source(spec: NoiseSpec, inputs: BuildInputs, net: Any = None, weights: Any = None,
                  kind: str | None = None, **extra: Any) -> ModelSource:  # fmt: skip
    net = inputs.model if net is None else net
    kind = spec.kind if kind is None else kind
    return ModelSource(spec.text, net, kind=kind, weights=weights, **inputs.options, **extra)


def _build_random(spec: NoiseSpec, inputs: BuildInputs) -> NoiseSource:
    return _model_source(spec, inputs)


def _build_config(spec: NoiseSpec, inputs: BuildInputs) -> NoiseSource:
    classes = list(inputs.model.classes)
    if spec.arg not in classes:
        raise ValueError(
            f"noise source {spec.text!r}: configuration {spec.arg!r} is not one of the model's {classes}"
        )
    weights = torch.zeros(len(classes))
    weights[classes.index(spec.arg)] = 1.0
    return _model_source(spec, inputs, weights=weights)


def _build_weights(spec: NoiseSpec, inputs: BuildInputs) -> NoiseSource:
    return _model_source(spec, inputs, weights=parse_weights(spec.arg, list(inputs.model.classes)))


def _build_nas(spec: NoiseSpec, inputs: BuildInputs) -> NoiseSource:
    return _model_source(spec, inputs, noise_level=spec.arg or "reference")


def _build_profile(spec: NoiseSpec, inputs: BuildInputs) -> NoiseSource:
    # a mixture over the model's configurations, or an adapted copy of the model and its camera
    net, weights = NoiseProfile.load(spec.arg).model_for(inputs.model)
    level = "reference" if spec.kind == "profile-ref" else "model"
    return _model_source(spec, inputs, net=net, weights=weights, kind="profile", noise_level=level)


def _build_gaussian(spec: NoiseSpec, inputs: BuildInputs) -> NoiseSource:
    return GaussianSource(spec.text, float(spec.arg))


def _load_baselines(spec: NoiseSpec, baselines: Baselines | str | os.PathLike | None) -> Baselines:
    if spec.arg is not None:
        return Baselines.load(spec.arg)
    if isinstance(baselines, Baselines):
        return baselines
    if baselines is not None:
        return Baselines.load(baselines)
    raise ValueError(
        f"noise source {spec.text!r} needs fitted baselines: write {spec.text}:<baselines.json> or pass "
        "baselines=... (fit them with `naflow-aug fit-baselines`)"
    )


def _build_baseline(spec: NoiseSpec, inputs: BuildInputs) -> NoiseSource:
    return BaselineSource(spec.text, _load_baselines(spec, inputs.baselines), kind=spec.kind)


def _build_real(spec: NoiseSpec, inputs: BuildInputs) -> NoiseSource:
    return RealSource(spec.text)


def _build_albumentations(spec: NoiseSpec, inputs: BuildInputs) -> NoiseSource:
    return AlbumentationsSource(spec.text, spec.kind)


def _check_level(arg: str) -> str | None:
    return None if arg in LEVELS else f"nas takes the noise level, one of {LEVELS} (default reference)"


def _check_sigma(arg: str) -> str | None:
    try:
        float(arg)
    except ValueError:
        return f"sigma {arg!r} is not a number"
    return None


# --------------------------------------------------------------------------------------------- the table

_KINDS = (
    NoiseKind("random", "none", "random", "a random configuration of the model per image", _build_random,
              model=True),
    NoiseKind("config", "required", "config:<NAME> (e.g. config:S6_03200)", "one configuration of the model",
              _build_config, model=True),
    NoiseKind("weights", "required", "weights:<file.json | w1,w2,... | NAME=w,NAME=w,...>",
              "a mixture over the model's configurations", _build_weights, model=True, input_file="weights"),
    NoiseKind("nas", "optional", "nas[:reference|model]",
              "noise-aware sampling from the real noisy image of each clean one (nas:model keeps the "
              "mixture's own noise level)", _build_nas, model=True, reference=True, check_arg=_check_level),
    NoiseKind("profile", "required", "profile:<path.json>", "a camera's noise profile (naflow-aug calibrate)",
              _build_profile, model=True, input_file="profile"),
    NoiseKind("profile-ref", "required", "profile-ref:<path.json>",
              "a camera's noise profile at the noise level of each clean image's real noisy one (as nas "
              "scales its samples)", _build_profile, model=True, reference=True, input_file="profile"),
    NoiseKind("gaussian", "required", "gaussian:<sigma in 0-255 units>", "white Gaussian noise",
              _build_gaussian, baseline=True, check_arg=_check_sigma),
    NoiseKind("gaussian-per-config", "optional", "gaussian-per-config[:<baselines.json>]",
              "the fitted Gaussian noise of each item's configuration", _build_baseline, fitted=True,
              baseline=True, input_file="baselines"),
    NoiseKind("poisson-gaussian", "optional", "poisson-gaussian[:<baselines.json>]",
              "the fitted signal-dependent noise (variance a*x + b) of each item's configuration",
              _build_baseline, fitted=True, baseline=True, input_file="baselines"),
    NoiseKind("real", "none", "real", "the real noisy image itself", _build_real, reference=True),
    NoiseKind("albumentations-gauss", "none", "albumentations-gauss", "A.GaussNoise as a user would set it",
              _build_albumentations, baseline=True),
    NoiseKind("albumentations-iso", "none", "albumentations-iso", "A.ISONoise as a user would set it",
              _build_albumentations, baseline=True),
)  # fmt: skip
#: every noise-source kind, by name, in the order help lists them
NOISE_KINDS: dict[str, NoiseKind] = {kind.name: kind for kind in _KINDS}
# the model kinds are ModelSource's kinds (profile-ref is a profile source at the reference's level)
assert {k.name for k in _KINDS if k.model} - {"profile-ref"} == set(MODEL_KINDS)

#: each built-in kind's spelling as help shows it
NOISE_SOURCE_FORMS = tuple(kind.form for kind in _KINDS)


def parse_noise_spec(spelling: str | NoiseSpec) -> NoiseSpec:
    """The :class:`NoiseSpec` of a spelling (a NoiseSpec passes through); ValueError naming the spelling and
    the valid forms. ``kind, arg = parse_noise_spec(s)`` unpacks it."""
    if isinstance(spelling, NoiseSpec):
        return spelling
    return parse_spelling(spelling, NOISE_KINDS)


def noise_help(lead: str = "noise source") -> str:
    """A ``--noise`` help text: ``lead``, then every spelling."""
    return f"{lead}; one of: " + ", ".join(kind.form for kind in NOISE_KINDS.values())


def noise_kinds_help(width: int = 100) -> str:
    """Each kind's spelling and what it makes, wrapped to ``width`` columns (a ``--help`` epilog)."""
    return "\n".join(
        textwrap.fill(f"{k.form}: {k.help}", width, initial_indent="  ", subsequent_indent="      ")
        for k in NOISE_KINDS.values()
    )


def make_noise_source(
    spec: str | NoiseSpec | NoiseSource = "random",
    model: Any = None,
    *,
    baselines: Baselines | str | os.PathLike | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    tile_size: int | None = tiling.DEFAULT_TILE_SIZE,
    overlap: int = tiling.DEFAULT_OVERLAP,
    device: str | torch.device | None = None,
) -> NoiseSource:
    """Build the noise source a spelling names (see the module doc; a parsed :class:`NoiseSpec` or a ready
    NoiseSource pass too). ``model``: a NAFlow, a bundled name or a checkpoint path, needed by the model
    sources only (None: the bundled default); ``baselines``: fitted baselines (object or JSON path) for the
    per-configuration baselines spelled without a file."""
    if isinstance(spec, NoiseSource):
        return spec
    spec = parse_noise_spec(spec)
    inputs = BuildInputs(
        model=resolve_model(model, device) if spec.needs_model else None,
        baselines=baselines,
        options=dict(temperature=temperature, top_k=top_k, tile_size=tile_size, overlap=overlap),
    )
    return spec.info.build(spec, inputs)


__all__ = [
    "NOISE_KINDS",
    "NOISE_SOURCE_FORMS",
    "BuildInputs",
    "NoiseKind",
    "NoiseSpec",
    "make_noise_source",
    "noise_help",
    "noise_kinds_help",
    "parse_noise_spec",
    "valid_forms",
]
