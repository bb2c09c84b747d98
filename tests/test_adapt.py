"""Adapted noise profiles (naflow_aug.adapt, naflow_aug.noise.profiles mode "adapt"): round trip, wrong base
refused, determinism from the seed, the noise source and transforms, old mixture profiles, the CLI."""

from __future__ import annotations

import dataclasses
import json

import numpy as np
import pytest
import torch

import naflow_aug
from naflow_aug import cli, save_checkpoint
from naflow_aug.adapt import (
    AdaptConfig,
    CameraFlow,
    adapt,
    apply_tensors,
    camera_response,
    extend_model,
    fit_level,
    level_gain,
    normalise_noise,
)
from naflow_aug.data.images import write_png
from naflow_aug.noise import make_noise_source
from naflow_aug.noise.profiles import NoiseProfile, calibrate, profile_source
from naflow_aug.runs import sha256_file

TINY = AdaptConfig(steps=4, batch_size=2, crop_size=16, refit_max_size=32, seed=3)


def _pairs(model, n: int = 2, size: int = 32, config: str = "C_03200"):
    g = torch.Generator().manual_seed(5)
    clean = torch.rand(n, 3, size, size, generator=g) * 0.6 + 0.2
    noisy = model.sample(clean, config=config, generator=g)
    # 8-bit pairs, as a camera's files are
    return [((c * 255).round() / 255, (x * 255).round() / 255) for c, x in zip(clean, noisy, strict=True)]


@pytest.fixture(scope="module")
def base(tiny_checkpoint):
    return naflow_aug.load(tiny_checkpoint)  # knows its checkpoint's SHA-256


@pytest.fixture(scope="module")
def adapted_profile(base, tmp_path_factory):
    profile = calibrate(base, _pairs(base), files=["a.png", "b.png"], adapt_config=TINY)
    path = profile.save(tmp_path_factory.mktemp("profile") / "camera.json")
    return profile, path


def test_adapt_trains_a_new_class_and_leaves_the_base_alone(base) -> None:
    before = {k: v.clone() for k, v in base.state_dict().items()}
    model, info = adapt(base, _pairs(base), TINY)
    assert model.classes == [*base.classes, "camera"] and model is not base
    assert all(torch.equal(v, base.state_dict()[k]) for k, v in before.items())
    assert info["steps"] == 4 and info["trained_parameters"] > 0 and np.isfinite(info["nll_last"])
    changed = [
        k
        for k, v in model.state_dict().items()
        if not k.startswith("prior.") and not torch.equal(v, before[k])
    ]
    assert changed  # the flow moved
    assert not any(p.requires_grad for p in model.parameters()) and not model.training


def test_adapt_without_steps_is_the_closed_form_fit(base) -> None:
    from naflow_aug.train import refit_prior

    pairs = _pairs(base)
    config = AdaptConfig(steps=0, crop_size=16, refit_max_size=32, train="none", match_std=False)
    model, _ = adapt(base, pairs, config)
    ref = extend_model(base, "camera")
    refit_prior(ref, [(n, c, "camera") for c, n in pairs], max_size=32)
    assert torch.allclose(model.prior.mean[-1], ref.prior.mean[-1]) and torch.allclose(
        model.prior.std[-1], ref.prior.std[-1]
    )
    assert not torch.allclose(model.prior.std[-1], torch.ones_like(model.prior.std[-1]))


