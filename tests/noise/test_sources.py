"""Noise sources (naflow_aug.noise): spelling, model sources against NAFlow.sample, NAS, baselines, tiling,
errors. The randomness contract of every kind is in test_registry.py."""

from __future__ import annotations

import json

import pytest
import torch

from naflow_aug import tiling
from naflow_aug.noise import NoiseParams, make_noise_source, parse_noise_spec
from naflow_aug.noise.baselines import Baselines, ConfigBaseline

CLASSES = ("A_00100", "B_00800", "C_03200")  # the tiny model of conftest.py


@pytest.fixture(scope="module")
def baselines() -> Baselines:
    return Baselines(
        configs={
            "A_00100": ConfigBaseline(0.01, (0.001, 0.001, 0.001), (1e-5, 1e-5, 1e-5)),
            "C_03200": ConfigBaseline(0.08, (0.02, 0.03, 0.04), (1e-3, 1e-3, 1e-3)),
        }
    )


def _clean(b: int = 3, h: int = 24, w: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.rand(b, 3, h, w, generator=g) * 0.6 + 0.2


def test_parse_spec_forms_and_errors() -> None:
    spec = parse_noise_spec(" config:S6_03200 ")
    assert (spec.kind, spec.arg) == ("config", "S6_03200") and spec.text == str(spec) == "config:S6_03200"
    assert tuple(spec) == ("config", "S6_03200") and parse_noise_spec(spec) is spec  # a parsed spec passes
    assert tuple(parse_noise_spec("gaussian-per-config")) == ("gaussian-per-config", None)
    assert tuple(parse_noise_spec("poisson-gaussian:b.json")) == ("poisson-gaussian", "b.json")
    assert parse_noise_spec("nas:model").needs_reference and parse_noise_spec("nas").needs_model
    assert parse_noise_spec("poisson-gaussian").needs_fitted_baselines
    assert not parse_noise_spec("poisson-gaussian:b.json").needs_fitted_baselines
    for bad in ["gausian:5", "config", "config:", "nas:x", "real:1", "", "gaussian:abc"]:
        with pytest.raises(ValueError) as e:
            parse_noise_spec(bad)
        assert repr(bad) in str(e.value) and "valid noise sources" in str(e.value)
    with pytest.raises(TypeError):
        parse_noise_spec(3)


def test_model_sources_match_model_sample(tiny_model) -> None:
    clean = _clean(h=32, w=32)
    for spec, kwargs in [("random", {}), ("config:C_03200", {"config": "C_03200"})]:
        noisy, params = make_noise_source(spec, tiny_model)(clean, generator=torch.Generator().manual_seed(1))
        expected = tiny_model.sample(clean, seeds=params.seeds, **kwargs)
        assert torch.allclose(noisy, expected, atol=1e-5), spec  # float-level: model may fuse ops
    source = make_noise_source("weights:0.2,0.3,0.5", tiny_model)
    noisy, params = source(clean, generator=torch.Generator().manual_seed(1))
    assert torch.allclose(params.weights, torch.tensor([0.2, 0.3, 0.5]).expand(3, 3))
    assert torch.allclose(
        noisy, tiny_model.sample(clean, weights=params.weights[0], seeds=params.seeds), atol=1e-5
    )


def test_random_records_configs_and_given_configs_override(tiny_model) -> None:
    source = make_noise_source("random", tiny_model)
    _, params = source(_clean(b=8), generator=torch.Generator().manual_seed(0))
    assert set(params.configs) <= set(CLASSES) and len(set(params.configs)) > 1
    picked = [CLASSES[i] for i in params.weights.argmax(1).tolist()]
    assert list(params.configs) == picked
    _, params = source(_clean(b=2), configs=["C_03200", 0])
    assert params.configs == ("C_03200", "A_00100")
    _, old_name = source(_clean(b=2), labels=["C_03200", 0])  # configs' old name still works
    assert old_name.configs == ("C_03200", "A_00100")
    with pytest.raises(TypeError, match="not both"):
        source(_clean(b=2), configs=["C_03200", 0], labels=["C_03200", 0])
    _, params = source(_clean(b=2), configs=[None, "B_00800"], seeds=[5, 6])
    _, picked = source(_clean(b=2), seeds=[5, 6])
    assert params.configs == (picked.configs[0], "B_00800")  # None: the item's own random pick
    with pytest.raises(ValueError, match="Z_00001"):
        source(_clean(b=1), configs=["Z_00001"])


def test_nas_recovers_reference_configuration(tiny_model) -> None:
    clean = _clean(b=3, h=32, w=32)
    reference = tiny_model.sample(
        clean, config=["A_00100", "B_00800", "C_03200"], generator=torch.Generator().manual_seed(2)
    )
    source = make_noise_source("nas", tiny_model)
    noisy, params = source(clean, reference=reference, generator=torch.Generator().manual_seed(0))
    assert params.weights.argmax(1).tolist() == [0, 1, 2]
    assert torch.allclose(params.weights.sum(1), torch.ones(3))
    assert torch.equal(source.replay(clean, params), noisy)  # replay needs no reference
    with pytest.raises(ValueError, match="reference"):
        source(clean)


def test_nas_noise_level_spellings(tiny_model, shared_dir) -> None:
    from naflow_aug.checkpoints import model_from_checkpoint
    from naflow_aug.flow.noise_level import match_noise_level, noise_std

    # trained (fixture) weights, so that the noise is weak enough not to clip
    data = torch.load(shared_dir / "fixtures" / "official_naflow_nas.pt", weights_only=True)
    net = model_from_checkpoint(data["checkpoint"], "official_naflow_nas.pt").freeze()
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(2, 3, 32, 32, generator=g) * 0.5 + 0.25
    reference = (clean + 0.03 * torch.randn(clean.shape, generator=g)).clamp(0, 1)
    matched = make_noise_source("nas", net)
    assert matched.noise_level == make_noise_source("nas:reference", net).noise_level == "reference"
    official = make_noise_source("nas:model", net)
    noisy, params = matched(clean, reference=reference, seeds=[4, 5])
    raw, raw_params = official(clean, reference=reference, seeds=[4, 5])
    assert raw_params.noise_std is None and torch.equal(raw_params.weights, params.weights)
    # each channel's noise std is the reference's; the pattern is the model's
    torch.testing.assert_close(params.noise_std, noise_std(reference, clean))
    torch.testing.assert_close(noise_std(noisy, clean), noise_std(reference, clean), rtol=2e-2, atol=0)
    torch.testing.assert_close(noisy, match_noise_level(raw, clean, params.noise_std), rtol=0, atol=1e-6)
    # the model source equals model.sample with the same seeds; replay and JSON round trip
    torch.testing.assert_close(noisy, net.sample(clean, reference=reference, seeds=[4, 5]), rtol=0, atol=1e-5)
    again = NoiseParams.from_dict(params.to_dict())
    assert torch.equal(matched.replay(clean, again), noisy)
    assert torch.equal(matched.replay(clean[1:], params.select([1])), noisy[1:])
    assert torch.equal(NoiseParams.cat([params.select([0]), params.select([1])]).noise_std, params.noise_std)
    with pytest.raises(ValueError, match="noise level"):
        make_noise_source("nas:loud", net)


def test_real_returns_reference(tiny_model) -> None:
    clean = _clean()
    reference = (clean + 0.1).clamp(0, 1)
    source = make_noise_source("real")
    noisy, params = source(clean, reference=reference)
    assert torch.equal(noisy, reference)
    assert torch.equal(source.replay(clean, params, reference=reference), reference)


def test_gaussian_sigma_units_and_per_config_configs(baselines) -> None:
    clean = torch.full((2, 3, 64, 64), 0.5)
    noisy, _ = make_noise_source("gaussian:25.5")(clean, generator=torch.Generator().manual_seed(0))
    assert abs(float((noisy - clean).std()) - 0.1) < 0.005
    source = make_noise_source("gaussian-per-config", baselines=baselines)
    noisy, params = source(clean, configs=["A_00100", "C_03200"])
    assert params.configs == ("A_00100", "C_03200")
    assert abs(float((noisy[0] - clean[0]).std()) - 0.01) < 0.002
    assert abs(float((noisy[1] - clean[1]).std()) - 0.08) < 0.006
    pg = make_noise_source("poisson-gaussian", baselines=baselines)
    noisy, _ = pg(clean, configs=["C_03200", "C_03200"])
    var = (noisy - clean).var(dim=(0, 2, 3))
    expected = torch.tensor([0.02, 0.03, 0.04]) * 0.5 + 1e-3
    assert torch.allclose(var, expected, rtol=0.1)
    with pytest.raises(ValueError, match="B_00800"):
        source(clean, configs=["B_00800", "A_00100"])  # not fitted: names the configuration


def test_baselines_from_file_spelling(tmp_path, baselines) -> None:
    path = baselines.save(tmp_path / "b.json")
    source = make_noise_source(f"poisson-gaussian:{path}")
    assert source.classes == ("A_00100", "C_03200")
    with pytest.raises(ValueError, match="fit-baselines"):
        make_noise_source("gaussian-per-config")


def test_spelling_errors_name_value(tiny_model, tmp_path) -> None:
    with pytest.raises(ValueError, match="Q_00001.*A_00100"):
        make_noise_source("config:Q_00001", tiny_model)
    with pytest.raises(ValueError, match="2 values.*3 classes"):
        make_noise_source("weights:0.5,0.5", tiny_model)
    with pytest.raises(ValueError, match="not a number"):
        make_noise_source("weights:0.5,x,1", tiny_model)
    with pytest.raises(ValueError, match=">= 0"):
        make_noise_source("weights:-1,1,1", tiny_model)
    with pytest.raises(ValueError, match="lacks"):
        make_noise_source("weights:Z_1=1", tiny_model)
    with pytest.raises(ValueError, match="does not exist"):
        make_noise_source("weights:missing.json", tiny_model)
    path = tmp_path / "w.json"
    path.write_text(json.dumps({"C_03200": 2, "A_00100": 2}))
    source = make_noise_source(f"weights:{path}", tiny_model)
    assert torch.allclose(source.fixed_weights, torch.tensor([0.5, 0.0, 0.5]))
    with pytest.raises(ValueError, match="abc"):
        make_noise_source("gaussian:abc")
    with pytest.raises(TypeError, match="NAFlow"):
        make_noise_source("random", object())


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        (torch.rand(2, 1, 16, 16), ValueError, r"\(B, 3, H, W\)"),
        (torch.rand(2, 4, 16, 16), ValueError, r"\(B, 3, H, W\)"),
        (torch.rand(3, 16, 16), ValueError, r"\(B, 3, H, W\)"),
        ((torch.rand(1, 3, 16, 16) * 255).to(torch.uint8), TypeError, "uint8"),
        (torch.rand(1, 3, 16, 16) * 2, ValueError, r"\[0, 1\]"),
        (torch.rand(0, 3, 16, 16), ValueError, "empty batch"),
        (torch.full((1, 3, 16, 16), float("nan")), ValueError, "NaN"),
        (torch.rand(1, 3, 16, 16).numpy(), TypeError, "ndarray"),
    ],
)
def test_bad_inputs(bad, error, match, tiny_model) -> None:
    for source in (make_noise_source("random", tiny_model), make_noise_source("gaussian:5")):
        with pytest.raises(error, match=match):
            source(bad)


