"""Noise profiles: a camera's noise, made from a handful of its (clean, noisy) pairs.

A profile lets a user make the noise of their own camera on any clean image, without metadata: calibrate
once (``naflow-aug calibrate --pairs DIR --out camera.json``), then use ``profile:camera.json`` as the
noise source. Two modes:

- ``adapt`` (the default): a new configuration learned from the pairs (:mod:`naflow_aug.adapt`): its
  latent Gaussian and a small change of the flow, stored as tensors in a file beside the JSON
  (``camera.pt``, named by the JSON, read with ``torch.load(weights_only=True)``);
- ``mixture``: the NAS posterior averaged over the pairs, i.e. mixture weights over the model's
  configurations (the only mode of format version 1, whose files still load).

The JSON holds the format version, the mode, the base model's class names and checkpoint SHA-256, the
mixture weights or the tensors file (and its SHA-256), and how many pairs and which files it came from. A
profile applies only to the base model it was made with: another checkpoint is refused with both SHA-256s.
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
from naflow_aug.adapt import AdaptConfig, adapt, adapted_tensors, apply_tensors
from naflow_aug.data.folders import CLEAN_DIR_NAMES, NOISY_DIR_NAMES, iter_images, scan_paired_folders
from naflow_aug.data.images import load_image
from naflow_aug.noise.model_source import ModelSource, resolve_model
from naflow_aug.noise.source import check_images
from naflow_aug.runs import atomic_write_json, read_json, sha256_file

log = logging.getLogger(__name__)

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
KIND = "naflow-aug-noise-profile"
MODES = ("adapt", "mixture")


@dataclass(frozen=True)
class NoiseProfile:
    """A camera's noise for a base model with configurations ``classes`` (in the model's order).

    ``mode="mixture"``: ``weights`` over ``classes``. ``mode="adapt"``: ``tensors`` (the adapted model's
    changes, :func:`naflow_aug.adapt.adapted_tensors`) and the new configuration's name ``camera``;
    ``weights`` is empty.
    """

    classes: tuple[str, ...]
    weights: tuple[float, ...] = ()
    model_sha256: str | None = None
    pairs: int = 0
    files: tuple[str, ...] = ()
    temperature: float = 1.0
    top_k: int | None = None
    extra: dict = field(default_factory=dict)
    mode: str = "mixture"
    camera: str | None = None
    tensors: dict[str, torch.Tensor] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "classes", tuple(self.classes))
        object.__setattr__(self, "weights", tuple(float(w) for w in self.weights))
        object.__setattr__(self, "files", tuple(self.files))
        if self.mode not in MODES:
            raise ValueError(f"profile mode must be one of {MODES}, got {self.mode!r}")
        if not self.classes:
            raise ValueError("a profile needs the base model's class names, got none")
        if self.mode == "adapt":
            if self.weights:
                raise ValueError(f"an adapted profile has no mixture weights, got {len(self.weights)}")
            if not isinstance(self.camera, str) or not self.camera:
                raise ValueError(f"an adapted profile needs its camera class name, got {self.camera!r}")
            if not isinstance(self.tensors, dict) or not all(
                isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in self.tensors.items()
            ):
                raise ValueError(
                    f"an adapted profile needs tensors {{name: Tensor}}, got {type(self.tensors).__name__}"
                )
            return
        if len(self.classes) != len(self.weights):
            raise ValueError(
                f"a profile needs one weight per class, got {len(self.weights)} weights "
                f"for {len(self.classes)} classes"
            )
        w = torch.tensor(self.weights, dtype=torch.float64)
        if not bool(torch.isfinite(w).all()) or bool((w < 0).any()) or float(w.sum()) <= 0:
            raise ValueError(
                f"profile weights must be finite, >= 0 and not all zero, got {list(self.weights)}"
            )

    def _check_base(self, model: Any) -> None:
        """ValueError naming both class lists, or both SHA-256s, when ``model`` is not this profile's base."""
        model_classes = list(model.classes)
        if list(self.classes) != model_classes:
            raise ValueError(
                f"this noise profile was made for a model with classes {list(self.classes)}, but the model "
                f"has classes {model_classes}; calibrate a profile with this model (`naflow-aug calibrate`)"
            )
        sha = getattr(model, "checkpoint_sha256", None)
        if self.model_sha256 and sha and sha != self.model_sha256:
            raise ValueError(
                f"this noise profile was made for the base model with SHA-256 {self.model_sha256}, but the "
                f"model given has SHA-256 {sha}; calibrate a profile with this model (`naflow-aug calibrate`)"
            )
        if self.model_sha256 and not sha:
            log.warning("applying a noise profile of checkpoint %s to a model of unknown checkpoint",
                        self.model_sha256[:12])  # fmt: skip

    def weights_for(self, model: Any) -> torch.Tensor:
        """(K,) float32 mixture weights in ``model.classes`` order (mixture profiles only)."""
        if self.mode != "mixture":
            raise ValueError(f"weights_for needs a mixture profile, this one is {self.mode!r}; use model_for")
        self._check_base(model)
        w = torch.tensor(self.weights, dtype=torch.float64)
        return (w / w.sum()).to(torch.float32)

    def model_for(self, model: Any) -> tuple[Any, torch.Tensor]:
        """(the model to sample from, its (K',) float32 weights) for the base ``model``: the base model and
        the mixture weights, or the adapted model and its camera class alone."""
        if self.mode == "mixture":
            return model, self.weights_for(model)
        self._check_base(model)
        adapted = apply_tensors(model, self.tensors, self.camera)
        weights = torch.zeros(adapted.num_classes)
        weights[-1] = 1.0
        return adapted, weights

    def top(self, n: int = 5) -> list[tuple[str, float]]:
        """The n heaviest configurations and their weights (an adapted profile: its camera, weight 1)."""
        if self.mode == "adapt":
            return [(self.camera, 1.0)]
        order = sorted(range(len(self.weights)), key=lambda i: -self.weights[i])[:n]
        return [(self.classes[i], self.weights[i]) for i in order]

    def to_dict(self, tensors_file: str | None = None, tensors_sha256: str | None = None) -> dict:
        data = {
            "format_version": FORMAT_VERSION,
            "kind": KIND,
            "mode": self.mode,
            "model_classes": list(self.classes),
            "model_sha256": self.model_sha256,
            "weights": dict(zip(self.classes, self.weights, strict=True)) if self.weights else None,
            "camera": self.camera,
            "tensors": tensors_file,
            "tensors_sha256": tensors_sha256,
            "pairs": self.pairs,
            "files": list(self.files),
            "temperature": self.temperature,
            "top_k": self.top_k,
            "extra": self.extra,
        }
        return data

    @classmethod
    def from_dict(cls, data: dict, where: str = "profile", tensors: dict | None = None) -> NoiseProfile:
        if not isinstance(data, dict) or data.get("kind") != KIND:
            got = data.get("kind") if isinstance(data, dict) else type(data).__name__
            raise ValueError(f"{where}: not a naflow-aug noise profile (expected kind {KIND!r}, got {got!r})")
        if data.get("format_version") not in READABLE_VERSIONS:
            raise ValueError(
                f"{where}: profile format_version {data.get('format_version')!r} is not supported "
                f"(expected one of {READABLE_VERSIONS})"
            )
        classes = list(data["model_classes"])
        mode = data.get("mode", "mixture")
        weights = data.get("weights")
        if mode == "mixture" and (not isinstance(weights, dict) or sorted(weights) != sorted(classes)):
            raise ValueError(f"{where}: 'weights' must map every class in 'model_classes' to a weight")
        return cls(
            classes=tuple(classes),
            weights=tuple(float(weights[c]) for c in classes) if mode == "mixture" else (),
            model_sha256=data.get("model_sha256"),
            pairs=int(data.get("pairs", 0)),
            files=tuple(data.get("files", ())),
            temperature=float(data.get("temperature", 1.0)),
            top_k=data.get("top_k"),
            extra=dict(data.get("extra") or {}),
            mode=mode,
            camera=data.get("camera"),
            tensors=tensors,
        )

    def save(self, path: str | os.PathLike) -> Path:
        """Write ``path`` (JSON) and, for an adapted profile, its tensors beside it (``<stem>.pt``)."""
        path = Path(path)
        if self.mode == "mixture":
            return atomic_write_json(path, self.to_dict())
        tensors_path = path.with_suffix(".pt")
        if tensors_path == path:
            raise ValueError(f"profile path {str(path)!r} must not end in .pt (the tensors go there)")
        tensors_path.parent.mkdir(parents=True, exist_ok=True)
        tmp = tensors_path.with_name(tensors_path.name + ".tmp")
        torch.save({k: v.detach().cpu().contiguous() for k, v in self.tensors.items()}, tmp)
        os.replace(tmp, tensors_path)
        return atomic_write_json(path, self.to_dict(tensors_path.name, sha256_file(tensors_path)))

    @classmethod
    def load(cls, path: str | os.PathLike) -> NoiseProfile:
        path = Path(path)
        data = read_json(path, "noise profile file")
        tensors = None
        if isinstance(data, dict) and data.get("mode") == "adapt":
            tensors = _load_tensors(path, data)
        return cls.from_dict(data, where=str(path), tensors=tensors)


