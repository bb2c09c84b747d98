"""Image kinds at the transform edges: uint8 or float, (3, H, W) or (B, 3, H, W) in, the same kind out."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from naflow_aug.images import round_nearest, to_float
from naflow_aug.noise.source import check_images


@dataclass(frozen=True)
class ImageKind:
    """How an input image looked, so that the output can look the same."""

    batched: bool
    dtype: torch.dtype


def to_float_batch(image: Any, name: str = "image") -> tuple[torch.Tensor, ImageKind]:
    """(3, H, W) or (B, 3, H, W) uint8 or float tensor -> ((B, 3, H, W) float in [0, 1], kind).

    Raises TypeError for other dtypes (non-uint8 integers, bool) and non-tensors; ValueError for other
    shapes (grayscale, RGBA), empty batches, NaN and floats outside [0, 1].
    """
    if not isinstance(image, torch.Tensor):
        raise TypeError(
            f"{name} must be a torch.Tensor (3, H, W) or (B, 3, H, W), got {type(image).__name__}"
        )
    if image.dtype == torch.bool or (not image.is_floating_point() and image.dtype != torch.uint8):
        raise TypeError(f"{name} must be uint8 (0-255) or float (0-1), got dtype {image.dtype}")
    if image.dim() not in (3, 4) or image.shape[-3] != 3:
        raise ValueError(f"{name} must have shape (3, H, W) or (B, 3, H, W) (RGB), got {tuple(image.shape)}")
    kind = ImageKind(batched=image.dim() == 4, dtype=image.dtype)
    batch = image if kind.batched else image[None]
    if batch.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(image.shape)}); need at least one image")
    if image.dtype == torch.uint8:
        return to_float(batch), kind
    return check_images(batch, name), kind


def from_float_batch(batch: torch.Tensor, kind: ImageKind) -> torch.Tensor:
    """Inverse of :func:`to_float_batch`: uint8 images are rounded to the nearest level."""
    out = batch if kind.batched else batch[0]
    if kind.dtype == torch.uint8:
        return round_nearest(out)
    return out.to(kind.dtype)


def hwc_to_float_batch(image: np.ndarray, name: str = "image") -> tuple[torch.Tensor, np.dtype]:
    """An albumentations image (H, W, 3) uint8 or float32 in [0, 1] -> ((1, 3, H, W) float, dtype)."""
    if not isinstance(image, np.ndarray):
        raise TypeError(f"{name} must be a numpy array (H, W, 3), got {type(image).__name__}")
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{name} must have shape (H, W, 3) (RGB), got {image.shape}")
    if image.dtype != np.uint8 and image.dtype.kind != "f":
        raise TypeError(f"{name} must be uint8 (0-255) or float (0-1), got dtype {image.dtype}")
    tensor = torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))[None]
    batch, _ = to_float_batch(tensor if image.dtype == np.uint8 else tensor.float(), name)
    return batch, image.dtype


def float_batch_to_hwc(batch: torch.Tensor, dtype: np.dtype) -> np.ndarray:
    """Inverse of :func:`hwc_to_float_batch`."""
    out = batch[0].detach().cpu().permute(1, 2, 0)
    if dtype == np.uint8:
        return round_nearest(out).numpy()
    return out.numpy().astype(dtype)
