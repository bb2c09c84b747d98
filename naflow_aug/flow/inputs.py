"""What the flow takes in: (B, 3, H, W) float images in [0, 1] (8-bit data, dequantized) and their latents.

One set of checks for every public entry of the flow (`NAFlow`, `FastNAFlow`, the sampling path of
`naflow_aug.flow.nas`), run once at that entry: the layers and the engines behind it take their inputs
as they are. ``values=False`` skips the value checks (finite, range), which read a result back to the
host (on a GPU, a sync).
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

# log-det of the dequantization of 8-bit images, per pixel: encode's log-det includes it (official code)
DEQUANT_LOGDET_PER_PIXEL = -math.log(256.0)
# noisy images may lie this far outside [0, 1]: room for the training loop's dequantization noise
NOISY_RANGE_SLACK = 1.0 / 256


def check_images(x: Tensor, name: str, multiple: int, *, slack: float = 0.0, values: bool = True) -> None:
    """(B, 3, H, W) float with H, W multiples of ``multiple``; values finite and in [-slack, 1 + slack]."""
    if not isinstance(x, Tensor):
        raise TypeError(f"{name} must be a torch.Tensor (B, 3, H, W), got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a float tensor in [0, 1], got dtype {x.dtype}")
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"{name} must have shape (B, 3, H, W), got {tuple(x.shape)}")
    for dim, size in (("height", x.shape[2]), ("width", x.shape[3])):
        if size % multiple:
            nearest = max(multiple, round(size / multiple) * multiple)
            raise ValueError(
                f"{name} {dim} {size} is not a multiple of {multiple} (2**levels); "
                f"nearest valid size: {nearest}"
            )
    if values and x.numel():
        lo, hi = torch.aminmax(x.detach())
        lo, hi = torch.stack([lo, hi]).tolist()  # one read-back (a GPU sync), not two
        if not (math.isfinite(lo) and math.isfinite(hi)):
            raise ValueError(f"{name} contains NaN or Inf values")
        if lo < -slack or hi > 1 + slack:
            raise ValueError(f"{name} values must be in [0, 1], got range [{lo:.4g}, {hi:.4g}]")


def check_pair(noisy: Tensor, clean: Tensor, multiple: int, *, values: bool = True) -> None:
    """Clean images as `check_images`; noisy ones of the same shape, within `NOISY_RANGE_SLACK` of [0, 1]."""
    check_images(clean, "clean", multiple, values=values)
    check_images(noisy, "noisy", multiple, slack=NOISY_RANGE_SLACK, values=values)
    if noisy.shape != clean.shape:
        raise ValueError(f"noisy and clean shapes differ: {tuple(noisy.shape)} vs {tuple(clean.shape)}")


def check_latent(z: Tensor, clean: Tensor, multiple: int, channels: int, *, values: bool = True) -> None:
    """The clean images as `check_images`, then z (B, channels, H/multiple, W/multiple) finite for them."""
    check_images(clean, "clean", multiple, values=values)
    expected = (clean.shape[0], channels, clean.shape[2] // multiple, clean.shape[3] // multiple)
    if not isinstance(z, Tensor) or tuple(z.shape) != expected:
        got = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
        raise ValueError(f"z must have shape {expected} for this clean image, got {got}")
    check_finite_latent(z, values=values)


def check_finite_latent(z: Tensor, *, values: bool = True) -> None:
    """A float latent without NaN or Inf."""
    if not isinstance(z, Tensor) or not z.is_floating_point():
        raise TypeError(f"z must be a float tensor, got {getattr(z, 'dtype', type(z).__name__)}")
    if values and z.numel() and not bool(torch.isfinite(z).all()):
        raise ValueError("z contains NaN or Inf values")
