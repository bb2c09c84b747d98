"""``naflow-aug prepare``: decode a data folder once into a cache (:mod:`naflow_aug.data.cache`).

The work is a fixed list of items (the source's pairs, or clean images, in scan order). Processes
(``workers``) decode items; each array is written atomically (temporary file, fsync, rename) and the
parent rewrites ``manifest.json`` atomically after each completed item (unless that would take more
than ``MANIFEST_SHARE`` of the elapsed time, as with many small images: then after some items), so
after a crash or ``kill -9`` the manifest lists only items whose arrays are whole. ``resume=True``
checks that the source is unchanged, removes stale temporaries, redoes every item not recorded as done
and ends with the same manifest and arrays as an uninterrupted run (both are functions of the source
files only).
"""

from __future__ import annotations

import io
import logging
import os
import time
from collections.abc import Sequence
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from multiprocessing import get_all_start_methods, get_context
from pathlib import Path
from typing import Any

import numpy as np
from tqdm.auto import tqdm

from naflow_aug.data.cache import (
    ARRAYS_DIR,
    CACHE_FORMAT,
    MANIFEST_NAME,
    ImageCache,
    open_cache,
    read_manifest,
)
from naflow_aug.data.images import read_image
from naflow_aug.data.pairs import Pair, split_pairs
from naflow_aug.data.sources import scan_source, source_kind
from naflow_aug.runs import atomic_write_bytes, atomic_write_json

__all__ = ["prepare_cache", "verify_cache"]

log = logging.getLogger(__name__)

_START_METHOD = "fork" if "fork" in get_all_start_methods() else "spawn"
MANIFEST_SHARE = 0.05  # most of the time spent rewriting the manifest (12 MP items: after every one)


def _plan_items(source: Path, kind: str, split: str | None) -> list[dict[str, Any]]:
    """The items of a source, in scan order: {'meta', 'clean': source path, 'noisy': source path or None}."""
    pairs = scan_source(source, kind)  # type: ignore[arg-type]
    items = []
    if kind == "sidd":
        part_of = _split_parts(pairs, split)
        for p in pairs:
            assert p.sidd is not None
            meta = {"folder": p.sidd.folder, "shot": p.sidd.shot, "instance": p.instance, "class": p.cls,
                    "brightness": p.sidd.brightness, "split": part_of.get(p.instance)}  # fmt: skip
            items.append({"meta": meta, "clean": p.clean_path, "noisy": p.noisy_path})
    elif kind == "paired":
        items = [{"meta": {"class": p.cls, "instance": p.instance}, "clean": p.clean_path,
                  "noisy": p.noisy_path} for p in pairs]  # fmt: skip
    else:
        items = [{"meta": {}, "clean": p.clean_path, "noisy": None} for p in pairs]
    return items


def _split_parts(pairs: list[Pair], split: str | None) -> dict[str, str]:
    """Instance -> ``'train'`` or ``'val'`` of the split (instances in neither part are not keys)."""
    if split is None:
        return {}
    train, val = split_pairs(pairs, split)
    return {**{p.instance: "train" for p in train}, **{p.instance: "val" for p in val}}


def _stem(path: Path) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in path.name)


def _initial_manifest(source: Path, kind: str, split: str | None, items: list[dict[str, Any]]) -> dict:
    root = source.parent if source.is_file() else source
    numbers: dict[Path, int] = {}
    records = []
    for it in items:
        rec: dict[str, Any] = {"done": False, "meta": it["meta"]}
        for role in ("clean", "noisy"):
            path = it[role]
            if path is None:
                rec[role] = None
                continue
            path = Path(path)
            n = numbers.setdefault(path, len(numbers))
            st = path.stat()
            rec[role] = {"file": f"{ARRAYS_DIR}/{n:06d}_{_stem(path)}{'.npy'}",
                         "source": os.path.relpath(path, root).replace(os.sep, "/"),
                         "source_bytes": st.st_size, "source_mtime_ns": st.st_mtime_ns}  # fmt: skip
        records.append(rec)
    return {"format": CACHE_FORMAT, "kind": kind,
            "source": {"root": str(root), "path": str(source), "split": split or ""},
            "complete": False, "items": records}  # fmt: skip


def _source_part(rec: dict[str, Any]) -> Any:
    """What of an item depends on the source only (compared on resume)."""
    keep = ("file", "source", "source_bytes", "source_mtime_ns")
    arrays = [None if rec[r] is None else {k: rec[r][k] for k in keep} for r in ("clean", "noisy")]
    return [rec["meta"], *arrays]


def _decode_item(root: str, cache: str, rec: dict[str, Any]) -> dict[str, Any]:
    """Decode one item's images into their arrays (atomic writes); returns the records with shape/SHA-256."""
    import hashlib

    out: dict[str, Any] = {}
    shapes = []
    for role in ("clean", "noisy"):
        a = rec[role]
        if a is None:
            out[role] = None
            continue
        image = read_image(Path(root) / a["source"])
        shapes.append(image.shape)
        if len(shapes) == 2 and shapes[0] != shapes[1]:
            raise ValueError(f"{Path(root) / a['source']}: size {shapes[1][:2]} differs from its clean "
                             f"image's {shapes[0][:2]}")  # fmt: skip
        buf = io.BytesIO()
        np.save(buf, np.ascontiguousarray(image), allow_pickle=False)
        data = buf.getvalue()
        atomic_write_bytes(Path(cache) / a["file"], data)
        out[role] = {**a, "shape": list(image.shape), "bytes": len(data),
                     "sha256": hashlib.sha256(data).hexdigest()}  # fmt: skip
    return out


def _remove_stale_temporaries(out: Path) -> None:
    for tmp in (out / ARRAYS_DIR).glob(".*.tmp"):
        tmp.unlink(missing_ok=True)


