"""Denoisers the benchmark harness trains and scores; any ``nn.Module`` mapping noisy to clean works too."""

from naflow_aug.denoisers.dncnn import (
    PAPER,
    SMALL,
    DnCNN,
    DnCNNConfig,
    checkpoint_name,
    config_from_state_dict,
    latest_checkpoint,
    load_dncnn,
    read_state_dict,
    save_dncnn,
)

__all__ = [
    "PAPER",
    "SMALL",
    "DnCNN",
    "DnCNNConfig",
    "checkpoint_name",
    "config_from_state_dict",
    "latest_checkpoint",
    "load_dncnn",
    "read_state_dict",
    "save_dncnn",
]
