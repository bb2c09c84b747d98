"""The pair record every data source yields, and splits by scene instance.

A :class:`Pair` is a clean image file and, where the source has one, its real noisy counterpart, with
the camera configuration (``cls``) and the scene instance a split groups by. SIDD-Medium pairs also
carry what their folder and file names say (:class:`SiddMeta`). The scanners of
:mod:`naflow_aug.data.sidd`, :mod:`naflow_aug.data.folders` and :mod:`naflow_aug.data.sources` yield
them; :func:`split_pairs` divides them by a split (``'sidd-mini'``, a split TOML or instance ids).
"""

from __future__ import annotations

import os
from collections.abc import Collection, Iterable
from dataclasses import dataclass
from importlib import resources
from pathlib import Path

from naflow_aug.runs import read_toml

__all__ = ["UNLABELLED", "Pair", "SiddMeta", "load_split", "select_instances", "split_pairs"]

UNLABELLED = "unlabelled"  # the configuration of a pair whose source names none


@dataclass(frozen=True)
class SiddMeta:
    """What a SIDD-Medium pair's folder and file names say (besides its instance and configuration)."""

    folder: str  # "0052_002_S6_01600_01000_5500_N"
    scene: str  # "002"
    phone: str  # "S6"
    iso: int  # 1600
    shutter: int  # 1000
    temperature: int  # 5500 (K)
    brightness: str  # "L", "N" or "H"
    shot: str  # "010" or "011"


@dataclass(frozen=True)
class Pair:
    """One clean image file and its real noisy counterpart (``None`` in a clean-only source).

    ``cls``: the camera configuration (``"S6_01600"``; :data:`UNLABELLED` when the source names none);
    ``instance``: what a split groups by (a SIDD scene instance ``"0052"``; for a user's pairs by
    default the noisy file's name without extension); ``height``/``width``: filled in where the scan
    read the headers (or a cache recorded them); ``sidd``: SIDD-Medium metadata, ``None`` elsewhere.
    """

    clean_path: Path
    noisy_path: Path | None = None
    cls: str = UNLABELLED
    instance: str = ""
    height: int | None = None
    width: int | None = None
    sidd: SiddMeta | None = None

    @property
    def name(self) -> str:
        """A readable name: ``<folder>/<shot>`` for a SIDD pair, else the noisy (or clean) file's stem."""
        if self.sidd is not None:
            return f"{self.sidd.folder}/{self.sidd.shot}"
        return Path(self.noisy_path if self.noisy_path is not None else self.clean_path).stem


# ------------------------------------------------------------------------------------------ splits

_SPLIT_KEYS = {"name", "description", "dataset", "train", "val"}

Split = str | os.PathLike | tuple[Collection[str], Collection[str]]


def load_split(name: str | os.PathLike = "sidd-mini") -> tuple[list[str], list[str]]:
    """(train_instances, val_instances) of a committed split (``"sidd-mini"``) or of a split TOML file.

    Instances are SIDD scene-instance ids (``"0052"``), sorted. The file holds ``train`` and ``val`` lists
    (disjoint); unknown keys are rejected.
    """
    if isinstance(name, str) and not name.endswith(".toml"):
        fname = name.replace("-", "_") + ".toml"
        ref = resources.files("naflow_aug") / "splits" / fname
        if not ref.is_file():
            known = sorted(
                p.name.removesuffix(".toml").replace("_", "-")
                for p in (resources.files("naflow_aug") / "splits").iterdir()
                if p.name.endswith(".toml")
            )
            raise ValueError(
                f"unknown split {name!r}; known splits: {known} (or pass a path to a .toml file)"
            )
        with resources.as_file(ref) as path:
            data = read_toml(path)
        where = f"split {name!r}"
    else:
        data = read_toml(name)
        where = str(name)
    unknown = set(data) - _SPLIT_KEYS
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}; expected some of {sorted(_SPLIT_KEYS)}")
    lists = []
    for key in ("train", "val"):
        v = data.get(key)
        if not isinstance(v, list) or not all(isinstance(s, str) for s in v) or not v:
            raise ValueError(f"{where}: {key!r} must be a non-empty list of instance-id strings, got {v!r}")
        if len(set(v)) != len(v):
            raise ValueError(f"{where}: {key!r} lists an instance twice")
        lists.append(sorted(v))
    overlap = set(lists[0]) & set(lists[1])
    if overlap:
        raise ValueError(f"{where}: instances in both train and val: {sorted(overlap)}")
    return lists[0], lists[1]


def select_instances(pairs: Iterable[Pair], instances: Iterable[str]) -> list[Pair]:
    """The pairs of the given scene instances, in their order."""
    keep = set(instances)
    return [p for p in pairs if p.instance in keep]


def split_pairs(pairs: Iterable[Pair], split: Split) -> tuple[list[Pair], list[Pair]]:
    """(training pairs, validation pairs) by scene instance, each in the pairs' order.

    ``split``: a committed split's name (``"sidd-mini"``), a split TOML file (:func:`load_split`), or
    its ``(train, val)`` instance ids. Pairs of instances in neither part are in neither list.
    """
    train_ids, val_ids = load_split(split) if isinstance(split, (str, os.PathLike)) else split
    pairs = list(pairs)
    return select_instances(pairs, train_ids), select_instances(pairs, val_ids)
