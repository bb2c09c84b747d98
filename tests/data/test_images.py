"""PNG helpers: round trips, conversions, clear errors naming the file."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from naflow_aug.data.images import image_size, load_image, read_image, to_tensor, to_uint8, write_png


def test_png_round_trip_uint8_and_float(tmp_path):
    rng = np.random.default_rng(0)
    arr = rng.integers(0, 256, size=(7, 5, 3), dtype=np.uint8)
    p = write_png(tmp_path / "sub" / "a.png", arr)
    assert image_size(p) == (7, 5)
    assert np.array_equal(read_image(p), arr)
    t = load_image(p)
    assert t.shape == (3, 7, 5) and t.dtype == torch.float32
    assert torch.equal(t, torch.from_numpy(arr).permute(2, 0, 1).float() / 255)
    write_png(tmp_path / "b.png", t)
    assert np.array_equal(read_image(tmp_path / "b.png"), arr)
    assert np.array_equal(to_uint8(to_tensor(arr)), arr)
    # rounding to nearest and clamping
    assert to_uint8(torch.tensor([0.5 / 255 + 1e-4, 1.7, -0.2]).reshape(3, 1, 1)).ravel().tolist() == [
        1,
        255,
        0,
    ]


def test_grey_and_rgba_become_rgb(tmp_path):
    Image.fromarray(np.full((4, 6), 9, np.uint8)).save(tmp_path / "g.png")
    Image.fromarray(np.full((4, 6, 4), 200, np.uint8)).save(tmp_path / "a.png")
    assert read_image(tmp_path / "g.png").shape == (4, 6, 3)
    assert (read_image(tmp_path / "g.png") == 9).all()
    assert read_image(tmp_path / "a.png").shape == (4, 6, 3)


def test_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.png"):
        read_image(tmp_path / "missing.png")
    bad = tmp_path / "corrupt.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(ValueError, match="corrupt.png"):
        read_image(bad)
    with pytest.raises(ValueError, match="corrupt.png"):
        image_size(bad)
    # a truncated PNG: the header reads, the pixels do not
    good = write_png(tmp_path / "good.png", np.random.default_rng(1).integers(0, 256, (64, 64, 3), np.uint8))
    trunc = tmp_path / "truncated.png"
    trunc.write_bytes(good.read_bytes()[:200])
    assert image_size(trunc) == (64, 64)
    with pytest.raises(ValueError, match="truncated.png"):
        read_image(trunc)
    Image.fromarray(np.full((3, 3), 4000, np.uint16)).save(tmp_path / "deep.png")
    with pytest.raises(ValueError, match="16-bit"):
        read_image(tmp_path / "deep.png")
    with pytest.raises(TypeError, match="uint8"):
        to_tensor(np.zeros((3, 3, 3), np.float32))
    with pytest.raises(TypeError, match=r"\(3, H, W\)"):
        to_uint8(torch.zeros(4, 3, 3))
