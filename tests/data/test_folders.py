"""Paired folders (two folders, naming rule, CSV manifest) and clean-only folders."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from naflow_aug.data.folders import (
    CleanFolderDataset,
    PairedFolderDataset,
    iter_images,
    scan_paired_folders,
)
from naflow_aug.data.images import write_png


def _img(seed: int, h: int = 16, w: int = 20) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(h, w, 3), dtype=np.uint8)


def test_two_folders_same_names(tmp_path):
    for i, name in enumerate(["a.png", "sub/b.png"]):
        write_png(tmp_path / "noisy" / name, _img(i))
        write_png(tmp_path / "clean" / name, _img(10 + i))
    recs = list(scan_paired_folders(tmp_path, label="S6_00100"))
    assert [(r.noisy_path.name, r.clean_path.name, r.cls) for r in recs] == [
        ("a.png", "a.png", "S6_00100"),
        ("b.png", "b.png", "S6_00100"),
    ]
    assert recs[1].clean_path == tmp_path / "clean" / "sub" / "b.png"
    ds = PairedFolderDataset(tmp_path, crop_size=8, generator=torch.Generator().manual_seed(0))
    item = ds[0]
    assert item["clean"].shape == (3, 8, 8) and item["cls"] == "unlabelled" and item["label"] == 0
    # same window on both: with augment off and a full-size crop the images come back exactly
    full = PairedFolderDataset(tmp_path, augment=False)
    assert torch.equal(full[0]["noisy"], torch.from_numpy(_img(0)).permute(2, 0, 1).float() / 255)
    assert torch.equal(full[0]["clean"], torch.from_numpy(_img(10)).permute(2, 0, 1).float() / 255)


def test_two_folders_errors(tmp_path):
    write_png(tmp_path / "noisy" / "a.png", _img(0))
    write_png(tmp_path / "clean" / "a.png", _img(1))
    write_png(tmp_path / "noisy" / "b.png", _img(2))
    with pytest.raises(ValueError, match=r"b.png: its clean partner .*b.png is missing"):
        list(scan_paired_folders(tmp_path))
    (tmp_path / "noisy" / "b.png").unlink()
    write_png(tmp_path / "clean" / "c.png", _img(3))
    with pytest.raises(ValueError, match=r"c.png: clean image without a noisy partner"):
        list(scan_paired_folders(tmp_path))
    (tmp_path / "clean" / "c.png").unlink()
    write_png(tmp_path / "clean" / "a.png", _img(1, h=12))
    with pytest.raises(ValueError, match=r"a.png: size 16x20 differs from its clean partner"):
        list(scan_paired_folders(tmp_path))
    with pytest.raises(ValueError, match="expected subfolders"):
        list(scan_paired_folders(tmp_path / "noisy"))


def test_naming_rule_in_one_folder(tmp_path):
    write_png(tmp_path / "x_NOISY_1.png", _img(0))
    write_png(tmp_path / "x_GT_1.png", _img(1))
    write_png(tmp_path / "y_NOISY_1.png", _img(2))
    write_png(tmp_path / "y_GT_1.png", _img(3))
    recs = list(scan_paired_folders(tmp_path, noisy_token="NOISY", clean_token="GT"))
    assert [(r.noisy_path.name, r.clean_path.name) for r in recs] == [
        ("x_NOISY_1.png", "x_GT_1.png"),
        ("y_NOISY_1.png", "y_GT_1.png"),
    ]
    write_png(tmp_path / "z_GT_1.png", _img(4))
    with pytest.raises(ValueError, match=r"z_GT_1.png: its noisy partner z_NOISY_1.png is missing"):
        list(scan_paired_folders(tmp_path, noisy_token="NOISY", clean_token="GT"))
    with pytest.raises(ValueError, match="different"):
        list(scan_paired_folders(tmp_path, noisy_token="GT", clean_token="GT"))


def test_manifest_with_labels(tmp_path):
    write_png(tmp_path / "n1.png", _img(0))
    write_png(tmp_path / "c1.png", _img(1))
    write_png(tmp_path / "n2.png", _img(2))
    write_png(tmp_path / "c2.png", _img(3))
    m = tmp_path / "pairs.csv"
    m.write_text("noisy,clean,class\nn1.png,c1.png,IP_00800\nn2.png,c2.png,S6_00100\n")
    ds = PairedFolderDataset(manifest=m, classes=["S6_00100", "IP_00800"], augment=False)
    assert [ds[i]["label"] for i in range(2)] == [1, 0]
    assert [ds[i]["cls"] for i in range(2)] == ["IP_00800", "S6_00100"]
    with pytest.raises(ValueError, match="not in the given classes"):
        PairedFolderDataset(manifest=m, classes=["S6_00100"])
    m.write_text("noisy,clean,colour\nn1.png,c1.png,red\n")
    with pytest.raises(ValueError, match="header"):
        list(scan_paired_folders(manifest=m))
    m.write_text("noisy,clean\nn1.png,missing.png\n")
    with pytest.raises(FileNotFoundError, match="missing.png"):
        list(scan_paired_folders(manifest=m))


def test_clean_folder(tmp_path):
    write_png(tmp_path / "a.png", _img(0, 19, 21))
    write_png(tmp_path / "deep" / "b.png", _img(1, 30, 30))
    (tmp_path / "notes.txt").write_text("not an image")
    it = iter_images(tmp_path)
    assert next(it).name == "a.png"  # lazy
    ds = CleanFolderDataset(tmp_path, size_multiple=8)
    assert len(ds) == 2
    assert ds[0]["clean"].shape == (3, 16, 16) and ds[1]["clean"].shape == (3, 24, 24)
    assert torch.equal(
        ds[0]["clean"], torch.from_numpy(_img(0, 19, 21)[:16, :16]).permute(2, 0, 1).float() / 255
    )
    crops = CleanFolderDataset(tmp_path, crop_size=12, generator=torch.Generator().manual_seed(0))
    assert crops[1]["clean"].shape == (3, 12, 12)
    with pytest.raises(ValueError, match=r"a.png: crop 20x20 is larger"):
        CleanFolderDataset(tmp_path, crop_size=20)[0]
    (tmp_path / "broken.png").write_bytes(b"nope")
    broken = CleanFolderDataset(tmp_path)
    with pytest.raises(ValueError, match="broken.png"):
        broken[[p.name for p in broken.paths].index("broken.png")]
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no image files"):
        CleanFolderDataset(tmp_path / "empty")
    with pytest.raises(FileNotFoundError, match="nowhere"):
        CleanFolderDataset(tmp_path / "nowhere")
