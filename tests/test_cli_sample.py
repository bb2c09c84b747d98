"""`naflow-aug sample`: noisy PNGs and a grid from a checkpoint path, reproducible by seed."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

import naflow_aug
from naflow_aug import NAFlow, NAFlowConfig
from naflow_aug.cli import main
from naflow_aug.data.images import read_image, write_png

TINY = NAFlowConfig(classes=("A_00100", "B_00200"), levels=2, transition_steps=1, conditional_steps=1,
                    hidden_channels=4, encoder_channels=8)  # fmt: skip


def _setup(tmp_path: Path) -> tuple[Path, Path, Path]:
    torch.manual_seed(0)
    model = NAFlow(TINY)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
        model.prior.std.fill_(0.3)
    ckpt = naflow_aug.save_checkpoint(model, tmp_path / "tiny.pt")
    rng = np.random.default_rng(0)
    clean = write_png(tmp_path / "clean.png", rng.integers(0, 256, (18, 21, 3), dtype=np.uint8))
    noisy = write_png(tmp_path / "noisy.png", rng.integers(0, 256, (16, 20, 3), dtype=np.uint8))
    return ckpt, clean, noisy


def test_sample_config_and_seed(tmp_path: Path, capsys) -> None:
    ckpt, clean, _ = _setup(tmp_path)
    args = ["sample", str(clean), "--model", str(ckpt), "--noise", "config:B_00200", "--seed", "3"]
    assert main([*args, "--out", str(tmp_path / "a"), "--device", "cpu"]) == 0
    assert main([*args, "--out", str(tmp_path / "b"), "--device", "cpu"]) == 0
    out = capsys.readouterr().out
    assert "cropped 18x21 to 16x20" in out and "B_00200 1.00" in out
    a, b = read_image(tmp_path / "a" / "clean_noisy.png"), read_image(tmp_path / "b" / "clean_noisy.png")
    assert a.shape == (16, 20, 3) and np.array_equal(a, b)
    assert not np.array_equal(a, read_image(clean)[:16, :20])
    assert read_image(tmp_path / "a" / "grid.png").shape == (16, 60, 3)


def test_sample_nas_and_errors(tmp_path: Path, capsys) -> None:
    ckpt, clean, noisy = _setup(tmp_path)
    base = ["sample", str(clean), "--model", str(ckpt), "--out", str(tmp_path / "o"), "--device", "cpu"]
    assert main([*base, "--noise", "nas", "--reference", str(noisy)]) == 0
    assert (tmp_path / "o" / "clean_noisy.png").is_file()
    assert main([*base, "--noise", "nas"]) == 2
    assert main([*base, "--noise", "config:Z9_00001"]) == 2
    assert main([*base, "--noise", "gaussian:5"]) == 2
    assert main(["sample", str(clean), "--model", str(tmp_path / "missing.pt")]) == 2
    err = capsys.readouterr().err
    assert "needs --reference" in err and "unknown camera configuration" in err and "neither a bundled" in err
