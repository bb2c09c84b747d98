"""Image conversions: 8-bit levels <-> float in [0, 1], and the rounding rules, one named rule per purpose.

Pure functions on tensors (reading and writing image files is :mod:`naflow_aug.data.images`). Float
images are in [0, 1]; 8-bit images are uint8 levels 0-255. Going to float is exact division by 255.
Going to 8 bits rounds, and the library rounds in two ways, each written once here:

================================  ==============================  =========================================
rule                              rounding                        used for
================================  ==============================  =========================================
:func:`round_nearest`             nearest level, ties to even,    generated samples (``naflow-aug
                                  in the image's own dtype        generate``), transform outputs, 8-bit
                                                                  inputs made for other libraries,
                                                                  decoded training crops, adapted pairs
:func:`round_nearest_exact`       the same, computed in float64   PNG files written from float tensors
                                  (exact products)                (:func:`to_uint8`, ``write_png``)
:func:`round_half_up`             half up, in the image's dtype   the benchmark's example strips
:func:`round_half_up_exact`       half up, computed in float64    SIDD scoring and submissions (the
                                                                  official scripts' MATLAB ``uint8()``)
================================  ==============================  =========================================

Both rules clamp to [0, 1] (that is, to levels 0-255) and keep the layout. The precision matters: in
float32, ``x * 255`` can land exactly on a tie that the exact product does not reach, so the "exact"
rules are separate rules, not a detail.
"""

from __future__ import annotations

import numpy as np
import torch

__all__ = [
    "round_half_up",
    "round_half_up_exact",
    "round_nearest",
    "round_nearest_exact",
    "samples_to_hwc",
    "to_float",
    "to_tensor",
    "to_uint8",
]


def to_float(levels: torch.Tensor, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """uint8 levels (any layout) -> float in [0, 1] of ``dtype``: ``levels / 255``, a new tensor."""
    if levels.dtype != torch.uint8:
        raise TypeError(f"expected a uint8 tensor of 8-bit levels, got dtype {levels.dtype}")
    return levels.to(dtype).div_(255.0)


def to_tensor(image: np.ndarray) -> torch.Tensor:
    """uint8 (H, W, 3) array -> (3, H, W) float32 tensor in [0, 1]."""
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        got = f"{type(image).__name__} {getattr(image, 'dtype', '')} {getattr(image, 'shape', '')}"
        raise TypeError(f"expected a uint8 numpy array of shape (H, W, 3), got {got}")
    return to_float(torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1))))


def round_nearest(x: torch.Tensor) -> torch.Tensor:
    """Float in [0, 1] -> uint8 levels: ``x * 255`` rounded to the nearest level (ties to even) and
    clamped to 0-255, computed in ``x``'s dtype on its device; the layout is kept."""
    return x.mul(255.0).round_().clamp_(0, 255).to(torch.uint8)


def round_nearest_exact(x: torch.Tensor) -> torch.Tensor:
    """:func:`round_nearest` computed in float64, where ``x * 255`` is exact for float32 inputs."""
    return round_nearest(x.to(torch.float64))


def round_half_up(x: torch.Tensor) -> torch.Tensor:
    """Float in [0, 1] -> float levels 0.0-255.0: ``floor(clamp(x, 0, 1) * 255 + 0.5)`` in ``x``'s dtype."""
    return x.clamp(0, 1).mul(255.0).add(0.5).floor()


def round_half_up_exact(x: torch.Tensor) -> torch.Tensor:
    """:func:`round_half_up` computed in float64 (float64 levels): SIDD's rule, the MATLAB ``uint8()`` of
    the official scoring scripts."""
    return round_half_up(x.to(torch.float64))


def to_uint8(image: torch.Tensor) -> np.ndarray:
    """(3, H, W) float tensor in [0, 1] -> uint8 (H, W, 3) array, by :func:`round_nearest_exact`."""
    if not isinstance(image, torch.Tensor) or image.ndim != 3 or image.shape[0] != 3:
        raise TypeError(
            f"expected a (3, H, W) float tensor, got {type(image).__name__} "
            f"{tuple(getattr(image, 'shape', ()))}"
        )
    if not image.is_floating_point():
        raise TypeError(f"expected a float tensor in [0, 1], got dtype {image.dtype}")
    return round_nearest_exact(image.detach().cpu()).permute(1, 2, 0).contiguous().numpy()


def samples_to_hwc(x: torch.Tensor) -> np.ndarray:
    """Generated samples (B, 3, H, W) float in [0, 1] -> (B, H, W, 3) uint8 array on the CPU, by
    :func:`round_nearest` (on the samples' device)."""
    return round_nearest(x).permute(0, 2, 3, 1).cpu().numpy()