def test_adapted_profile_round_trip(base, adapted_profile) -> None:
    profile, path = adapted_profile
    data = json.loads(path.read_text())
    assert data["mode"] == "adapt" and data["model_sha256"] == base.checkpoint_sha256 == profile.model_sha256
    assert data["files"] == ["a.png", "b.png"] and data["pairs"] == 2 and data["weights"] is None
    assert data["tensors"] == "camera.pt" and data["tensors_sha256"] == sha256_file(path.with_suffix(".pt"))
    assert data["extra"]["adapt"]["seed"] == 3 and data["extra"]["adapt"]["steps"] == 4
    loaded = NoiseProfile.load(path)
    assert loaded == profile and sorted(loaded.tensors) == sorted(profile.tensors)
    assert all(torch.equal(loaded.tensors[k], profile.tensors[k]) for k in profile.tensors)
    clean = torch.rand(2, 3, 24, 32, generator=torch.Generator().manual_seed(1)) * 0.8 + 0.1
    a, pa = profile_source(base, profile)(clean, seeds=[1, 2])
    b, pb = make_noise_source(f"profile:{path}", base)(clean, seeds=[1, 2])
    assert torch.equal(a, b) and pb.classes == (*base.classes, "camera") and pb.weights[:, -1].eq(1).all()
    # it is the adapted model's camera class that makes the noise: NAFlow.sample on the adapted model agrees
    net, weights = loaded.model_for(base)
    assert torch.allclose(net.sample(clean, weights=weights, seeds=[1, 2]), b, atol=1e-5)


def test_profile_of_another_base_model_is_refused(base, adapted_profile, tiny_model, tmp_path) -> None:
    _, path = adapted_profile
    twin = naflow_aug.NAFlow(tiny_model.config)
    twin.load_state_dict(tiny_model.state_dict())
    with torch.no_grad():
        twin.prior.std.mul_(1.5)
    other_path = save_checkpoint(twin, tmp_path / "other.pt")
    other = naflow_aug.load(other_path)
    with pytest.raises(ValueError) as e:
        make_noise_source(f"profile:{path}", other)
    assert base.checkpoint_sha256 in str(e.value) and other.checkpoint_sha256 in str(e.value)
    mixture = NoiseProfile(
        classes=tuple(base.classes), weights=(0.2, 0.3, 0.5), model_sha256=base.checkpoint_sha256
    )
    with pytest.raises(ValueError, match=other.checkpoint_sha256):
        profile_source(other, mixture)


def test_adapted_profile_file_errors(base, adapted_profile, tmp_path) -> None:
    _, path = adapted_profile
    data = json.loads(path.read_text())
    moved = tmp_path / "moved.json"
    moved.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="does not exist"):
        NoiseProfile.load(moved)  # the tensors file did not come along
    (tmp_path / "camera.pt").write_bytes(path.with_suffix(".pt").read_bytes()[:-8] + b"tampered")
    moved.write_text(json.dumps(data))
    with pytest.raises(ValueError, match="SHA-256"):
        NoiseProfile.load(moved)
    good = NoiseProfile.load(path).tensors
    name = next(k for k in good if k.startswith("flow."))
    with pytest.raises(ValueError, match=f"{name}.*does not fit"):
        apply_tensors(base, {**good, name: torch.zeros(2)}, "camera")
    with pytest.raises(ValueError, match="lack 'camera.std'"):
        apply_tensors(base, {"camera.mean": good["camera.mean"]}, "camera")


def test_adapt_is_deterministic_from_its_seed(base) -> None:
    pairs = _pairs(base)
    one = calibrate(base, pairs, adapt_config=TINY).tensors
    two = calibrate(base, pairs, adapt_config=TINY).tensors
    three = calibrate(base, pairs, adapt_config=AdaptConfig(**{**TINY.to_dict(), "seed": 4})).tensors
    assert all(torch.equal(one[k], two[k]) for k in one)
    assert any(not torch.equal(one[k], three[k]) for k in one)


def test_adapt_rejects_bad_input(base) -> None:
    with pytest.raises(ValueError, match="no \\(clean, noisy\\) pairs"):
        adapt(base, [], TINY)
    with pytest.raises(ValueError, match="smaller than crop_size"):
        adapt(base, _pairs(base, size=8), TINY)
    with pytest.raises(ValueError, match="in \\[0, 1\\]"):
        adapt(base, [(torch.full((3, 32, 32), 2.0), torch.zeros(3, 32, 32))], TINY)
    with pytest.raises(ValueError, match="train must be one of"):
        AdaptConfig(train="encoder-only")
    with pytest.raises(ValueError, match="already one of"):
        extend_model(base, "A_00100")


