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
    assert main(["sample", str(clean), "--model", str(tmp_path / "missing.pt")]) == 2
    err = capsys.readouterr().err
    assert "needs --reference" in err and "is not one of the model's" in err and "neither a bundled" in err


def test_sample_takes_every_noise_spelling(tmp_path: Path, capsys) -> None:
    ckpt, clean, _ = _setup(tmp_path)
    base = ["sample", str(clean), "--model", str(ckpt), "--device", "cpu"]
    for i, noise in enumerate(["gaussian:5", "weights:A_00100=1,B_00200=3", "real", "random"]):
        extra = ["--reference", str(clean)] if noise == "real" else []  # same size: 18x21
        assert main([*base, "--noise", noise, *extra, "--out", str(tmp_path / str(i))]) == 0, noise
        assert read_image(tmp_path / str(i) / "clean_noisy.png").shape[:2] in ((18, 21), (16, 20))
    out = capsys.readouterr().out
    assert "noise gaussian:5" in out and "B_00200 0.75, A_00100 0.25" in out
    assert np.array_equal(read_image(tmp_path / "2" / "clean_noisy.png"), read_image(clean))


def test_sample_same_name_in_two_folders_and_reference_size(tmp_path: Path, capsys) -> None:
    ckpt, _, _ = _setup(tmp_path)
    rng = np.random.default_rng(1)
    a = write_png(tmp_path / "a" / "img0.png", rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    b = write_png(tmp_path / "b" / "img0.png", rng.integers(0, 256, (16, 16, 3), dtype=np.uint8))
    out = tmp_path / "o"
    args = ["sample", str(a), str(b), "--model", str(ckpt), "--noise", "gaussian:0"]
    assert main([*args, "--out", str(out)]) == 0
    assert np.array_equal(read_image(out / "img0_0_noisy.png"), read_image(a))
    assert np.array_equal(read_image(out / "img0_1_noisy.png"), read_image(b))
    big = write_png(tmp_path / "big.png", rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
    args = ["sample", str(a), "--model", str(ckpt), "--noise", "nas", "--reference", str(big)]
    assert main([*args, "--out", str(out)]) == 2
    assert "is 32x32, clean image" in capsys.readouterr().err
