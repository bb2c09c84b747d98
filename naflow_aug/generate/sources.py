"""The images of a generation source (SIDD-Medium, a paired folder or manifest, a clean-only folder)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from naflow_aug.data import folders
from naflow_aug.data.sidd import scan_sidd_medium
from naflow_aug.data.sources import source_kind
from naflow_aug.generate.config import SourceKind


@dataclass(frozen=True)
class SourceImage:
    """One source image: its clean file, the real noisy counterpart (or None) and its class (or None)."""

    clean: Path
    noisy: Path | None = None
    label: str | None = None


def scan_source(root: str | os.PathLike, kind: SourceKind = "auto") -> list[SourceImage]:
    """The images of a source, sorted, as ``SourceImage`` records (file names only; no pixels read).

    ``sidd``: SIDD-Medium layout (``Data/<instance folder>/<inst>_{GT,NOISY}_SRGB_01x.PNG``);
    ``paired``: a folder with ``noisy/`` and ``clean/`` subfolders (see ``naflow_aug.data.folders``) or a
    CSV manifest (``noisy,clean[,class]``); ``clean``: every image below the folder. ``auto`` picks by what
    the folder holds. A cache (``naflow-aug prepare``) of any of these reads as its source.
    """
    root = Path(root)
    manifest = root.is_file() and root.suffix.lower() == ".csv"
    if not root.is_dir() and not manifest:
        raise ValueError(f"source {root} is neither a folder nor a CSV manifest of pairs")
    if kind == "auto":
        kind = source_kind(root)
    if kind == "sidd":
        pairs = scan_sidd_medium(root, check_sizes=False)
        records = [SourceImage(p.clean_path, p.noisy_path, p.cls) for p in pairs]
    elif kind == "paired":
        pairs = folders.scan_paired_folders(
            None if manifest else root, manifest=root if manifest else None, check_sizes=False
        )
        records = [
            SourceImage(p.clean_path, p.noisy_path, None if p.cls == folders.UNLABELLED else p.cls)
            for p in pairs
        ]
    elif kind == "clean":
        if manifest:
            raise ValueError(f"a CSV manifest ({root}) lists pairs; use source kind 'paired'")
        records = [SourceImage(p) for p in folders.iter_images(root)]
    else:
        raise ValueError(f"source kind must be auto, sidd, paired or clean, got {kind!r}")
    if not records:
        raise ValueError(f"source {root} holds no images (looked for a {kind} source)")
    return records


def _relative(path: Path, root: Path) -> str:
    return os.path.relpath(path, root)
