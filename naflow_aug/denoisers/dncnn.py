"""Colour DnCNN (Zhang et al. 2017) in the KAIR layout, with KAIR / NeCA / NAFlow checkpoint I/O.

Layout (KAIR's, as in NeCA / NAFlow checkpoints): ``model.0`` conv3x3 in->width + ReLU (``model.1``); then
``depth - 2`` blocks of [conv3x3 width->width (``model.{2+3k}``), BatchNorm(eps=1e-4, momentum=0.9)
(``model.{3+3k}``), ReLU]; and a last conv3x3 width->in (``model.{3*depth-4}``, 56 for depth 20).
The network predicts the noise: output = input - body(input), on ``(B, 3, H, W)`` float in [0, 1].
The paper configuration (depth 20, width 64) has 670,531 parameters.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from naflow_aug.runs import atomic_torch_save

log = logging.getLogger(__name__)

CHECKPOINT_PATTERN = re.compile(r"^checkpoint_G3_(\d{8})\.pth$")


@dataclass(frozen=True)
class DnCNNConfig:
    """``depth`` counts the conv layers (20 in the paper); ``width`` the hidden channels (64)."""

    depth: int = 20
    width: int = 64
    channels: int = 3

    def __post_init__(self) -> None:
        if isinstance(self.depth, bool) or not isinstance(self.depth, int) or self.depth < 2:
            raise ValueError(f"DnCNN depth must be an int >= 2 (conv layers), got {self.depth!r}")
        if isinstance(self.width, bool) or not isinstance(self.width, int) or self.width < 1:
            raise ValueError(f"DnCNN width must be a positive int, got {self.width!r}")
        if isinstance(self.channels, bool) or not isinstance(self.channels, int) or self.channels < 1:
            raise ValueError(f"DnCNN channels must be a positive int, got {self.channels!r}")


PAPER = DnCNNConfig(depth=20, width=64)
# Sized for 2 CPU cores: 7,939 parameters, a step on 8 x 48x48 patches takes milliseconds.
SMALL = DnCNNConfig(depth=5, width=16)


class DnCNN(nn.Module):
    """Residual DnCNN: ``forward(noisy (B, C, H, W)) -> noisy - body(noisy)``, any H, W."""

    def __init__(
        self, config: DnCNNConfig | None = None, *, depth: int | None = None, width: int | None = None
    ):
        super().__init__()
        if config is None:
            config = DnCNNConfig(depth=depth or PAPER.depth, width=width or PAPER.width)
        elif depth is not None or width is not None:
            raise TypeError("give either a DnCNNConfig or depth/width, not both")
        if not isinstance(config, DnCNNConfig):
            raise TypeError(f"config must be a DnCNNConfig, got {type(config).__name__}")
        self.config = config
        c, w = config.channels, config.width
        layers: list[nn.Module] = [nn.Conv2d(c, w, 3, padding=1, bias=True), nn.ReLU(inplace=True)]
        for _ in range(config.depth - 2):
            layers += [
                nn.Conv2d(w, w, 3, padding=1, bias=True),
                nn.BatchNorm2d(w, eps=1e-4, momentum=0.9),
                nn.ReLU(inplace=True),
            ]
        layers.append(nn.Conv2d(w, c, 3, padding=1, bias=True))
        self.model = nn.Sequential(*layers)

    @classmethod
    def paper(cls) -> DnCNN:
        """The published colour DnCNN (depth 20, width 64, 670,531 parameters)."""
        return cls(PAPER)

    @classmethod
    def small(cls) -> DnCNN:
        """The CPU preset's small DnCNN (depth 5, width 16): not the paper's model; named as such."""
        return cls(SMALL)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != self.config.channels:
            raise ValueError(f"DnCNN expects (B, {self.config.channels}, H, W), got {tuple(x.shape)}")
        return x - self.model(x)


# --------------------------------------------------------------------------------------- checkpoints


def config_from_state_dict(state_dict: Mapping[str, torch.Tensor]) -> DnCNNConfig:
    """Infer depth/width/channels from a KAIR-layout state dict (``model.<i>.weight`` convs)."""
    conv_ids = sorted(
        int(m.group(1))
        for k, v in state_dict.items()
        if (m := re.fullmatch(r"model\.(\d+)\.weight", k)) and getattr(v, "ndim", 0) == 4
    )
    if not conv_ids or conv_ids[0] != 0:
        raise ValueError(
            f"not a KAIR-layout DnCNN state dict: expected conv weights 'model.0.weight', ..., got keys "
            f"{sorted(state_dict)[:6]}..."
        )
    first = state_dict["model.0.weight"]
    depth = len(conv_ids)
    return DnCNNConfig(depth=depth, width=int(first.shape[0]), channels=int(first.shape[1]))


def _strip_prefix(state_dict: Mapping[str, Any]) -> dict[str, Any]:
    # DataParallel / DDP checkpoints prefix every key with "module."
    if state_dict and all(k.startswith("module.") for k in state_dict):
        return {k[len("module.") :]: v for k, v in state_dict.items()}
    return dict(state_dict)


def read_state_dict(path: str | os.PathLike) -> tuple[dict[str, torch.Tensor], int | None]:
    """Read a ``{'epoch', 'model_state_dict'}`` checkpoint or a bare state dict -> (state_dict, epoch)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"DnCNN checkpoint {path} does not exist")
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # torch raises several types for a torn or foreign file
        raise ValueError(f"cannot read DnCNN checkpoint {path}: {err}") from err
    if not isinstance(obj, Mapping):
        raise ValueError(f"DnCNN checkpoint {path} holds a {type(obj).__name__}, expected a dict")
    epoch = None
    if "model_state_dict" in obj:
        epoch = obj.get("epoch")
        obj = obj["model_state_dict"]
    elif "state_dict" in obj and isinstance(obj["state_dict"], Mapping):
        obj = obj["state_dict"]
    if not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise ValueError(f"DnCNN checkpoint {path}: expected a state dict of tensors")
    return _strip_prefix(obj), (int(epoch) if epoch is not None else None)


