"""A noise source's spelling, parsed (:class:`NoiseSpec`), and what one kind of spelling accepts
(:class:`NoiseKind`).

The table of kinds lives in :mod:`naflow_aug.noise.registry`; this module holds the value types and the one
grammar, ``<kind>[:<argument>]``, checked against that table.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

#: whether a kind takes an argument after ':'
ArgRule = Literal["none", "required", "optional"]


@dataclass(frozen=True)
class NoiseKind:
    """One kind of noise-source spelling: its argument rule, how to build it and its help text.

    ``check_arg(arg)`` returns what is wrong with an argument (None: fine); ``build(spec, inputs)`` makes the
    source (see :func:`naflow_aug.noise.registry.make_noise_source`). ``input_file`` names what the
    argument's file is (``profile``, ``weights``, ``baselines``) for jobs that record their inputs.
    """

    name: str
    arg: ArgRule
    form: str  # the spelling as help shows it, e.g. "config:<NAME>"
    help: str
    build: Callable[[NoiseSpec, Any], Any] = field(repr=False, compare=False)
    model: bool = False  # made by a NAFlow
    reference: bool = False  # needs the real noisy image of each clean one
    fitted: bool = False  # per-configuration baselines: a file argument, else fitted baselines passed in
    baseline: bool = False  # a parametric baseline (what benchmarks compare model noise with)
    input_file: str | None = None
    check_arg: Callable[[str], str | None] | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class NoiseSpec:
    """A parsed spelling: ``kind`` (its name), ``arg`` (None when absent) and ``text``, the spelling as
    written (stripped), which sources and their params record. Unpacks as ``kind, arg = spec``."""

    kind: str
    arg: str | None
    text: str = field(compare=False)
    info: NoiseKind = field(repr=False, compare=False)

    def __str__(self) -> str:
        return self.text

    def __iter__(self) -> Iterator[str | None]:
        return iter((self.kind, self.arg))

    @property
    def needs_model(self) -> bool:
        return self.info.model

    @property
    def needs_reference(self) -> bool:
        return self.info.reference

    @property
    def needs_fitted_baselines(self) -> bool:
        """A per-configuration baseline without a baselines file: it needs baselines fitted on pairs."""
        return self.info.fitted and self.arg is None


def valid_forms(kinds: Mapping[str, NoiseKind]) -> str:
    return "valid noise sources: " + ", ".join(k.form for k in kinds.values())


def parse_spelling(spelling: Any, kinds: Mapping[str, NoiseKind]) -> NoiseSpec:
    """The :class:`NoiseSpec` of ``spelling`` among ``kinds``; ValueError naming the spelling and the valid
    forms, TypeError for a non-string."""
    if not isinstance(spelling, str):
        raise TypeError(
            f"a noise source spelling must be a str, got {type(spelling).__name__}: {spelling!r}"
        )
    text = spelling.strip()
    name, sep, arg = text.partition(":")
    name, arg = name.strip(), arg.strip()
    kind = kinds.get(name)
    if kind is None:
        raise ValueError(f"unknown noise source {spelling!r}; {valid_forms(kinds)}")
    if kind.arg == "none" and sep:
        raise ValueError(f"noise source {spelling!r}: {name!r} takes no argument; {valid_forms(kinds)}")
    if kind.arg == "required" and not arg:
        raise ValueError(
            f"noise source {spelling!r}: {name!r} needs an argument after ':'; {valid_forms(kinds)}"
        )
    problem = kind.check_arg(arg) if kind.check_arg is not None and arg else None
    if problem:
        raise ValueError(f"noise source {spelling!r}: {problem}; {valid_forms(kinds)}")
    return NoiseSpec(kind=name, arg=arg or None, text=text, info=kind)
