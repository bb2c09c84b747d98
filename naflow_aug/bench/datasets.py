"""What the bench reads from files: clean image folders and SIDD pairs as training datasets (items
``{'clean', 'noisy', 'cls'}``), a SIDD split's held-out pairs, and paired folders or manifests as
``(name, group, noisy, clean)`` scoring pairs."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from naflow_aug.bench.batches import Pair
from naflow_aug.data.folders import iter_images, scan_paired_folders
from naflow_aug.data.images import IMAGE_SUFFIXES, read_image
from naflow_aug.data.pairs import load_split, split_pairs
from naflow_aug.data.sidd import scan_sidd_medium


class CleanFolder:
    """Clean images of a folder (recursive, as `iter_images`) as items ``{'clean': (H, W, 3) uint8}``."""

    def __init__(self, root: str | os.PathLike, *, cache: bool = True):
        self.root = Path(root)
        if not self.root.is_dir():
            raise ValueError(f"clean image folder {self.root} does not exist")
        self.paths = sorted(iter_images(self.root))
        if not self.paths:
            raise ValueError(f"{self.root} holds no images ({sorted(IMAGE_SUFFIXES)})")
        self._cache: dict[int, np.ndarray] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self._cache is not None and index in self._cache:
            return {"clean": self._cache[index]}
        image = read_image(self.paths[index])
        if self._cache is not None:
            self._cache[index] = image
        return {"clean": image}


class SiddPairsInMemory:
    """SIDD pairs decoded once into memory as items ``{'clean', 'noisy'}`` (H, W, 3) uint8 + ``'cls'``."""

    def __init__(self, pairs: Sequence[Any], *, progress: bool = False):
        if not pairs:
            raise ValueError("no SIDD pairs selected")
        self.pairs = list(pairs)
        self.images = [
            (read_image(p.clean_path), read_image(p.noisy_path))
            for p in tqdm(self.pairs, desc="read pairs", disable=not progress, leave=False)
        ]
        for p, (c, n) in zip(self.pairs, self.images, strict=True):
            if c.shape != n.shape:
                raise ValueError(f"{p.noisy_path}: size {n.shape} differs from its clean image {c.shape}")

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        clean, noisy = self.images[index]
        return {"clean": clean, "noisy": noisy, "cls": self.pairs[index].cls}


def sidd_split_data(
    root: str | os.PathLike, split: str | os.PathLike | None = None, *, progress: bool = False
) -> tuple[Any, Callable[[], Iterator[Pair]] | None]:
    """A SIDD-Medium-layout folder -> (training dataset of whole pairs with ``cls``, held-out pairs).

    With ``split`` (``'sidd-mini'`` or a split TOML) training uses the split's training instances and
    the held-out pairs are the real (noisy, clean) images of its validation instances, grouped by phone.
    """
    pairs = list(scan_sidd_medium(root, progress=progress))
    if split is None:
        return SiddPairsInMemory(pairs, progress=progress), None
    train_ids, val_ids = load_split(split)
    missing = sorted(set(train_ids) - {p.instance for p in pairs})
    if missing:
        raise ValueError(f"split {split}: training instances {missing} are not in {root}")
    train_pairs, held = split_pairs(pairs, (train_ids, val_ids))
    train = SiddPairsInMemory(train_pairs, progress=progress)
    if not held:
        raise ValueError(f"none of the split's validation instances {val_ids} is in {root}")

    def held_out() -> Iterator[Pair]:
        return load_pairs((p.name, p.sidd.phone, p.noisy_path, p.clean_path) for p in held)

    return train, held_out


def paired_folder_pairs(folder: str | os.PathLike) -> list[tuple[str, str, Path, Path]]:
    """Pairs of a user's paired folder -> ``(name, group, noisy_path, clean_path)``.

    ``folder``: a folder with ``noisy/`` (or ``input/``) and ``clean/`` (or ``groundtruth/``) subfolders
    of the same names, or a CSV manifest ``noisy,clean[,class]`` (see :mod:`naflow_aug.data.folders`).
    The group is the pair's class (``'unlabelled'`` without one).
    """
    folder = Path(folder)
    if folder.suffix.lower() == ".csv":
        records = scan_paired_folders(manifest=folder)
    else:
        records = scan_paired_folders(folder)
    return [(r.name, r.cls, Path(r.noisy_path), Path(r.clean_path)) for r in records]


def load_pairs(pairs: Iterable[tuple[str, str, Any, Any]]) -> Iterator[Pair]:
    """Read paths in ``(name, group, noisy, clean)`` pairs lazily (arrays and tensors pass through)."""
    for name, group, noisy, clean in pairs:
        noisy = read_image(noisy) if isinstance(noisy, (str, Path)) else noisy
        clean = read_image(clean) if isinstance(clean, (str, Path)) else clean
        yield name, group, noisy, clean

