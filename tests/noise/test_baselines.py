"""Baseline fitting (naflow_aug.noise.baselines): recovers known noise parameters, JSON round trip, errors."""

from __future__ import annotations

import json

import pytest
import torch

from naflow_aug.noise import make_noise_source
from naflow_aug.noise.baselines import Baselines, fit_baselines


def _synthetic_pairs(a: list[float], b: list[float], name: str, n: int, seed: int, outliers: bool = False):
    """Clean gradients (to cover the intensity range) with Poisson-Gaussian noise var = a*x + b, clipped."""
    g = torch.Generator().manual_seed(seed)
    av, bv = torch.tensor(a).view(3, 1, 1), torch.tensor(b).view(3, 1, 1)
    for _ in range(n):
        ramp = torch.linspace(0.0, 1.0, 96).view(1, 1, 96).expand(3, 64, 96)
        clean = (ramp + 0.05 * torch.rand(3, 64, 96, generator=g)).clamp(0, 1)
        noise = torch.randn(3, 64, 96, generator=g) * (av * clean + bv).sqrt()
        noisy = (clean + noise).clamp(0, 1)
        if outliers:  # a misaligned strip: huge residuals in a few pixels
            noisy[:, :2, 40:48] = 1.0 - clean[:, :2, 40:48]
        yield clean, noisy, name


def test_fit_recovers_poisson_gaussian_and_gaussian() -> None:
    a1, b1 = [0.004, 0.006, 0.008], [1e-4, 2e-4, 3e-4]
    a2, b2 = [0.0005, 0.0005, 0.001], [4e-5, 4e-5, 1e-5]
    pairs = list(_synthetic_pairs(a1, b1, "S6_03200", 12, 0)) + list(
        _synthetic_pairs(a2, b2, "GP_00100", 12, 1)
    )
    fitted = fit_baselines(iter(pairs))
    assert fitted.classes == ["GP_00100", "S6_03200"]
    for name, a, b in (("S6_03200", a1, b1), ("GP_00100", a2, b2)):
        cfg = fitted[name]
        assert torch.allclose(torch.tensor(cfg.pg_a), torch.tensor(a), rtol=0.1), (name, cfg.pg_a, a)
        assert torch.allclose(torch.tensor(cfg.pg_b), torch.tensor(b), rtol=0.35, atol=2e-5), (
            name,
            cfg.pg_b,
            b,
        )
        residual = torch.cat([(p[1] - p[0]).flatten() for p in pairs if p[2] == name])
        assert cfg.gaussian_std == pytest.approx(float(residual.std()), rel=1e-3)
        assert cfg.pairs == 12 and cfg.pixels == 12 * 64 * 96


def test_fit_is_robust_to_outlier_pixels_and_takes_batches() -> None:
    a, b = [0.004, 0.004, 0.004], [1e-4, 1e-4, 1e-4]
    items = list(_synthetic_pairs(a, b, "N6_00800", 8, 2, outliers=True))
    clean = torch.stack([i[0] for i in items])
    noisy = torch.stack([i[1] for i in items])
    fitted = fit_baselines([(clean, noisy, ["N6_00800"] * 8)])
    assert torch.allclose(torch.tensor(fitted["N6_00800"].pg_a), torch.tensor(a), rtol=0.15)


def test_json_round_trip_and_sampling(tmp_path) -> None:
    fitted = fit_baselines(_synthetic_pairs([0.004] * 3, [1e-4] * 3, "S6_03200", 4, 0))
    path = fitted.save(tmp_path / "baselines.json")
    loaded = Baselines.load(path)
    assert loaded == fitted
    data = json.loads(path.read_text())
    assert data["kind"] == "naflow-aug-baselines" and data["format_version"] == 1
    assert set(data["configs"]["S6_03200"]) >= {"gaussian_std", "poisson_gaussian"}
    # sampling from the fit reproduces the fitted variance at mid-grey
    clean = torch.full((2, 3, 64, 64), 0.5)
    noisy, _ = make_noise_source(f"poisson-gaussian:{path}")(
        clean, generator=torch.Generator().manual_seed(0)
    )
    assert float((noisy - clean).var()) == pytest.approx(0.004 * 0.5 + 1e-4, rel=0.1)


def test_bad_inputs(tmp_path) -> None:
    with pytest.raises(ValueError, match="no pairs"):
        fit_baselines([])
    with pytest.raises(ValueError, match="shapes differ"):
        fit_baselines([(torch.rand(3, 8, 8), torch.rand(3, 8, 9), "A_1")])
    with pytest.raises(ValueError, match=r"\(3, H, W\)"):
        fit_baselines([(torch.rand(1, 8, 8), torch.rand(1, 8, 8), "A_1")])
    with pytest.raises(TypeError, match="tuples"):
        fit_baselines([torch.rand(3, 8, 8)])
    with pytest.raises(ValueError, match="does not exist"):
        Baselines.load(tmp_path / "missing.json")
    (tmp_path / "other.json").write_text(json.dumps({"kind": "something-else"}))
    with pytest.raises(ValueError, match="something-else"):
        Baselines.load(tmp_path / "other.json")
