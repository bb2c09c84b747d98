"""What a source path holds (SIDD-Medium, paired folders, clean images, or a cache of one), and the one
scanner that lists any of them as :class:`~naflow_aug.data.pairs.Pair` records."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from naflow_aug.data import folders
from naflow_aug.data.cache import find_cache
from naflow_aug.data.pairs import Pair
from naflow_aug.data.sidd import looks_like_sidd_medium, scan_sidd_medium

__all__ = ["SourceKind", "scan_source", "source_kind"]

SourceKind = Literal["sidd", "paired", "clean"]


def _is_manifest(root: Path) -> bool:
    return root.is_file() and root.suffix.lower() == ".csv"


def source_kind(root: str | os.PathLike) -> SourceKind:
    """``'paired'`` for a CSV manifest of pairs or a folder with ``noisy/`` + ``clean/`` subfolders,
    ``'sidd'`` for a SIDD-Medium folder, ``'clean'`` for any other folder; a cache (``naflow-aug
    prepare``) is the kind of its source."""
    root = Path(root)
    if _is_manifest(root):
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


def scan_source(
    root: str | os.PathLike, kind: SourceKind | Literal["auto"] = "auto", *, check_sizes: bool = False
) -> list[Pair]:
    """The images of a source in scan order, as pairs (file names only; no pixels read).

    ``sidd``: SIDD-Medium layout (``Data/<instance folder>/<inst>_{GT,NOISY}_SRGB_01x.PNG``);
    ``paired``: a folder with ``noisy/`` and ``clean/`` subfolders (see :mod:`naflow_aug.data.folders`)
    or a CSV manifest (``noisy,clean[,class]``); ``clean``: every image below the folder, as pairs
    without a noisy image. ``auto`` picks by what the path holds (:func:`source_kind`). A cache
    (``naflow-aug prepare``) of any of these reads as its source. ``check_sizes`` reads the image
    headers to check that both images of a pair agree (and fills in the sizes).
    """
    root = Path(root)
    manifest = _is_manifest(root)
    if not root.is_dir() and not manifest:
        raise ValueError(f"source {root} is neither a folder nor a CSV manifest of pairs")
    if kind == "auto":
        kind = source_kind(root)
    if kind == "sidd":
        pairs = list(scan_sidd_medium(root, check_sizes=check_sizes))
    elif kind == "paired":
        pairs = list(folders.scan_paired_folders(
            None if manifest else root, manifest=root if manifest else None, check_sizes=check_sizes
        ))  # fmt: skip
    elif kind == "clean":
        if manifest:
            raise ValueError(f"a CSV manifest ({root}) lists pairs; use source kind 'paired'")
        pairs = [Pair(p) for p in folders.iter_images(root)]
    else:
        raise ValueError(f"source kind must be auto, sidd, paired or clean, got {kind!r}")
    if not pairs:
        raise ValueError(f"source {root} holds no images (looked for a {kind} source)")
    return pairs
