"""Noise profiles: the NAS posterior of a camera, averaged over a handful of its (clean, noisy) pairs.

A profile lets a user make the noise of their own camera on any clean image, without metadata: calibrate
once (``naflow-aug calibrate --pairs DIR --out profile.json``), then use ``profile:profile.json`` as the
noise source. The JSON holds the format version, the model's class names and checkpoint SHA-256, the
mixture weights (by class name), and how many pairs and which files they came from.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from naflow_aug import tiling
from naflow_aug.runs import atomic_write_json, read_json

log = logging.getLogger(__name__)

FORMAT_VERSION = 1
KIND = "naflow-aug-noise-profile"


@dataclass(frozen=True)
class NoiseProfile:
    """Mixture weights over a model's configurations (``classes``, in the model's order)."""

    classes: tuple[str, ...]
    weights: tuple[float, ...]
    model_sha256: str | None = None
    pairs: int = 0
    files: tuple[str, ...] = ()
    temperature: float = 1.0
    top_k: int | None = None
    extra: dict = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "weights", tuple(float(w) for w in self.weights))
        object.__setattr__(self, "files", tuple(self.files))
        if len(self.classes) != len(self.weights) or not self.classes:
            raise ValueError(
                f"a profile needs one weight per class, got {len(self.weights)} weights "
                f"for {len(self.classes)} classes"
            )
        w = torch.tensor(self.weights, dtype=torch.float64)
        if not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or float(w.sum()) <= 0:
            raise ValueError(
                f"profile weights must be finite, >= 0 and not all zero, got {list(self.weights)}"
            )

    def weights_for(self, model: Any) -> torch.Tensor:
        """(K,) float32 weights in ``model.classes`` order, ValueError naming both class lists on mismatch."""
        model_classes = list(model.classes)
        if list(self.classes) != model_classes:
            raise ValueError(
                f"this noise profile was made for a model with classes {list(self.classes)}, but the model "
                f"has classes {model_classes}; calibrate a profile with this model (`naflow-aug calibrate`)"
            )
        sha = getattr(model, "checkpoint_sha256", None)
        if self.model_sha256 and sha and sha != self.model_sha256:
            log.warning(
                "noise profile was calibrated with checkpoint %s, applying it to %s (same classes)",
                self.model_sha256[:12],
                sha[:12],
            )
        w = torch.tensor(self.weights, dtype=torch.float64)
        return (w / w.sum()).to(torch.float32)

    def top(self, n: int = 5) -> list[tuple[str, float]]:
        """The n heaviest configurations and their weights."""
        order = sorted(range(len(self.weights)), key=lambda i: -self.weights[i])[:n]
        return [(self.classes[i], self.weights[i]) for i in order]

    def to_dict(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "kind": KIND,
            "model_classes": list(self.classes),
            "model_sha256": self.model_sha256,
            "weights": {c: w for c, w in zip(self.classes, self.weights, strict=True)},
            "pairs": self.pairs,
            "files": list(self.files),
            "temperature": self.temperature,
            "top_k": self.top_k,
            "extra": self.extra,
        }

    @classmethod
    def from_dict(cls, data: dict, where: str = "profile") -> NoiseProfile:
        if not isinstance(data, dict) or data.get("kind") != KIND:
            got = data.get("kind") if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"{where}: not a naflow-aug noise profile (expected kind {KIND!r}, got {got!r})")
        if data.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{where}: profile format_version {data.get('format_version')!r} is not supported "
                f"(expected {FORMAT_VERSION})"
            )
        classes = list(data["model_classes"])
        weights = data["weights"]
        if not isinstance(weights, dict) or sorted(weights) != sorted(classes):
            raise ValueError(f"{where}: 'weights' must map every class in 'model_classes' to a weight")
        return cls(
            classes=tuple(classes),
            weights=tuple(float(weights[c]) for c in classes),
            model_sha256=data.get("model_sha256"),
            pairs=int(data.get("pairs", 0)),
            files=tuple(data.get("files", ())),
            temperature=float(data.get("temperature", 1.0)),
            top_k=data.get("top_k"),
            extra=dict(data.get("extra") or {}),
        )

    def save(self, path: str | os.PathLike) -> Path:
        return atomic_write_json(path, self.to_dict())

    @classmethod
    def load(cls, path: str | os.PathLike) -> NoiseProfile:
        return cls.from_dict(read_json(path, "noise profile file"), where=str(path))


def calibrate(
    model: Any,
    pairs: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    files: Sequence[str] = (),
    temperature: float = 1.0,
    top_k: int | None = None,
    tile_size: int | None = tiling.DEFAULT_TILE_SIZE,
    overlap: int = tiling.DEFAULT_OVERLAP,
    progress: bool = False,
) -> NoiseProfile:
    """Average the NAS posterior of (clean, noisy) pairs ((3, H, W) float in [0, 1], any size).

    Each pair's posterior is computed once for the whole image (tiled when large); the profile's weights are
    the mean of the per-pair posteriors.
    """
    from naflow_aug.sampling import ModelSource, check_images, resolve_model

    model = resolve_model(model)
    source = ModelSource("nas", model, kind="nas", temperature=temperature, top_k=top_k, tile_size=tile_size,
                         overlap=overlap)  # fmt: skip
    total = torch.zeros(len(model.classes), dtype=torch.float64)
    n = 0
    for clean, noisy in tqdm(pairs, desc="calibrate", unit="pair", disable=not progress, leave=False):
        clean = check_images(clean[None] if clean.dim() == 3 else clean, "clean")
        noisy = check_images(noisy[None] if noisy.dim() == 3 else noisy, "noisy")
        if clean.shape != noisy.shape:
            raise ValueError(f"clean and noisy shapes differ: {tuple(clean.shape)} vs {tuple(noisy.shape)}")
        w = source.nas_weights(clean, noisy).double()
        total += w.sum(0)
        n += w.shape[0]
    if n == 0:
        raise ValueError("calibrate got no (clean, noisy) pairs")
    weights = total / n
    profile = NoiseProfile(
        classes=tuple(model.classes),
        weights=tuple(weights.tolist()),
        model_sha256=getattr(model, "checkpoint_sha256", None),
        pairs=n,
        files=tuple(files),
        temperature=temperature,
        top_k=top_k,
    )
    log.info("calibrated a profile from %d pairs; top configurations %s", n, profile.top(3))
    return profile


_CLEAN_NOISY = (
    (re.compile(r"^(?P<stem>.+)_clean$", re.I), "clean"),
    (re.compile(r"^(?P<stem>.+)_noisy$", re.I), "noisy"),
    (re.compile(r"^(?P<stem>.+)_GT_SRGB_(?P<shot>\d+)$", re.I), "clean"),
    (re.compile(r"^(?P<stem>.+)_NOISY_SRGB_(?P<shot>\d+)$", re.I), "noisy"),
)


def find_pairs(folder: str | os.PathLike) -> list[tuple[Path, Path]]:
    """(clean, noisy) files in a folder (searched recursively): ``<name>_clean.<ext>`` with
    ``<name>_noisy.<ext>``, or SIDD's ``<inst>_GT_SRGB_<shot>`` with ``<inst>_NOISY_SRGB_<shot>``."""
    from naflow_aug.data.folders import iter_images

    folder = Path(folder)
    if not folder.is_dir():
        raise ValueError(f"pairs folder {str(folder)!r} is not a directory")
    found: dict[tuple[Path, str], dict[str, Path]] = {}
    for f in sorted(iter_images(folder)):
        for pattern, role in _CLEAN_NOISY:
            m = pattern.match(f.stem)
            if m:
                key = (f.parent, m["stem"] + "#" + (m.groupdict().get("shot") or ""))
                found.setdefault(key, {})[role] = f
                break
    pairs, unmatched = [], []
    for _, roles in sorted(found.items()):
        if "clean" in roles and "noisy" in roles:
            pairs.append((roles["clean"], roles["noisy"]))
        else:
            unmatched.extend(str(p) for p in roles.values())
    if unmatched:
        log.warning("%d files without a partner were skipped, e.g. %s", len(unmatched), unmatched[:3])
    if not pairs:
        raise ValueError(
            f"no (clean, noisy) pairs in {str(folder)!r}: expected <name>_clean.png with <name>_noisy.png "
            "(or SIDD's <inst>_GT_SRGB_<shot>.PNG with <inst>_NOISY_SRGB_<shot>.PNG)"
        )
    return pairs


