"""Per-configuration Gaussians: log-likelihoods against torch.distributions, posterior, mixing."""

from __future__ import annotations

import pytest
import torch
from torch.distributions import MultivariateNormal, Normal

from naflow_aug.flow import ClassGaussians


def _gaussians(covariance: str = "diagonal", k: int = 4, c: int = 6) -> ClassGaussians:
    torch.manual_seed(0)
    g = ClassGaussians(k, c, covariance).double()
    with torch.no_grad():
        g.mean.copy_(torch.randn(k, c))
        if covariance == "diagonal":
            g.std.copy_(torch.randn(k, c) * 0.5 + torch.sign(torch.randn(k, c)))  # signed, as official
        else:
            g.std.copy_(torch.eye(c) + 0.3 * torch.randn(k, c, c))
    return g


def test_diagonal_log_prob_matches_torch_distributions() -> None:
    g = _gaussians()
    z = 3 * torch.randn(3, 6, 4, 5, dtype=torch.float64) + 2
    ll = g.log_prob_all(z)
    assert ll.shape == (3, 4)
    for k in range(4):
        ref = Normal(g.mean[k].view(1, -1, 1, 1), g.std[k].abs().view(1, -1, 1, 1)).log_prob(z).sum((1, 2, 3))
        torch.testing.assert_close(ll[:, k], ref.detach(), rtol=1e-10, atol=1e-8)
        ids = torch.full((3,), k)
        torch.testing.assert_close(g.log_prob(z, ids), ref.detach(), rtol=1e-10, atol=1e-8)


def test_full_log_prob_matches_torch_distributions() -> None:
    g = _gaussians("full")
    z = torch.randn(2, 6, 3, 3, dtype=torch.float64)
    ll = g.log_prob_all(z)
    for k in range(4):
        cov = g.std[k] @ g.std[k].T
        ref = MultivariateNormal(g.mean[k], cov).log_prob(z.flatten(2).transpose(1, 2)).sum(1)
        torch.testing.assert_close(ll[:, k], ref.detach(), rtol=1e-9, atol=1e-7)
        torch.testing.assert_close(g.log_prob(z, torch.full((2,), k)), ref.detach(), rtol=1e-9, atol=1e-7)


def test_batched_equals_per_sample() -> None:
    g = _gaussians()
    z = torch.randn(5, 6, 2, 3, dtype=torch.float64)
    ll = g.log_prob_all(z)
    for b in range(5):
        torch.testing.assert_close(g.log_prob_all(z[b : b + 1])[0], ll[b])


def test_posterior_temperature_and_top_k() -> None:
    g = _gaussians()
    z = torch.randn(3, 6, 2, 2, dtype=torch.float64)
    ll = g.log_prob_all(z)
    for t in (1.0, 2.5):
        torch.testing.assert_close(g.posterior(z, t), torch.softmax(ll / (4 * t), 1))
    w = g.posterior(z, top_k=2)
    assert ((w > 0).sum(1) == 2).all()
    top = ll.topk(2, 1).indices
    torch.testing.assert_close(w.gather(1, top), torch.softmax(ll.gather(1, top) / 4, 1))
    with pytest.raises(ValueError, match="top_k"):
        g.posterior(z, top_k=5)
    with pytest.raises(ValueError, match="temperature"):
        g.posterior(z, temperature=0)


def test_mix_modes() -> None:
    g = _gaussians()
    w = torch.softmax(torch.randn(2, 4, dtype=torch.float64), 1)
    mean, std = g.mix(w)
    torch.testing.assert_close(mean, w @ g.mean.detach())
    torch.testing.assert_close(std, w @ g.std.detach())  # signed stds mixed, as the official code
    _, std_cov = g.mix(w, "covariance")
    torch.testing.assert_close(std_cov, (w @ g.std.detach().pow(2)).sqrt())
    onehot = torch.eye(4, dtype=torch.float64)[[2]]
    torch.testing.assert_close(g.mix(onehot, "covariance")[1][0], g.std[2].detach().abs())
    with pytest.raises(ValueError, match="mix mode"):
        g.mix(w, "variance")


def test_sample_statistics() -> None:
    g = _gaussians()
    w = torch.eye(4, dtype=torch.float64)[[1]]
    z = g.sample(w, (100, 100), torch.Generator().manual_seed(0))
    torch.testing.assert_close(z.mean((0, 2, 3)), g.mean[1].detach(), atol=0.05, rtol=0)
    torch.testing.assert_close(z.std((0, 2, 3)), g.std[1].detach().abs(), atol=0.05, rtol=0.02)
