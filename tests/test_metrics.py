"""Metrics: official reference values, independent numpy/scipy re-implementations, closed forms."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from scipy import ndimage, signal

from naflow_aug import metrics as M


def _rand_pair(seed: int, b: int = 2, c: int = 3, h: int = 24, w: int = 20, sigma: float = 0.05):
    g = torch.Generator().manual_seed(seed)
    clean = torch.rand(b, c, h, w, generator=g) * 0.8 + 0.1
    noisy = (clean + sigma * torch.randn(b, c, h, w, generator=g)).clamp(0, 1)
    return clean, noisy


# ------------------------------------------------------------------------- official reference values


@pytest.fixture(scope="module")
def reference(shared_dir):
    d = np.load(shared_dir / "fixtures" / "metrics_reference.npz")
    cases = json.loads((shared_dir / "fixtures" / "metrics_reference.json").read_text())["cases"]

    def t(a: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(a).permute(2, 0, 1).float() / 255

    clean = torch.stack([t(d[f"clean_{c['index']}"]) for c in cases])
    noisy = torch.stack([t(d[f"noisy_{c['index']}"]) for c in cases])
    fake = torch.stack([t(d[f"fake_{c['index']}"]) for c in cases])
    return clean, noisy, fake, cases


def test_reproduces_official_reference_values(reference, device):
    clean, noisy, fake, cases = (x.to(device) if torch.is_tensor(x) else x for x in reference)
    kld = M.kld(noisy, fake, clean).cpu()
    akld = M.akld(noisy, fake, clean).cpu()
    psnr_n, psnr_f = M.psnr(noisy, clean).cpu(), M.psnr(fake, clean).cpu()
    ssim_n, ssim_f = M.ssim(noisy, clean).cpu(), M.ssim(fake, clean).cpu()
    for i, case in enumerate(cases):
        assert kld[i].item() == pytest.approx(case["kld_real_vs_fake"], abs=1e-6)
        assert akld[i].item() == pytest.approx(case["akld_real_vs_fake"], abs=1e-5)
        assert psnr_n[i].item() == pytest.approx(case["psnr_noisy"], abs=1e-6)
        assert psnr_f[i].item() == pytest.approx(case["psnr_fake"], abs=1e-6)
        assert ssim_n[i].item() == pytest.approx(case["ssim_noisy"], abs=1e-5)
        assert ssim_f[i].item() == pytest.approx(case["ssim_fake"], abs=1e-5)
    # one item at a time equals the batch
    one = M.kld(noisy[1:2], fake[1:2], clean[1:2]).cpu()
    assert one.item() == kld[1].item()


# ------------------------------------------------------------------------------------------------ KLD


def _np_kld(p_noise: np.ndarray, q_noise: np.ndarray, n_bins: int = 256) -> float:
    edges = np.linspace(-1.0, 1.0, n_bins + 1)
    p = np.histogram(p_noise, edges)[0] / p_noise.size
    q = np.histogram(q_noise, edges)[0] / q_noise.size
    m = (p > 0) & (q > 0)
    return float(np.sum(p[m] * np.log(p[m] / q[m])))


def test_kld_matches_numpy_histogram():
    clean, noisy = _rand_pair(0)
    _, fake = _rand_pair(1, sigma=0.08)
    fake = (clean + (fake - _rand_pair(1, sigma=0.08)[0])).clamp(0, 1)
    got = M.kld(noisy, fake, clean)
    assert got.shape == (2,) and got.dtype == torch.float64
    for i in range(2):
        want = _np_kld((noisy[i] - clean[i]).numpy(), (fake[i] - clean[i]).numpy())
        assert got[i].item() == pytest.approx(want, abs=1e-12)
    assert got.min() > 0.01  # the two noise levels differ


def test_kld_closed_forms():
    # identical noise -> 0
    clean, noisy = _rand_pair(2)
    assert torch.allclose(M.kld(noisy, noisy, clean), torch.zeros(2, dtype=torch.float64))
    # two bins by hand: p = (1/2, 1/2), q = (1/4, 3/4)
    p = torch.tensor([-0.5, -0.5, 0.5, 0.5]).reshape(1, 1, 2, 2)
    q = torch.tensor([-0.5, 0.5, 0.5, 0.5]).reshape(1, 1, 2, 2)
    want = 0.5 * math.log(0.5 / 0.25) + 0.5 * math.log(0.5 / 0.75)
    assert M.kld_noise(p, q).item() == pytest.approx(want, abs=1e-12)
    # empty bins of q are dropped, not infinite; values at +1 fall in the last bin, outside values are dropped
    q2 = torch.tensor([0.5, 0.5, 0.5, 1.0]).reshape(1, 1, 2, 2)
    assert M.kld_noise(p, q2).item() == pytest.approx(0.5 * math.log(0.5 / 0.75), abs=1e-12)
    p3 = torch.tensor([1.0, 1.0, 3.0, 0.5]).reshape(1, 1, 2, 2)
    q3 = torch.tensor([1.0, 0.5, 0.5, 0.5]).reshape(1, 1, 2, 2)
    want3 = 0.5 * math.log(0.5 / 0.25) + 0.25 * math.log(0.25 / 0.75)
    assert M.kld_noise(p3, q3).item() == pytest.approx(want3, abs=1e-12)


# ----------------------------------------------------------------------------------------------- AKLD


def _np_akld(real: np.ndarray, fake: np.ndarray, clean: np.ndarray) -> float:
    g = np.array([0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125])
    k = np.outer(g, g)

    def var(noisy: np.ndarray) -> np.ndarray:
        e2 = (noisy.astype(np.float64) - clean) ** 2
        # scipy's 'mirror' is torch's 'reflect' (edge pixel not repeated)
        return np.maximum(np.stack([ndimage.correlate(ch, k, mode="mirror") for ch in e2]), 1e-10)

    r = np.clip(var(fake) / var(real), 0.1, 10)
    return float(0.5 * np.mean(np.log(1 / r) + r - 1))


def test_akld_matches_scipy():
    clean, noisy = _rand_pair(3)
    _, fake = _rand_pair(4, sigma=0.1)
    got = M.akld(noisy, fake, clean)
    for i in range(2):
        want = _np_akld(noisy[i].numpy(), fake[i].numpy(), clean[i].numpy().astype(np.float64))
        assert got[i].item() == pytest.approx(want, rel=1e-9)


def test_akld_closed_forms():
    g = torch.Generator().manual_seed(5)
    clean = torch.full((1, 3, 16, 16), 0.5, dtype=torch.float64)
    noise = 0.01 * torch.randn(1, 3, 16, 16, generator=g, dtype=torch.float64)
    assert M.akld(clean + noise, clean + noise, clean).item() == pytest.approx(0.0, abs=1e-12)
    # fake noise twice the real one: ratio 4 everywhere
    want = 0.5 * (math.log(1 / 4) + 4 - 1)
    assert M.akld(clean + noise, clean + 2 * noise, clean).item() == pytest.approx(want, rel=1e-9)
    # ratio 100 is clamped to 10
    want10 = 0.5 * (math.log(1 / 10) + 10 - 1)
    assert M.akld(clean + noise, clean + 10 * noise, clean).item() == pytest.approx(want10, rel=1e-9)


# ----------------------------------------------------------------------------------------- PSNR/SSIM


def test_psnr_closed_form_and_numpy():
    clean = torch.full((2, 3, 8, 8), 0.4)
    shifted = clean + torch.tensor([0.1, 0.01]).reshape(2, 1, 1, 1)
    got = M.psnr(shifted, clean)
    mse = ((shifted.double() - clean.double()) ** 2).mean(dim=(1, 2, 3))
    assert got[0].item() == pytest.approx(10 * math.log10(1 / (mse[0].item() + 1e-8)), abs=1e-9)
    assert got[0].item() == pytest.approx(20.0, abs=1e-4)
    assert got[1].item() == pytest.approx(40.0, abs=1e-3)
    # identical images: 80 dB (the 1e-8 floor)
    assert M.psnr(clean, clean)[0].item() == pytest.approx(80.0, abs=1e-9)


def _np_ssim(a: np.ndarray, b: np.ndarray) -> float:
    """Wang et al. 2004 in numpy/scipy: (C, H, W) in [0, 1]."""
    x = np.arange(11) - 5.0
    g = np.exp(-(x**2) / (2 * 1.5**2))
    win = np.outer(g, g) / np.outer(g, g).sum()
    c1, c2 = (0.01 * 255) ** 2, (0.03 * 255) ** 2
    vals = []
    for p, q in zip(a.astype(np.float64) * 255, b.astype(np.float64) * 255, strict=True):

        def f(t: np.ndarray) -> np.ndarray:
            return signal.correlate2d(t, win, mode="valid")

        mp, mq = f(p), f(q)
        vp, vq, cpq = f(p * p) - mp**2, f(q * q) - mq**2, f(p * q) - mp * mq
        smap = (2 * mp * mq + c1) * (2 * cpq + c2) / ((mp**2 + mq**2 + c1) * (vp + vq + c2))
        vals.append(smap.mean())
    return float(np.mean(vals))


def test_ssim_matches_numpy_and_identity():
    clean, noisy = _rand_pair(6, h=20, w=17)
    got = M.ssim(noisy, clean)
    for i in range(2):
        assert got[i].item() == pytest.approx(_np_ssim(noisy[i].numpy(), clean[i].numpy()), abs=1e-12)
    assert torch.allclose(M.ssim(clean, clean), torch.ones(2, dtype=torch.float64))
    assert (got < 1).all()
    # unbatched input gives a 0-dim tensor
    assert M.ssim(noisy[0], clean[0]).shape == ()


def test_bad_inputs_raise():
    a = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match="same shape"):
        M.psnr(a, torch.rand(1, 3, 16, 15))
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        M.psnr(torch.rand(16, 16), torch.rand(16, 16))
    with pytest.raises(TypeError, match="float"):
        M.psnr(a.to(torch.uint8), a.to(torch.uint8))
    with pytest.raises(ValueError, match="11x11"):
        M.ssim(torch.rand(1, 3, 10, 30), torch.rand(1, 3, 10, 30))


# ------------------------------------------------------------------------------ noise correlation map


def test_noise_correlation_map_matches_numpy_corrcoef():
    g = torch.Generator().manual_seed(7)
    white = torch.randn(1, 3, 40, 40, generator=g, dtype=torch.float64)
    # horizontally correlated noise n(x) + n(x+1): correlation 0.5 at (0, +-1), 0 elsewhere
    corr = white[..., :, :-1] + white[..., :, 1:]
    cmap = M.noise_correlation_map(corr, radius=2, per_channel=True)
    assert cmap.shape == (1, 3, 5, 5)
    n = corr[0, 1].numpy()
    n = n - n.mean()
    a, b = n[:, :-1].ravel(), n[:, 1:].ravel()
    want = float(np.sum(a * b) / np.sqrt(np.sum(a * a) * np.sum(b * b)))
    assert cmap[0, 1, 2, 3].item() == pytest.approx(want, abs=1e-12)
    assert want == pytest.approx(np.corrcoef(a, b)[0, 1], abs=0.02)
    pooled = M.noise_correlation_map(corr, radius=2)
    assert pooled.shape == (1, 5, 5)
    assert pooled[0, 2, 2].item() == pytest.approx(1.0, abs=1e-12)
    assert pooled[0, 2, 3].item() == pytest.approx(0.5, abs=0.08)
    assert pooled[0, 2, 1].item() == pytest.approx(0.5, abs=0.08)
    assert abs(pooled[0, 1, 2].item()) < 0.08 and abs(pooled[0, 0, 0].item()) < 0.08
    # white noise: neighbours uncorrelated; correlated noise: clearly positive
    assert abs(M.neighbour_correlation(white).item()) < 0.05
    assert M.neighbour_correlation(corr).item() == pytest.approx(0.25, abs=0.05)
    # with a clean image, the noise is noisy - clean
    clean = torch.rand(1, 3, 40, 39, generator=g, dtype=torch.float64)
    assert torch.allclose(M.noise_correlation_map(clean + corr, clean, radius=2), pooled)


def test_metrics_run_on_device(device):
    clean, noisy = _rand_pair(8, h=16, w=16)
    clean, noisy = clean.to(device), noisy.to(device)
    for value in (
        M.kld(noisy, noisy, clean),
        M.akld(noisy, noisy, clean),
        M.psnr(noisy, clean),
        M.ssim(noisy, clean),
        M.neighbour_correlation(noisy, clean),
    ):
        assert value.shape == (2,) and value.device.type == device.type and torch.isfinite(value).all()
