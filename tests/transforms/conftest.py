"""A tiny random NAFlow for the transform tests, as an object and as a checkpoint file."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

flow = pytest.importorskip("naflow_aug.flow", reason="the NAFlow model package is not there yet")

CLASSES = ("A_00100", "B_00800", "C_03200")


def make_tiny_naflow() -> flow.NAFlow:
    """3 classes, small widths; ActNorm initialised by one training-mode forward; distinct class scales."""
    torch.manual_seed(0)
    cfg = flow.NAFlowConfig(
        classes=CLASSES, hidden_channels=8, encoder_channels=8, transition_steps=1, conditional_steps=1
    )
    net = flow.NAFlow(cfg)
    clean = torch.rand(2, 3, 32, 32) * 0.8 + 0.1
    net.train()
    net.encode((clean + 0.05 * torch.randn_like(clean)).clamp(0, 1), clean)
    with torch.no_grad():
        net.prior.std.copy_(torch.tensor([0.3, 1.0, 2.0])[:, None].expand_as(net.prior.std))
    return net.freeze()


@pytest.fixture(scope="session")
def tiny_model() -> flow.NAFlow:
    return make_tiny_naflow()


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_model, tmp_path_factory) -> Path:
    from naflow_aug import save_checkpoint

    return save_checkpoint(tiny_model, tmp_path_factory.mktemp("model") / "tiny.pt")
