"""Conditional layers: the affine injector (clean-image features only) and the conditional affine coupling.

Both compute an affine map from a small sub-network whose output is split *interleaved*
(shift = out[:, 0::2], raw = out[:, 1::2]) with scale = sigmoid(raw + 2) + eps. In the data -> latent
direction they divide by the scale and subtract the shift (the published model was trained this way
round), so log-det = -sum(log scale).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import ActNorm, InvConv1x1, register_layer


class ConvActNorm(nn.Module):
    """Bias-free convolution followed by an ActNorm (whose log-det is not part of the flow)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int = 1):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, kernel_size, padding=kernel_size // 2, bias=False)
        self.actnorm = ActNorm(out_channels)
        nn.init.normal_(self.conv.weight, 0.0, 0.05)

    def forward(self, x: Tensor) -> Tensor:
        return self.actnorm(self.conv(x))[0]


class ZeroConv(nn.Module):
    """1x1 convolution initialised to zero, output scaled by exp(3 * logs)."""

    def __init__(self, in_channels: int, out_channels: int):
        super().__init__()
        self.conv = nn.Conv2d(in_channels, out_channels, 1)
        self.logs = nn.Parameter(torch.zeros(out_channels, 1, 1))
        nn.init.zeros_(self.conv.weight)
        nn.init.zeros_(self.conv.bias)

    def forward(self, x: Tensor) -> Tensor:
        return self.conv(x) * torch.exp(3.0 * self.logs)


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


def _shift_scale(out: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    return out[:, 0::2], torch.sigmoid(out[:, 1::2] + 2.0) + eps


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
