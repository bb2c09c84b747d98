"""Issue 20, item 9: the smaller silently-wrong cases, each refused with a message or made exact."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from naflow_aug.cli import build_parser, main
from naflow_aug.data.images import write_png
from naflow_aug.noise import make_noise_source
from naflow_aug.transforms import NAFlowNoise
from naflow_aug.weights import parse_weights


def test_tiling_settings_are_checked_at_construction(tiny_model) -> None:
    with pytest.raises(ValueError, match="overlap must be an integer >= 0 pixels, got -8"):
        NAFlowNoise(tiny_model, tile_size=64, overlap=-8)
    with pytest.raises(ValueError, match="tile_size must be None or a positive integer, got 0"):
        NAFlowNoise(tiny_model, tile_size=0)
    with pytest.raises(ValueError, match="leaves no core"):
        make_noise_source("random", tiny_model, tile_size=64, overlap=32)
    NAFlowNoise(tiny_model, tile_size=32, overlap=8)


@pytest.mark.parametrize("dtype", [torch.float64, torch.float16, torch.bfloat16])
@pytest.mark.parametrize("fast", [True, False])
def test_sample_keeps_the_input_dtype(tiny_model, dtype, fast) -> None:
    clean = (torch.rand(2, 3, 16, 16, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.1).to(dtype)
    tiny_model.fast_sampling = fast
    try:
        noisy = tiny_model.sample(clean, config="B_00800", seeds=[1, 2])
        reference = tiny_model.sample(clean.float(), config="B_00800", seeds=[1, 2])
    finally:
        tiny_model.fast_sampling = True
    assert noisy.dtype == dtype and noisy.shape == clean.shape and bool(torch.isfinite(noisy).all())
    assert torch.allclose(noisy.float(), reference, atol=1e-2 if dtype != torch.float64 else 1e-6)
    z, logdet = tiny_model.encode(noisy, clean)
    assert z.dtype == logdet.dtype == dtype
    assert tiny_model.decode(z, clean).dtype == dtype


def test_seeds_are_exact_or_refused() -> None:
    from naflow_aug.flow.seeds import as_seeds, check_seed

    assert as_seeds([0, 2**63 - 1, -5], 3).tolist() == [0, 2**63 - 1, -5]
    assert as_seeds(np.array([7, 8], dtype=np.uint64), 2).tolist() == [7, 8]
    with pytest.raises(TypeError, match="seeds must be integers, got a torch.float32 tensor"):
        as_seeds(torch.tensor([1.5]), 1)
    with pytest.raises(TypeError, match=r"seeds\[0\] must be an integer, got float 1.7"):
        as_seeds([1.7], 1)
    with pytest.raises(TypeError, match="got float nan"):
        as_seeds([float("nan")], 1)
    with pytest.raises(ValueError, match="must fit in int64"):
        as_seeds([2**64 - 1], 1)
    with pytest.raises(ValueError, match="must fit in int64"):
        as_seeds(torch.tensor([2**64 - 1], dtype=torch.uint64), 1)
    with pytest.raises(TypeError, match="got bool True"):
        check_seed(True)
    with pytest.raises(TypeError, match="seed must be an integer"):
        NAFlowNoise("sidd-mini", seed=1.5)


def test_model_sample_refuses_inexact_seeds(tiny_model) -> None:
    clean = torch.full((1, 3, 16, 16), 0.5)
    with pytest.raises(TypeError):
        tiny_model.sample(clean, seeds=[3.9])
    with pytest.raises(ValueError):
        tiny_model.sample(clean, seeds=[2**64 - 1])


def test_boolean_configs_are_refused(tiny_model) -> None:
    source = make_noise_source("gaussian-per-config", baselines=_baselines())
    clean = torch.full((2, 3, 8, 8), 0.5)
    assert source(clean, configs=[0, 1], seeds=[1, 2])[1].configs == ("A_00100", "B_00800")
    with pytest.raises(ValueError, match="config True is neither"):
        source(clean, configs=[True, False], seeds=[1, 2])
    with pytest.raises(TypeError, match="torch.bool"):
        source(clean, configs=torch.tensor([True, False]), seeds=[1, 2])


def _baselines():
    from naflow_aug.noise.baselines import Baselines, ConfigBaseline

    c = ConfigBaseline(gaussian_std=0.02, pg_a=(0.01,) * 3, pg_b=(0.0001,) * 3)
    return Baselines(configs={"A_00100": c, "B_00800": c})


def test_weights_duplicates_and_other_class_lists(tmp_path: Path) -> None:
    classes = ["A_00100", "B_00800", "C_03200"]
    with pytest.raises(ValueError, match="name configuration 'A_00100' twice"):
        parse_weights("A_00100=1,B_00800=1,A_00100=5", classes)
    profile = tmp_path / "p.json"
    profile.write_text(json.dumps({"classes": ["X_1", "Y_2", "Z_3"], "weights": {"A_00100": 1.0}}))
    with pytest.raises(ValueError, match="made for classes"):
        parse_weights(str(profile), classes)
    bools = tmp_path / "w.json"
    bools.write_text(json.dumps([True, 1, 1]))
    with pytest.raises(ValueError, match="True is not a number"):
        parse_weights(str(bools), classes)
    assert parse_weights("A_00100=1,C_03200=3", classes).tolist() == [0.25, 0.0, 0.75]


def test_nan_latents_are_refused(tiny_model) -> None:
    clean = torch.full((1, 3, 16, 16), 0.5)
    z = torch.zeros(1, tiny_model.latent_channels, 2, 2)
    z[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="z contains NaN or Inf"):
        tiny_model.decode(z, clean)
    with pytest.raises(ValueError, match="z contains NaN or Inf"):
        tiny_model.posterior(z)
    with pytest.raises(ValueError, match="z must have shape"):
        tiny_model.posterior(torch.zeros(2, 5))


def test_verify_tolerance_must_not_be_negative(tmp_path: Path, capsys) -> None:
    assert main(["verify", str(tmp_path / "missing.h5"), "--tolerance", "-1"]) == 2
    assert "tolerance must be an integer >= 0, got -1" in capsys.readouterr().err


def test_images_over_the_pixel_limit_are_refused_before_the_plan(tmp_path: Path, monkeypatch) -> None:
    from PIL import Image

    from naflow_aug.generate import GenerateConfig, generate

    write_png(tmp_path / "src" / "big.png", np.zeros((64, 64, 3), np.uint8))
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # stands for PIL's ~89 Mpx
    out = tmp_path / "o.h5"
    config = GenerateConfig(out=str(out), source=str(tmp_path / "src"), model="unused", source_kind="clean",
                            crop=16, progress=False)  # fmt: skip
    with pytest.raises(ValueError, match="big.png: not a readable image.*exceeds limit"):
        generate(config, noise_fn=object())
    assert not (tmp_path / "o.h5.parts" / "plan.json").exists() and not out.exists()


def test_demo_help_agrees_with_the_readme() -> None:
    readme = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    demo = build_parser()._subparsers._group_actions[0].choices["demo"]
    size_help = next(a.help for a in demo._actions if "--size" in a.option_strings)
    assert "about 10 minutes on 2 CPU cores" in readme and "about 10 min on 2 CPU cores" in size_help


def test_generate_seed_must_be_an_exact_integer(tmp_path: Path) -> None:
    from naflow_aug.generate import GenerateConfig

    for seed in (True, 1.0, float("nan"), 2**64 - 1, -1):
        with pytest.raises(ValueError, match="seed must be an integer in"):
            GenerateConfig(out=str(tmp_path / "o.h5"), source=str(tmp_path), seed=seed)
