"""Each layer's reported linear form (what the folded fast path composes, naflow_aug/flow/fold.py) against
the layer's own forward, in float64 on weights that are all non-trivial (zero-initialised layers too)."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

from naflow_aug.flow.coupling import (
    AffineForm,
    AffineInjector,
    ConditionalAffineCoupling,
    ConvActNorm,
    SubNet,
    SubNetForm,
    ZeroConv,
)
from naflow_aug.flow.encoder import ConditionEncoder
from naflow_aug.flow.layers import ActNorm, InvConv1x1, Squeeze, squeeze2x2

TOL = dict(atol=1e-12, rtol=1e-12)


def _perturbed(module: torch.nn.Module, seed: int = 0) -> torch.nn.Module:
    g = torch.Generator().manual_seed(seed)
    module = module.double()
    with torch.no_grad():
        for p in module.parameters():
            p.add_(0.3 * torch.randn(p.shape, generator=g, dtype=p.dtype))
    return module.eval()


def _x(*shape: int, seed: int = 1) -> Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)


def _per_pixel(weight: Tensor, bias: Tensor, x: Tensor) -> Tensor:
    """weight (O, I) @ x + bias at every pixel of x (B, I, H, W)."""
    return torch.einsum("oi,bihw->bohw", weight, x) + bias[None, :, None, None]


def _run_subnet_form(form: SubNetForm, x: Tensor) -> Tensor:
    h = F.relu(_per_pixel(form.w_in, form.b_in, x))
    r = F.relu(F.conv2d(h, form.w3, form.b3, padding=1))
    return _per_pixel(form.w_out, form.b_out, h + _per_pixel(form.w_res, form.b_res, r))


def _shift_scale_of(form: AffineForm, inputs: Tensor) -> tuple[Tensor, Tensor]:
    out = _run_subnet_form(form.net, inputs)
    return out[:, form.shift_rows], torch.sigmoid(out[:, form.logit_rows] + form.logit_offset) + form.eps


def test_actnorm_affine_and_logdet() -> None:
    layer = _perturbed(ActNorm(5))
    x = _x(2, 5, 3, 4)
    y, logdet = layer(x)
    scale, offset = layer.affine()
    torch.testing.assert_close(_per_pixel(torch.diag(scale), offset, x), y, **TOL)
    torch.testing.assert_close(logdet, (layer.logdet_per_position() * 12).expand(2), **TOL)
    assert layer.affine(torch.float32)[0].dtype == torch.float32 and not layer.affine()[0].requires_grad


def test_invconv_weight_and_logdet() -> None:
    layer = _perturbed(InvConv1x1(6))
    x = _x(2, 6, 3, 4)
    y, logdet = layer(x)
    torch.testing.assert_close(_per_pixel(layer.weight(), torch.zeros(6, dtype=x.dtype), x), y, **TOL)
    torch.testing.assert_close(logdet, (layer.logdet_per_position() * 12).expand(2), **TOL)


def test_squeeze_lift_commutes_with_a_per_pixel_map() -> None:
    weight, bias, x = _x(6, 5, seed=2), _x(6, seed=3), _x(2, 5, 4, 6)
    lifted_w, lifted_b = Squeeze.lift(weight, bias)
    assert lifted_w.shape == (24, 20) and lifted_b.shape == (24,)
    squeezed, _ = Squeeze()(x)
    expected = squeeze2x2(_per_pixel(weight, bias, x))
    torch.testing.assert_close(_per_pixel(lifted_w, lifted_b, squeezed), expected, **TOL)


def test_conv_actnorm_and_zero_conv_linear() -> None:
    x = _x(2, 5, 3, 4)
    for layer in (_perturbed(ConvActNorm(5, 7)), _perturbed(ZeroConv(5, 7))):
        torch.testing.assert_close(_per_pixel(*layer.linear(), x), layer(x), **TOL)


def test_subnet_form() -> None:
    net = _perturbed(SubNet(5, 6, 8))
    x = _x(2, 5, 6, 7)
    torch.testing.assert_close(_run_subnet_form(net.form(), x), net(x), **TOL)


def test_injector_form() -> None:
    layer = _perturbed(AffineInjector(6, 4, hidden_channels=8, eps=0.01))
    x, cond = _x(2, 6, 5, 4), _x(2, 4, 5, 4, seed=2)
    form = layer.form()
    assert form.split == 0 and form.eps == 0.01
    shift, scale = _shift_scale_of(form, cond)
    y, logdet = layer(x, cond)
    torch.testing.assert_close(x / scale - shift, y, **TOL)
    torch.testing.assert_close(-scale.log().sum(dim=(1, 2, 3)), logdet, **TOL)


def test_coupling_form() -> None:
    layer = _perturbed(ConditionalAffineCoupling(6, 4, hidden_channels=8, eps=0.01))
    x, cond = _x(2, 6, 5, 4), _x(2, 4, 5, 4, seed=2)
    form = layer.form()
    assert form.split == 3
    shift, scale = _shift_scale_of(form, torch.cat([x[:, : form.split], cond], dim=1))
    y, logdet = layer(x, cond)
    torch.testing.assert_close(y[:, : form.split], x[:, : form.split], **TOL)
    torch.testing.assert_close(x[:, form.split :] / scale - shift, y[:, form.split :], **TOL)
    torch.testing.assert_close(-scale.log().sum(dim=(1, 2, 3)), logdet, **TOL)


@pytest.mark.parametrize("levels", [1, 3])
def test_encoder_linear_form(levels: int) -> None:
    encoder = _perturbed(ConditionEncoder(levels, width=8))
    clean = _x(2, 3, 16, 24)
    maps = encoder.linear_form()
    assert len(maps) == levels + 1
    features = [_per_pixel(*maps[0], clean)]
    for weight, bias in maps[1:]:
        features.append(squeeze2x2(_per_pixel(weight, bias, features[-1])))
    for got, expected in zip(features, encoder(clean), strict=True):
        torch.testing.assert_close(got, expected, **TOL)
