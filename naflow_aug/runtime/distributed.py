"""torchrun set-up and teardown for the long jobs: one place that joins the process group.

Under ``torchrun --nproc_per_node N`` every process runs the whole job; ``WORLD_SIZE``, ``RANK`` and
``LOCAL_RANK`` come from the environment. A job adopts this module in three lines::

    from naflow_aug.runtime.distributed import process_group, rank_device

    with process_group(device) as ctx:            # joins torchrun's group when WORLD_SIZE > 1
        device = rank_device(device, ctx)         # "cuda" -> cuda:LOCAL_RANK; "auto" -> the best one
        if device is not None and device.type == "cuda":
            torch.cuda.set_device(device)
        ...                                       # ctx.rank, ctx.world, ctx.main, ctx.barrier()

or ``ctx = setup_distributed(device)`` ... ``ctx.teardown()`` in a ``finally``. The rules:

- the device is checked (``naflow_aug.devices.check_device``) before the group is joined, so a bad
  ``--device`` fails at once with a clear message instead of hanging the other ranks;
- the backend is NCCL when CUDA is available and the device is CUDA (or not given), else gloo
  (:func:`backend_for`); a job whose ranks only meet at barriers passes ``backend="gloo"`` (generate);
- a group that is already joined (by the caller) is used as it is and left joined: ``teardown`` leaves
  only a group that this module joined;
- outside torchrun (``WORLD_SIZE`` unset or 1) nothing is joined and the context is one process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import torch
import torch.distributed as dist

from naflow_aug.devices import check_device


@dataclass(frozen=True)
class DistContext:
    """This process's place in the job: rank, world size, local rank (its GPU on the node)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owns_group: bool = False  # this process joined the group here: teardown() leaves it

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes shared outputs, logs and validates."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world > 1

    def barrier(self) -> None:
        """Wait for every rank (nothing to do in a one-process job)."""
        if self.world > 1:
            dist.barrier()

    def all_min_(self, tensor: torch.Tensor) -> torch.Tensor:
        """The element-wise minimum over ranks, in place (unchanged in a one-process job)."""
        if self.world > 1:
            dist.all_reduce(tensor, op=dist.ReduceOp.MIN)
        return tensor

    def teardown(self) -> None:
        """Leave the process group if this process joined it in :func:`setup_distributed`."""
        if self.owns_group and dist.is_initialized():
            dist.destroy_process_group()


def env_world_size() -> int:
    """``WORLD_SIZE`` as torchrun sets it (1 outside torchrun)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def env_local_rank() -> int:
    """``LOCAL_RANK`` as torchrun sets it (0 outside torchrun)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def backend_for(device: torch.device | None) -> str:
    """NCCL when CUDA is available and ``device`` is CUDA or not given; gloo otherwise."""
    use_cuda = torch.cuda.is_available() and (device is None or device.type == "cuda")
    return "nccl" if use_cuda else "gloo"


def setup_distributed(
    device: str | torch.device | None = None,
    *,
    backend: str | None = None,
    timeout: timedelta | None = None,
) -> DistContext:
    """Join torchrun's process group when ``WORLD_SIZE > 1`` (the device is checked first).

    ``backend``: None chooses by the device (:func:`backend_for`); ``timeout``: the group's timeout for
    collectives and barriers (None: torch's default). Returns this process's :class:`DistContext`.
    """
    checked = check_device(device)  # a bad device fails before the group is joined
    if dist.is_available() and dist.is_initialized():
        return _joined(owns_group=False)
    if env_world_size() <= 1:
        return DistContext()
    options = {} if timeout is None else {"timeout": timeout}
    dist.init_process_group(backend or backend_for(checked), **options)
    return _joined(owns_group=True)


@contextmanager
def process_group(
    device: str | torch.device | None = None,
    *,
    backend: str | None = None,
    timeout: timedelta | None = None,
) -> Iterator[DistContext]:
    """:func:`setup_distributed` for a ``with`` block; the group is left at its end (if joined here)."""
    ctx = setup_distributed(device, backend=backend, timeout=timeout)
    try:
        yield ctx
    finally:
        ctx.teardown()


def _joined(*, owns_group: bool) -> DistContext:
    """This process's place in the joined group."""
    return DistContext(dist.get_rank(), dist.get_world_size(), env_local_rank(), owns_group=owns_group)


def current_context() -> DistContext:
    """This process's place in the group that is joined now (one process when none is)."""
    if dist.is_available() and dist.is_initialized():
        return _joined(owns_group=False)
    return DistContext()


def init_distributed(device: str | torch.device | None = None) -> torch.device:
    """Join torchrun's group when launched under it and return this rank's device, made current.

    ``None`` means ``auto`` (:func:`rank_device`). The group stays joined for the life of the process:
    for jobs whose ranks meet again and again (the bench, between its sources).
    """
    ctx = setup_distributed(device)
    resolved = rank_device("auto" if device is None else device, ctx)
    assert resolved is not None
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    return resolved


def rank_device(device: str | torch.device | None, ctx: DistContext | None = None) -> torch.device | None:
    """The device this rank computes on: ``auto`` is ``cuda:LOCAL_RANK`` when CUDA is available, else the
    CPU; ``cuda`` without an index is ``cuda:LOCAL_RANK``; an explicit index is kept; None stays None."""
    if device is None:
        return None
    local_rank = ctx.local_rank if ctx is not None else 0
    if isinstance(device, str) and device.strip().lower() == "auto":
        return torch.device("cuda", local_rank) if torch.cuda.is_available() else torch.device("cpu")
    checked = check_device(device)
    assert checked is not None
    if checked.type == "cuda" and checked.index is None:
        return torch.device("cuda", local_rank)
    return checked
