"""Multi-scale clean-image encoder: one feature map per flow level."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn


class ConditionEncoder(nn.Module):
    """Clean image (B, 3, H, W) -> features [(B, width, H / 2**l, W / 2**l) for l = 0..levels].

    Level 0 is a 1x1 conv 3 -> width; each further level is a 1x1 conv width -> width/4 followed by
    pixel-unshuffle(2), which gives width channels again at half the size.
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
            features.append(F.pixel_unshuffle(conv(features[-1]), 2))
        return features