def _done_and_whole(out: Path, rec: dict[str, Any]) -> bool:
    if not rec.get("done"):
        return False
    for role in ("clean", "noisy"):
        a = rec[role]
        path = None if a is None else out / a["file"]
        if path is not None and not (path.is_file() and path.stat().st_size == a["bytes"]):
            log.warning("%s: recorded as done but missing or of another size; making it again", path)
            return False
    return True


def prepare_cache(
    data: str | os.PathLike,
    out: str | os.PathLike,
    *,
    kind: str = "auto",
    split: str | None = None,
    workers: int = 1,
    resume: bool = False,
    progress: bool = True,
) -> ImageCache:
    """Decode every image of ``data`` (a SIDD-Medium folder, paired folders or a CSV manifest of pairs,
    or a folder of clean images; ``kind`` as :func:`naflow_aug.data.sources.source_kind`) into the cache
    folder ``out``; returns the opened cache. ``split`` (e.g. ``'sidd-mini'``) records each SIDD pair's
    split membership. ``out`` must be new or empty unless ``resume`` (then a finished cache: nothing to do).
    """
    if not isinstance(workers, int) or isinstance(workers, bool) or workers < 1:
        raise ValueError(f"workers must be a positive int, got {workers!r}")
    source, out = Path(data).resolve(), Path(out)
    kinds = ("auto", "sidd", "paired", "clean")
    if kind not in kinds:
        raise ValueError(f"kind must be one of {kinds}, got {kind!r}")
    if not source.exists():
        raise ValueError(f"data {source} does not exist")
    if (source / MANIFEST_NAME).is_file() or source == out.resolve():
        raise ValueError(f"{source} is a cache already; give the source folder it was made from")
    kind = source_kind(source) if kind == "auto" else kind
    manifest = _initial_manifest(source, kind, split, _plan_items(source, kind, split))
    existing = out / MANIFEST_NAME
    if existing.is_file():
        if not resume:
            raise ValueError(f"{out} holds a cache already; pass resume=True (--resume) to finish or keep it")
        old = read_manifest(out)
        _check_same_plan(old, manifest, out)
        if old.get("complete"):
            log.info("%s is complete; nothing to do", out)
            return open_cache(out)
        for rec, old_rec in zip(manifest["items"], old["items"], strict=True):
            if _done_and_whole(out, old_rec):
                rec.update(old_rec)
    elif out.exists() and any(out.iterdir()) and not resume:
        raise ValueError(f"{out} exists and is not empty; choose a new folder for the cache")
    (out / ARRAYS_DIR).mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(out)
    todo = [i for i, rec in enumerate(manifest["items"]) if not rec["done"]]
    atomic_write_json(existing, manifest)
    log.info("prepare %s -> %s: %d %s items, %d to decode, %d worker(s)", source, out,
             len(manifest["items"]), kind, len(todo), workers)  # fmt: skip
    _run(manifest, todo, str(manifest["source"]["root"]), out, workers, progress)
    manifest["complete"] = True
    atomic_write_json(existing, manifest)
    return open_cache(out)


def _check_same_plan(old: dict[str, Any], new: dict[str, Any], out: Path) -> None:
    for key in ("kind", "source"):
        if old.get(key) != new[key]:
            raise ValueError(f"cannot resume {out}: its {key} was {old.get(key)!r}, now {new[key]!r}")
    if len(old["items"]) != len(new["items"]):
        raise ValueError(f"cannot resume {out}: the source held {len(old['items'])} items, now "
                         f"{len(new['items'])}; prepare a new cache")  # fmt: skip
    for i, (a, b) in enumerate(zip(old["items"], new["items"], strict=True)):
        if _source_part(a) != _source_part(b):
            raise ValueError(f"cannot resume {out}: item {i} ({b['clean']['source']}) changed in the source "
                             "since the cache was started; prepare a new cache")  # fmt: skip


def _run(manifest: dict, todo: Sequence[int], root: str, out: Path, workers: int, progress: bool) -> None:
    items = manifest["items"]
    path = out / MANIFEST_NAME
    bar = tqdm(total=len(items), initial=len(items) - len(todo), desc="prepare", unit="item",
               disable=not progress)  # fmt: skip
    start, writing = time.monotonic(), 0.0

    def finish(i: int, result: dict[str, Any]) -> None:
        nonlocal writing
        items[i].update(result, done=True)
        bar.update(1)
        t = time.monotonic()
        if writing <= MANIFEST_SHARE * (t - start):
            atomic_write_json(path, manifest)
            writing += time.monotonic() - t

    try:
        if workers == 1:
            for i in todo:
                finish(i, _decode_item(root, str(out), items[i]))
            return
        # forked like DataLoader workers (spawning re-imports torch: seconds per worker); the workers
        # decode with PIL and numpy only
        with ProcessPoolExecutor(workers, mp_context=get_context(_START_METHOD)) as pool:
            pending = {}
            queue = list(reversed(todo))
            while queue or pending:
                while queue and len(pending) < 2 * workers:  # bounded: results are small, tasks too
                    i = queue.pop()
                    pending[pool.submit(_decode_item, root, str(out), items[i])] = i
                done, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in done:
                    finish(pending.pop(fut), fut.result())
    finally:
        bar.close()
        atomic_write_json(path, manifest)  # what completed is kept for --resume


def verify_cache(out: str | os.PathLike, *, progress: bool = True) -> ImageCache:
    """Open the cache at ``out`` and check every array's SHA-256 (``ValueError`` naming a bad file)."""
    cache = open_cache(out)
    n = cache.verify(progress=progress)
    log.info("%s: %d arrays, %.1f GB, checksums match", out, len(cache.arrays()), n / 1e9)
    return cache
