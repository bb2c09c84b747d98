"""The camera's response of an adapted profile, as pure functions (:mod:`naflow_aug.adapt` uses them):
the flow's noise normalised (:func:`normalise_noise`), scaled to a per-channel, per-intensity level and
shifted by an offset (:func:`level_gain`, :func:`camera_response`), both tables fitted on real pairs
(:func:`fit_level`). Images and noise are (B, C, H, W) (or (C, P) pixels for the fit), floats in [0, 1].
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _blur(x: Tensor, sigma: float) -> Tensor:
    """(B, C, H, W) -> Gaussian blur of std ``sigma`` pixels per channel (edges replicated)."""
    radius = max(1, int(3 * sigma + 0.5))
    t = torch.arange(-radius, radius + 1, dtype=x.dtype, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    c = x.shape[1]
    x = F.pad(x, (radius, radius, radius, radius), mode="replicate")
    x = F.conv2d(x, k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
    return F.conv2d(x, k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)


def normalise_noise(noise: Tensor, window: float, clean: Tensor | None = None, bins: int = 0) -> Tensor:
    """(B, C, H, W) noise -> zero mean and unit root mean square per item and channel: over a Gaussian
    window of std ``window`` pixels (local mean removed, divided by the local RMS), or over the whole
    image when ``window`` is 0. A channel without noise stays zero.

    With ``clean`` (B, C, H, W) in [0, 1] and ``bins`` > 0, the window's moments are taken among pixels of
    about the same clean intensity only (:func:`_guided_moments`), so that a dark region's strong noise does
    not weaken the normalised noise of a bright region next to it.
    """
    if noise.dim() != 4:
        raise ValueError(f"noise must be (B, C, H, W), got shape {tuple(noise.shape)}")
    if window > 0 and bins > 0:
        if clean is None or clean.shape != noise.shape:
            raise ValueError(f"guided normalisation needs clean images of shape {tuple(noise.shape)}")
        mean, power = _guided_moments(noise, clean.to(noise.dtype), window, bins)
        centred = noise - mean
    elif window > 0:
        # one blur of each moment: the result at a pixel depends on its 3 * window neighbourhood only
        mean = _blur(noise, window)
        centred = noise - mean
        power = (_blur(noise * noise, window) - mean * mean).clamp_min(0)
    else:
        centred = noise - noise.mean(dim=(2, 3), keepdim=True)
        power = centred.pow(2).mean(dim=(2, 3), keepdim=True)
    tiny = torch.finfo(noise.dtype).tiny
    return torch.where(power > tiny, centred / power.clamp_min(tiny).sqrt(), torch.zeros_like(centred))


def _guided_moments(noise: Tensor, clean: Tensor, window: float, bins: int) -> tuple[Tensor, Tensor]:
    """Local mean and variance of ``noise`` over a Gaussian window, per intensity bin: bin k's moments over
    the window weighted by each pixel's share of bin k (the interpolation weights of :func:`level_gain`),
    mixed at every pixel by its own shares."""
    pos = (clean * bins - 0.5).clamp(0, bins - 1)
    mean, power = torch.zeros_like(noise), torch.zeros_like(noise)
    for k in range(bins):
        share = (1 - (pos - k).abs()).clamp_min(0)
        # where share > 0 the blurred share is >= its centre weight times share: no division by ~0 there
        norm = _blur(share, window).clamp_min(1e-12)
        mu = _blur(noise * share, window) / norm
        mean += share * mu
        power += share * (_blur(noise * noise * share, window) / norm - mu * mu).clamp_min(0)
    return mean, power


def level_gain(clean: Tensor, level: Tensor) -> Tensor:
    """The noise std of every pixel: ``level`` (C, K), each channel's std in K equal bins of the clean
    intensity, interpolated linearly between bin centres at (B, C, H, W) ``clean`` in [0, 1]."""
    c, k = level.shape
    if clean.dim() != 4 or clean.shape[1] != c:
        raise ValueError(f"clean must be (B, {c}, H, W) for a ({c}, {k}) level, got {tuple(clean.shape)}")
    pos = (clean * k - 0.5).clamp(0, k - 1).flatten(2)
    lo = pos.floor().long().clamp(max=k - 1)
    hi = (lo + 1).clamp(max=k - 1)
    table = level.to(clean.dtype)[None].expand(clean.shape[0], c, k)
    t = pos - lo
    gain = table.gather(2, lo) * (1 - t) + table.gather(2, hi) * t
    return gain.view(clean.shape)


def camera_response(
    noisy: Tensor, clean: Tensor, level: Tensor, window: float, quantize: bool, offset: Tensor | None = None,
    guide_bins: int = 0,
) -> Tensor:
    """The adapted camera's output for the flow's (B, 3, H, W) ``noisy`` images of ``clean``: the noise
    normalised (:func:`normalise_noise`) and scaled to the camera's level (:func:`level_gain`), plus the
    camera's offset from the clean image (a (C, K) table like ``level``, interpolated alike; None: 0),
    rounded to 8 bits when ``quantize``; not clamped (rounding and clamping to [0, 1] commute).
    ``guide_bins``: normalised among pixels of about the same intensity (:func:`normalise_noise`)."""
    unit = normalise_noise(noisy - clean, window, clean, guide_bins)
    out = clean + unit * level_gain(clean, level)
    if offset is not None:
        out = out + level_gain(clean, offset)
    return (out * 255).round() / 255 if quantize else out


def _fill_nearest(values: Tensor, valid: Tensor) -> Tensor:
    """(C, K) values where ``valid``, each invalid bin taking the nearest valid bin of its channel."""
    k = values.shape[1]
    pos = torch.arange(k, dtype=torch.float64)
    out = values.clone()
    for ch in range(values.shape[0]):
        good = valid[ch].nonzero().flatten()
        nearest = good[(pos[:, None] - pos[good][None]).abs().argmin(dim=1)]
        out[ch] = values[ch, nearest]
    return out


def fit_level(
    clean: Tensor, real: Tensor, unit: Tensor, bins: int, *, quantize: bool, offset: bool = False,
    iterations: int = 6,
) -> tuple[Tensor, Tensor]:
    """The (C, bins) level and offset tables at which ``clean + offset + unit * level`` (both interpolated by
    :func:`level_gain`), clamped to [0, 1] (and rounded to 8 bits), has the real noise's mean (if
    ``offset``; else the offset stays 0) and variance (its mean square without an offset) in every
    intensity bin of every channel.

    ``clean``, ``real`` (real noise), ``unit`` (unit-RMS noise of the model): (C, P) pixels, float64. Bins
    with fewer than 0.2 % of the pixels (at least 64) take their nearest fitted neighbour's values.
    """
    c = clean.shape[0]
    idx = (clean * bins).long().clamp(0, bins - 1)
    count = torch.zeros(c, bins, dtype=torch.float64).scatter_add_(1, idx, torch.ones_like(clean))
    valid = count >= max(64, 0.002 * clean.shape[1])
    if not bool(valid.any(dim=1).all()):
        raise ValueError("fit_level: a channel has no intensity bin with enough pixels")

    def moments(noise: Tensor) -> tuple[Tensor, Tensor]:
        """Per bin: the mean and the variance about it (offset) or the mean square (no offset)."""
        mean = torch.zeros(c, bins, dtype=torch.float64).scatter_add_(1, idx, noise) / count.clamp_min(1)
        square = torch.zeros(c, bins, dtype=torch.float64).scatter_add_(1, idx, noise * noise)
        square = square / count.clamp_min(1)
        return (mean, (square - mean * mean).clamp_min(0)) if offset else (torch.zeros_like(mean), square)

    target_mean, target_var = moments(real)
    shift = _fill_nearest(target_mean, valid)
    level = _fill_nearest(target_var.sqrt(), valid)
    for _ in range(iterations):
        gain = level_gain(clean[None, :, None], level)[0, :, 0]
        out = (clean + level_gain(clean[None, :, None], shift)[0, :, 0] + unit * gain).clamp(0, 1)
        if quantize:
            out = (out * 255).round() / 255
        now_mean, now_var = moments(out - clean)
        ratio = (target_var / now_var.clamp_min(1e-20)).sqrt()
        ratio = torch.where(now_var > 0, ratio, torch.ones_like(now_var))
        level = _fill_nearest((level * ratio).clamp(1e-4, 1.0), valid)
        if offset:  # clipping at 0 and 1 moves the mean: correct for what the last round left
            shift = _fill_nearest(shift + (target_mean - now_mean), valid)
    return level, shift
