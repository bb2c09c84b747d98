"""Image conversions: each rounding rule equals its defining formula, ties and precision included."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from naflow_aug import images


def _values() -> torch.Tensor:
    """float32 values in and around [0, 1]: random ones, every level, every tie (k + 0.5) / 255 and
    its float32 neighbours, and out-of-range ones."""
    k = torch.arange(256, dtype=torch.float64)
    ties = ((k[:-1] + 0.5) / 255).float()
    near = torch.cat([torch.nextafter(ties, ties + 1), torch.nextafter(ties, ties - 1)])
    rnd = torch.rand(5000, generator=torch.Generator().manual_seed(0), dtype=torch.float32) * 1.2 - 0.1
    edge = torch.tensor([0.0, -0.0, 1.0, -0.2, 1.7, 1e-9, -1e-9, float("inf"), -float("inf")])
    return torch.cat([(k / 255).float(), ties, near, rnd, edge])


def test_round_nearest_is_ties_to_even_in_the_images_dtype():
    x = _values()
    got = images.round_nearest(x)
    assert got.dtype == torch.uint8 and got.shape == x.shape
    want = torch.from_numpy(np.clip(np.round(x.numpy() * np.float32(255)), 0, 255).astype(np.uint8))
    assert torch.equal(got, want)
    assert images.round_nearest(torch.tensor([1.7, -0.2])).tolist() == [255, 0]


def test_exact_rules_compute_in_float64_and_differ_from_float32_on_some_inputs():
    x = _values()
    x64 = x.double().numpy()
    want_nearest = np.round(np.clip(x64, 0, 1) * 255).astype(np.uint8)
    assert np.array_equal(images.round_nearest_exact(x).numpy(), want_nearest)
    want_half_up = np.floor(np.clip(x64, 0, 1) * 255 + 0.5)
    assert np.array_equal(images.round_half_up_exact(x).numpy(), want_half_up)
    assert images.round_half_up_exact(x).dtype == torch.float64
    # the precision is part of the rule: float32 x * 255 lands on a tie that the exact product misses
    assert not torch.equal(images.round_nearest(x), images.round_nearest_exact(x))
    assert not torch.equal(images.round_half_up(x), images.round_half_up_exact(x).float())


def test_round_half_up_in_the_images_dtype():
    x = _values()
    got = images.round_half_up(x)
    assert got.dtype == torch.float32
    f = np.float32
    want = np.floor(np.clip(x.numpy(), f(0), f(1)) * f(255) + f(0.5))
    assert np.array_equal(got.numpy(), want)
    # ties go up: (k + 0.5) / 255 in float64 -> k + 1
    ties = (torch.arange(3, dtype=torch.float64) + 0.5) / 255
    assert images.round_half_up_exact(ties).tolist() == [1.0, 2.0, 3.0]


def test_to_float_is_division_by_255_and_leaves_its_input():
    levels = torch.arange(256, dtype=torch.uint8).reshape(1, 1, 16, 16)
    got = images.to_float(levels)
    assert got.dtype == torch.float32 and torch.equal(got, levels.float() / 255)
    assert torch.equal(images.to_float(levels, torch.float64), levels.double() / 255)
    assert torch.equal(images.round_nearest(got), levels)  # every level survives the round trip
    with pytest.raises(TypeError, match="uint8"):
        images.to_float(got)


def test_layouts_to_tensor_to_uint8_and_samples():
    rng = np.random.default_rng(1)
    hwc = rng.integers(0, 256, (5, 7, 3), dtype=np.uint8)
    chw = images.to_tensor(hwc)
    assert chw.shape == (3, 5, 7) and torch.equal(chw, torch.from_numpy(hwc).permute(2, 0, 1).float() / 255)
    assert np.array_equal(images.to_uint8(chw), hwc)
    batch = torch.rand(2, 3, 4, 6, generator=torch.Generator().manual_seed(2))
    out = images.samples_to_hwc(batch)
    assert out.shape == (2, 4, 6, 3) and out.dtype == np.uint8
    assert np.array_equal(out, images.round_nearest(batch).permute(0, 2, 3, 1).numpy())
    with pytest.raises(TypeError, match=r"\(3, H, W\)"):
        images.to_uint8(batch)
    with pytest.raises(TypeError, match="float"):
        images.to_uint8(torch.zeros(3, 2, 2, dtype=torch.uint8))
