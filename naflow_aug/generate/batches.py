"""A plan's batches: crops read from the source images (decoded a few at a time in threads, a reader
thread ahead of the compute), with each sample's metadata."""

from __future__ import annotations

import os
import queue
import threading
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from naflow_aug.data.images import read_image
from naflow_aug.data.pairs import UNLABELLED, Pair
from naflow_aug.generate.plan import Plan, relative_path
from naflow_aug.images import to_float
from naflow_aug.runtime.seeding import sample_seeds


@dataclass
class _Batch:
    part: int
    offset: int  # row in the part
    indices: np.ndarray  # global sample indices
    clean: np.ndarray  # (b, c, c, 3) uint8
    reference: np.ndarray | None
    meta: dict[str, Any]


def _crop(image: np.ndarray, top: int, left: int, c: int) -> np.ndarray:
    return image[top : top + c, left : left + c]


_DECODE_THREADS = max(1, min(4, (os.cpu_count() or 1) // 2))


def _load_pair(rec: Pair, with_reference: bool) -> tuple[np.ndarray, np.ndarray | None]:
    return read_image(rec.clean_path), (read_image(rec.noisy_path) if with_reference else None)


def read_rows(
    plan: Plan,
    indices: np.ndarray,
    with_reference: bool,
    cache: dict[str, Any],
    pool: ThreadPoolExecutor | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Crops of samples ``indices``. Images are decoded a few at a time (in ``pool``'s threads; PNG decoding
    releases the GIL) and dropped once cropped, except the last one, kept in ``cache`` for the next batch:
    at most ``pool threads + 1`` images are held, whatever their size."""
    c = plan.crop
    clean = np.empty((len(indices), c, c, 3), dtype=np.uint8)
    reference = np.empty_like(clean) if with_reference else None
    rows_of: dict[int, list[int]] = {}
    for row, i in enumerate(indices):
        rows_of.setdefault(int(plan.image[i]), []).append(row)
    order = list(rows_of)  # images in order of first use; the last one is kept for the next batch
    step = _DECODE_THREADS if pool is not None else 1
    for k in range(0, len(order), step):
        chunk = order[k : k + step]
        todo = [j for j in chunk if cache.get("j") != j]
        if pool is not None and len(todo) > 1:
            loaded = dict(
                zip(todo, pool.map(lambda j: _load_pair(plan.images[j], with_reference), todo), strict=True)
            )
        else:
            loaded = {j: _load_pair(plan.images[j], with_reference) for j in todo}
        for j in chunk:
            image, noisy = (cache["clean"], cache["noisy"]) if cache.get("j") == j else loaded[j]
            for row in rows_of[j]:
                i = indices[row]
                t, left = int(plan.top[i]), int(plan.left[i])
                clean[row] = _crop(image, t, left, c)
                if reference is not None:
                    reference[row] = _crop(noisy, t, left, c)
        last = chunk[-1]
        if cache.get("j") != last:
            cache.clear()
            cache.update(j=last, clean=loaded[last][0], noisy=loaded[last][1])
        del loaded
    return clean, reference


def plan_batches(
    plan: Plan, parts: Sequence[int], batch_size: int, with_reference: bool, mode: str
) -> Iterator[_Batch]:
    cache: dict[str, Any] = {}
    with ThreadPoolExecutor(_DECODE_THREADS, thread_name_prefix="naflow-aug-decode") as pool:
        yield from _batches_with(plan, parts, batch_size, with_reference, mode, cache, pool)


def _batches_with(
    plan: Plan,
    parts: Sequence[int],
    batch_size: int,
    with_reference: bool,
    mode: str,
    cache: dict[str, Any],
    pool: ThreadPoolExecutor,
) -> Iterator[_Batch]:
    for p in parts:
        start, stop = plan.part_range(p)
        for b0 in range(start, stop, batch_size):
            idx = np.arange(b0, min(b0 + batch_size, stop))
            clean, reference = read_rows(plan, idx, with_reference, cache, pool)
            recs = [plan.images[int(plan.image[i])] for i in idx]
            meta = {
                "index": idx.astype(np.int64),
                "seed": sample_seeds(plan.seed, idx),
                "crop": np.stack(
                    [
                        plan.top[idx],
                        plan.left[idx],
                        np.full(len(idx), plan.crop),
                        np.full(len(idx), plan.crop),
                    ],
                    axis=1,
                ).astype(np.int32),
                "source": [relative_path(r.clean_path, plan.root) for r in recs],
                "reference": [relative_path(r.noisy_path, plan.root) if with_reference else "" for r in recs],
                "noise": [mode] * len(idx),
                "label": ["" if r.cls == UNLABELLED else r.cls for r in recs],
            }
            yield _Batch(p, b0 - start, idx, clean, reference, meta)


def prefetch(iterator: Iterator[Any], maxsize: int) -> Iterator[Any]:
    """Run ``iterator`` in a thread, ``maxsize`` items ahead (image decoding overlaps compute)."""
    q: queue.Queue = queue.Queue(maxsize=maxsize)
    stop = threading.Event()
    done = object()

    def work() -> None:
        try:
            for item in iterator:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as err:  # handed to the consumer, raised there
            q.put(err)

    thread = threading.Thread(target=work, name="naflow-aug-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


def to_float_bchw(x: np.ndarray, device: torch.device) -> torch.Tensor:
    return to_float(torch.from_numpy(x).to(device, non_blocking=True).permute(0, 3, 1, 2))