def test_adapted_noise_source_and_transforms(base, adapted_profile, tiny_checkpoint) -> None:
    from naflow_aug.transforms import NAFlowNoise, NAFlowNoiseAlb

    _, path = adapted_profile
    g = torch.Generator().manual_seed(2)
    clean = torch.rand(2, 3, 20, 28, generator=g)  # not a multiple of 8: padded and cropped back
    source = make_noise_source(f"profile:{path}", base)
    noisy, params = source(clean, generator=g)
    assert noisy.shape == clean.shape and noisy.dtype == torch.float32 and 0 <= float(noisy.min())
    assert torch.equal(source.replay(clean, params), noisy) and not torch.equal(noisy, clean)
    t = NAFlowNoise(base, profile=path, seed=0)
    out = t((clean * 255).to(torch.uint8))
    assert out.shape == clean.shape and out.dtype == torch.uint8
    out = t(clean[0])
    assert out.shape == clean[0].shape and out.dtype == torch.float32
    alb = NAFlowNoiseAlb(model=str(tiny_checkpoint), profile=str(path))
    image = (clean[0].permute(1, 2, 0) * 255).to(torch.uint8).numpy()
    res = alb(image=image)["image"]
    assert res.shape == image.shape and res.dtype == np.uint8


def test_old_mixture_profiles_still_load(tiny_model, tmp_path) -> None:
    # a profile as format version 1 wrote it (before adapted profiles)
    old = {
        "format_version": 1, "kind": "naflow-aug-noise-profile", "model_classes": list(tiny_model.classes),
        "model_sha256": None, "weights": {"A_00100": 0.1, "B_00800": 0.2, "C_03200": 0.7}, "pairs": 3,
        "files": ["x.png"], "temperature": 1.0, "top_k": None, "extra": {},
    }  # fmt: skip
    (tmp_path / "old.json").write_text(json.dumps(old))
    profile = NoiseProfile.load(tmp_path / "old.json")
    assert profile.mode == "mixture" and profile.top(1) == [("C_03200", 0.7)]
    _, params = make_noise_source(f"profile:{tmp_path / 'old.json'}", tiny_model)(torch.rand(1, 3, 16, 16))
    assert torch.allclose(params.weights[0], torch.tensor([0.1, 0.2, 0.7]))


def test_calibrate_cli_adapts_by_default(base, tiny_checkpoint, tmp_path, capsys) -> None:
    pairs = _pairs(base, size=64)
    for i, (clean, noisy) in enumerate(pairs):
        write_png(tmp_path / "pairs" / "clean" / f"s{i}.png", clean)
        write_png(tmp_path / "pairs" / "noisy" / f"s{i}.png", noisy)
    out = tmp_path / "camera.json"
    ckpt = str(tiny_checkpoint)
    args = ["calibrate", "--pairs", str(tmp_path / "pairs"), "--out", str(out), "--model", ckpt]
    args += ["--steps", "2", "--seed", "1", "--no-progress"]
    assert cli.main(args) == 0 and "adapted profile from 2 pairs" in capsys.readouterr().out
    profile = NoiseProfile.load(out)
    assert profile.mode == "adapt" and profile.model_sha256 == sha256_file(tiny_checkpoint)
    assert profile.files == ("noisy/s0.png", "noisy/s1.png") and out.with_suffix(".pt").is_file()
    assert profile.extra["adapt"]["steps"] == 2 and profile.extra["adapt"]["seed"] == 1


def test_match_std_gives_the_pairs_noise_power(base) -> None:
    from naflow_aug.evaluate import trim_to_multiple

    pairs = _pairs(base, size=32)
    config = AdaptConfig(
        steps=0, train="none", crop_size=16, refit_max_size=32, match_std=True, level_bins=0
    )
    model, info = adapt(base, pairs, config)
    assert not isinstance(model, CameraFlow)
    plain, _ = adapt(base, pairs, dataclasses.replace(config, match_std=False))
    assert torch.allclose(model.prior.std[-1], plain.prior.std[-1] * info["std_scale"])
    real = sum(float((n - c).pow(2).mean()) for c, n in pairs) / len(pairs)
    clean = torch.stack([trim_to_multiple(c, 8) for c, _ in pairs])
    weights = torch.zeros(model.num_classes)
    weights[-1] = 1.0
    fake = model.sample(clean, weights=weights, seeds=list(range(len(pairs))))
    # other seeds than the fit's: the power matches to within sampling error
    assert float((fake - clean).pow(2).mean()) == pytest.approx(real, rel=0.06)  # unmatched: 13% off
    assert info["std_scale"] != 1.0


