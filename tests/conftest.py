"""Shared test settings: CPU by default, `--device cuda` to run the device-aware tests on a GPU."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

SHARED = Path(os.environ.get("NAFLOW_AUG_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--device", default="cpu", help="torch device for device-aware tests (cpu or cuda)")


@pytest.fixture(scope="session")
def device(request: pytest.FixtureRequest) -> torch.device:
    name = request.config.getoption("--device")
    if name.startswith("cuda") and not torch.cuda.is_available():
        pytest.skip("--device cuda given but CUDA is not available")
    return torch.device(name)


@pytest.fixture(scope="session")
def shared_dir() -> Path:
    if not SHARED.is_dir():
        pytest.skip(f"the shared material folder {SHARED} is absent (set NAFLOW_AUG_SHARED to use it)")
    return SHARED


@pytest.fixture(scope="session", autouse=True)
def _limit_threads() -> None:
    torch.set_num_threads(1)  # tiny shapes: threads cost more than they give on a shared 2-core machine
