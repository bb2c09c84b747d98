"""The trained model and what optimises it: a fresh NAFlow or the ``init`` checkpoint, the parameter
groups (flow / per-configuration Gaussians), the learning-rate schedule, the loss as a module."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from naflow_aug.checkpoints import load
from naflow_aug.flow.model import NAFlow, NAFlowConfig
from naflow_aug.train.config import TrainConfig

logger = logging.getLogger(__name__)


def build_model(config: TrainConfig, data_classes: Sequence[str]) -> nn.Module:
    """A fresh trainable NAFlow over the data's classes, or the `init` checkpoint made trainable."""
    if config.init:
        model = load(config.init, device="cpu")
        model.requires_grad_(True)
        model.train()
        if config.model:
            logger.warning("TrainConfig.model is ignored when fine-tuning from %s", config.init)
        return model
    classes = tuple(config.classes) if config.classes else tuple(data_classes)
    try:
        model_config = NAFlowConfig(classes=classes, **config.model)
    except TypeError as err:
        raise ValueError(f"TrainConfig.model {config.model!r} does not fit NAFlowConfig: {err}") from err
    return NAFlow(model_config)


def _latent_parameter_names(model: nn.Module) -> set[str]:
    """Names of the per-configuration Gaussians' parameters (means and stds)."""
    prior = getattr(model, "prior", None)
    if not isinstance(prior, nn.Module):
        raise TypeError(f"expected a NAFlow with a `prior` (class Gaussians), got {type(model).__name__}")
    return {f"prior.{n}" for n, _ in prior.named_parameters()}


def param_groups(model: nn.Module, config: TrainConfig) -> list[dict[str, Any]]:
    latent_names = _latent_parameter_names(model)
    latent = [p for n, p in model.named_parameters() if n in latent_names and p.requires_grad]
    rest = [p for n, p in model.named_parameters() if n not in latent_names and p.requires_grad]
    if not latent:
        raise ValueError("found no per-configuration latent parameters in the model (expected `prior.*`)")
    return [
        {"params": rest, "lr": config.lr, "name": "flow"},
        {"params": latent, "lr": config.latent_lr or config.lr, "name": "latent"},
    ]


class Schedule:
    """lr factor at a step: linear warm-up, then multiplied by gamma at each milestone."""

    def __init__(self, milestones: Sequence[int], gamma: float, warmup: int):
        self.milestones = list(milestones)
        self.gamma = gamma
        self.warmup = warmup

    def __call__(self, step: int) -> float:
        factor = self.gamma ** sum(step >= m for m in self.milestones)
        if self.warmup and step < self.warmup:
            factor *= (step + 1) / self.warmup
        return factor


class Objective(nn.Module):
    """The training loss as a module's forward, so DDP synchronises its gradients."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, noisy: torch.Tensor, clean: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.model.nll(noisy, clean, labels)
