from __future__ import annotations

import pytest
import torch

from naflow_aug.flow.noise_level import check_level, match_noise_level, noise_std


def _pair(b=2, sigma=(0.02, 0.05, 0.03), seed=0):
    g = torch.Generator().manual_seed(seed)
    clean = 0.3 + 0.4 * torch.rand(b, 3, 32, 40, generator=g)
    noise = torch.randn(b, 3, 32, 40, generator=g) * torch.tensor(sigma)[None, :, None, None]
    return clean, clean + noise


def test_noise_std_per_item_and_channel():
    clean, noisy = _pair(sigma=(0.02, 0.05, 0.03))
    s = noise_std(noisy, clean)
    assert s.shape == (2, 3) and s.dtype == torch.float32
    torch.testing.assert_close(s, torch.tensor([[0.02, 0.05, 0.03]] * 2), rtol=0.05, atol=0)
    with pytest.raises(ValueError, match="one shape"):
        noise_std(noisy[:, :, :8], clean)


def test_match_scales_each_channel_to_the_target_and_keeps_the_noise_pattern():
    clean, noisy = _pair(sigma=(0.02, 0.05, 0.03))
    target = torch.tensor([[0.01, 0.01, 0.06], [0.04, 0.02, 0.0]])
    out = match_noise_level(noisy, clean, target)
    assert out.dtype == noisy.dtype and out.shape == noisy.shape
    torch.testing.assert_close(noise_std(out, clean), target, rtol=1e-4, atol=1e-6)
    # the same pattern, rescaled: per channel, out - clean is proportional to noisy - clean
    d_in, d_out = (noisy - clean)[0, 0], (out - clean)[0, 0]
    torch.testing.assert_close(d_out, d_in * (0.01 / float(d_in.std())), rtol=1e-4, atol=1e-6)
    # clamped to [0, 1]
    big = match_noise_level(noisy, clean, torch.full((2, 3), 2.0))
    assert float(big.min()) == 0.0 and float(big.max()) == 1.0
    # a channel without noise is left as it is
    flat = clean.clone()
    torch.testing.assert_close(match_noise_level(flat, clean, torch.full((2, 3), 0.1)), clean)


def test_match_rejects_bad_targets():
    clean, noisy = _pair()
    with pytest.raises(ValueError, match="shape"):
        match_noise_level(noisy, clean, torch.ones(3))
    with pytest.raises(ValueError, match="finite"):
        match_noise_level(noisy, clean, torch.full((2, 3), float("nan")))
    with pytest.raises(ValueError, match="finite"):
        match_noise_level(noisy, clean, -torch.ones(2, 3))
    assert check_level("model") == "model"
    with pytest.raises(ValueError, match="noise_level must be one of"):
        check_level("exact")