def _load_tensors(path: Path, data: dict) -> dict[str, torch.Tensor]:
    name = data.get("tensors")
    if not isinstance(name, str) or not name or Path(name).name != name:
        raise ValueError(f"{path}: 'tensors' must name a file beside the profile, got {name!r}")
    tensors_path = path.parent / name
    if not tensors_path.is_file():
        raise ValueError(f"{path}: its tensors file {str(tensors_path)!r} does not exist")
    expected = data.get("tensors_sha256")
    if expected and sha256_file(tensors_path) != expected:
        raise ValueError(
            f"{path}: tensors file {tensors_path.name} has SHA-256 {sha256_file(tensors_path)}, the profile "
            f"records {expected}"
        )
    tensors = torch.load(tensors_path, map_location="cpu", weights_only=True)
    if not isinstance(tensors, dict):
        raise ValueError(f"{tensors_path}: expected a {{name: tensor}} mapping, got {type(tensors).__name__}")
    return tensors


def calibrate(
    model: Any,
    pairs: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    mode: str = "adapt",
    files: Sequence[str] = (),
    adapt_config: Any = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    tile_size: int | None = tiling.DEFAULT_TILE_SIZE,
    overlap: int = tiling.DEFAULT_OVERLAP,
    progress: bool = False,
) -> NoiseProfile:
    """A profile of a camera from its (clean, noisy) pairs ((3, H, W) float in [0, 1], any size).

    ``mode="adapt"`` (default): a new configuration learned from the pairs (:func:`naflow_aug.adapt.adapt`
    with ``adapt_config``, an :class:`~naflow_aug.adapt.AdaptConfig`; its seed makes it deterministic).
    ``mode="mixture"``: each pair's NAS posterior, computed once for the whole image (tiled when large),
    averaged over the pairs.
    """
    if mode not in MODES:
        raise ValueError(f"calibrate mode must be one of {MODES}, got {mode!r}")
    model = resolve_model(model)
    if mode == "adapt":
        return _calibrate_adapt(model, list(pairs), files=files, config=adapt_config, progress=progress)
    return _calibrate_mixture(model, pairs, files=files, temperature=temperature, top_k=top_k,
                              tile_size=tile_size, overlap=overlap, progress=progress)  # fmt: skip


