"""The whole model on a tiny configuration: round trip, log-det, sampling contract, bad inputs."""

from __future__ import annotations

import math

import pytest
import torch

from naflow_aug import NAFlow, NAFlowConfig, SampleParams
from naflow_aug.flow import ActNorm
from naflow_aug.flow.noise_level import match_noise_level, noise_std

CLASSES = ("A_00100", "B_00200", "C_00400")
TINY = NAFlowConfig(classes=CLASSES, levels=2, transition_steps=1, conditional_steps=1,
                    hidden_channels=8, encoder_channels=8)  # fmt: skip


def _model(dtype: torch.dtype = torch.float32, seed: int = 0) -> NAFlow:
    torch.manual_seed(seed)
    model = NAFlow(TINY).to(dtype).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name.startswith("prior.mean"):
                p.copy_(0.5 * torch.randn_like(p))
            elif name.startswith("prior.std"):
                p.copy_(0.5 + torch.rand_like(p))
            else:
                p.add_(0.1 * torch.randn_like(p))
    return model


def _images(b: int = 3, h: int = 8, w: int = 12, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    clean = torch.rand(b, 3, h, w, generator=g)
    noisy = (clean + 0.05 * torch.randn(b, 3, h, w, generator=g)).clamp(0, 1)
    return noisy, clean


def test_published_default_parameter_count() -> None:
    model = NAFlow()
    assert model.num_classes == 34 and model.size_multiple == 8 and model.latent_channels == 192
    assert sum(p.numel() for p in model.parameters()) == 1_053_131


def test_round_trip_and_logdet_float64() -> None:
    model = _model(torch.float64)
    noisy, clean = (t.double() for t in _images(2, 4, 4))
    z, logdet = model.encode(noisy, clean)
    assert z.shape == (2, 48, 1, 1) and logdet.shape == (2,)
    torch.testing.assert_close(model.decode(z, clean), noisy, atol=1e-10, rtol=1e-10)
    feats = model.condition(clean)
    for b in range(2):
        f = [t[b : b + 1] for t in feats]
        jac = torch.autograd.functional.jacobian(
            lambda v, f=f, b=b: model.encode(v.view(1, 3, 4, 4), clean[b : b + 1], f)[0].reshape(-1),
            noisy[b].reshape(-1),
        )
        expected = torch.linalg.slogdet(jac)[1] - math.log(256) * 16
        torch.testing.assert_close(logdet[b], expected, atol=1e-8, rtol=1e-10)


def test_features_are_reusable() -> None:
    model = _model()
    noisy, clean = _images()
    feats = model.condition(clean)
    z, ld = model.encode(noisy, clean)
    z2, ld2 = model.encode(noisy, clean, features=feats)
    assert torch.equal(z, z2) and torch.equal(ld, ld2)
    assert torch.equal(model.decode(z, clean), model.decode(z, clean, features=feats))


def test_nll_official_units() -> None:
    model = _model()
    noisy, clean = _images()
    labels = torch.tensor([0, 2, 1])
    z, logdet = model.encode(noisy, clean)
    ll = model.class_log_likelihood(z).gather(1, labels[:, None])[:, 0]
    expected = -(ll + logdet) / (math.log(2) * 8 * 12)
    torch.testing.assert_close(model.nll(noisy, clean, labels), expected, rtol=1e-5, atol=1e-5)


def test_actnorm_init_on_first_training_forward_including_subnets() -> None:
    model = NAFlow(TINY)
    norms = [m for m in model.modules() if isinstance(m, ActNorm)]
    assert norms and not any(bool(m.initialized) for m in norms)
    noisy, clean = _images(4)
    model.train()
    model.nll(noisy, clean, torch.tensor([0, 1, 2, 0])).mean().backward()
    assert all(bool(m.initialized) for m in norms)
    assert any("coupling.net" in n for n, m in model.named_modules() if isinstance(m, ActNorm))


@pytest.mark.parametrize("source", ["random", "config", "weights", "nas"])
def test_batch_equals_items_one_at_a_time(source: str) -> None:
    model = _model()
    noisy, clean = _images(3)
    kwargs = {
        "random": {"config": "random"},
        "config": {"config": ["B_00200", "A_00100", "C_00400"]},
        "weights": {"weights": torch.tensor([[0.2, 0.3, 0.5], [1.0, 0, 0], [0, 0.5, 0.5]])},
        "nas": {"reference": noisy},
    }[source]
    out, params = model.sample(
        clean, generator=torch.Generator().manual_seed(5), return_params=True, **kwargs
    )
    assert isinstance(params, SampleParams) and params.seeds.dtype == torch.int64
    assert out.shape == clean.shape and out.min() >= 0 and out.max() <= 1
    torch.testing.assert_close(params.weights.sum(1), torch.ones(3))
    for b in range(3):
        item = {k: (v[b : b + 1] if isinstance(v, torch.Tensor) else [v[b]] if isinstance(v, list) else v)
                for k, v in kwargs.items()}  # fmt: skip
        one, p1 = model.sample(clean[b : b + 1], seeds=params.seeds[b : b + 1], return_params=True, **item)
        torch.testing.assert_close(one[0], out[b], atol=1e-5, rtol=0)
        torch.testing.assert_close(p1.weights[0], params.weights[b])


def test_seed_replay_and_generator_determinism() -> None:
    model = _model()
    _, clean = _images(2)
    a, pa = model.sample(clean, generator=torch.Generator().manual_seed(7), return_params=True)
    b = model.sample(clean, generator=torch.Generator().manual_seed(7))
    c = model.sample(clean, seeds=pa.seeds)
    d = model.sample(clean, generator=torch.Generator().manual_seed(8))
    assert torch.equal(a, b) and torch.equal(a, c) and not torch.equal(a, d)
    assert ((pa.weights == 0) | (pa.weights == 1)).all()  # random config: one-hot weights
    # the parts replay a sample: decode(mean + std * eps) with eps from the item's seed
    mean, std = model.mix(pa.weights)
    eps = []
    for s in pa.seeds:
        g = torch.Generator().manual_seed(int(s))
        torch.randint(3, (1,), generator=g)  # the class pick comes first
        eps.append(torch.randn(48, 2, 3, generator=g))
    eps = torch.stack(eps)
    replay = model.decode(mean[:, :, None, None] + std[:, :, None, None] * eps, clean).clamp(0, 1)
    torch.testing.assert_close(replay, a, atol=1e-6, rtol=0)
    # and SampleParams replay through weights=, for any source
    assert torch.equal(model.sample(clean, weights=pa.weights, seeds=pa.seeds), a)
    noisy = model.sample(clean, config="A_00100")
    n1, p1 = model.sample(clean, reference=noisy, return_params=True)
    assert torch.equal(model.sample(clean, weights=p1.weights, seeds=p1.seeds, noise_std=p1.noise_std), n1)
    # NAS (noise_level="reference", the default) is the mixture's sample (noise_level="model", the
    # official NAS) with each channel's noise scaled to the reference's std
    torch.testing.assert_close(p1.noise_std, noise_std(noisy, clean))
    n2, p2 = model.sample(clean, reference=noisy, seeds=p1.seeds, noise_level="model", return_params=True)
    assert p2.noise_std is None and torch.equal(p2.weights, p1.weights)
    assert torch.equal(match_noise_level(n2, clean, p1.noise_std), n1)
    assert torch.equal(model.sample(clean, weights=p2.weights, seeds=p2.seeds), n2)
    with pytest.raises(ValueError, match="noise_level must be one of"):
        model.sample(clean, reference=noisy, noise_level="bogus")


def test_posterior_recovers_the_class_of_a_decoded_latent() -> None:
    model = _model(torch.float64)
    model.validate_inputs = False  # decode is not clamped; encode it back as it is
    _, clean = _images(3, 16, 16)
    clean = clean.double()
    onehot = torch.eye(3, dtype=torch.float64)
    z = model.prior.sample(onehot, (4, 4), torch.Generator().manual_seed(0))
    z_back, _ = model.encode(model.decode(z, clean), clean)
    torch.testing.assert_close(z_back, z, atol=1e-8, rtol=1e-8)
    assert model.posterior(z_back).argmax(1).tolist() == [0, 1, 2]


def test_class_index() -> None:
    model = _model()
    assert model.class_index(["C_00400", "A_00100"]).tolist() == [2, 0]
    assert model.class_index("B_00200").tolist() == [1]
    with pytest.raises(ValueError, match="unknown camera configuration 'Z9_00100'"):
        model.class_index(["Z9_00100"])


def test_bad_inputs() -> None:
    model = _model()
    noisy, clean = _images()
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model.encode(noisy[0], clean[0])
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model.encode(noisy[:, :1], clean[:, :1])
    with pytest.raises(ValueError, match="height 11 is not a multiple of 4.*nearest valid size: 12"):
        model.encode(torch.rand(1, 3, 11, 8), torch.rand(1, 3, 11, 8))
    with pytest.raises(ValueError, match=r"values must be in \[0, 1\]"):
        model.encode(noisy * 2, clean)
    bad = clean.clone()
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN or Inf"):
        model.sample(bad)
    with pytest.raises(ValueError, match="shapes differ"):
        model.encode(noisy[:2], clean)
    with pytest.raises(TypeError, match="float tensor"):
        model.encode((noisy * 255).to(torch.uint8), clean)
    with pytest.raises(TypeError, match="torch.Tensor"):
        model.sample(clean.numpy())
    with pytest.raises(ValueError, match="unknown camera configuration"):
        model.sample(clean, config="S6_99999")
    with pytest.raises(ValueError, match="weights must have shape"):
        model.sample(clean, weights=torch.ones(4))
    with pytest.raises(ValueError, match="at most one"):
        model.sample(clean, config="A_00100", reference=noisy)
    with pytest.raises(ValueError, match="labels must be class ids"):
        model.nll(noisy, clean, torch.tensor([0, 1, 3]))
    with pytest.raises(ValueError, match="z must have shape"):
        model.decode(torch.zeros(3, 48, 1, 1), clean)
    # the training loop's dequantization noise (up to 1/512) is accepted
    model.encode((noisy + 1 / 512).clamp(max=1 + 1 / 512), clean)


@pytest.mark.parametrize(
    "kwargs",
    [{"levels": 0}, {"classes": ("A", "A")}, {"classes": ()}, {"encoder_channels": 6}, {"covariance": "tied"},
     {"transition_steps": -1}, {"classes": "A_00100"}],
)  # fmt: skip
def test_config_validation(kwargs: dict) -> None:
    with pytest.raises((ValueError, TypeError)):
        NAFlowConfig(**kwargs)


def test_full_covariance_model_round_trip() -> None:
    model = NAFlow(NAFlowConfig(**{**TINY.__dict__, "covariance": "full"})).eval()
    noisy, clean = _images(2)
    z, _ = model.encode(noisy, clean)
    assert model.class_log_likelihood(z).shape == (2, 3)
    out = model.sample(
        clean, reference=noisy, mix_mode="covariance", generator=torch.Generator().manual_seed(0)
    )
    assert out.shape == clean.shape and torch.isfinite(out).all()


def test_mix_accepts_one_weight_vector_and_both_modes() -> None:
    model = _model()
    w = torch.tensor([0.2, 0.3, 0.5])
    mean, std = model.mix(w)
    assert mean.shape == std.shape == (1, 48)
    torch.testing.assert_close(std[0], w @ model.prior.std.detach())
    _, std_cov = model.mix(w, mix_mode="covariance")
    torch.testing.assert_close(std_cov[0], (w @ model.prior.std.detach().pow(2)).sqrt())
