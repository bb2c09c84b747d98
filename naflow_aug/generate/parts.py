"""Making parts: batches through the noise function into crash-safe part files (a writer thread commits
each full part; an unfinished part is never left behind)."""

from __future__ import annotations

import errno
import queue
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from tqdm.auto import tqdm

from naflow_aug.data import hdf5
from naflow_aug.generate.batches import plan_batches, prefetch, to_float_bchw
from naflow_aug.generate.config import GenerateConfig
from naflow_aug.generate.noise import NoiseFunction
from naflow_aug.generate.plan import Plan
from naflow_aug.images import samples_to_hwc


class _Writer(threading.Thread):
    """Writes batches into parts from a bounded queue (writing overlaps compute); commits each full part."""

    def __init__(self, plan: Plan, parts: Path, num_classes: int, compression: str, maxsize: int = 4):
        super().__init__(name="naflow-aug-writer", daemon=True)
        self.plan, self.parts, self.num_classes = plan, parts, num_classes
        self.compression = None if compression == "none" else compression
        self.queue: queue.Queue = queue.Queue(maxsize=maxsize)
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self.committed: list[int] = []
        self._current: hdf5.PartWriter | None = None
        self._current_part = -1

    def put(self, item: Any) -> None:
        while True:
            if self.error is not None:
                raise self._wrapped_error()
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                if not self.is_alive():
                    if self.error is not None:
                        raise self._wrapped_error() from None
                    raise RuntimeError("the writer thread stopped unexpectedly") from None
                continue

    def _wrapped_error(self) -> BaseException:
        err = self.error
        assert err is not None
        if isinstance(err, hdf5.DiskFullError):
            return err
        if hdf5._is_enospc(err):
            e = hdf5.DiskFullError(
                errno.ENOSPC,
                f"disk full while writing {self.parts}; completed parts are kept: free some space and "
                "run again with --resume",
            )
            e.__cause__ = err
            return e
        return err

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                try:
                    item = self.queue.get(timeout=0.1)
                except queue.Empty:
                    continue
                if item is None:
                    return
                batch, noisy = item
                if batch.part != self._current_part:
                    start, stop = self.plan.part_range(batch.part)
                    c = self.plan.crop
                    path = hdf5.part_path(self.parts, batch.part)
                    self._current = hdf5.PartWriter(
                        path, start, stop - start, c, c, self.num_classes, self.compression
                    )
                    self._current_part = batch.part
                assert self._current is not None
                self._current.write(batch.offset, batch.clean, noisy, batch.meta)
                if self._current.written == self._current.n:
                    self._current.commit()
                    self.committed.append(batch.part)
                    self._current, self._current_part = None, -1
        except BaseException as err:
            self.error = err
        finally:
            if self._current is not None:  # an unfinished part is never left behind
                self._current.abort()
                self._current, self._current_part = None, -1

    def finish(self) -> None:
        self.put(None)
        self.join()
        if self.error is not None:
            raise self._wrapped_error()


def run_parts(
    plan: Plan, todo: Sequence[int], noise_fn: NoiseFunction, parts: Path, config: GenerateConfig, desc: str
) -> int:
    writer = _Writer(plan, parts, len(noise_fn.classes), config.compression)
    writer.start()
    total = sum(plan.part_range(p)[1] - plan.part_range(p)[0] for p in todo)
    done = 0
    bar = tqdm(total=total, unit="sample", desc=desc, disable=not config.progress, dynamic_ncols=True)
    try:
        batches = plan_batches(plan, todo, config.batch_size, noise_fn.needs_reference, noise_fn.mode)
        for batch in prefetch(batches, maxsize=2):
            clean = to_float_bchw(batch.clean, noise_fn.device)
            reference = None if batch.reference is None else to_float_bchw(batch.reference, noise_fn.device)
            seeds = torch.from_numpy(batch.meta["seed"])
            labels = [label or None for label in batch.meta["label"]]
            noisy, weights = noise_fn(clean, reference, seeds, labels)
            if not bool(torch.isfinite(noisy).all()):  # would be written as black images
                raise ValueError(f"the noise model made NaN/Inf samples (batch at sample {batch.indices[0]})")
            batch.meta["weights"] = weights.detach().float().cpu().numpy()
            writer.put((batch, samples_to_hwc(noisy)))
            done += len(batch.indices)
            bar.update(len(batch.indices))
        writer.finish()
    except BaseException:
        writer.stop.set()
        writer.join()
        raise
    finally:
        bar.close()
    return done
