"""SIDD-Medium reader: scan, dataset crops/augmentation, filters, sampler, errors, split, real data."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from naflow_aug.data.images import write_png
from naflow_aug.data.sidd import (
    ClassBalancedSampler,
    SiddMediumDataset,
    load_split,
    parse_instance_folder,
    random_paired_crop,
    scan_sidd_medium,
)

FOLDERS = [
    ("0001_001_S6_00100_00020_3200_N", 2, (20, 24)),
    ("0002_001_S6_00100_00060_3200_H", 1, (18, 30)),
    ("0003_002_IP_01600_01000_5500_L", 1, (16, 16)),
    ("0004_002_IP_01600_00800_4400_N", 2, (22, 17)),
    ("0005_003_GP_00800_00640_5500_L", 1, (16, 20)),
]


def make_sidd(root: Path, folders=FOLDERS, seed: int = 0) -> Path:
    rng = np.random.default_rng(seed)
    for name, shots, (h, w) in folders:
        inst = name[:4]
        for s in range(shots):
            clean = rng.integers(20, 230, size=(h, w, 3), dtype=np.uint8)
            noisy = np.clip(clean.astype(int) + rng.integers(-10, 11, size=clean.shape), 0, 255).astype(
                np.uint8
            )
            write_png(root / "Data" / name / f"{inst}_GT_SRGB_01{s}.PNG", clean)
            write_png(root / "Data" / name / f"{inst}_NOISY_SRGB_01{s}.PNG", noisy)
    return root


@pytest.fixture
def sidd(tmp_path) -> Path:
    return make_sidd(tmp_path / "sidd")


def test_parse_folder_name():
    meta = parse_instance_folder("0052_002_S6_01600_01000_5500_N")
    assert meta == {
        "instance": "0052",
        "scene": "002",
        "phone": "S6",
        "iso": 1600,
        "shutter": 1000,
        "temperature": 5500,
        "brightness": "N",
        "cls": "S6_01600",
    }
    with pytest.raises(ValueError, match="0052_S6"):
        parse_instance_folder("0052_S6_01600")


def test_scan_is_lazy_and_complete(sidd):
    it = scan_sidd_medium(sidd)
    assert iter(it) is it  # a generator, not a list
    pairs = list(it)
    assert len(pairs) == 7
    assert [p.sidd.shot for p in pairs if p.instance == "0001"] == ["010", "011"]
    p = pairs[0]
    assert (p.cls, p.sidd.phone, p.sidd.iso, p.sidd.brightness, p.height, p.width) == (
        "S6_00100", "S6", 100, "N", 20, 24)  # fmt: skip
    assert p.name == f"{p.sidd.folder}/010" and p.instance == "0001"
    assert p.clean_path.name == "0001_GT_SRGB_010.PNG" and p.noisy_path.name == "0001_NOISY_SRGB_010.PNG"
    # root or root/Data both work
    assert len(list(scan_sidd_medium(sidd / "Data"))) == 7


def test_dataset_items_and_same_crop(sidd):
    ds = SiddMediumDataset(sidd, crop_size=8, augment=False, generator=torch.Generator().manual_seed(0))
    assert ds.classes == ["GP_00800", "IP_01600", "S6_00100"]
    item = ds[0]
    assert item["clean"].shape == (3, 8, 8) and item["clean"].dtype == torch.float32
    assert item["noisy"].shape == (3, 8, 8)
    assert (item["label"], item["cls"], item["instance"]) == (2, "S6_00100", "0001")
    assert item["path"].endswith("0001_NOISY_SRGB_010.PNG")
    assert 0 <= item["clean"].min() and item["clean"].max() <= 1
    # the same window on both images: the noise is the small one we wrote (|n| <= 10 levels)
    assert (item["noisy"] - item["clean"]).abs().max() <= 10 / 255 + 1e-6
    # full image when crop_size is None, any size
    full = SiddMediumDataset(sidd, augment=False)
    assert full[1]["clean"].shape == (3, 20, 24) and full[2]["clean"].shape == (3, 18, 30)


def test_crop_is_a_window_of_the_image_with_flips_and_rotations():
    clean = torch.arange(2 * 6 * 6, dtype=torch.uint8).reshape(2, 6, 6)
    noisy = clean + 100
    g = torch.Generator().manual_seed(3)
    seen = set()
    for _ in range(60):
        c, n = random_paired_crop(clean, noisy, 4, generator=g)
        assert torch.equal(n, c + 100)  # identical geometry on both
        seen.add(tuple(c[0].flatten().tolist()))
        # every output is a transformed 4x4 window of the source
        assert any(
            torch.equal(torch.rot90(c[0], -k, (0, 1)).flip(f), clean[0, t : t + 4, l : l + 4])
            for k in range(4)
            for f in ([], [0], [1], [0, 1])
            for t in range(3)
            for l in range(3)
        )
    assert len(seen) > 20
    # non-square crops keep their shape (no 90-degree turns)
    for _ in range(10):
        c, _ = random_paired_crop(clean, noisy, (2, 5), generator=g)
        assert c.shape == (2, 2, 5)
    # same generator state -> same crop
    a = random_paired_crop(clean, noisy, 3, generator=torch.Generator().manual_seed(9))
    b = random_paired_crop(clean, noisy, 3, generator=torch.Generator().manual_seed(9))
    assert torch.equal(a[0], b[0])


def test_filters_and_explicit_classes(sidd):
    ds = SiddMediumDataset(sidd, include_classes=["IP_01600"], augment=False)
    assert {it["cls"] for it in (ds[i] for i in range(len(ds)))} == {"IP_01600"} and len(ds) == 3
    ds = SiddMediumDataset(sidd, instances=["0001", "0005_003_GP_00800_00640_5500_L"])
    assert sorted({p.instance for p in ds.pairs}) == ["0001", "0005"]
    ds = SiddMediumDataset(sidd, exclude_instances=["0001"])
    assert len(ds) == 5
    order = ["IP_01600", "S6_00100", "GP_00800", "N6_03200"]
    ds = SiddMediumDataset(sidd, classes=order, crop_size=16, augment=False)
    assert ds[0]["label"] == 1 and ds.classes == order
    with pytest.raises(ValueError, match="S6_00100.*not in the given classes"):
        SiddMediumDataset(sidd, classes=["IP_01600"])
    with pytest.raises(ValueError, match="unknown class"):
        SiddMediumDataset(sidd, include_classes=["XX_00100"])
    with pytest.raises(ValueError, match="unknown scene instance"):
        SiddMediumDataset(sidd, instances=["9999"])


def test_preload_gives_same_items(sidd):
    a = SiddMediumDataset(sidd, crop_size=8, generator=torch.Generator().manual_seed(1))
    b = SiddMediumDataset(sidd, crop_size=8, preload=True, generator=torch.Generator().manual_seed(1))
    for i in range(len(a)):
        x, y = a[i], b[i]
        assert torch.equal(x["clean"], y["clean"]) and torch.equal(x["noisy"], y["noisy"])
    batch = next(iter(DataLoader(b, batch_size=4)))
    assert batch["clean"].shape == (4, 3, 8, 8) and batch["label"].dtype == torch.int64


def test_class_balanced_sampler():
    labels = [0] * 90 + [1] * 9 + [2]
    s = ClassBalancedSampler(labels, num_samples=3000, generator=torch.Generator().manual_seed(0))
    idx = list(s)
    assert len(idx) == len(s) == 3000
    counts = Counter(labels[i] for i in idx)
    for c in range(3):
        assert 850 < counts[c] < 1150, counts  # uniform over classes, not over items
    assert len({i for i in idx if labels[i] == 0}) > 60  # items within a class are all reachable
    again = list(ClassBalancedSampler(labels, num_samples=3000, generator=torch.Generator().manual_seed(0)))
    assert again == idx


def test_errors_name_the_file(tmp_path):
    root = make_sidd(tmp_path / "a", FOLDERS[:2])
    (root / "Data" / FOLDERS[0][0] / "0001_GT_SRGB_011.PNG").unlink()
    with pytest.raises(
        ValueError, match=r"0001_NOISY_SRGB_011.PNG.*GT partner 0001_GT_SRGB_011.PNG is missing"
    ):
        list(scan_sidd_medium(root))

    root = make_sidd(tmp_path / "b", FOLDERS[:2])
    write_png(root / "Data" / FOLDERS[1][0] / "0002_NOISY_SRGB_010.PNG", np.zeros((5, 5, 3), np.uint8))
    with pytest.raises(ValueError, match=r"0002_NOISY_SRGB_010.PNG: size 5x5 differs"):
        list(scan_sidd_medium(root))

    root = make_sidd(tmp_path / "c", FOLDERS[:2])
    (root / "Data" / FOLDERS[1][0] / "0002_NOISY_SRGB_010.PNG").write_bytes(b"garbage")
    with pytest.raises(ValueError, match="0002_NOISY_SRGB_010.PNG"):
        list(scan_sidd_medium(root))

    root = make_sidd(tmp_path / "d", FOLDERS[:2])
    (root / "Data" / "not_a_sidd_folder").mkdir()
    with pytest.raises(ValueError, match="not_a_sidd_folder"):
        list(scan_sidd_medium(root))

    root = make_sidd(tmp_path / "e", FOLDERS[:2])
    write_png(root / "Data" / FOLDERS[1][0] / "0002_noisy.png", np.zeros((5, 5, 3), np.uint8))
    with pytest.raises(ValueError, match="0002_noisy.png"):
        list(scan_sidd_medium(root))

    root = make_sidd(tmp_path / "f", FOLDERS[:2])
    with pytest.raises(
        ValueError, match=r"0002_NOISY_SRGB_010.PNG: crop 19x19 is larger than the image \(18x30\)"
    ):
        SiddMediumDataset(root, crop_size=19)

    with pytest.raises(FileNotFoundError, match="nowhere"):
        list(scan_sidd_medium(tmp_path / "nowhere"))


def test_split_file_is_consistent():
    train, val = load_split("sidd-mini")
    assert 10 <= len(val) <= 14 and len(train) > len(val)
    assert not set(train) & set(val)
    assert all(len(i) == 4 and i.isdigit() for i in train + val)
    with pytest.raises(ValueError, match="unknown split"):
        load_split("nope")


def test_split_file_errors(tmp_path):
    p = tmp_path / "s.toml"
    p.write_text('train = ["0001"]\nval = ["0001"]\n')
    with pytest.raises(ValueError, match="both train and val"):
        load_split(p)
    p.write_text('train = ["0001"]\nval = ["0002"]\nextra = 1\n')
    with pytest.raises(ValueError, match="unknown keys"):
        load_split(p)
    p.write_text('train = ["0001"]\nval = ["0002"]\n')
    assert load_split(p) == (["0001"], ["0002"])


def test_real_sidd_medium_mini(shared_dir):
    root = shared_dir / "data" / "sidd-medium-mini"
    if not root.is_dir():
        pytest.skip(f"{root} is absent")
    pairs = list(scan_sidd_medium(root))
    instances = {p.instance for p in pairs}
    classes = {p.cls for p in pairs}
    # what the data README says: 72 pairs, 58 instances, 24 classes
    assert (len(pairs), len(instances), len(classes)) == (72, 58, 24)
    train, val = load_split("sidd-mini")
    assert set(train) | set(val) == instances
    cls_of = {p.instance: p.cls for p in pairs}
    train_classes = {cls_of[i] for i in train}
    val_classes = {cls_of[i] for i in val}
    assert val_classes <= train_classes  # every held-out class has training instances
    assert len(val_classes) == len(val)  # one held-out instance per class: as many classes as possible
    ds = SiddMediumDataset(root, crop_size=64, instances=val, classes=sorted(classes), preload=False)
    item = ds[0]
    assert item["clean"].shape == (3, 64, 64) and item["cls"] in val_classes
    assert ds.classes[item["label"]] == item["cls"]
