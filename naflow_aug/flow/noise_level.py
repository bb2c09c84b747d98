"""Noise level of synthetic noisy images: measure it, and match it to a target.

NAS classifies a reference pair's noise as a mixture of the learned configurations and samples from that
mixture. With a model trained on few data the mixture's level can be off for weak noise: the learned
Gaussians are close, but the real latents of weak noise are spatially structured where sampled ones are
white, and white latents decode to stronger noise (measured on the bundled model: ISO-100 NAS noise
10-25% too strong while ISO >= 400 is within a few percent). The reference pair itself tells the
level: ``noise_level="reference"`` keeps the model's noise (its spatial and cross-channel structure, its
dependence on the signal) and scales each channel of each item so that its std equals the reference's.

Pure functions on (B, 3, H, W) float tensors in [0, 1]; no host synchronisation.
"""

from __future__ import annotations

import torch
from torch import Tensor

__all__ = ["LEVELS", "check_level", "match_noise_level", "noise_std"]

#: ``reference``: match each channel's noise std to the reference pair's; ``model``: the mixture's own
LEVELS = ("reference", "model")


def check_level(level: str) -> str:
    if level not in LEVELS:
        raise ValueError(f"noise_level must be one of {LEVELS}, got {level!r}")
    return level


def noise_std(noisy: Tensor, clean: Tensor) -> Tensor:
    """Per-item, per-channel standard deviation of ``noisy - clean``: (B, 3, H, W) x2 -> (B, 3) float32."""
    if noisy.shape != clean.shape or noisy.dim() != 4:
        raise ValueError(
            f"noisy and clean must be (B, C, H, W) of one shape, got {tuple(noisy.shape)} and "
            f"{tuple(clean.shape)}"
        )
    diff = noisy.double() - clean.double()
    return diff.flatten(2).std(dim=2).float()


def match_noise_level(noisy: Tensor, clean: Tensor, target_std: Tensor) -> Tensor:
    """Scale each item's channel of ``noisy - clean`` to ``target_std`` (B, 3), then clamp to [0, 1].

    A channel without noise (std 0, e.g. a saturated image) is left as it is.
    """
    target = torch.as_tensor(target_std).to(device=noisy.device, dtype=torch.float64)
    if target.shape != noisy.shape[:2]:
        raise ValueError(f"target_std must have shape {tuple(noisy.shape[:2])}, got {tuple(target.shape)}")
    if not bool(torch.isfinite(target).all()) or bool((target < 0).any()):
        raise ValueError("target_std must be finite and >= 0")
    current = noise_std(noisy, clean).double()
    scale = torch.where(current > 0, target / current.clamp_min(1e-12), torch.ones_like(current))
    diff = noisy.double() - clean.double()
    out = clean.double() + diff * scale[:, :, None, None]
    return out.clamp_(0.0, 1.0).to(noisy.dtype)
