"""A user's own images: paired (clean, noisy) folders and clean-only folders.

Paired images are matched in one of three ways:

- **two folders, same names**: ``root/noisy/`` (or ``input/``) and ``root/clean/`` (or ``groundtruth/``,
  ``gt/``), or any ``noisy_dir`` / ``clean_dir``: files with the same relative path (or the same path
  without the extension, e.g. ``a.jpg`` and ``a.png``) form a pair;
- **one folder, a naming rule**: ``noisy_token``/``clean_token``, e.g. ``"NOISY"``/``"GT"`` pairs
  ``x_NOISY_1.png`` with ``x_GT_1.png`` (the first occurrence of the token in the file name is replaced);
- **a CSV manifest** with a header: ``noisy,clean`` and optionally ``class`` and ``instance`` columns,
  paths relative to the manifest's folder.

A class label (a camera configuration name) comes from the manifest's ``class`` column or from ``label``
(one for the whole folder); without one, pairs get the class ``"unlabelled"``.
"""

from __future__ import annotations

import csv
import logging
import os
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch.utils.data import Dataset
from tqdm.auto import tqdm

from naflow_aug.data.cache import find_cache
from naflow_aug.data.images import IMAGE_SUFFIXES, image_size, load_uint8
from naflow_aug.data.pairs import UNLABELLED, Pair
from naflow_aug.data.sidd import PairedCropDataset, crop_hw, random_window
from naflow_aug.images import to_float

__all__ = [
    "UNLABELLED",
    "CleanFolderDataset",
    "PairRecord",
    "PairedFolderDataset",
    "iter_images",
    "read_manifest",
    "scan_paired_folders",
]

log = logging.getLogger(__name__)

NOISY_DIR_NAMES = ("noisy", "input")
CLEAN_DIR_NAMES = ("clean", "groundtruth", "gt")
MANIFEST_COLUMNS = ("noisy", "clean", "class", "instance")


PairRecord = Pair  # the name of a folder's pair before every source yielded one record (kept for imports)


def _is_image(p: Path) -> bool:
    return p.is_file() and not p.name.startswith(".") and p.suffix.lower() in IMAGE_SUFFIXES