def load_dncnn(path: str | os.PathLike, device: str | torch.device | None = None) -> DnCNN:
    """A DnCNN (architecture inferred from the keys) with the weights of ``path``, strict, in eval mode."""
    state_dict, epoch = read_state_dict(path)
    model = DnCNN(config_from_state_dict(state_dict))
    try:
        model.load_state_dict(state_dict, strict=True)
    except RuntimeError as err:
        raise ValueError(f"DnCNN checkpoint {path} does not match the KAIR layout: {err}") from err
    log.info("loaded DnCNN %s (epoch %s) from %s", model.config, epoch, path)
    return model.to(device or "cpu").eval()


def checkpoint_name(epoch: int) -> str:
    """``checkpoint_G3_<8-digit epoch>.pth``, as NeCA / NAFlow's denoiser training writes them."""
    if isinstance(epoch, bool) or not isinstance(epoch, int) or not 0 <= epoch < 10**8:
        raise ValueError(f"epoch must be an int in [0, 1e8), got {epoch!r}")
    return f"checkpoint_G3_{epoch:08d}.pth"


def save_dncnn(model: nn.Module, path: str | os.PathLike, *, epoch: int | None = None) -> Path:
    """Save ``{'epoch', 'model_state_dict'}`` (or a bare state dict when ``epoch`` is None), atomically."""
    module = getattr(model, "module", model)  # unwrap DDP
    state_dict = {k: v.detach().cpu() for k, v in module.state_dict().items()}
    obj: Any = state_dict if epoch is None else {"epoch": int(epoch), "model_state_dict": state_dict}
    return atomic_torch_save(obj, path)


def latest_checkpoint(directory: str | os.PathLike) -> tuple[Path, int] | None:
    """The ``checkpoint_G3_*.pth`` with the highest epoch in ``directory`` and that epoch, or None."""
    directory = Path(directory)
    if not directory.is_dir():
        return None
    found = [(int(m.group(1)), p) for p in directory.iterdir() if (m := CHECKPOINT_PATTERN.match(p.name))]
    if not found:
        return None
    epoch, path = max(found)
    return path, epoch
