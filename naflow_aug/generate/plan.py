"""The deterministic work list: which crop of which image is sample ``i`` (headers read, no pixels)."""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from naflow_aug.data.images import image_size
from naflow_aug.data.pairs import Pair
from naflow_aug.data.sources import scan_source
from naflow_aug.generate.config import GenerateConfig
from naflow_aug.runtime.seeding import numpy_generator


@dataclass(frozen=True)
class Plan:
    """The deterministic work list: sample ``i`` is crop (``top[i]``, ``left[i]``) of image ``image[i]``."""

    root: Path
    images: list[Pair]
    image: np.ndarray  # (N,) int32 index into images
    top: np.ndarray  # (N,) int32
    left: np.ndarray  # (N,) int32
    crop: int
    part_size: int
    seed: int

    @property
    def num_samples(self) -> int:
        return int(self.image.shape[0])

    @property
    def num_parts(self) -> int:
        return -(-self.num_samples // self.part_size)

    def part_range(self, part: int) -> tuple[int, int]:
        start = part * self.part_size
        return start, min(start + self.part_size, self.num_samples)

    def digest(self) -> str:
        h = hashlib.sha256()
        for rec in self.images:
            noisy = relative_path(rec.noisy_path, self.root) if rec.noisy_path else ""
            h.update(f"{relative_path(rec.clean_path, self.root)}|{noisy}\n".encode())
        for arr in (self.image, self.top, self.left):
            h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()


def make_plan(config: GenerateConfig) -> Plan:
    """Scan the source and lay out every sample (image, crop box) in a fixed order (reads headers only)."""
    source = Path(config.source).resolve()
    images = scan_source(source, config.source_kind)
    root = source.parent if source.is_file() else source  # a manifest's paths are relative to its folder
    if config.max_images is not None:
        images = images[: config.max_images]
    c, stride = config.crop, config.stride or config.crop
    image_ids, tops, lefts = [], [], []
    for j, rec in enumerate(images):
        h, w = image_size(rec.clean_path)
        if rec.noisy_path is not None and image_size(rec.noisy_path) != (h, w):
            raise ValueError(
                f"{rec.noisy_path} is {image_size(rec.noisy_path)} but its clean image {rec.clean_path} is "
                f"{(h, w)}"
            )
        if c > h or c > w:
            raise ValueError(
                f"crop {c} is larger than image {rec.clean_path} ({h}x{w}); choose crop <= {min(h, w)}"
            )
        if config.crops == "grid":
            boxes = [(t, left) for t in range(0, h - c + 1, stride) for left in range(0, w - c + 1, stride)]
        else:
            rng = numpy_generator(config.seed, j, 0x5EED)
            boxes = list(
                zip(
                    rng.integers(0, h - c + 1, config.crops_per_image).tolist(),
                    rng.integers(0, w - c + 1, config.crops_per_image).tolist(),
                    strict=True,
                )
            )
        for t, left in boxes:
            for _ in range(config.samples_per_crop):
                image_ids.append(j)
                tops.append(t)
                lefts.append(left)
    return Plan(
        root=root,
        images=images,
        image=np.asarray(image_ids, dtype=np.int32),
        top=np.asarray(tops, dtype=np.int32),
        left=np.asarray(lefts, dtype=np.int32),
        crop=c,
        part_size=config.part_size,
        seed=config.seed,
    )


def relative_path(path: Path, root: Path) -> str:
    return os.path.relpath(path, root)