def _calibrate_adapt(
    model: Any, pairs: list, *, files: Sequence[str], config: Any, progress: bool
) -> NoiseProfile:
    config = config or AdaptConfig()
    adapted, info = adapt(model, pairs, config, progress=progress)
    profile = NoiseProfile(
        classes=tuple(model.classes),
        model_sha256=getattr(model, "checkpoint_sha256", None),
        pairs=len(pairs),
        files=tuple(files),
        extra={"adapt": config.to_dict(), "adapt_info": info},
        mode="adapt",
        camera=config.camera,
        tensors=adapted_tensors(model, adapted, config),
    )
    log.info("adapted a profile from %d pairs in %.1f s", len(pairs), info["seconds"])
    return profile


def _calibrate_mixture(
    model: Any,
    pairs: Iterable[tuple[torch.Tensor, torch.Tensor]],
    *,
    files: Sequence[str],
    temperature: float,
    top_k: int | None,
    tile_size: int | None,
    overlap: int,
    progress: bool,
) -> NoiseProfile:
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
    model = resolve_model(model)
    spec = "profile:<in memory>"
    if not isinstance(profile, NoiseProfile):
        spec = f"profile:{profile}"
        profile = NoiseProfile.load(profile)
    net, weights = profile.model_for(model)
    return ModelSource(spec, net, kind="profile", weights=weights, **kwargs)
