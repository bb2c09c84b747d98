"""Exact parity with the official NAFlow implementation (fixtures computed by the official code)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from naflow_aug.checkpoints import model_from_official

TOL = 1e-4  # max|ours - official| / max|official| per tensor


def rel_err(ours: torch.Tensor, official: torch.Tensor) -> float:
    return float((ours.double() - official.double()).abs().max() / official.double().abs().max())


def _fixture(shared_dir: Path, name: str):
    data = torch.load(shared_dir / "fixtures" / name, weights_only=True)
    return data, model_from_official(data["checkpoint"]).freeze()


@pytest.mark.parametrize("name", ["official_naflow_parity.pt", "official_naflow_nas.pt"])
def test_encode_decode_likelihood_nas_parity(shared_dir: Path, name: str) -> None:
    data, model = _fixture(shared_dir, name)
    expected = data["expected"]
    assert model.classes == list(data["classes"])
    assert sum(p.numel() for p in model.parameters()) == 1_053_131
    errors = {}
    with torch.no_grad():
        z, logdet = model.encode(data["noisy"], data["clean"])
        errors["z"], errors["logdet"] = rel_err(z, expected["z"]), rel_err(logdet, expected["logdet"])
        labels = model.class_index(data["labels"])
        errors["nll"] = rel_err(model.nll(data["noisy"], data["clean"], labels), expected["nll"])
        if "z_in" in expected:
            errors["x_reverse"] = rel_err(
                model.decode(expected["z_in"], data["clean"]), expected["x_reverse"]
            )
        errors["class_loglik"] = rel_err(model.class_log_likelihood(z), expected["class_loglik"])
        weights = model.posterior(z)
        errors["nas_weights"] = rel_err(weights, expected["nas_weights"])
        if "nas_weights_T2" in expected:
            errors["nas_weights_T2"] = rel_err(
                model.posterior(z, temperature=2.0), expected["nas_weights_T2"]
            )
            errors["nas_weights_top3"] = rel_err(model.posterior(z, top_k=3), expected["nas_weights_top3"])
        mean, std = model.mix(weights)
        errors["nas_mean"], errors["nas_std"] = (
            rel_err(mean, expected["nas_mean"]),
            rel_err(std, expected["nas_std"]),
        )
        if "eps" in expected:
            sample = model.decode(model.prior.reparameterize(mean, std, expected["eps"]), data["clean"])
            errors["nas_sample"] = rel_err(sample, expected["nas_sample"])
    bad = {k: v for k, v in errors.items() if not v <= TOL}
    assert not bad, f"parity errors above {TOL}: {bad} (all: {errors})"


def test_nas_fixture_weights_are_spread(shared_dir: Path) -> None:
    """The NAS fixture really exercises mixing (several classes carry weight)."""
    data, model = _fixture(shared_dir, "official_naflow_nas.pt")
    with torch.no_grad():
        z, _ = model.encode(data["noisy"], data["clean"])
        weights = model.posterior(z)
    assert ((weights > 0.05).sum(1) >= 2).all()