def pair_files(
    folder: str | os.PathLike | None = None,
    *,
    noisy_token: str | None = None,
    clean_token: str | None = None,
    manifest: str | os.PathLike | None = None,
) -> list[tuple[Path, Path]]:
    """(clean, noisy) file pairs of a user's folder: the paired-folder reader of
    :mod:`naflow_aug.data.folders` (``noisy/`` + ``clean/`` subfolders, a naming rule, or a manifest), else
    :func:`find_pairs`'s ``<name>_clean`` / ``<name>_noisy`` (and SIDD GT/NOISY) rule in one folder."""
    from naflow_aug.data.folders import CLEAN_DIR_NAMES, NOISY_DIR_NAMES, scan_paired_folders

    if manifest is None and noisy_token is None and clean_token is None:
        if folder is None:
            raise ValueError("give a pairs folder or a manifest")
        root = Path(folder)
        has_dirs = any((root / n).is_dir() for n in NOISY_DIR_NAMES) and any(
            (root / n).is_dir() for n in CLEAN_DIR_NAMES
        )
        if not has_dirs:
            return find_pairs(root)
    records = scan_paired_folders(folder, noisy_token=noisy_token, clean_token=clean_token, manifest=manifest)
    return [(r.clean_path, r.noisy_path) for r in records]


