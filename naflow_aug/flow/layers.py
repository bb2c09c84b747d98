"""Invertible layers without a learned condition: ActNorm, invertible 1x1 convolution (LU), squeeze.

Every flow layer follows one contract: ``forward(x, cond) -> (y, logdet)`` runs data -> latent with
``logdet`` of shape (B,), ``inverse(y, cond) -> x`` runs back. ``cond`` is ignored by these layers.

They are linear per pixel, and each reports that form (``affine`` / ``weight`` / ``lift``, and the log-det
per position) for the folded fast path (`naflow_aug.flow.fold`), which composes what they report.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

FLOW_LAYERS: dict[str, type[nn.Module]] = {}


def register_layer(cls: type[nn.Module]) -> type[nn.Module]:
    """Add a flow layer class to the registry that the shared layer test walks."""
    FLOW_LAYERS[cls.__name__] = cls
    return cls


SUBPIXELS = 4  # a 2x2 squeeze: each position of the output holds 4 input pixels


def squeeze2x2(x: Tensor) -> Tensor:
    """(B, C, H, W) -> (B, 4C, H/2, W/2), channel index c*4 + dy*2 + dx (the official ordering)."""
    return F.pixel_unshuffle(x, 2)


def unsqueeze2x2(x: Tensor) -> Tensor:
    """Inverse of `squeeze2x2`: (B, 4C, H, W) -> (B, C, 2H, 2W)."""
    return F.pixel_shuffle(x, 2)


def detached(t: Tensor, dtype: torch.dtype | None) -> Tensor:
    """A parameter as a layer's folded form reads it: detached, in ``dtype`` (None: its own)."""
    t = t.detach()
    return t if dtype is None else t.to(dtype)


@register_layer
class ActNorm(nn.Module):
    """y = (x + bias) * exp(logs) per channel; log-det = H*W*sum(logs).

    Data-dependent initialisation: the first forward in training mode sets bias and logs so that the
    batch's output has zero mean and unit variance per channel, then marks the `initialized` buffer.
    """

    def __init__(self, channels: int):
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.logs = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.register_buffer("initialized", torch.tensor(False))
        self._init_checked = False  # host-side cache of `initialized`: no device sync per training step

    def _load_from_state_dict(self, *args, **kwargs) -> None:
        self._init_checked = False
        super()._load_from_state_dict(*args, **kwargs)

    @torch.no_grad()
    def _initialize(self, x: Tensor) -> None:
        mean = x.mean(dim=(0, 2, 3), keepdim=True)
        std = (x - mean).pow(2).mean(dim=(0, 2, 3), keepdim=True).sqrt()
        self.bias.copy_(-mean)
        self.logs.copy_(torch.log(1.0 / (std + 1e-6)))
        self.initialized.fill_(True)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self.training and not self._init_checked:
            if not bool(self.initialized):
                self._initialize(x)
            self._init_checked = True
        y = (x + self.bias) * torch.exp(self.logs)
        logdet = (self.logs.sum() * (x.shape[2] * x.shape[3])).expand(x.shape[0])
        return y, logdet

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> Tensor:
        return y * torch.exp(-self.logs) - self.bias

    def affine(self, dtype: torch.dtype | None = torch.float64) -> tuple[Tensor, Tensor]:
        """The layer as y = scale * x + offset per channel: (scale (C,), offset (C,)), detached.

        scale = exp(logs) and offset = scale * bias: `forward`'s (x + bias) * exp(logs), multiplied out.
        """
        scale = torch.exp(detached(self.logs, dtype)).reshape(-1)
        return scale, scale * detached(self.bias, dtype).reshape(-1)

    def logdet_per_position(self, dtype: torch.dtype | None = torch.float64) -> Tensor:
        """`forward`'s log-det per spatial position: sum(logs), a scalar (detached)."""
        return detached(self.logs, dtype).sum()


@register_layer
class InvConv1x1(nn.Module):
    """Invertible 1x1 convolution, LU form: W = P (L*mask_l + I) (U*mask_u + diag(sign_s*exp(log_s))).

    log-det = H*W*sum(log_s). The masks are strictly triangular, so values stored on or beyond the
    diagonal of `l` and `u` (the official checkpoints have them) are dropped.
    """

    def __init__(self, channels: int, generator: torch.Generator | None = None):
        super().__init__()
        w = torch.linalg.qr(torch.randn(channels, channels, generator=generator, dtype=torch.float64))[0]
        p, lower, upper = torch.linalg.lu(w)
        diag = torch.diagonal(upper)
        self.register_buffer("p", p.float())
        self.register_buffer("sign_s", torch.sign(diag).float())
        self.l = nn.Parameter(torch.tril(lower, -1).float())
        self.u = nn.Parameter(torch.triu(upper, 1).float())
        self.log_s = nn.Parameter(torch.log(diag.abs()).float())
        mask = torch.tril(torch.ones(channels, channels), -1)
        self.register_buffer("mask_lower", mask, persistent=False)
        self.register_buffer("mask_upper", mask.T.contiguous(), persistent=False)

    def _factors(self) -> tuple[Tensor, Tensor]:
        eye = torch.eye(self.l.shape[0], dtype=self.l.dtype, device=self.l.device)
        lower = self.l * self.mask_lower + eye
        upper = self.u * self.mask_upper + torch.diag(self.sign_s * torch.exp(self.log_s))
        return lower, upper

    def weight(self) -> Tensor:
        """(C, C) matrix applied per pixel in the data -> latent direction."""
        lower, upper = self._factors()
        return self.p @ (lower @ upper)

    def inverse_weight(self) -> Tensor:
        """(C, C) inverse matrix; the triangular factors are inverted in float64 (as the official code)."""
        lower, upper = self._factors()
        inv = torch.linalg.inv(upper.double()) @ torch.linalg.inv(lower.double()) @ self.p.double().T
        return inv.to(self.l.dtype)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        c = x.shape[1]
        y = F.conv2d(x, self.weight().view(c, c, 1, 1))
        logdet = (self.log_s.sum() * (x.shape[2] * x.shape[3])).expand(x.shape[0])
        return y, logdet

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> Tensor:
        c = y.shape[1]
        return F.conv2d(y, self.inverse_weight().view(c, c, 1, 1))

    def logdet_per_position(self, dtype: torch.dtype | None = torch.float64) -> Tensor:
        """`forward`'s log-det per spatial position: sum(log_s), a scalar (detached)."""
        return detached(self.log_s, dtype).sum()


@register_layer
class Squeeze(nn.Module):
    """Space to depth 2x2: (B, C, H, W) -> (B, 4C, H/2, W/2); log-det 0."""

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return squeeze2x2(x), x.new_zeros(x.shape[0])

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> Tensor:
        return unsqueeze2x2(y)

    @staticmethod
    def lift(weight: Tensor, bias: Tensor) -> tuple[Tensor, Tensor]:
        """A per-pixel map y = weight @ x + bias (weight (O, I)) before the squeeze, as the per-position map
        after it: squeeze(y) = kron(weight, I4) @ squeeze(x) + bias repeated 4 times per channel (the
        channel order c*4 + k of `squeeze2x2`). Returns (weight (4O, 4I), bias (4O,))."""
        eye = torch.eye(SUBPIXELS, dtype=weight.dtype, device=weight.device)
        return torch.kron(weight, eye), bias.repeat_interleave(SUBPIXELS)
