"""Multi-scale clean-image encoder: one feature map per flow level."""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .layers import detached, squeeze2x2


class ConditionEncoder(nn.Module):
    """Clean image (B, 3, H, W) -> features [(B, width, H / 2**l, W / 2**l) for l = 0..levels].

    Level 0 is a 1x1 conv 3 -> width; each further level is a 1x1 conv width -> width/4 followed by
    a squeeze (pixel-unshuffle(2), `squeeze2x2`), which gives width channels again at half the size.
    No nonlinearity: the encoder is linear (`linear_form`).
    """

    def __init__(self, levels: int = 3, width: int = 128, in_channels: int = 3):
        super().__init__()
        if width % 4:
            raise ValueError(f"encoder width must be a multiple of 4, got {width}")
        self.inp = nn.Conv2d(in_channels, width, 1)
        self.down = nn.ModuleList(nn.Conv2d(width, width // 4, 1) for _ in range(levels))

    def forward(self, clean: Tensor) -> list[Tensor]:
        features = [self.inp(clean)]
        for conv in self.down:
            features.append(squeeze2x2(conv(features[-1])))
        return features

    def linear_form(self, dtype: torch.dtype | None = torch.float64) -> list[tuple[Tensor, Tensor]]:
        """[(weight (out, in), bias (out,)) for l = 0..levels], detached: features[0] = weight_0 @ clean
        + bias_0 per pixel, and features[l] = squeeze2x2(weight_l @ features[l-1] + bias_l) for l >= 1."""
        convs = (self.inp, *self.down)
        return [(detached(c.weight, dtype).flatten(1), detached(c.bias, dtype)) for c in convs]
