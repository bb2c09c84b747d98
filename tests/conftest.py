"""Shared test settings: CPU by default, `--device cuda` to run the device-aware tests on a GPU; a tiny
random NAFlow (as an object and as a checkpoint file) for the tests that need a model but not a good one."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

SHARED = Path(os.environ.get("NAFLOW_AUG_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--device", default="cpu", help="torch device for device-aware tests (cpu or cuda)")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Every test that takes the ``device`` fixture is marked ``device``: ``pytest -m device --device cuda``
    runs exactly the suite's device-aware tests (what benchmarks/gpu_check.py does on a GPU)."""
    for item in items:
        if "device" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.device)


@pytest.fixture(scope="session")
def device(request: pytest.FixtureRequest) -> torch.device:
    name = request.config.getoption("--device")
    if name.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip("--device cuda given but CUDA is not available")
    if name.startswith("cuda"):
        # device results are compared with the CPU's at float32 tolerances: no TF32 (cuDNN's default for
        # convolutions on Ampere and later GPUs rounds their inputs to 10-bit mantissas)
        torch.backends.cudnn.allow_tf32 = False
        torch.backends.cuda.matmul.allow_tf32 = False
    return torch.device(name)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"the shared material folder {SHARED} is absent (set NAFLOW_AUG_SHARED to use it)")
    return SHARED


@pytest.fixture(scope="session", autouse=True)
def _limit_threads() -> None:
    torch.set_num_threads(1)  # tiny shapes: threads cost more than they give on a shared 2-core machine


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    """Every test runs single-threaded, whatever an earlier one left: on a shared, oversubscribed CPU two
    OpenMP threads spin-wait and made the flow parity tests ~30x slower (measured 50 s vs 1.8 s under load).
    """
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


TINY_CLASSES = ("A_00100", "B_00800", "C_03200")


def make_tiny_naflow():
    """3 classes, small widths; ActNorm initialised by one training-mode forward; distinct class scales."""
    from naflow_aug import flow

    torch.manual_seed(0)
    cfg = flow.NAFlowConfig(
        classes=TINY_CLASSES, hidden_channels=8, encoder_channels=8, transition_steps=1, conditional_steps=1
    )
    net = flow.NAFlow(cfg)
    clean = torch.rand(2, 3, 32, 32) * 0.8 + 0.1
    net.train()
    net.encode((clean + 0.05 * torch.randn_like(clean)).clamp(0, 1), clean)
    with torch.no_grad():
        net.prior.std.copy_(torch.tensor([0.3, 1.0, 2.0])[:, None].expand_as(net.prior.std))
    return net.freeze()


@pytest.fixture(scope="session")
def tiny_model():
    return make_tiny_naflow()


@pytest.fixture(scope="session")
def tiny_checkpoint(tiny_model, tmp_path_factory) -> Path:
    from naflow_aug import save_checkpoint

    return save_checkpoint(tiny_model, tmp_path_factory.mktemp("model") / "tiny.pt")
