"""One registry-driven test for every flow layer: round trip, log-det vs autograd Jacobian, shapes, dtype."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
from torch import nn

from naflow_aug.flow import (
    FLOW_LAYERS,
    ActNorm,
    AffineInjector,
    ConditionalAffineCoupling,
    FlowStep,
    InvConv1x1,
    Squeeze,
    squeeze2x2,
    unsqueeze2x2,
)

COND_CHANNELS = 3
# name -> (factory, input shape (B, C, H, W), needs a condition)
SETTINGS: dict[str, tuple[Callable[[], nn.Module], tuple[int, ...], bool]] = {
    "ActNorm": (lambda: ActNorm(4), (2, 4, 2, 3), False),
    "InvConv1x1": (lambda: InvConv1x1(4), (2, 4, 2, 3), False),
    "Squeeze": (lambda: Squeeze(), (2, 2, 4, 2), False),
    "AffineInjector": (lambda: AffineInjector(4, COND_CHANNELS, 5), (2, 4, 2, 3), True),
    "ConditionalAffineCoupling": (lambda: ConditionalAffineCoupling(5, COND_CHANNELS, 5), (2, 5, 2, 2), True),
    "FlowStep": (
        lambda: FlowStep(4, conditional=True, cond_channels=COND_CHANNELS, hidden_channels=5),
        (2, 4, 2, 2),
        True,
    ),
}


def test_every_registered_layer_has_test_settings() -> None:
    assert set(FLOW_LAYERS) == set(SETTINGS), (
        f"layers without test settings: {set(FLOW_LAYERS) - set(SETTINGS)}"
    )


def _make(name: str) -> tuple[nn.Module, torch.Tensor, torch.Tensor | None]:
    factory, shape, conditional = SETTINGS[name]
    torch.manual_seed(0)
    layer = factory().double().eval()
    with torch.no_grad():
        for p in layer.parameters():  # away from the identity initialisation
            p.add_(0.3 * torch.randn_like(p))
    x = torch.randn(shape, dtype=torch.float64)
    cond = torch.randn(shape[0], COND_CHANNELS, *shape[2:], dtype=torch.float64) if conditional else None
    return layer, x, cond


@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_layer_contract(name: str) -> None:
    layer, x, cond = _make(name)
    y, logdet = layer(x, cond)
    assert y.dtype == x.dtype and logdet.dtype == x.dtype
    assert y.numel() == x.numel() and y.shape[0] == x.shape[0]
    assert logdet.shape == (x.shape[0],)
    assert torch.isfinite(y).all() and torch.isfinite(logdet).all()
    assert y.shape != x.shape or not torch.allclose(y, x)  # the perturbed layer is not the identity
    torch.testing.assert_close(layer.inverse(y, cond), x, atol=1e-10, rtol=1e-10)
    for b in range(x.shape[0]):
        c = None if cond is None else cond[b : b + 1]

        def f(v: torch.Tensor, c: torch.Tensor | None = c) -> torch.Tensor:
            return layer(v.view(1, *x.shape[1:]), c)[0].reshape(-1)

        jac = torch.autograd.functional.jacobian(f, x[b].reshape(-1))
        sign, logabs = torch.linalg.slogdet(jac)
        assert sign != 0
        torch.testing.assert_close(logdet[b], logabs, atol=1e-9, rtol=1e-9)


def test_squeeze_ordering_is_channel_major() -> None:
    x = torch.arange(2 * 4 * 4, dtype=torch.float32).view(1, 2, 4, 4)
    y = squeeze2x2(x)
    assert y.shape == (1, 8, 2, 2)
    # channel c*4 + dy*2 + dx holds x[c, 2i + dy, 2j + dx]
    assert y[0, 1 * 4 + 1 * 2 + 0, 1, 0] == x[0, 1, 3, 0]
    assert torch.equal(unsqueeze2x2(y), x)


def test_invconv_masks_drop_stored_values_beyond_the_diagonal() -> None:
    layer = InvConv1x1(3).double()
    w = layer.weight().detach().clone()
    with torch.no_grad():
        layer.l.add_(torch.triu(torch.ones(3, 3, dtype=torch.float64)))  # on and above the diagonal
        layer.u.add_(torch.tril(torch.ones(3, 3, dtype=torch.float64)))
    torch.testing.assert_close(layer.weight(), w)


def test_actnorm_data_dependent_init_in_training_only() -> None:
    x = 3 + 2 * torch.randn(8, 4, 5, 5)
    layer = ActNorm(4).eval()
    layer(x)
    assert not layer.initialized and torch.all(layer.bias == 0)
    layer.train()
    y, _ = layer(x)
    assert layer.initialized
    torch.testing.assert_close(y.mean(dim=(0, 2, 3)), torch.zeros(4), atol=1e-5, rtol=0)
    torch.testing.assert_close(y.std(dim=(0, 2, 3), unbiased=False), torch.ones(4), atol=1e-4, rtol=0)
    bias = layer.bias.detach().clone()
    layer(x + 1)  # already initialised: no second init
    assert torch.equal(layer.bias, bias)


def test_actnorm_loaded_uninitialized_state_initializes_again() -> None:
    layer = ActNorm(2).train()
    layer(torch.randn(4, 2, 3, 3))
    fresh = ActNorm(2).state_dict()
    layer.load_state_dict(fresh)
    assert not layer.initialized
    layer(5 + torch.randn(4, 2, 3, 3))
    assert layer.initialized and layer.bias.mean() < -4
