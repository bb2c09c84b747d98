"""`verify` checks the stored samples themselves: flat (noise-free, e.g. black) images and non-finite
regenerated samples are problems, not an OK."""

from __future__ import annotations

from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from naflow_aug.data.images import write_png
from naflow_aug.generate import GenerateConfig, generate, verify


class _Noise:
    """The generator's noise-function interface: per-item Gaussian noise, or NaN (a broken model)."""

    mode = "stand-in"
    classes = ["A", "B"]
    needs_reference = False
    device = torch.device("cpu")

    def __init__(self, nan: bool = False):
        self.nan = nan

    def __call__(self, clean, reference, seeds, labels=None):
        noisy = []
        for c, s in zip(clean, seeds, strict=True):
            g = torch.Generator().manual_seed(int(s))
            noisy.append((c + 0.1 * torch.randn(c.shape, generator=g)).clamp(0, 1))
        noisy = torch.stack(noisy)
        if self.nan:
            noisy = torch.full_like(noisy, float("nan"))
        return noisy, torch.full((len(clean), 2), 0.5)


@pytest.fixture()
def generated(tmp_path: Path) -> Path:
    rng = np.random.default_rng(0)
    source = tmp_path / "clean"
    for i in range(3):
        write_png(source / f"{i}.png", rng.integers(0, 256, (16, 32, 3), dtype=np.uint8))
    out = tmp_path / "o.h5"
    config = GenerateConfig(out=str(out), source=str(source), model="unused", source_kind="clean", crop=16,
                            part_size=4, batch_size=2, progress=False)  # fmt: skip
    generate(config, noise_fn=_Noise())
    return out


def test_verify_flags_flat_noisy_samples(generated: Path) -> None:
    assert verify(generated).ok
    with h5py.File(generated, "r+") as f:
        f["noisy"][2] = 0  # what a model with NaN weights wrote: a black image
        f["noisy"][4] = 128
    report = verify(generated)
    assert not report.ok
    assert any("2 noisy samples are one flat colour" in p and "[2, 4]" in p for p in report.problems)


def test_verify_flags_non_finite_regenerated_samples(generated: Path) -> None:
    assert verify(generated, regenerate=2, noise_fn=_Noise()).ok
    report = verify(generated, regenerate=2, noise_fn=_Noise(nan=True))
    assert not report.ok and any("NaN or Inf" in p for p in report.problems)


def test_verify_accepts_a_flat_crop_left_flat(generated: Path) -> None:
    with h5py.File(generated, "r+") as f:  # a flat clean crop (sky) with zero noise: not a broken model
        f["clean"][1] = 200
        f["noisy"][1] = 200
    report = verify(generated)
    assert report.ok, report.problems


def test_generate_refuses_non_finite_samples(tmp_path: Path) -> None:
    write_png(tmp_path / "clean" / "0.png", np.full((16, 16, 3), 90, np.uint8))
    config = GenerateConfig(out=str(tmp_path / "o.h5"), source=str(tmp_path / "clean"), model="unused",
                            source_kind="clean", crop=16, progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="NaN/Inf samples"):
        generate(config, noise_fn=_Noise(nan=True))
    assert not (tmp_path / "o.h5").exists()
