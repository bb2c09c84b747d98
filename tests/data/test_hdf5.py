"""HDF5 parts, join (copy and virtual), structural checks and the reader Dataset (naflow_aug.data.hdf5)."""

from __future__ import annotations

import os
import shutil
import subprocess

import h5py
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, DistributedSampler

from naflow_aug.data import hdf5

H = W = 8
K = 2


def _meta(start: int, n: int) -> dict:
    return {
        "index": np.arange(start, start + n),
        "seed": np.arange(start, start + n) * 7,
        "crop": np.tile([0, 0, H, W], (n, 1)),
        "weights": np.tile([0.25, 0.75], (n, 1)),
        "source": [f"img{i}.png" for i in range(start, start + n)],
        "reference": [""] * n,
        "noise": ["stand-in"] * n,
        "label": [""] * n,
    }


def _images(start: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(start)
    clean = rng.integers(0, 256, (n, H, W, 3), dtype=np.uint8)
    noisy = rng.integers(0, 256, (n, H, W, 3), dtype=np.uint8)
    return clean, noisy


def _write_parts(parts, sizes, compression=None):
    parts.mkdir(parents=True, exist_ok=True)
    files, start = [], 0
    for p, n in enumerate(sizes):
        w = hdf5.PartWriter(hdf5.part_path(parts, p), start, n, H, W, K, compression)
        clean, noisy = _images(start, n)
        w.write(0, clean, noisy, _meta(start, n))
        files.append(w.commit())
        start += n
    return files


def test_part_is_invisible_until_committed_and_abort_leaves_nothing(tmp_path):
    path = hdf5.part_path(tmp_path, 3)
    w = hdf5.PartWriter(path, 6, 2, H, W, K)
    clean, noisy = _images(6, 2)
    w.write(0, clean[:1], noisy[:1], {k: v[:1] for k, v in _meta(6, 2).items()})
    assert not path.exists() and w.tmp.exists()
    with pytest.raises(RuntimeError, match="1 of 2 rows"):
        w.commit()
    w.write(1, clean[1:], noisy[1:], {k: v[1:] for k, v in _meta(6, 2).items()})
    w.commit()
    assert path.exists() and not w.tmp.exists()
    assert hdf5.read_part_info(path) == (6, 2)
    w2 = hdf5.PartWriter(hdf5.part_path(tmp_path, 4), 8, 2, H, W, K)
    w2.abort()
    assert list(tmp_path.iterdir()) == [path]


def test_torn_or_foreign_part_is_not_complete(tmp_path):
    torn = tmp_path / "part-00000.h5"
    torn.write_bytes(b"\x89HDF\r\n\x1a\n" + b"\0" * 100)
    assert hdf5.read_part_info(torn) is None
    with h5py.File(tmp_path / "part-00001.h5", "w") as f:
        f["clean"] = np.zeros((1, H, W, 3), np.uint8)
    assert hdf5.read_part_info(tmp_path / "part-00001.h5") is None
    (tmp_path / ".part-00002.h5.123.tmp").write_bytes(b"junk")
    (tmp_path / ".part-00003.h5.123.tmp").write_bytes(b"junk")
    assert hdf5.remove_stale_temporaries(tmp_path, [2]) == 1
    assert (tmp_path / ".part-00003.h5.123.tmp").exists()


@pytest.mark.parametrize("compression", [None, "lzf", "gzip"])
def test_copy_and_vds_joins_hold_the_same_data(tmp_path, compression):
    files = _write_parts(tmp_path / "o.h5.parts", [3, 3, 2], compression)
    attrs = {"classes": ["A", "B"], "seed": 0}
    hdf5.join_parts(tmp_path / "copy.h5", files, attrs, mode="copy")
    hdf5.join_parts(tmp_path / "o.h5", files, attrs, mode="vds")
    expected_clean = np.concatenate([_images(s, n)[0] for s, n in ((0, 3), (3, 3), (6, 2))])
    expected_noisy = np.concatenate([_images(s, n)[1] for s, n in ((0, 3), (3, 3), (6, 2))])
    for name, virtual in (("copy.h5", False), ("o.h5", True)):
        summary, problems = hdf5.check_structure(tmp_path / name)
        assert problems == [] and summary["complete"] and summary["virtual"] is virtual
        with h5py.File(tmp_path / name, "r") as f:
            assert f["clean"].chunks == (1, H, W, 3) or virtual
            np.testing.assert_array_equal(f["clean"][...], expected_clean)
            np.testing.assert_array_equal(f["noisy"][...], expected_noisy)
            np.testing.assert_array_equal(f["meta/index"][...], np.arange(8))
            assert f["meta/source"].asstr()[7] == "img7.png"
            assert f.attrs["join"] == ("copy" if not virtual else "vds")
    # the virtual file refers to its parts by a relative path: moving both together keeps it readable
    moved = tmp_path / "moved"
    moved.mkdir()
    shutil.move(tmp_path / "o.h5", moved / "o.h5")
    shutil.move(tmp_path / "o.h5.parts", moved / "o.h5.parts")
    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)  # not the file's folder
        with h5py.File(moved / "o.h5", "r") as f:
            np.testing.assert_array_equal(f["noisy"][...], expected_noisy)
    finally:
        os.chdir(cwd)
    # ... and a missing part is reported (HDF5 would silently read zeros)
    os.remove(moved / "o.h5.parts" / "part-00001.h5")
    _, problems = hdf5.check_structure(moved / "o.h5")
    assert any("part-00001.h5" in p and "missing" in p for p in problems)