def calibrate_folder(
    model: Any,
    folder: str | os.PathLike | None = None,
    *,
    noisy_token: str | None = None,
    clean_token: str | None = None,
    manifest: str | os.PathLike | None = None,
    max_pairs: int | None = None,
    progress: bool = False,
    **kwargs: Any,
) -> NoiseProfile:
    """:func:`calibrate` over the pairs of :func:`pair_files` (file names recorded relative to the folder)."""
    from naflow_aug.data.images import load_image

    pairs = pair_files(folder, noisy_token=noisy_token, clean_token=clean_token, manifest=manifest)
    pairs = pairs[:max_pairs]
    root = Path(folder if folder is not None else Path(manifest).parent)

    def images():
        for clean_path, noisy_path in pairs:
            clean, noisy = load_image(clean_path), load_image(noisy_path)
            if clean.shape != noisy.shape:
                raise ValueError(
                    f"{noisy_path}: size {tuple(noisy.shape[1:])} differs from "
                    f"{clean_path.name}'s {tuple(clean.shape[1:])}"
                )
            yield clean, noisy

    files = [str(n.relative_to(root)) if n.is_relative_to(root) else str(n) for _, n in pairs]
    return calibrate(model, images(), files=files, progress=progress, **kwargs)


def profile_source(model: Any, profile: NoiseProfile | str | os.PathLike, **kwargs: Any):
    """The noise source of a profile (object or JSON path) for ``model`` (object, bundled name or path)."""
    from naflow_aug.sampling import ModelSource, resolve_model

    model = resolve_model(model)
    spec = "profile:<in memory>"
    if not isinstance(profile, NoiseProfile):
        spec = f"profile:{profile}"
        profile = NoiseProfile.load(profile)
    return ModelSource(spec, model, kind="profile", weights=profile.weights_for(model), **kwargs)
