from __future__ import annotations

import numpy as np
import pytest

from naflow_aug.data import sidd_blocks as sb

S = 4  # tiny blocks: the real layout with 4x4 instead of 256x256


def _blocks(seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, size=(40, 32, S, S, 3), dtype=np.uint8)


def test_scene_table_matches_the_reference_facts():
    assert len(sb.SCENES) == 40
    assert sb.SCENES[19] == "0093_004_IP_01250_00250_3200_L" and sb.CLASSES[19] == "IP_01250"
    assert sb.CAMERAS[0] == "S6" and sb.CLASSES[1] == "GP_10000"
    for cam in ("GP", "IP", "S6", "N6", "G4"):
        assert sb.CAMERAS.count(cam) == 8


def test_mat_round_trip_and_validation_reader(tmp_path):
    noisy, clean = _blocks(0), _blocks(1)
    sb.write_blocks_mat(tmp_path / "ValidationNoisyBlocksSrgb.mat", noisy, sb.VALIDATION_NOISY_KEY)
    sb.write_blocks_mat(tmp_path / "ValidationGtBlocksSrgb.mat", clean, sb.VALIDATION_GT_KEY)
    got = sb.read_blocks_mat(tmp_path / "ValidationNoisyBlocksSrgb.mat", block_size=S)
    assert got.dtype == np.uint8 and np.array_equal(got, noisy)
    val = sb.SiddValidation(tmp_path, images=[3, 19], blocks=[0, 31], block_size=S)
    items = list(val)
    assert [it.index for it in items] == [3, 19] and val.num_blocks == 4
    assert items[1].config == "IP_01250" and items[0].camera == "G4"
    assert np.array_equal(items[1].noisy, noisy[19, [0, 31]])
    assert np.array_equal(items[1].clean, clean[19, [0, 31]])


def test_mat_reader_rejects_bad_files(tmp_path):
    with pytest.raises(ValueError, match="not a readable"):
        (tmp_path / "corrupt.mat").write_bytes(b"MATLAB 5.0 garbage" * 10)
        sb.read_blocks_mat(tmp_path / "corrupt.mat")
    import scipy.io

    scipy.io.savemat(tmp_path / "wrongkey.mat", {"Foo": _blocks(0)})
    with pytest.raises(ValueError, match="expected exactly one of the keys"):
        sb.read_blocks_mat(tmp_path / "wrongkey.mat", block_size=S)
    with pytest.raises(ValueError, match="key 'BenchmarkNoisyBlocksSrgb' not found"):
        sb.read_blocks_mat(tmp_path / "wrongkey.mat", sb.BENCHMARK_NOISY_KEY)
    scipy.io.savemat(tmp_path / "shape.mat", {sb.BENCHMARK_NOISY_KEY: _blocks(0)[:39]})
    with pytest.raises(ValueError, match=r"expected shape \(40, 32"):
        sb.read_blocks_mat(tmp_path / "shape.mat", block_size=S)
    scipy.io.savemat(tmp_path / "size.mat", {sb.BENCHMARK_NOISY_KEY: _blocks(0)})
    with pytest.raises(ValueError, match=r"expected shape \(40, 32, 256"):
        sb.read_blocks_mat(tmp_path / "size.mat")
    scipy.io.savemat(tmp_path / "dtype.mat", {sb.BENCHMARK_NOISY_KEY: _blocks(0).astype(np.float32)})
    with pytest.raises(ValueError, match="dtype float32"):
        sb.read_blocks_mat(tmp_path / "dtype.mat", block_size=S)
    with pytest.raises(FileNotFoundError):
        sb.read_blocks_mat(tmp_path / "missing.mat")


def test_png_folder_reader(tmp_path):
    noisy, clean = _blocks(2)[:3, :2], _blocks(3)[:3, :2]
    sb.write_validation_png_folder(tmp_path / "validation", noisy, clean)
    lines = (tmp_path / "validation" / "validation_label.csv").read_text().splitlines()
    assert lines[0] == "0,0009_001_S6_00800_00350_3200_L"
    val = sb.SiddValidation(tmp_path)  # the parent folder is accepted too
    assert val.images == (0, 1, 2) and val.blocks == (0, 1)
    item = val.image(2)
    assert item.scene == sb.SCENES[2] and item.config == "N6_03200"
    assert np.array_equal(item.noisy, noisy[2]) and np.array_equal(item.clean, clean[2])
    with pytest.raises(ValueError, match="not available"):
        sb.SiddValidation(tmp_path, images=[5])
    with pytest.raises(ValueError, match="neither"):
        sb.SiddValidation(tmp_path / "validation" / "input")


def test_submission_round_trip_and_quantisation(tmp_path):
    blocks = _blocks(4)
    path = sb.write_submission(tmp_path / "SubmitSrgb.csv", blocks)
    header, first = path.read_text().splitlines()[:2]
    assert header == "ID,BLOCK" and first.startswith("0,")
    assert np.array_equal(sb.read_submission(path), blocks)
    # float input: clamp, round half up of x*255
    x = np.array([-0.1, 0.0, 0.5 / 255, 1.5 / 255, 127.5 / 255, 0.999, 1.2])
    assert sb.quantize_uint8(x).tolist() == [0, 0, 1, 2, 128, 255, 255]
    floats = blocks.astype(np.float32) / 255
    path2 = sb.write_submission(tmp_path / "f.csv", floats)
    assert np.array_equal(sb.read_submission(path2), blocks)
    (tmp_path / "bad.csv").write_text("ID,BLOCK\n0,@@@\n")
    with pytest.raises(ValueError, match="base64"):
        sb.read_submission(tmp_path / "bad.csv")


def test_scene_table_equals_the_reference_csv(shared_dir):
    import csv

    path = shared_dir / "reference" / "sidd-validation-benchmark-scenes.csv"
    if not path.is_file():
        pytest.skip(f"{path} is absent")
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    assert [r["scene"] for r in rows] == list(sb.SCENES)
    assert [f"{r['camera']}_{r['iso']}" for r in rows] == list(sb.CLASSES)
    assert [int(r["image_index"]) for r in rows] == list(range(40))
