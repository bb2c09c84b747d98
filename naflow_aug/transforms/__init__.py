"""Front-ends over :mod:`naflow_aug.noise`: a torchvision v2 transform and an albumentations transform.

``NAFlowNoiseAlb`` imports albumentations on first access only.
"""

from __future__ import annotations

from typing import Any

from naflow_aug.transforms.torchvision_v2 import NAFlowNoise

__all__ = ["NAFlowNoise", "NAFlowNoiseAlb"]


def __getattr__(name: str) -> Any:
    if name == "NAFlowNoiseAlb":
        from naflow_aug.transforms.albumentations_ import NAFlowNoiseAlb

        return NAFlowNoiseAlb
    raise AttributeError(f"module 'naflow_aug.transforms' has no attribute {name!r}")
