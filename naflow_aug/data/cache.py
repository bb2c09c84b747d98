"""A decoded-image cache: every image of a source decoded once into a memory-mappable uint8 array.

Layout (written by :func:`naflow_aug.data.prepare.prepare_cache`, ``naflow-aug prepare``)::

    CACHE/manifest.json                 format, source, one record per item (pair or clean image)
    CACHE/arrays/NNNNNN_<stem>.npy      uint8 (H, W, 3), C order, one per source image file

A 160x160 crop of a 12 MP array reads only the window's ~160 rows (one ``pread``,
:func:`naflow_aug.data.images.read_crop`) instead of decoding a 25 MB PNG, into a reused buffer, so a
reader's resident memory stays bounded whatever the data size.
The manifest records per item the source kind's metadata (SIDD: instance, scene folder,
shot, configuration, brightness; paired folders: class and instance; split membership when the cache
was prepared with a split) and per array its shape, size, SHA-256 and the source file's path, size and
modification time.

The data layer's scanners (``scan_sidd_medium``, ``scan_paired_folders``, ``iter_images``) accept a
cache folder in place of the source folder, and the image readers (``naflow_aug.data.images``) read its
arrays, so every job that takes a data folder takes a cache.

Opening checks the structure of the cache (format version, completeness, every array present with its
recorded size and shape): milliseconds. The SHA-256 of every array is checked by
:func:`ImageCache.verify` (``naflow-aug prepare --verify --out CACHE``), which reads all the data (the
full SIDD-Medium: 23 GB, tens of seconds to minutes), too slow for every job start.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tqdm.auto import tqdm

from naflow_aug.data.images import array_shape

__all__ = [
    "CACHE_FORMAT",
    "MANIFEST_NAME",
    "CacheArray",
    "CacheItem",
    "ImageCache",
    "find_cache",
    "open_cache",
]

log = logging.getLogger(__name__)

CACHE_FORMAT = "naflow-aug-cache/1"
MANIFEST_NAME = "manifest.json"
ARRAYS_DIR = "arrays"
KINDS = ("sidd", "paired", "clean")


@dataclass(frozen=True)
class CacheArray:
    """One decoded image: its array file (relative to the cache) and where it came from."""

    file: str
    shape: tuple[int, int, int]
    bytes: int
    sha256: str
    source: str  # the source image, relative to the source root
    source_bytes: int
    source_mtime_ns: int

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CacheArray:
        return cls(d["file"], tuple(d["shape"]), int(d["bytes"]), d["sha256"], d["source"],
                   int(d["source_bytes"]), int(d["source_mtime_ns"]))  # fmt: skip


@dataclass(frozen=True)
class CacheItem:
    """One item of a cache: a (clean, noisy) pair, or a clean image (``noisy`` None)."""

    index: int
    clean: CacheArray
    noisy: CacheArray | None
    meta: dict[str, Any]  # kind-specific: SIDD folder/shot/class/instance/brightness; class/instance; split

    @property
    def height(self) -> int:
        return self.clean.shape[0]

    @property
    def width(self) -> int:
        return self.clean.shape[1]


class ImageCache:
    """An opened cache (see the module docstring): ``kind``, ``source_root``, ``items``, ``path(array)``."""

    def __init__(self, root: str | os.PathLike, manifest: dict[str, Any]):
        self.root = Path(root)
        self.manifest = manifest
        self.kind: str = manifest["kind"]
        self.source_root = Path(manifest["source"]["root"])
        self.items: list[CacheItem] = []
        for i, rec in enumerate(manifest["items"]):
            if not rec.get("done"):
                raise ValueError(
                    f"{self.root}: the cache is incomplete (item {i}, {rec['clean']['source']}, was not "
                    f"written); finish it with `naflow-aug prepare --resume --out {self.root} --data ...`"
                )
            noisy = CacheArray.from_dict(rec["noisy"]) if rec.get("noisy") else None
            self.items.append(CacheItem(i, CacheArray.from_dict(rec["clean"]), noisy, dict(rec["meta"])))

    def path(self, array: CacheArray) -> Path:
        return self.root / array.file

    def arrays(self) -> list[CacheArray]:
        """Every distinct array of the cache, in item order (clean, then noisy)."""
        seen: dict[str, CacheArray] = {}
        for it in self.items:
            for a in (it.clean, it.noisy):
                if a is not None:
                    seen.setdefault(a.file, a)
        return list(seen.values())

    def image_paths(self) -> Iterator[Path]:
        """The array of every source image, in the order ``iter_images`` walks the source folder."""
        for a in sorted(self.arrays(), key=lambda a: _walk_key(a.source)):
            yield self.path(a)

    def check_structure(self) -> None:
        """Every array present, with its recorded size and shape (reads the .npy headers, not the data)."""
        for a in self.arrays():
            path = self.path(a)
            if not path.is_file():
                raise ValueError(f"{path}: array of {a.source} is missing from the cache {self.root}")
            size = path.stat().st_size
            if size != a.bytes:
                raise ValueError(f"{path}: {size} bytes, the manifest records {a.bytes} (damaged cache)")
            shape = array_shape(path)
            if shape != a.shape:
                raise ValueError(f"{path}: an array of shape {shape}, the manifest records {a.shape}")

    def verify(self, *, progress: bool = False) -> int:
        """Check the SHA-256 of every array against the manifest; returns the number of bytes hashed.

        Raises ``ValueError`` naming the first array whose checksum differs.
        """
        self.check_structure()
        arrays = self.arrays()
        total = 0
        bar = tqdm(total=sum(a.bytes for a in arrays), desc="verify", unit="B", unit_scale=True,
                   disable=not progress, leave=False)  # fmt: skip
        for a in arrays:
            path = self.path(a)
            got = sha256_of(path, bar.update)
            if got != a.sha256:
                bar.close()
                raise ValueError(
                    f"{path}: checksum mismatch (SHA-256 {got}, the manifest records {a.sha256}); the array "
                    f"of {a.source} changed after it was written: rebuild the cache"
                )
            total += a.bytes
        bar.close()
        return total


def sha256_of(path: Path, update: Any = None, chunk: int = 1 << 22) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
            if update is not None:
                update(len(block))
    return digest.hexdigest()


def _walk_key(rel: str) -> tuple[tuple[int, str], ...]:
    # iter_images lists a folder's files (sorted) before descending into its subfolders (sorted)
    parts = rel.split("/")
    return tuple((1, p) for p in parts[:-1]) + ((0, parts[-1]),)


def read_manifest(root: str | os.PathLike) -> dict[str, Any]:
    """The manifest of a cache folder, with its format checked."""
    path = Path(root) / MANIFEST_NAME
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ValueError(f"{root}: not a naflow-aug cache ({MANIFEST_NAME} is missing)") from None
    except (OSError, json.JSONDecodeError) as e:
        raise ValueError(f"{path}: unreadable cache manifest ({e})") from e
    fmt = manifest.get("format") if isinstance(manifest, dict) else None
    if fmt != CACHE_FORMAT:
        raise ValueError(f"{path}: cache format {fmt!r}; this naflow-aug reads {CACHE_FORMAT!r}")
    if manifest.get("kind") not in KINDS:
        raise ValueError(f"{path}: source kind {manifest.get('kind')!r}; expected one of {KINDS}")
    return manifest


def open_cache(root: str | os.PathLike, *, verify: bool = False, progress: bool = False) -> ImageCache:
    """Open a complete cache, checking its structure (and, with ``verify``, every array's SHA-256)."""
    cache = ImageCache(root, read_manifest(root))
    if verify:
        cache.verify(progress=progress)
    else:
        cache.check_structure()
    return cache


def find_cache(root: str | os.PathLike | None) -> ImageCache | None:
    """The cache at ``root`` (opened and checked) when ``root`` is a cache folder, else None."""
    path = None if root is None else Path(root) / MANIFEST_NAME
    if path is None or not path.is_file():
        return None
    with open(path, "rb") as f:
        if CACHE_FORMAT.split("/")[0].encode() not in f.read(4096):
            return None  # someone else's manifest.json
    return open_cache(root)