def iter_images(root: str | os.PathLike, *, recursive: bool = True, progress: bool = False) -> Iterator[Path]:
    """Lazily yield the image files under ``root`` (sorted within each folder; hidden files skipped).

    A cache folder (``naflow-aug prepare``) gives the arrays of its source's images, in the same order.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"image folder {root} is not a directory")
    cache = find_cache(root)
    if cache is not None:
        yield from cache.image_paths()
        return
    bar = tqdm(desc=f"scan {root.name}", unit="file", disable=not progress, leave=False)
    stack = [root]
    while stack:
        folder = stack.pop()
        entries = sorted(folder.iterdir())
        for p in entries:
            if _is_image(p):
                bar.update(1)
                yield p
        if recursive:
            stack.extend(reversed([p for p in entries if p.is_dir() and not p.name.startswith(".")]))
    bar.close()


def _check_label(label: str | None, where: str) -> str:
    if label is None or label == "":
        return UNLABELLED
    if not isinstance(label, str):
        raise TypeError(f"{where}: a class label must be a str, got {label!r}")
    return label


def _record(noisy: Path, clean: Path, cls: str, instance: str | None, check_sizes: bool) -> Pair:
    for p, what in ((noisy, "noisy"), (clean, "clean")):
        if not p.is_file():
            raise FileNotFoundError(f"{what} image not found: {p}")
    h = w = None
    if check_sizes:
        hn, wn = image_size(noisy)
        hc, wc = image_size(clean)
        if (hn, wn) != (hc, wc):
            raise ValueError(f"{noisy}: size {hn}x{wn} differs from its clean partner {clean} ({hc}x{wc})")
        h, w = hn, wn
    return Pair(clean, noisy, cls, instance if instance else noisy.stem, h, w)


def _find_dir(root: Path, names: Sequence[str]) -> Path | None:
    for n in names:
        if (root / n).is_dir():
            return root / n
    return None


def _pair_two_dirs(noisy_dir: Path, clean_dir: Path, progress: bool) -> Iterator[tuple[Path, Path]]:
    clean_files = {p.relative_to(clean_dir): p for p in iter_images(clean_dir)}
    by_stem: dict[Path, list[Path]] = {}
    for rel in clean_files:
        by_stem.setdefault(rel.with_suffix(""), []).append(rel)
    used: set[Path] = set()
    for noisy in iter_images(noisy_dir, progress=progress):
        rel = noisy.relative_to(noisy_dir)
        if rel in clean_files:
            match = rel
        else:
            cands = by_stem.get(rel.with_suffix(""), [])
            if len(cands) != 1:
                why = "is missing" if not cands else f"is ambiguous ({[str(c) for c in cands]})"
                raise ValueError(f"{noisy}: its clean partner {clean_dir / rel} {why}")
            match = cands[0]
        used.add(match)
        yield noisy, clean_files[match]
    unpaired = sorted(set(clean_files) - used)
    if unpaired:
        raise ValueError(
            f"{clean_dir / unpaired[0]}: clean image without a noisy partner in {noisy_dir} "
            f"({len(unpaired)} unpaired clean file(s))"
        )


def _pair_by_token(
    folder: Path, noisy_token: str, clean_token: str, progress: bool
) -> Iterator[tuple[Path, Path]]:
    if not noisy_token or not clean_token or noisy_token == clean_token:
        raise ValueError(
            f"noisy_token and clean_token must be two different non-empty strings, got {noisy_token!r}, "
            f"{clean_token!r}"
        )
    files = list(iter_images(folder, progress=progress))
    names = {p for p in files}
    used: set[Path] = set()
    for p in files:
        if noisy_token in p.name:
            clean = p.with_name(p.name.replace(noisy_token, clean_token, 1))
            if clean not in names:
                raise ValueError(f"{p}: its clean partner {clean.name} is missing")
            used.add(clean)
            yield p, clean
    for p in files:
        if clean_token in p.name and noisy_token not in p.name and p not in used:
            noisy = p.with_name(p.name.replace(clean_token, noisy_token, 1))
            raise ValueError(f"{p}: its noisy partner {noisy.name} is missing")


def read_manifest(path: str | os.PathLike) -> list[dict[str, str]]:
    """Rows of a CSV manifest (header ``noisy,clean[,class][,instance]``), paths made absolute."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"manifest not found: {path}")
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        header = [h.strip() for h in (reader.fieldnames or [])]
        unknown = [h for h in header if h not in MANIFEST_COLUMNS]
        if "noisy" not in header or "clean" not in header or unknown:
            raise ValueError(
                f"{path}: the header must name columns noisy,clean and optionally class,instance; "
                f"got {header}"
            )
        rows = []
        for i, row in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in row.items() if k is not None}
            if not row.get("noisy") or not row.get("clean"):
                raise ValueError(f"{path}, line {i}: empty noisy or clean path")
            for key in ("noisy", "clean"):
                p = Path(row[key])
                row[key] = str(p if p.is_absolute() else path.parent / p)
            rows.append(row)
    if not rows:
        raise ValueError(f"{path}: the manifest lists no pairs")
    return rows


def scan_paired_folders(
    root: str | os.PathLike | None = None,
    *,
    noisy_dir: str | os.PathLike | None = None,
    clean_dir: str | os.PathLike | None = None,
    noisy_token: str | None = None,
    clean_token: str | None = None,
    manifest: str | os.PathLike | None = None,
    label: str | None = None,
    check_sizes: bool = True,
    progress: bool = False,
) -> Iterator[Pair]:
    """Lazily yield the pairs of a user's folder (see the module docstring for the three ways).

    Exactly one of: ``manifest``; ``root`` with ``noisy_token``/``clean_token`` (one folder); ``root``
    holding ``noisy/`` and ``clean/`` subfolders; ``noisy_dir`` and ``clean_dir``. ``root`` may be a cache
    (``naflow-aug prepare``) of a paired or SIDD-Medium folder: its pairs, with the sizes filled in.
    """
    default = _check_label(label, "label")
    cache = find_cache(root) if root is not None and manifest is None and noisy_token is None else None
    if cache is not None:
        if cache.kind == "clean":
            raise ValueError(f"{root}: a cache of clean images only; pairs need a cache of a paired folder")
        for it in cache.items:
            cls = it.meta.get("class") or default
            yield Pair(cache.path(it.clean), cache.path(it.noisy), cls, it.meta.get("instance", ""),
                       it.height, it.width)  # fmt: skip
        return
    if manifest is not None:
        if root is not None or noisy_dir is not None or clean_dir is not None:
            raise ValueError("give either a manifest or folders, not both")
        rows = read_manifest(manifest)
        for row in tqdm(rows, desc="pairs", unit="pair", disable=not progress, leave=False):
            cls = _check_label(row.get("class"), str(manifest)) if row.get("class") else default
            yield _record(Path(row["noisy"]), Path(row["clean"]), cls, row.get("instance"), check_sizes)
        return
    if noisy_token is not None or clean_token is not None:
        if root is None:
            raise ValueError("noisy_token/clean_token need the folder `root` that holds both images")
        folder = Path(root)
        if not folder.is_dir():
            raise FileNotFoundError(f"paired folder {folder} is not a directory")
        pairs = _pair_by_token(folder, noisy_token or "", clean_token or "", progress)
    else:
        if root is not None:
            root = Path(root)
            if not root.is_dir():
                raise FileNotFoundError(f"paired folder {root} is not a directory")
            noisy_dir = noisy_dir or _find_dir(root, NOISY_DIR_NAMES)
            clean_dir = clean_dir or _find_dir(root, CLEAN_DIR_NAMES)
            if noisy_dir is None or clean_dir is None:
                raise ValueError(
                    f"{root}: expected subfolders {'/ or '.join(NOISY_DIR_NAMES)}/ and "
                    f"{'/ or '.join(CLEAN_DIR_NAMES)}/, or pass noisy_token/clean_token or a manifest"
                )
        if noisy_dir is None or clean_dir is None:
            raise ValueError("give root, or both noisy_dir and clean_dir, or a manifest")
        pairs = _pair_two_dirs(Path(noisy_dir), Path(clean_dir), progress)
    n = 0
    for noisy, clean in pairs:
        n += 1
        yield _record(noisy, clean, default, None, check_sizes)
    if n == 0:
        raise ValueError(f"no image pairs found in {root if root is not None else noisy_dir}")


