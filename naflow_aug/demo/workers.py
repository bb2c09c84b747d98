"""Run the demo's independent jobs side by side: one single-threaded process per CPU core.

The demo's long jobs (NAFlow training, one denoiser per source and seed) are small networks on small
batches: one torch thread each runs them efficiently, and more threads than free cores slow a step down
on a busy machine (README). So the jobs run as separate processes (``spawn``: no forked torch state),
each with one thread; ``workers=1`` runs them one after another in this process.
Every job returns a JSON-able dict and its own wall and CPU seconds (:class:`JobResult`).
"""

from __future__ import annotations

import logging
import multiprocessing
import time
from collections.abc import Callable
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import dataclass
from typing import Any

import torch

log = logging.getLogger(__name__)

__all__ = ["JobResult", "Workers"]


@dataclass(frozen=True)
class JobResult:
    name: str
    value: Any
    wall_seconds: float
    cpu_seconds: float  # this process's user + system time while the job ran


def _run_job(name: str, fn: Callable[..., Any], args: tuple[Any, ...]) -> JobResult:
    t0, c0 = time.perf_counter(), time.process_time()
    value = fn(*args)
    return JobResult(name, value, time.perf_counter() - t0, time.process_time() - c0)


def _init_worker(level: int) -> None:
    torch.set_num_threads(1)
    logging.basicConfig(level=level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")


class _Deferred(Future):
    """A job of ``workers=1``: it runs in this process when its result is first asked for."""

    def __init__(self, name: str, fn: Callable[..., Any], args: tuple[Any, ...]):
        super().__init__()
        self._job = (name, fn, args)

    def result(self, timeout: float | None = None) -> JobResult:
        if not self.done():
            self.set_result(_run_job(*self._job))  # an error is raised to the caller here
        return super().result(timeout)


class Workers:
    """``submit(name, fn, *args) -> Future[JobResult]`` on ``n`` worker processes (``n == 1``: in this
    process, when the result is asked for).

    ``fn`` and its arguments must be picklable (module-level functions, plain data). Use as a context
    manager; leaving it waits for every job.
    """

    def __init__(self, n: int):
        if isinstance(n, bool) or not isinstance(n, int) or n < 1:
            raise ValueError(f"workers must be an int >= 1, got {n!r}")
        self.n = n
        self._pool: ProcessPoolExecutor | None = None

    def __enter__(self) -> Workers:
        if self.n > 1:
            self._pool = ProcessPoolExecutor(
                max_workers=self.n,
                mp_context=multiprocessing.get_context("spawn"),
                initializer=_init_worker,
                initargs=(logging.getLogger().getEffectiveLevel(),),
            )
        return self

    def __exit__(self, *exc: object) -> None:
        if self._pool is not None:
            # on an error, queued jobs are dropped; running ones finish (they resume exactly later)
            self._pool.shutdown(wait=True, cancel_futures=exc[0] is not None)
            self._pool = None

    def submit(self, name: str, fn: Callable[..., Any], *args: Any) -> Future[JobResult]:
        log.info("job: %s", name)
        if self._pool is not None:
            return self._pool.submit(_run_job, name, fn, args)
        return _Deferred(name, fn, args)