# ------------------------------------------------------------------------------------ the camera's response


def test_normalise_noise_gives_zero_mean_unit_rms() -> None:
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(2, 3, 40, 48, generator=g, dtype=torch.float64) * 0.03 + 0.01
    noise[1, 2] = 0.0  # a channel without noise stays without noise
    whole = normalise_noise(noise, 0.0)
    assert torch.allclose(whole[0].mean(dim=(1, 2)), torch.zeros(3, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(whole[0].pow(2).mean(dim=(1, 2)), torch.ones(3, dtype=torch.float64))
    assert torch.equal(whole[1, 2], torch.zeros(40, 48, dtype=torch.float64))
    # local: a level that changes across the image is flattened out (x8 left-right before)
    noise[:, :, :, 24:] *= 8
    local = normalise_noise(noise, 2.0)
    left, right = local[0, :, :, :16].pow(2).mean(), local[0, :, :, 32:].pow(2).mean()
    assert 0.8 < float(left) < 1.2 and 0.8 < float(right) < 1.2
    # a pixel's result depends on its 3 * window neighbourhood only: a crop agrees away from its edges
    crop = normalise_noise(noise[:, :, :, :30], 2.0)
    assert torch.allclose(crop[..., :, :24], local[..., :, :24], atol=1e-9)


def test_level_gain_interpolates_between_bin_centres() -> None:
    level = torch.tensor([[1.0, 3.0, 2.0, 4.0], [0.5, 0.5, 0.5, 0.5], [0.0, 1.0, 2.0, 3.0]])
    x = torch.linspace(0, 1, 101, dtype=torch.float64)
    clean = x.view(1, 1, 1, -1).expand(1, 3, 1, -1)
    gain = level_gain(clean, level)
    centres = (np.arange(4) + 0.5) / 4
    for ch in range(3):
        expected = np.interp(x.numpy(), centres, level[ch].numpy())  # constant beyond the end centres
        assert np.allclose(gain[0, ch, 0].numpy(), expected, atol=1e-6)
    with pytest.raises(ValueError, match="clean must be"):
        level_gain(torch.zeros(1, 2, 4, 4), level)


def test_camera_response_has_the_level_and_8_bit_values() -> None:
    g = torch.Generator().manual_seed(1)
    clean = torch.full((1, 3, 64, 64), 0.5, dtype=torch.float64)
    noisy = clean + torch.randn(1, 3, 64, 64, generator=g, dtype=torch.float64) * 0.2  # far too strong
    level = torch.tensor([[0.01], [0.02], [0.04]])
    out = camera_response(noisy, clean, level, 0.0, quantize=False)
    assert torch.allclose((out - clean).std(dim=(2, 3))[0], level[:, 0].double(), rtol=1e-3)
    out8 = camera_response(noisy, clean, level, 0.0, quantize=True)
    assert torch.equal(out8, (out * 255).round() / 255) and not torch.equal(out8, out)
    offset = torch.tensor([[0.0], [0.01], [-0.02]])
    shifted = camera_response(noisy, clean, level, 0.0, quantize=False, offset=offset)
    assert torch.allclose((shifted - out).mean(dim=(2, 3))[0], offset[:, 0].double())


def test_fit_level_recovers_a_signal_dependent_level() -> None:
    g = torch.Generator().manual_seed(2)
    clean = torch.rand(3, 200_000, generator=g, dtype=torch.float64) * 0.9 + 0.05
    std = 0.004 + 0.02 * clean  # the real camera's noise std: grows with the intensity
    real = ((clean + std * torch.randn(clean.shape, generator=g, dtype=torch.float64)).clamp(0, 1) - clean)
    unit = torch.randn(clean.shape, generator=g, dtype=torch.float64)
    level, offset = fit_level(clean, real, unit, 8, quantize=False)
    centres = (torch.arange(8, dtype=torch.float64) + 0.5) / 8
    assert torch.allclose(level, (0.004 + 0.02 * centres).expand(3, 8), rtol=0.03)
    assert torch.equal(offset, torch.zeros(3, 8, dtype=torch.float64))  # not fitted unless asked for
    # few pixels in the top bin: it takes its neighbour's value
    sparse, _ = fit_level(clean.clamp(max=0.8), real, unit, 8, quantize=False)
    assert torch.equal(sparse[:, 7], sparse[:, 6])


def test_fit_level_recovers_an_offset_through_clipping_and_rounding() -> None:
    g = torch.Generator().manual_seed(4)
    clean = torch.rand(3, 200_000, generator=g, dtype=torch.float64)
    shift, std = 0.01 - 0.02 * clean, 0.006 + 0.01 * clean  # the camera's output: darker where bright
    real = clean + shift + std * torch.randn(clean.shape, generator=g, dtype=torch.float64)
    real = (real.clamp(0, 1) * 255).round() / 255 - clean
    unit = torch.randn(clean.shape, generator=g, dtype=torch.float64)
    level, offset = fit_level(clean, real, unit, 8, quantize=True, offset=True)
    centres = (torch.arange(8, dtype=torch.float64) + 0.5) / 8
    inner = slice(1, 7)  # the end bins are clipped hard; their fitted values make the clipped moments match
    assert torch.allclose(offset[:, inner], (0.01 - 0.02 * centres[inner]).expand(3, 6), atol=6e-4)
    assert torch.allclose(level[:, inner], (0.006 + 0.01 * centres[inner]).expand(3, 6), rtol=0.04)
    # the model's noise through the fitted tables has the real noise's mean per bin, clipping included
    fake = clean + level_gain(clean[None, :, None], offset)[0, :, 0]
    fake = fake + unit * level_gain(clean[None, :, None], level)[0, :, 0]
    fake = (fake.clamp(0, 1) * 255).round() / 255 - clean
    first = clean < 1 / 8
    assert abs(float(fake[first].mean() - real[first].mean())) < 3e-4


def test_adapted_profile_applies_the_camera_response(base, adapted_profile) -> None:
    profile, path = adapted_profile
    assert profile.tensors["camera.level"].shape == (3, TINY.level_bins)
    assert profile.tensors["camera.offset"].shape == (3, TINY.level_bins)
    assert float(profile.tensors["camera.level_window"]) == TINY.level_window
    net, _ = profile.model_for(base)
    assert isinstance(net, CameraFlow) and net.quantize
    clean = torch.rand(2, 3, 24, 32, generator=torch.Generator().manual_seed(1))
    noisy = net.sample(clean, config="camera", seeds=[1, 2])
    assert torch.equal(noisy, (noisy * 255).round() / 255)  # 8-bit values, as the camera's files
    # the sampling path (fast engine) gives the layers' decode, the response applied after it
    eps = torch.randn(2, net.latent_channels, 3, 4, generator=torch.Generator().manual_seed(0))
    z = net.prior.reparameterize(net.prior.mean[-1:], net.prior.std[-1:], eps)
    plain = naflow_aug.NAFlow.decode(net, z, clean)
    assert torch.equal(net.decode(z, clean), net.respond(plain, clean))
    assert torch.allclose(net.sampling_engine().to_image(z, net.sampling_engine().clean_features(clean)),
                          net.respond(plain, clean), atol=1.5 / 255)  # fmt: skip
    # the noise source (padded, tiled) applies it too: every output on the 8-bit grid
    source = make_noise_source(f"profile:{path}", base)
    out, _ = source(clean[:, :, :20, :28], generator=torch.Generator().manual_seed(0))
    assert torch.allclose(out * 255, (out * 255).round(), atol=1e-4)
    with pytest.raises(ValueError, match="features"):
        net.sample(clean, config="camera", features=[])
    # profiles made before the response existed (no camera.level) still give the flow's own noise
    old = {k: v for k, v in profile.tensors.items() if not k.startswith("camera.level")}
    no_offset = {k: v for k, v in profile.tensors.items() if k != "camera.offset"}
    no_offset = apply_tensors(base, no_offset, "camera")
    assert torch.equal(no_offset.response_offset, torch.zeros(3, TINY.level_bins))  # made before the offset
    old = {k: v for k, v in old.items() if k not in ("camera.quantize", "camera.offset")}
    assert type(apply_tensors(base, old, "camera")) is naflow_aug.NAFlow
    with pytest.raises(ValueError, match="camera.quantize"):
        apply_tensors(base, {**old, "camera.level": profile.tensors["camera.level"],
                             "camera.level_window": torch.tensor(0.0)}, "camera")  # fmt: skip


def test_guided_normalisation_keeps_bright_noise_next_to_dark_noise() -> None:
    from naflow_aug.response import normalise_noise as normalise

    g = torch.Generator().manual_seed(6)
    clean = torch.full((1, 1, 48, 64), 0.9, dtype=torch.float64)
    clean[..., :32] = 0.1  # dark left, bright right
    std = 0.01 + 0.07 * (clean < 0.5).double()
    noise = std * torch.randn(clean.shape, generator=g, dtype=torch.float64)
    near_edge = (..., slice(None), slice(32, 40))  # bright pixels within a window of the dark region
    plain = normalise(noise, 4.0)
    guided = normalise(noise, 4.0, clean, bins=4)
    # the plain window's RMS there is dominated by the dark side's strong noise: far below 1
    assert float(plain[near_edge].pow(2).mean().sqrt()) < 0.5
    assert 0.85 < float(guided[near_edge].pow(2).mean().sqrt()) < 1.15
    assert 0.85 < float(guided[..., :, :24].pow(2).mean().sqrt()) < 1.15
    # one bin is the plain window
    assert torch.allclose(normalise(noise, 4.0, clean, bins=1), plain, atol=1e-9)
    with pytest.raises(ValueError, match="clean images"):
        normalise(noise, 4.0, None, bins=4)


def test_profile_at_the_reference_noise_level(base, adapted_profile) -> None:
    """``profile-ref:P`` keeps the profile's noise and scales each channel to the reference's std (as nas
    does), back on the camera's 8-bit grid; ``profile:P`` keeps the profile's own level and needs no
    reference; replay reproduces it from the params alone."""
    _, path = adapted_profile
    g = torch.Generator().manual_seed(4)
    clean = torch.rand(2, 3, 32, 32, generator=g) * 0.6 + 0.2
    target = torch.tensor([[2.0, 4.0, 6.0], [8.0, 3.0, 5.0]]) / 255
    reference = (clean + torch.randn(clean.shape, generator=g) * target[:, :, None, None]).clamp(0, 1)
    at_ref = make_noise_source(f"profile-ref:{path}", base)
    assert at_ref.needs_reference and at_ref.noise_level == "reference"
    with pytest.raises(ValueError, match="needs a reference"):
        at_ref(clean, generator=torch.Generator().manual_seed(0))
    out, params = at_ref(clean, reference=reference, generator=torch.Generator().manual_seed(0))
    assert torch.equal(out, (out * 255).round() / 255)  # on the camera's 8-bit grid after the scaling
    got = (out - clean).flatten(2).std(dim=2)
    want = (reference - clean).flatten(2).std(dim=2)
    assert torch.allclose(got, want, rtol=0.05), (got * 255, want * 255)
    assert torch.allclose(params.noise_std, want.float())
    assert torch.equal(at_ref.replay(clean, params), out)
    # the profile's own level: not the reference's, and the same noise pattern before the scaling
    own = make_noise_source(f"profile:{path}", base)
    assert not own.needs_reference and own.noise_level == "model"
    plain, plain_params = own(clean, generator=torch.Generator().manual_seed(0))
    assert plain_params.noise_std is None and torch.equal(plain_params.seeds, params.seeds)
    assert not torch.allclose((plain - clean).flatten(2).std(dim=2), want, rtol=0.05)
    corr = torch.corrcoef(torch.stack([(plain - clean).flatten(), (out - clean).flatten()]))[0, 1]
    assert corr > 0.9
    with pytest.raises(ValueError, match="applies to nas and profile"):
        naflow_aug.noise.ModelSource("random", base, kind="random", noise_level="reference")
