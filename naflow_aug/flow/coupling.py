"""Conditional layers: the affine injector (clean-image features only) and the conditional affine coupling.

Both compute an affine map from a small sub-network whose output is split *interleaved*
(shift = out[:, 0::2], raw = out[:, 1::2]) with scale = sigmoid(raw + 2) + eps. In the data -> latent
direction they divide by the scale and subtract the shift (the published model was trained this way
round), so log-det = -sum(log scale).

Apart from the ReLUs and that sigmoid, every part is linear and reports its form (`linear`, `form`,
`SubNetForm`, `AffineForm`) with the constants that its forward uses; the folded fast path
(`naflow_aug.flow.fold`) composes what they report.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import ActNorm, InvConv1x1, detached, register_layer

ZERO_CONV_LOG_SCALE = 3.0  # ZeroConv's output is scaled by exp(3 * logs)
SHIFT_ROWS = slice(0, None, 2)  # the sub-network's output channels that are the shift
LOGIT_ROWS = slice(1, None, 2)  # ... and those that give the scale: sigmoid(out + SCALE_LOGIT_OFFSET) + eps
SCALE_LOGIT_OFFSET = 2.0


class ConvActNorm(nn.Module):
    """Bias-free convolution followed by an ActNorm (whose log-det is not part of the flow)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
        self.actnorm = ActNorm(out_channels)
        nn.init.normal_(self.conv.weight, 0.0, 0.05)

    def forward(self, x: Tensor) -> Tensor:
        return self.actnorm(self.conv(x))[0]

    def linear(self, dtype: torch.dtype | None = torch.float64) -> tuple[Tensor, Tensor]:
        """A 1x1 layer as y = weight @ x + bias per pixel: (weight (out, in), bias (out,)), detached."""
        assert self.conv.kernel_size == (1, 1), "only a 1x1 convolution is one matrix"
        w = detached(self.conv.weight, dtype)
        scale, offset = self.actnorm.affine(dtype)
        return scale[:, None] * w.reshape(w.shape[0], -1), offset