def test_any_size_pads_and_crops(tiny_model) -> None:
    source = make_noise_source("config:B_00800", tiny_model)
    clean = _clean(b=2, h=21, w=13)
    noisy, params = source(clean, generator=torch.Generator().manual_seed(0))
    assert noisy.shape == clean.shape
    assert torch.equal(source.replay(clean, params), noisy)
    tiny = _clean(b=1, h=3, w=5)  # smaller than the pad: edge replication instead of reflection
    assert source(tiny)[0].shape == tiny.shape


def test_tiles_cover_image_once() -> None:
    tiles = tiling.make_tiles(200, 136, 8, tile_size=96, overlap=16)
    covered = torch.zeros(200, 136, dtype=torch.int64)
    for t in tiles:
        y0, y1, x0, x1 = t.core
        oy0, oy1, ox0, ox1 = t.outer
        assert oy0 <= y0 < y1 <= oy1 and ox0 <= x0 < x1 <= ox1
        assert oy1 - oy0 <= 96 and ox1 - ox0 <= 96
        assert all(v % 8 == 0 for v in (*t.core, *t.outer))
        covered[y0:y1, x0:x1] += 1
    assert len(tiles) > 4 and bool((covered == 1).all())
    assert len(tiling.make_tiles(64, 64, 8, tile_size=None, overlap=16)) == 1
    with pytest.raises(ValueError, match="no core"):
        tiling.make_tiles(200, 200, 8, tile_size=32, overlap=16)


