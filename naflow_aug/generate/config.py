"""What to generate: :class:`GenerateConfig`, validated on construction; its ``content()`` is what a
resumed run must match."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

SourceKind = Literal["auto", "sidd", "paired", "clean"]
# Config fields that do not change what the samples are (everything else must match on --resume).
_RUN_ONLY_FIELDS = ("out", "resume", "overwrite", "progress", "device", "join")


@dataclass(frozen=True)
class GenerateConfig:
    """What to generate. ``model`` is a bundled name or a checkpoint path; ``noise`` one of ``nas`` (needs a
    paired source: each crop's own real noisy counterpart is the reference), ``random``,
    ``config:<phone>_<ISO>``, ``profile:<path.json>``, ``weights:<file or comma list>``."""

    out: str
    source: str
    model: str = "sidd-mini"
    source_kind: SourceKind = "auto"
    noise: str = "nas"
    crop: int = 256
    crops: Literal["grid", "random"] = "grid"
    stride: int | None = None  # grid step in pixels (default: crop, non-overlapping)
    crops_per_image: int = 1  # random crops per image
    samples_per_crop: int = 1
    seed: int = 0
    batch_size: int = 8
    part_size: int = 64
    max_images: int | None = None
    device: str | None = None  # None: the CPU; "auto": CUDA when available; "cuda", "cuda:1", ...
    compression: Literal["none", "lzf", "gzip"] = "none"
    join: Literal["copy", "vds"] = "copy"
    resume: bool = False
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("crop", "crops_per_image", "samples_per_crop", "batch_size", "part_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.stride is not None and (not isinstance(self.stride, int) or self.stride <= 0):
            raise ValueError(f"stride must be a positive integer or None, got {self.stride!r}")
        if self.max_images is not None and (not isinstance(self.max_images, int) or self.max_images <= 0):
            raise ValueError(f"max_images must be a positive integer or None, got {self.max_images!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be an integer in [0, 2**63), got {self.seed!r}")
        checks = {
            "source_kind": ("auto", "sidd", "paired", "clean"),
            "crops": ("grid", "random"),
            "compression": ("none", "lzf", "gzip"),
            "join": ("copy", "vds"),
        }
        for name, allowed in checks.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.resume and self.overwrite:
            raise ValueError("resume and overwrite exclude each other; choose one")
        if not self.out:
            raise ValueError("out must name the output .h5 file")

    def content(self) -> dict[str, Any]:
        """The fields that decide the samples' bytes (compared on resume)."""
        data = dataclasses.asdict(self)
        for name in _RUN_ONLY_FIELDS:
            data.pop(name)
        data["source"] = str(Path(self.source).resolve())
        return data
