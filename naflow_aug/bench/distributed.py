"""The bench's distributed set-up (torchrun): join the process group, this process's rank, barriers.

Kept in this one module so that the bench can move to a shared runtime helper in one place."""

from __future__ import annotations

import os

import torch

from naflow_aug.devices import check_device


def rank_and_world() -> tuple[int, int]:
    """(rank, world size) of the torch.distributed group, (0, 1) when not distributed."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def init_distributed(device: str | torch.device | None = None) -> torch.device:
    """Join the torchrun process group when launched under torchrun (env WORLD_SIZE > 1).

    Returns this process's device (``cuda:LOCAL_RANK`` when CUDA is available).
    """
    checked = check_device(device) if device is not None else None  # a bad device fails before the group
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        use_cuda = torch.cuda.is_available() and (checked is None or checked.type == "cuda")
        torch.distributed.init_process_group("nccl" if use_cuda else "gloo")
        if use_cuda:
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            return torch.device("cuda", local)
    if checked is not None:
        return checked
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def barrier() -> None:
    """Wait for every rank (nothing when not distributed)."""
    if rank_and_world()[1] > 1:
        torch.distributed.barrier()
