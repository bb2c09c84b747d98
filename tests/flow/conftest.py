"""Flow tests run single-threaded: on a shared, oversubscribed CPU two OpenMP threads spin-wait and
made the parity tests ~30x slower (measured 50 s vs 1.8 s under load); alone the difference is small."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch


@pytest.fixture(autouse=True)
def _single_thread() -> Iterator[None]:
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
