"""Device names as users give them (``--device``, ``device=``): checked once, with a message, before work.

``torch.device("bogus")`` raises a RuntimeError listing every backend torch knows, and ``"cuda"`` on a
machine without a GPU is accepted until the first ``.to()`` fails deep inside a job; both are user errors.
"""

from __future__ import annotations

import torch

_KINDS = ("cpu", "cuda", "mps")


def check_device(device: str | torch.device | None, *, allow_auto: bool = True) -> torch.device | None:
    """``device`` as a torch.device that exists on this machine (None and "auto" pass through as None /
    the best one); ValueError naming the value and what is accepted otherwise."""
    if device is None:
        return None
    if isinstance(device, str) and device.strip().lower() == "auto" and allow_auto:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if not isinstance(device, (str, torch.device)):
        raise TypeError(f"device must be a string such as 'cpu' or 'cuda:0', got {type(device).__name__}")
    expected = ("auto, " if allow_auto else "") + "cpu, cuda, cuda:N or mps"
    try:
        parsed = torch.device(device)
    except (RuntimeError, ValueError) as err:
        raise ValueError(f"unknown device {str(device)!r}; expected {expected}") from err
    if parsed.type not in _KINDS:
        raise ValueError(f"unsupported device {str(device)!r}; expected {expected}")
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ValueError(f"device {str(device)!r} asked for, but CUDA is not available on this machine")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ValueError(
                f"device {str(device)!r} asked for, but this machine has {torch.cuda.device_count()} GPU(s)"
            )
    if parsed.type == "mps" and not torch.backends.mps.is_available():
        raise ValueError(f"device {str(device)!r} asked for, but MPS is not available on this machine")
    return parsed