class PairedFolderDataset(PairedCropDataset):
    """Pairs of a user's folder as random paired crops; items as :class:`PairedCropDataset`'s.

    Folder arguments as :func:`scan_paired_folders`; ``records`` replaces the scan. With unlabelled data
    every item has ``cls == "unlabelled"`` and label 0.
    """

    def __init__(
        self,
        root: str | os.PathLike | None = None,
        *,
        noisy_dir: str | os.PathLike | None = None,
        clean_dir: str | os.PathLike | None = None,
        noisy_token: str | None = None,
        clean_token: str | None = None,
        manifest: str | os.PathLike | None = None,
        label: str | None = None,
        crop_size: int | Sequence[int] | None = None,
        classes: Sequence[str] | None = None,
        augment: bool = True,
        preload: bool = False,
        generator: torch.Generator | None = None,
        progress: bool = False,
        records: Sequence[Pair] | None = None,
    ) -> None:
        if records is None:
            records = list(
                scan_paired_folders(
                    root,
                    noisy_dir=noisy_dir,
                    clean_dir=clean_dir,
                    noisy_token=noisy_token,
                    clean_token=clean_token,
                    manifest=manifest,
                    label=label,
                    progress=progress,
                )
            )
        self.records = list(records)
        super().__init__(
            self.records,
            crop_size=crop_size,
            classes=classes,
            augment=augment,
            preload=preload,
            generator=generator,
            progress=progress,
        )


class CleanFolderDataset(Dataset):
    """Clean images of a folder (any image files, recursively), for generation.

    Items: dict(``clean`` (3, h, w) float32 in [0, 1], ``path`` str). With ``crop_size`` a random crop
    (from ``generator`` or torch's default one); otherwise the whole image, optionally cropped at the
    bottom/right to a multiple of ``size_multiple`` (e.g. ``model.size_multiple``). Images smaller than
    the crop raise a ValueError naming the file.
    """

    def __init__(
        self,
        root: str | os.PathLike,
        *,
        recursive: bool = True,
        crop_size: int | Sequence[int] | None = None,
        size_multiple: int = 1,
        generator: torch.Generator | None = None,
        progress: bool = False,
    ) -> None:
        self.root = Path(root)
        self.paths = list(iter_images(self.root, recursive=recursive, progress=progress))
        if not self.paths:
            raise ValueError(f"no image files ({', '.join(IMAGE_SUFFIXES)}) found in {self.root}")
        self.crop_size = crop_hw(crop_size)
        if not isinstance(size_multiple, int) or size_multiple < 1:
            raise ValueError(f"size_multiple must be a positive int, got {size_multiple!r}")
        self.size_multiple = size_multiple
        self.generator = generator

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        path = self.paths[index]
        img = load_uint8(path)
        h, w = img.shape[-2:]
        if self.crop_size is not None:
            ch, cw = self.crop_size
            top, left = random_window(h, w, ch, cw, self.generator, str(path))
            img = img[:, top : top + ch, left : left + cw]
        else:
            m = self.size_multiple
            hh, ww = h // m * m, w // m * m
            if hh == 0 or ww == 0:
                raise ValueError(f"{path}: image {h}x{w} is smaller than the size multiple {m}")
            img = img[:, :hh, :ww]
        return {"clean": to_float(img), "path": str(path)}
