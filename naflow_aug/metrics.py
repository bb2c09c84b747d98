"""Noise-quality and denoising metrics: KLD, AKLD, PSNR, SSIM and the noise correlation map.

Definitions follow the official NAFlow evaluation (KLD / AKLD after NoiseFlow): all inputs are
float images in [0, 1], noise = noisy - clean. Every function is batched: it takes ``(B, C, H, W)``
tensors and returns one value per item, shape ``(B,)`` (a ``(C, H, W)`` input gives a 0-dim tensor).
They run on whatever device the inputs are on and never change the inputs.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F

__all__ = [
    "AKLD_KERNEL_1D",
    "akld",
    "kld",
    "kld_noise",
    "neighbour_correlation",
    "noise_correlation_map",
    "psnr",
    "ssim",
]

# OpenCV's getGaussianKernel(7, -1): for sizes up to 7 it uses this fixed table, not a sampled Gaussian.
AKLD_KERNEL_1D = (0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125)


def _as_batch(x: torch.Tensor, name: str) -> tuple[torch.Tensor, bool]:
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor of shape (B, C, H, W) or (C, H, W), got {type(x)!r}")
    if x.ndim not in (3, 4):
        raise ValueError(f"{name} must have shape (B, C, H, W) or (C, H, W), got shape {tuple(x.shape)}")
    if not x.is_floating_point():
        raise TypeError(f"{name} must be a float tensor in [0, 1], got dtype {x.dtype}")
    return (x.unsqueeze(0), True) if x.ndim == 3 else (x, False)


def _check_same(a: torch.Tensor, b: torch.Tensor, names: str) -> None:
    if a.shape != b.shape:
        raise ValueError(f"{names} must have the same shape, got {tuple(a.shape)} and {tuple(b.shape)}")


def _batch(*pairs: tuple[torch.Tensor, str]) -> tuple[list[torch.Tensor], bool]:
    out, squeezed = [], []
    for x, name in pairs:
        xb, sq = _as_batch(x, name)
        out.append(xb)
        squeezed.append(sq)
    for xb, (_, name) in zip(out[1:], pairs[1:], strict=True):
        _check_same(out[0], xb, f"{pairs[0][1]} and {name}")
    return out, squeezed[0]


def _finish(values: torch.Tensor, squeeze: bool) -> torch.Tensor:
    return values[0] if squeeze else values


# ----------------------------------------------------------------------------------------------- KLD


def _histograms(noise: torch.Tensor, edges: torch.Tensor) -> torch.Tensor:
    """(B, N) values -> (B, nbins) histograms normalised by N (values outside the edges count in N only).

    Bins are [e_i, e_{i+1}) with the last one closed, as ``numpy.histogram`` with explicit edges.
    """
    b, n = noise.shape
    nbins = edges.numel() - 1
    x = noise.to(torch.float64)
    idx = torch.bucketize(x, edges, right=True) - 1  # edges[idx] <= x < edges[idx + 1]
    idx = torch.where(x == edges[-1], torch.full_like(idx, nbins - 1), idx)
    inside = (idx >= 0) & (idx < nbins)
    counts = torch.zeros(b, nbins, dtype=torch.float64, device=noise.device)
    counts.scatter_add_(1, idx.clamp(0, nbins - 1), inside.to(torch.float64))
    return counts / n


def kld_noise(
    real_noise: torch.Tensor,
    fake_noise: torch.Tensor,
    *,
    n_bins: int = 256,
    value_range: tuple[float, float] = (-1.0, 1.0),
) -> torch.Tensor:
    """Forward KL(real || fake) between per-item noise histograms, as NoiseFlow / NAFlow compute it.

    ``real_noise``, ``fake_noise``: (B, C, H, W) (or (C, H, W)) noise values; all channels are pooled.
    Histograms: ``n_bins`` bins over ``value_range`` (edges ``numpy.arange(lo, hi + w, w)``), each
    normalised by its element count; bins where either histogram is 0 are dropped. Returns (B,) float64.
    """
    (real, fake), squeeze = _batch((real_noise, "real_noise"), (fake_noise, "fake_noise"))
    if n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer, got {n_bins!r}")
    lo, hi = (float(v) for v in value_range)
    if not hi > lo:
        raise ValueError(f"value_range must be (low, high) with high > low, got {value_range!r}")
    width = (hi - lo) / n_bins
    edges = torch.from_numpy(np.arange(lo, hi + width, width)).to(real.device)
    p = _histograms(real.reshape(real.shape[0], -1), edges)
    q = _histograms(fake.reshape(fake.shape[0], -1), edges)
    keep = (p > 0) & (q > 0)
    ratio = torch.where(keep, p, torch.ones_like(p)) / torch.where(keep, q, torch.ones_like(q))
    terms = torch.where(keep, p * torch.log(ratio), torch.zeros_like(p))
    return _finish(terms.sum(dim=1), squeeze)


def kld(real_noisy: torch.Tensor, fake_noisy: torch.Tensor, clean: torch.Tensor, **kwargs) -> torch.Tensor:
    """KLD between the real noise (real_noisy - clean) and the generated noise (fake_noisy - clean).

    (B, 3, H, W) float in [0, 1] each -> (B,) float64. The evaluation protocol clamps generated images to
    [0, 1] before this (``NAFlow.sample`` already does); this function does not clamp. ``kwargs`` go to
    :func:`kld_noise` (``n_bins``, ``value_range``).
    """
    (real, fake, cl), squeeze = _batch(
        (real_noisy, "real_noisy"), (fake_noisy, "fake_noisy"), (clean, "clean")
    )
    return _finish(kld_noise(real - cl, fake - cl, **kwargs), squeeze)


# ---------------------------------------------------------------------------------------------- AKLD


def _local_variance(noise: torch.Tensor) -> torch.Tensor:
    """(B, C, H, W) noise -> (B, C, H, W) 7x7-weighted mean of noise^2 (reflect padding), >= 1e-10."""
    k1 = torch.tensor(AKLD_KERNEL_1D, dtype=noise.dtype, device=noise.device)
    c = noise.shape[1]
    kernel = torch.outer(k1, k1).expand(c, 1, 7, 7)
    if min(noise.shape[-2:]) < 4:
        raise ValueError(
            f"AKLD needs images of at least 4x4 pixels (reflect padding of 3), got {tuple(noise.shape)}"
        )
    padded = F.pad(noise * noise, (3, 3, 3, 3), mode="reflect")
    return F.conv2d(padded, kernel, groups=c).clamp_min(1e-10)


def akld(real_noisy: torch.Tensor, fake_noisy: torch.Tensor, clean: torch.Tensor) -> torch.Tensor:
    """AKLD (DANet): mean KL divergence between zero-mean Gaussians of local noise variance.

    (B, C, H, W) float in [0, 1] each -> (B,) float64. r = var_fake / var_real clamped to [0.1, 10];
    AKLD = 0.5 * mean(log(1/r) + r - 1) over channels and pixels of each item.
    """
    (real, fake, cl), squeeze = _batch(
        (real_noisy, "real_noisy"), (fake_noisy, "fake_noisy"), (clean, "clean")
    )
    real, fake, cl = real.to(torch.float64), fake.to(torch.float64), cl.to(torch.float64)
    var_real = _local_variance(real - cl)
    var_fake = _local_variance(fake - cl)
    r = (var_fake / var_real).clamp(0.1, 10.0)
    return _finish(0.5 * (torch.log(1.0 / r) + r - 1.0).mean(dim=(1, 2, 3)), squeeze)


# ----------------------------------------------------------------------------------------- PSNR/SSIM


def psnr(image: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """PSNR in dB of [0, 1] images: 10 log10(1 / (MSE + 1e-8)), MSE in float64 over C, H, W. -> (B,)."""
    (x, y), squeeze = _batch((image, "image"), (reference, "reference"))
    mse = ((x.to(torch.float64) - y.to(torch.float64)) ** 2).mean(dim=(1, 2, 3))
    return _finish(10.0 * torch.log10(1.0 / (mse + 1e-8)), squeeze)


def _gaussian_1d(size: int, sigma: float, dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    x = torch.arange(size, dtype=torch.float64) - (size - 1) / 2
    g = torch.exp(-(x**2) / (2 * sigma**2))
    return (g / g.sum()).to(dtype=dtype, device=device)


def ssim(image: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
    """SSIM (Wang et al. 2004) of [0, 1] images -> (B,) float64.

    11x11 Gaussian window (sigma 1.5), K1 = 0.01, K2 = 0.03, data range 255, computed in float64 on
    x * 255 over the valid region only (no padding), per channel, then averaged over channels and pixels.
    """
    (x, y), squeeze = _batch((image, "image"), (reference, "reference"))
    if min(x.shape[-2:]) < 11:
        raise ValueError(f"SSIM needs images of at least 11x11 pixels, got shape {tuple(x.shape)}")
    x = x.to(torch.float64) * 255.0
    y = y.to(torch.float64) * 255.0
    c = x.shape[1]
    g = _gaussian_1d(11, 1.5, torch.float64, x.device)
    rows, cols = g.view(1, 1, 11, 1).expand(c, 1, 11, 1), g.view(1, 1, 1, 11).expand(c, 1, 1, 11)
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2

    def blur(t: torch.Tensor) -> torch.Tensor:
        # The window is separable: two 1-D passes equal the 11x11 one (to float64 rounding), ~5x faster.
        return F.conv2d(F.conv2d(t, rows, groups=c), cols, groups=c)

    mu_x, mu_y = blur(x), blur(y)
    var_x = blur(x * x) - mu_x**2
    var_y = blur(y * y) - mu_y**2
    cov = blur(x * y) - mu_x * mu_y
    smap = ((2 * mu_x * mu_y + c1) * (2 * cov + c2)) / ((mu_x**2 + mu_y**2 + c1) * (var_x + var_y + c2))
    return _finish(smap.mean(dim=(1, 2, 3)), squeeze)


# ------------------------------------------------------------------------------ noise correlation map


def noise_correlation_map(
    noisy: torch.Tensor,
    clean: torch.Tensor | None = None,
    *,
    radius: int = 4,
    per_channel: bool = False,
) -> torch.Tensor:
    """Correlation between each pixel's noise and its neighbour's at every offset of a window.

    As in the paper's Fig. 5 (after AP-BSN): for each offset (dy, dx) with |dy|, |dx| <= ``radius``, the
    Pearson correlation between n(p) and n(p + (dy, dx)) over all pixels p where both exist, with the
    noise n = noisy - clean (or ``noisy`` itself when ``clean`` is None) centred per item and channel.
    Returns (B, 2r+1, 2r+1) with channels pooled, or (B, C, 2r+1, 2r+1) with ``per_channel=True``
    (without the batch axis for a (C, H, W) input). The centre is 1 by construction.
    """
    if clean is None:
        (n,), squeeze = _batch((noisy, "noisy"))
    else:
        (x, cl), squeeze = _batch((noisy, "noisy"), (clean, "clean"))
        n = x - cl
    if not isinstance(radius, int) or radius < 0:
        raise ValueError(f"radius must be a non-negative int, got {radius!r}")
    h, w = n.shape[-2:]
    if radius >= min(h, w):
        raise ValueError(f"radius {radius} needs images larger than {radius}x{radius}, got {h}x{w}")
    n = n.to(torch.float64)
    n = n - n.mean(dim=(2, 3), keepdim=True)
    k = 2 * radius + 1
    out = torch.empty(
        n.shape[0], n.shape[1] if per_channel else 1, k, k, dtype=torch.float64, device=n.device
    )
    dims = (2, 3) if per_channel else (1, 2, 3)
    for i, dy in enumerate(range(-radius, radius + 1)):
        for j, dx in enumerate(range(-radius, radius + 1)):
            a = n[..., max(0, -dy) : h - max(0, dy), max(0, -dx) : w - max(0, dx)]
            b = n[..., max(0, dy) : h - max(0, -dy), max(0, dx) : w - max(0, -dx)]
            num = (a * b).sum(dim=dims)
            den = torch.sqrt((a * a).sum(dim=dims) * (b * b).sum(dim=dims)).clamp_min(1e-300)
            out[:, :, i, j] = (num / den).reshape(n.shape[0], -1)
    if not per_channel:
        out = out[:, 0]
    return _finish(out, squeeze)


def neighbour_correlation(noisy: torch.Tensor, clean: torch.Tensor | None = None) -> torch.Tensor:
    """Mean noise correlation with the 4 nearest neighbours (the ring of radius 1 without corners) -> (B,)."""
    cmap = noise_correlation_map(noisy, clean, radius=1)
    return (cmap[..., 0, 1] + cmap[..., 2, 1] + cmap[..., 1, 0] + cmap[..., 1, 2]) / 4
