"""Per-configuration Gaussians in the latent space: one (mean, std) per class, shared by every position.

`mean` and `std` are stacked (K, C) tensors indexed by integer class id. `std` is the official
`cov_shift`: a signed per-channel standard deviation (variance = std**2). With ``covariance="full"``
`std` is (K, C, C), a matrix square root A of the covariance A @ A.T.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor, nn

LOG_2PI = math.log(2 * math.pi)
MIX_MODES = ("std", "covariance")


class ClassGaussians(nn.Module):
    def __init__(self, num_classes: int, channels: int, covariance: str = "diagonal"):
        super().__init__()
        if covariance not in ("diagonal", "full"):
            raise ValueError(f"covariance must be 'diagonal' or 'full', got {covariance!r}")
        self.covariance = covariance
        self.mean = nn.Parameter(torch.full((num_classes, channels), 1e-6))
        std = torch.ones(num_classes, channels)
        self.std = nn.Parameter(torch.diag_embed(std) if covariance == "full" else std)

    @property
    def num_classes(self) -> int:
        return self.mean.shape[0]

    def _cov(self, std: Tensor) -> Tensor:
        return std @ std.transpose(-1, -2) if self.covariance == "full" else std.pow(2)

    def log_prob(self, z: Tensor, class_ids: Tensor) -> Tensor:
        """log p(z | class) summed over all positions and channels: z (B, C, h, w), class_ids (B,) -> (B,)."""
        mean, std = self.mean[class_ids], self.std[class_ids]
        x = z.flatten(2).transpose(1, 2) - mean[:, None, :]  # (B, N, C)
        if self.covariance == "diagonal":
            var = std.pow(2)[:, None, :]
            return -0.5 * (var.log() + x.pow(2) / var + LOG_2PI).sum(dim=(1, 2))
        cov = self._cov(std)
        maha = (torch.linalg.solve(cov, x.transpose(1, 2)) * x.transpose(1, 2)).sum(dim=(1, 2))
        n, c = x.shape[1], x.shape[2]
        return -0.5 * (n * torch.linalg.slogdet(cov)[1] + maha + n * c * LOG_2PI)

    def log_prob_all(self, z: Tensor) -> Tensor:
        """log p(z | k) for every class: z (B, C, h, w) -> (B, K).

        Uses the per-item sufficient statistics sum(z) and sum(z z^T) in float64, so the cost does not
        grow with K * positions and the large cancelling terms stay exact.
        """
        b, c = z.shape[:2]
        n = z.shape[2] * z.shape[3]
        flat = z.flatten(2).double()  # (B, C, N)
        s1 = flat.sum(2)  # (B, C)
        mean = self.mean.double()
        if self.covariance == "diagonal":
            var = self._cov(self.std.double())  # (K, C)
            s2 = flat.pow(2).sum(2)
            quad = s2 @ (1 / var).T - 2 * s1 @ (mean / var).T + n * (mean.pow(2) / var).sum(1)
            out = -0.5 * (n * var.log().sum(1) + quad + n * c * LOG_2PI)
        else:
            cov = self._cov(self.std.double())  # (K, C, C)
            prec = torch.linalg.inv(cov)
            s2 = flat @ flat.transpose(1, 2)  # (B, C, C)
            pm = prec @ mean[:, :, None]  # (K, C, 1)
            quad = (
                torch.einsum("bij,kji->bk", s2, prec)
                - 2 * s1 @ pm[:, :, 0].T
                + n * (mean[:, None, :] @ pm)[:, 0, 0]
            )
            out = -0.5 * (n * torch.linalg.slogdet(cov)[1] + quad + n * c * LOG_2PI)
        return out.to(z.dtype)

    def posterior(self, z: Tensor, temperature: float = 1.0, top_k: int | None = None) -> Tensor:
        """Class weights softmax(log p(z|k) / (h*w*T)), optionally over the top_k classes only: (B, K)."""
        if not temperature > 0:
            raise ValueError(f"temperature must be > 0, got {temperature}")
        logits = self.log_prob_all(z) / (z.shape[2] * z.shape[3] * temperature)
        if top_k is not None:
            if not 1 <= top_k <= self.num_classes:
                raise ValueError(f"top_k must be in [1, {self.num_classes}], got {top_k}")
            keep = logits.topk(top_k, dim=1).indices
            mask = torch.full_like(logits, float("-inf")).scatter(1, keep, 0.0)
            logits = logits + mask
        return torch.softmax(logits, dim=1)

    def mix(self, weights: Tensor, mode: str = "std") -> tuple[Tensor, Tensor]:
        """Mixture of the class Gaussians: weights (B, K) -> mean (B, C), std (B, C) (or (B, C, C) if full).

        ``mode="std"`` mixes the standard deviations as the official code does; ``"covariance"`` mixes
        covariances as the paper's Alg. 1 writes (std = sqrt of the mixed variance, or its Cholesky factor).
        """
        if mode not in MIX_MODES:
            raise ValueError(f"mix mode must be one of {MIX_MODES}, got {mode!r}")
        weights = weights.to(self.mean.dtype)
        mean = weights @ self.mean
        if mode == "std":
            return mean, torch.einsum("bk,k...->b...", weights, self.std)
        cov = torch.einsum("bk,k...->b...", weights, self._cov(self.std))
        return mean, (torch.linalg.cholesky(cov) if self.covariance == "full" else cov.sqrt())

    def reparameterize(self, mean: Tensor, std: Tensor, eps: Tensor) -> Tensor:
        """z = mean + std * eps for eps (B, C, h, w) and mix's (mean, std)."""
        if std.dim() == 3:
            return mean[:, :, None, None] + torch.einsum("bij,bjhw->bihw", std, eps)
        return mean[:, :, None, None] + std[:, :, None, None] * eps

    def sample(
        self, weights: Tensor, size: tuple[int, int], generator: torch.Generator | None = None
    ) -> Tensor:
        """Draw z (B, C, h, w) from the mixtures given by weights (B, K), eps from `generator`."""
        mean, std = self.mix(weights)
        # drawn where the generator lives (a CPU generator cannot draw on a GPU), then moved
        eps = torch.randn(
            (weights.shape[0], mean.shape[1], *size),
            generator=generator,
            device=generator.device if generator is not None else mean.device,
            dtype=mean.dtype,
        ).to(mean.device)
        return self.reparameterize(mean, std, eps)