class ZeroConv(nn.Module):
    """1x1 convolution initialised to zero, output scaled by exp(3 * logs)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1)
        self.logs = nn.Parameter(torch.zeros(out_channels, 1, 1))
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x) * torch.exp(ZERO_CONV_LOG_SCALE * self.logs)

    def linear(self, dtype: torch.dtype | None = torch.float64) -> tuple[Tensor, Tensor]:
        """y = weight @ x + bias per pixel, the exp(3 * logs) scale folded in: (weight (out, in), bias)."""
        scale = torch.exp(ZERO_CONV_LOG_SCALE * detached(self.logs, dtype)).reshape(-1)
        w = detached(self.conv.weight, dtype).reshape(scale.numel(), -1) * scale[:, None]
        return w, detached(self.conv.bias, dtype) * scale


@dataclass(frozen=True)
class SubNetForm:
    """A `SubNet` as its linear parts, ``out = w_out @ (h + w_res @ r + b_res) + b_out`` per pixel with
    ``h = relu(w_in @ x + b_in)`` and ``r = relu(conv3x3(h, w3, b3))``. 1x1 weights are (out, in)."""

    w_in: Tensor
    b_in: Tensor
    w3: Tensor  # (hidden, hidden, 3, 3)
    b3: Tensor
    w_res: Tensor
    b_res: Tensor
    w_out: Tensor
    b_out: Tensor


class SubNet(nn.Module):
    """conv1x1+ActNorm -> ReLU -> residual [conv3x3 -> ReLU -> conv1x1+ActNorm] -> zero conv1x1."""

    def __init__(self, in_channels: int, out_channels: int, hidden_channels: int):
        super().__init__()
        self.inp = ConvActNorm(in_channels, hidden_channels)
        self.res_conv = nn.Conv2d(hidden_channels, hidden_channels, 3, padding=1)
        self.res_out = ConvActNorm(hidden_channels, hidden_channels)
        self.out = ZeroConv(hidden_channels, out_channels)

    def forward(self, x: Tensor) -> Tensor:
        h = F.relu(self.inp(x))
        h = h + self.res_out(F.relu(self.res_conv(h)))
        return self.out(h)

    def form(self, dtype: torch.dtype | None = torch.float64) -> SubNetForm:
        """Its weights as `SubNetForm` says `forward` uses them (detached, in ``dtype``)."""
        w_in, b_in = self.inp.linear(dtype)
        w_res, b_res = self.res_out.linear(dtype)
        w_out, b_out = self.out.linear(dtype)
        w3, b3 = detached(self.res_conv.weight, dtype), detached(self.res_conv.bias, dtype)
        return SubNetForm(w_in, b_in, w3, b3, w_res, b_res, w_out, b_out)


@dataclass(frozen=True)
class AffineForm:
    """What an affine coupling or injector computes its update from: ``out = net(input)``, then
    ``shift = out[shift_rows]`` and ``scale = sigmoid(out[logit_rows] + logit_offset) + eps`` (channels).

    ``split``: the input is concat(x[:, :split], cond) for a coupling; 0 for an injector (cond only).
    """

    net: SubNetForm
    split: int
    eps: float
    shift_rows: slice
    logit_rows: slice
    logit_offset: float

    @staticmethod
    def of(net: SubNet, split: int, eps: float, dtype: torch.dtype | None) -> AffineForm:
        """The form of a layer whose sub-network ``net`` feeds `_shift_scale`."""
        return AffineForm(net.form(dtype), split, eps, SHIFT_ROWS, LOGIT_ROWS, SCALE_LOGIT_OFFSET)


def _shift_scale(out: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    return out[:, SHIFT_ROWS], torch.sigmoid(out[:, LOGIT_ROWS] + SCALE_LOGIT_OFFSET) + eps


@register_layer
class AffineInjector(nn.Module):
    """x -> x / scale(h) - shift(h) on all channels, shift and scale from the condition h only."""

    def __init__(self, channels: int, cond_channels: int, hidden_channels: int = 64, eps: float = 1e-3):
        super().__init__()
        self.net = SubNet(cond_channels, 2 * channels, hidden_channels)
        self.eps = eps

    def forward(self, x: Tensor, cond: Tensor) -> tuple[Tensor, Tensor]:
        shift, scale = _shift_scale(self.net(cond), self.eps)
        return x / scale - shift, -torch.log(scale).sum(dim=(1, 2, 3))

    def inverse(self, y: Tensor, cond: Tensor) -> Tensor:
        shift, scale = _shift_scale(self.net(cond), self.eps)
        return (y + shift) * scale

    def form(self, dtype: torch.dtype | None = torch.float64) -> AffineForm:
        """x -> x / scale - shift with (shift, scale) from the condition only (see `AffineForm`)."""
        return AffineForm.of(self.net, 0, self.eps, dtype)


@register_layer
class ConditionalAffineCoupling(nn.Module):
    """Keeps x1 = x[:, :C//2]; x2 -> x2 / scale - shift with shift, scale from (x1, h)."""

    def __init__(self, channels: int, cond_channels: int, hidden_channels: int = 64, eps: float = 1e-3):
        super().__init__()
        if channels < 2:
            raise ValueError(f"a coupling needs at least 2 channels, got {channels}")
        self.split = channels // 2
        self.net = SubNet(self.split + cond_channels, 2 * (channels - self.split), hidden_channels)
        self.eps = eps

    def forward(self, x: Tensor, cond: Tensor) -> tuple[Tensor, Tensor]:
        x1, x2 = x[:, : self.split], x[:, self.split :]
        shift, scale = _shift_scale(self.net(torch.cat([x1, cond], dim=1)), self.eps)
        return torch.cat([x1, x2 / scale - shift], dim=1), -torch.log(scale).sum(dim=(1, 2, 3))

    def inverse(self, y: Tensor, cond: Tensor) -> Tensor:
        y1, y2 = y[:, : self.split], y[:, self.split :]
        shift, scale = _shift_scale(self.net(torch.cat([y1, cond], dim=1)), self.eps)
        return torch.cat([y1, (y2 + shift) * scale], dim=1)

    def form(self, dtype: torch.dtype | None = torch.float64) -> AffineForm:
        """x2 -> x2 / scale - shift with (shift, scale) from concat(x1, cond) (see `AffineForm`)."""
        return AffineForm.of(self.net, self.split, self.eps, dtype)


@register_layer
class FlowStep(nn.Module):
    """One step: [ActNorm] -> invertible 1x1 conv -> [conditional coupling -> affine injector].

    A container: its log-det is the sum of its parts' log-dets; the inverse runs the parts backwards.
    """

    def __init__(
        self,
        channels: int,
        *,
        actnorm: bool = True,
        conditional: bool = False,
        cond_channels: int = 0,
        hidden_channels: int = 64,
        eps: float = 1e-3,
    ):
        super().__init__()
        self.actnorm = ActNorm(channels) if actnorm else None
        self.invconv = InvConv1x1(channels)
        self.coupling = self.injector = None
        if conditional:
            self.coupling = ConditionalAffineCoupling(channels, cond_channels, hidden_channels, eps)
            self.injector = AffineInjector(channels, cond_channels, hidden_channels, eps)

    def parts(self) -> list[nn.Module]:
        return [m for m in (self.actnorm, self.invconv, self.coupling, self.injector) if m is not None]

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        logdet = x.new_zeros(x.shape[0])
        for part in self.parts():
            x, ld = part(x, cond)
            logdet = logdet + ld
        return x, logdet

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> Tensor:
        for part in reversed(self.parts()):
            y = part.inverse(y, cond)
        return y
