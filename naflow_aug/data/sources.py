"""What kind of image source a path is: SIDD-Medium, paired folders, clean images, or a cache of one."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from naflow_aug.data import folders
from naflow_aug.data.cache import find_cache
from naflow_aug.data.sidd import looks_like_sidd_medium

__all__ = ["SourceKind", "source_kind"]

SourceKind = Literal["sidd", "paired", "clean"]


def source_kind(root: str | os.PathLike) -> SourceKind:
    """``'paired'`` for a CSV manifest of pairs or a folder with ``noisy/`` + ``clean/`` subfolders,
    ``'sidd'`` for a SIDD-Medium folder, ``'clean'`` for any other folder; a cache (``naflow-aug
    prepare``) is the kind of its source."""
    root = Path(root)
    if root.is_file() and root.suffix.lower() == ".csv":
        return "paired"
    if not root.is_dir():
        raise ValueError(f"source {root} is neither a folder nor a CSV manifest of pairs")
    cache = find_cache(root)
    if cache is not None:
        return cache.kind  # type: ignore[return-value]
    if looks_like_sidd_medium(root):
        return "sidd"
    if folders._find_dir(root, folders.NOISY_DIR_NAMES) and folders._find_dir(root, folders.CLEAN_DIR_NAMES):
        return "paired"
    return "clean"