def test_join_refuses_gaps_and_incomplete_parts(tmp_path):
    files = _write_parts(tmp_path / "p", [2, 2, 2])
    with pytest.raises(ValueError, match="starts at sample 4, expected 2"):
        hdf5.join_parts(tmp_path / "o.h5", [files[0], files[2]], {})
    (tmp_path / "p" / "bad.h5").write_bytes(b"nope")
    with pytest.raises(ValueError, match="not a complete part"):
        hdf5.join_parts(tmp_path / "o.h5", [files[0], tmp_path / "p" / "bad.h5"], {})
    assert not (tmp_path / "o.h5").exists()
    assert not list(tmp_path.glob(".o.h5.*"))


def test_check_structure_reports_inconsistent_metadata(tmp_path):
    files = _write_parts(tmp_path / "p", [2, 2])
    out = hdf5.join_parts(tmp_path / "o.h5", files, {"classes": ["A", "B"]})
    with h5py.File(out, "r+") as f:
        f["meta/index"][3] = 2  # a duplicated sample
        f["meta/weights"][0] = [0.9, 0.9]
        del f.attrs["complete"]
    _, problems = hdf5.check_structure(out)
    text = " | ".join(problems)
    assert "completion marker" in text and "duplicated or missing" in text and "sum to 1.8" in text
    _, problems = hdf5.check_structure(tmp_path / "absent.h5")
    assert "does not exist" in problems[0]


HDF5_TOOLS = shutil.which("h5ls") is not None and shutil.which("h5dump") is not None


@pytest.mark.skipif(not HDF5_TOOLS, reason="h5ls/h5dump absent (Debian: apt-get install hdf5-tools)")
def test_standard_tools_read_both_layouts(tmp_path):
    files = _write_parts(tmp_path / "o.h5.parts", [2, 1])
    hdf5.join_parts(tmp_path / "c.h5", files, {"classes": ["A", "B"]}, mode="copy")
    hdf5.join_parts(tmp_path / "o.h5", files, {"classes": ["A", "B"]}, mode="vds")
    expected = _images(2, 1)[1][0, 0, 0]
    for name in ("c.h5", "o.h5"):
        ls = subprocess.run(["h5ls", "-r", str(tmp_path / name)], capture_output=True, text=True, check=True)
        assert "/noisy" in ls.stdout and "{3, 8, 8, 3}" in ls.stdout and "/meta/weights" in ls.stdout
        dump = subprocess.run(
            ["h5dump", "-d", "/noisy", "-s", "2,0,0,0", "-c", "1,1,1,3", str(tmp_path / name)],
            capture_output=True, text=True, check=True, cwd="/",
        )  # fmt: skip
        assert f"(2,0,0,0): {expected[0]}, {expected[1]}, {expected[2]}" in dump.stdout


# ----------------------------------------------------------------------------------------------- reader


@pytest.fixture()
def two_files(tmp_path):
    paths = []
    for name, sizes in (("a.h5", [3, 2]), ("b.h5", [4])):
        files = _write_parts(tmp_path / (name + ".parts"), sizes)
        paths.append(hdf5.join_parts(tmp_path / name, files, {"classes": ["A", "B"]}))
    return paths


def test_dataset_spans_files_and_returns_float_chw(two_files):
    ds = hdf5.HDF5PairDataset(two_files)
    assert len(ds) == 9
    item = ds[6]  # file b, row 1
    clean_b, noisy_b = _images(0, 4)
    assert item["clean"].shape == (3, H, W) and item["clean"].dtype == torch.float32
    np.testing.assert_allclose(item["noisy"].permute(1, 2, 0).numpy() * 255, noisy_b[1], atol=1e-3)
    np.testing.assert_allclose(ds[-1]["clean"].permute(1, 2, 0).numpy() * 255, clean_b[3], atol=1e-3)
    with pytest.raises(IndexError):
        ds[9]