def test_tiled_matches_untiled(tiny_model) -> None:
    clean = _clean(b=1, h=150, w=190, seed=4)
    tiled = make_noise_source("config:C_03200", tiny_model, tile_size=64, overlap=16)
    whole = make_noise_source("config:C_03200", tiny_model, tile_size=None)
    noisy_t, params = tiled(clean, generator=torch.Generator().manual_seed(0))
    noisy_w = whole.replay(clean, params)
    assert len(tiling.make_tiles(152, 192, 8, 64, 16)) > 4
    rt, rw = noisy_t - clean, noisy_w - clean
    # the same latent noise: statistics agree, and pixel values nearly so
    assert torch.allclose(rt.std(dim=(0, 2, 3)), rw.std(dim=(0, 2, 3)), rtol=0.02)
    assert torch.allclose(rt.mean(dim=(0, 2, 3)), rw.mean(dim=(0, 2, 3)), atol=0.005)
    assert float((noisy_t - noisy_w).abs().mean()) < 0.01
    # no seam: the noise std along the core boundaries equals the std elsewhere
    boundary_cols = sorted({t.core[3] for t in tiling.make_tiles(152, 192, 8, 64, 16)} - {192})
    at_seam = torch.cat([rt[..., c - 1 : c + 1] for c in boundary_cols], dim=-1).std()
    assert abs(float(at_seam) / float(rt.std()) - 1) < 0.1
    # NAS on a large image: the same posterior tiled and untiled
    reference = noisy_w
    w_t = tiled.nas_weights(clean, reference) if hasattr(tiled, "nas_weights") else None
    nas_t = make_noise_source("nas", tiny_model, tile_size=64, overlap=16).nas_weights(clean, reference)
    nas_w = make_noise_source("nas", tiny_model, tile_size=None).nas_weights(clean, reference)
    assert w_t is not None and torch.allclose(nas_t, nas_w, atol=1e-3)
    assert int(nas_t.argmax()) == 2


def test_default_overlap_is_seamless_for_the_official_architecture(shared_dir) -> None:
    """With the published architecture (trained fixture weights) and the default overlap, tiled and untiled
    outputs agree to float noise: the overlap covers the flow's receptive field."""
    from naflow_aug.checkpoints import model_from_checkpoint

    data = torch.load(shared_dir / "fixtures" / "official_naflow_nas.pt", weights_only=True)
    net = model_from_checkpoint(data["checkpoint"], "official_naflow_nas.pt").freeze()
    g = torch.Generator().manual_seed(0)
    clean = (
        (torch.rand(1, 3, 16, 24, generator=g) * 0.6 + 0.2).repeat_interleave(8, 2).repeat_interleave(8, 3)
    )
    overlap = tiling.DEFAULT_OVERLAP
    tiled = make_noise_source("config:S6_03200", net, tile_size=64 + 2 * overlap, overlap=overlap)
    noisy_t, params = tiled(clean, generator=g)
    noisy_w = make_noise_source("config:S6_03200", net, tile_size=None).replay(clean, params)
    assert len(tiling.make_tiles(128, 192, 8, 64 + 2 * overlap, overlap)) == 6
    assert float((noisy_t - noisy_w).abs().max()) < 2e-3
