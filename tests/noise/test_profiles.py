"""Noise profiles (naflow_aug.noise.profiles): calibrate, JSON save/load/apply, class mismatch, CLI
commands."""

from __future__ import annotations

import json

import pytest
import torch

from naflow_aug import cli
from naflow_aug.data.images import write_png
from naflow_aug.noise import make_noise_source
from naflow_aug.noise.profiles import NoiseProfile, calibrate, find_pairs
from naflow_aug.runs import sha256_file

CLASSES = ("A_00100", "B_00800", "C_03200")  # the tiny model of conftest.py


def _camera_pairs(model, n: int = 3, config: str = "C_03200", size: int = 32):
    g = torch.Generator().manual_seed(11)
    clean = torch.rand(n, 3, size, size, generator=g) * 0.6 + 0.2
    noisy = model.sample(clean, config=config, generator=g)
    return clean, noisy


def test_calibrate_save_load_apply(tiny_model, tmp_path) -> None:
    clean, noisy = _camera_pairs(tiny_model)
    profile = calibrate(tiny_model, zip(clean, noisy, strict=True), mode="mixture", files=["a", "b", "c"])
    assert profile.pairs == 3 and profile.classes == CLASSES
    assert profile.top(1)[0][0] == "C_03200" and sum(profile.weights) == pytest.approx(1.0)
    path = profile.save(tmp_path / "camera.json")
    data = json.loads(path.read_text())
    assert data["format_version"] == 2 and data["mode"] == "mixture"
    assert data["model_classes"] == list(CLASSES)
    assert set(data["weights"]) == set(CLASSES) and data["pairs"] == 3 and data["files"] == ["a", "b", "c"]
    assert NoiseProfile.load(path) == profile
    source = make_noise_source(f"profile:{path}", tiny_model)
    out, params = source(clean, generator=torch.Generator().manual_seed(0))
    assert torch.allclose(params.weights[0], torch.tensor(profile.weights, dtype=torch.float32))
    assert torch.equal(source.replay(clean, params), out)


def test_mismatched_profile_names_both_class_lists(tiny_model, tmp_path) -> None:
    other = NoiseProfile(classes=("S6_00100", "GP_03200"), weights=(0.3, 0.7)).save(tmp_path / "other.json")
    with pytest.raises(ValueError) as e:
        make_noise_source(f"profile:{other}", tiny_model)
    assert "S6_00100" in str(e.value) and "B_00800" in str(e.value)


def test_profile_file_errors(tmp_path) -> None:
    with pytest.raises(ValueError, match="does not exist"):
        NoiseProfile.load(tmp_path / "missing.json")
    (tmp_path / "bad.json").write_text("{not json")
    with pytest.raises(ValueError, match="not valid JSON"):
        NoiseProfile.load(tmp_path / "bad.json")
    (tmp_path / "v9.json").write_text(json.dumps({"kind": "naflow-aug-noise-profile", "format_version": 9}))
    with pytest.raises(ValueError, match="format_version 9 is not supported"):
        NoiseProfile.load(tmp_path / "v9.json")
    with pytest.raises(ValueError, match=">= 0"):
        NoiseProfile(classes=("A", "B"), weights=(-1.0, 2.0))
    with pytest.raises(ValueError, match="one weight per class"):
        NoiseProfile(classes=("A", "B"), weights=(1.0,))


def _write_pairs(model, folder, layout: str) -> None:
    clean, noisy = _camera_pairs(model)
    for i in range(clean.shape[0]):
        if layout == "suffix":
            write_png(folder / f"shot{i}_clean.png", clean[i])
            write_png(folder / f"shot{i}_noisy.png", noisy[i])
        else:
            write_png(folder / "clean" / f"shot{i}.png", clean[i])
            write_png(folder / "noisy" / f"shot{i}.png", noisy[i])


@pytest.mark.parametrize("layout", ["suffix", "subfolders"])
def test_calibrate_cli(layout, tiny_model, tiny_checkpoint, tmp_path, capsys) -> None:
    pairs = tmp_path / "pairs"
    _write_pairs(tiny_model, pairs, layout)
    out, ckpt = tmp_path / "profile.json", str(tiny_checkpoint)
    args = ["calibrate", "--pairs", str(pairs), "--out", str(out), "--model", ckpt, "--mode", "mixture"]
    rc = cli.main([*args, "--no-progress"])
    assert rc == 0 and "C_03200" in capsys.readouterr().out
    profile = NoiseProfile.load(out)
    assert profile.pairs == 3 and profile.top(1)[0][0] == "C_03200"
    assert profile.model_sha256 == sha256_file(tiny_checkpoint) and len(profile.files) == 3
    rc = cli.main(["calibrate", "--pairs", str(tmp_path / "nowhere"), "--out", str(out), "--model", ckpt])
    assert rc == 2 and "nowhere" in capsys.readouterr().err


def test_find_pairs_reports_missing_partners(tmp_path) -> None:
    write_png(tmp_path / "a_clean.png", torch.rand(3, 8, 8))
    with pytest.raises(ValueError, match="no \\(clean, noisy\\) pairs"):
        find_pairs(tmp_path)
    write_png(tmp_path / "a_noisy.png", torch.rand(3, 8, 8))
    assert [(c.name, n.name) for c, n in find_pairs(tmp_path)] == [("a_clean.png", "a_noisy.png")]


def test_fit_baselines_cli(tmp_path, capsys) -> None:
    g = torch.Generator().manual_seed(0)
    for i in range(2):
        clean = torch.rand(3, 64, 64, generator=g) * 0.6 + 0.2
        write_png(tmp_path / "pairs" / "clean" / f"{i}.png", clean)
        write_png(
            tmp_path / "pairs" / "noisy" / f"{i}.png", (clean + 0.04 * torch.randn(3, 64, 64, generator=g))
        )
    out = tmp_path / "baselines.json"
    argv = ["fit-baselines", "--pairs", str(tmp_path / "pairs"), "--label", "S6_03200", "--out", str(out)]
    assert cli.main([*argv, "--no-progress"]) == 0
    data = json.loads(out.read_text())
    assert data["classes"] == ["S6_03200"]
    assert data["configs"]["S6_03200"]["gaussian_std"] == pytest.approx(0.04, rel=0.1)
    assert cli.main(["fit-baselines", "--out", str(out)]) == 2
    assert "one of --data" in capsys.readouterr().err