def test_crops_and_flips_are_identical_on_both_images(tmp_path):
    parts = tmp_path / "p"
    parts.mkdir()
    w = hdf5.PartWriter(hdf5.part_path(parts, 0), 0, 2, H, W, K)
    clean = np.arange(2 * H * W * 3, dtype=np.int64).reshape(2, H, W, 3).astype(np.uint8)
    w.write(0, clean, 255 - clean, _meta(0, 2))
    out = hdf5.join_parts(tmp_path / "o.h5", [w.commit()], {"classes": ["A", "B"]})
    ds = hdf5.HDF5PairDataset(out, crop=4, flips=True, generator=torch.Generator().manual_seed(0))
    seen = set()
    for _ in range(30):
        item = ds[1]
        assert item["clean"].shape == (3, 4, 4)
        torch.testing.assert_close(item["noisy"], 1.0 - item["clean"], atol=1e-6, rtol=0)
        seen.add(tuple(item["clean"][0, 0, :2].tolist()))
    assert len(seen) > 4  # crops and flips really vary
    with pytest.raises(ValueError, match="larger than"):
        hdf5.HDF5PairDataset(out, crop=16)


def test_dataset_refuses_unfinished_files(tmp_path):
    files = _write_parts(tmp_path / "p", [2])
    out = hdf5.join_parts(tmp_path / "o.h5", files, {})
    with h5py.File(out, "r+") as f:
        del f.attrs["complete"]
    with pytest.raises(ValueError, match="completion marker"):
        hdf5.HDF5PairDataset(out)
    assert len(hdf5.HDF5PairDataset(out, require_complete=False)) == 2
    with pytest.raises(ValueError, match="does not exist"):
        hdf5.HDF5PairDataset(tmp_path / "none.h5")


def test_dataloader_with_two_workers_and_distributed_sampler(two_files):
    ds = hdf5.HDF5PairDataset(two_files, crop=4, flips=True)
    seen = []
    for rank in (0, 1):
        sampler = DistributedSampler(ds, num_replicas=2, rank=rank, shuffle=True, seed=0)
        loader = DataLoader(ds, batch_size=2, sampler=sampler, num_workers=2, persistent_workers=False)
        for batch in loader:
            assert batch["clean"].shape[1:] == (3, 4, 4) and batch["noisy"].shape == batch["clean"].shape
            seen.append(batch["clean"].shape[0])
    assert sum(seen) == 10  # 9 samples padded to 2 x 5 by the sampler
    assert ds._files is None  # the parent process never opened the files


def test_stale_join_temporaries_are_removed(tmp_path):
    (tmp_path / ".o.h5.4242.tmp").write_bytes(b"partial join")
    (tmp_path / ".o.h5.notapid.tmp").write_bytes(b"someone else's")
    (tmp_path / ".other.h5.4242.tmp").write_bytes(b"another output's")
    assert hdf5.remove_stale_join_temporaries(tmp_path / "o.h5") == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == [".o.h5.notapid.tmp", ".other.h5.4242.tmp"]


def test_virtual_file_without_its_parts_is_refused_when_opened(tmp_path):
    """A --join vds file copied without <out>.parts/: the reader (hence bench --train) refuses, naming the
    missing part files, instead of serving the zeros HDF5 reads in their place."""
    files = _write_parts(tmp_path / "o.h5.parts", [3, 3, 2])
    hdf5.join_parts(tmp_path / "o.h5", files, {"classes": ["A", "B"]}, mode="vds")
    assert len(hdf5.HDF5PairDataset(tmp_path / "o.h5")) == 8  # with its parts: fine
    copied = tmp_path / "elsewhere"
    copied.mkdir()
    shutil.copy(tmp_path / "o.h5", copied / "o.h5")
    with pytest.raises(
        ValueError, match=r"o\.h5 is a virtual \(--join vds\) file whose part files are missing"
    ) as err:
        hdf5.HDF5PairDataset(copied / "o.h5")
    for name in ("part-00000.h5", "part-00001.h5", "part-00002.h5"):
        assert str(copied / "o.h5.parts" / name) in str(err.value)
    shutil.copytree(tmp_path / "o.h5.parts", copied / "o.h5.parts")
    os.remove(copied / "o.h5.parts" / "part-00001.h5")  # one part lost
    with pytest.raises(ValueError, match="part-00001.h5") as err:
        hdf5.HDF5PairDataset(copied / "o.h5")
    assert "part-00000.h5" not in str(err.value)
    _, problems = hdf5.check_structure(copied / "o.h5")  # verify names the same file, from the same check
    assert problems == [
        f"virtual source o.h5.parts/part-00001.h5 of {d} is missing" for d in ("/clean", "/noisy")
    ]
