"""The decoded-image cache (naflow-aug prepare): build, read, crops equal to PNG crops, kill -9 + resume,
checksums, and every job reading a cache as it reads the source folder."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from naflow_aug.cli import main as cli_main
from naflow_aug.data import SiddMediumDataset, open_cache, prepare_cache
from naflow_aug.data.folders import iter_images, scan_paired_folders
from naflow_aug.data.images import image_size, read_crop, read_image
from naflow_aug.data.sidd import scan_sidd_medium
from naflow_aug.data.simcam import DEFAULT_CAMERAS, write_simulated_sidd


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> Path:
    """Simulated SIDD-Medium layout: 3 configurations x 2 scenes, two shots per folder, 40-64 pixels."""
    root = tmp_path_factory.mktemp("sim")
    write_simulated_sidd(root, seed=0, cameras=DEFAULT_CAMERAS[:3], scenes_per_config=2,
                         size_range=(40, 64), shots=2)  # fmt: skip
    return root


@pytest.fixture(scope="module")
def cache(sim, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("cache") / "c"
    prepare_cache(sim, out, progress=False)
    return out


def _tree(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_build_records_metadata_checksums_and_the_decoded_pixels(sim, cache):
    c = open_cache(cache, verify=True)
    pairs = list(scan_sidd_medium(sim))
    assert c.kind == "sidd" and len(c.items) == len(pairs) == 12
    manifest = json.loads((cache / "manifest.json").read_text())
    assert manifest["complete"] is True and manifest["format"] == "naflow-aug-cache/1"
    for it, p in zip(c.items, pairs, strict=True):
        assert it.meta == {"folder": p.sidd.folder, "shot": p.sidd.shot, "instance": p.instance,
                           "class": p.cls, "brightness": p.sidd.brightness, "split": None}  # fmt: skip
        for array, source in ((it.clean, p.clean_path), (it.noisy, p.noisy_path)):
            data = (cache / array.file).read_bytes()
            assert hashlib.sha256(data).hexdigest() == array.sha256 and len(data) == array.bytes
            assert array.source == str(source.relative_to(sim))
            assert array.source_bytes == source.stat().st_size
            np.testing.assert_array_equal(read_image(cache / array.file), read_image(source))
            assert array.shape == (p.height, p.width, 3)
    # the scanner gives the same pairs from the cache, with its arrays and the sizes
    cached = list(scan_sidd_medium(cache))
    assert [(q.sidd, q.cls, q.instance, q.height, q.width) for q in cached] == [
        (p.sidd, p.cls, p.instance, p.height, p.width) for p in pairs]  # fmt: skip
    assert all(q.clean_path.suffix == ".npy" and q.clean_path.parent == cache / "arrays" for q in cached)


def test_read_crop_of_an_array_equals_the_decoded_window(cache):
    path = next((cache / "arrays").glob("*.npy"))
    image = read_image(path)
    assert image_size(path) == image.shape[:2]
    np.testing.assert_array_equal(read_crop(path, 3, 5, 16, 20), image[3:19, 5:25])
    with pytest.raises(ValueError, match="does not fit"):
        read_crop(path, 0, 0, image.shape[0] + 1, 4)


def test_cache_crops_equal_png_crops(sim, cache):
    """SiddMediumDataset and the training batches draw the same crops, flips and pairs from either."""
    png, cached = (SiddMediumDataset(root, crop_size=(24, 16)) for root in (sim, cache))
    preloaded = SiddMediumDataset(sim, crop_size=(24, 16), preload=True)  # crops of decoded tensors
    assert png.classes == cached.classes and png.labels == cached.labels
    for i in range(len(png)):
        for crop_size in ((24, 16), (24, 24)):  # odd quarter turns only for square crops
            png.crop_size = cached.crop_size = preloaded.crop_size = crop_size
            a, b, c = [], [], []
            for seed in range(4):  # different flips and turns
                for ds, out in ((png, a), (cached, b), (preloaded, c)):
                    torch.manual_seed(100 * i + seed)
                    out.append(ds[i])
            for x, y, z in zip(a, b, c, strict=True):
                assert torch.equal(x["clean"], y["clean"]) and torch.equal(x["noisy"], y["noisy"])
                assert torch.equal(z["clean"], y["clean"]) and torch.equal(z["noisy"], y["noisy"])
                assert (x["label"], x["instance"]) == (y["label"], y["instance"])
    sampler = cached.balanced_sampler(num_samples=64, generator=torch.Generator().manual_seed(0))
    assert list(sampler) == list(png.balanced_sampler(64, generator=torch.Generator().manual_seed(0)))

    from naflow_aug import train as training

    config = training.preset("cpu").replace(batch_size=4, crop_size=16, steps=3)
    batches = []
    for root in (sim, cache):
        pairs = training.scan_pairs(root)
        labels = sorted({p.cls for p in pairs})
        ids = [labels.index(p.cls) for p in pairs]
        batches.append([training.StepBatches(pairs, ids, len(labels), config, 0, None)[s] for s in range(3)])
    for a, b in zip(*batches, strict=True):
        assert all(torch.equal(a[k], b[k]) for k in ("noisy", "clean", "labels"))


def test_paired_and_clean_folders(tmp_path):
    rng = np.random.default_rng(0)
    for sub in ("noisy", "clean"):
        (tmp_path / "pairs" / sub / "a").mkdir(parents=True)
    (tmp_path / "photos" / "b").mkdir(parents=True)
    for name in ("x.png", "a/y.png", "z.png"):
        clean = rng.integers(0, 256, (20, 28, 3), dtype=np.uint8)
        Image.fromarray(clean).save(tmp_path / "pairs" / "clean" / name)
        Image.fromarray(255 - clean).save(tmp_path / "pairs" / "noisy" / name)
        Image.fromarray(clean).save(tmp_path / "photos" / name.replace("a/", "b/"))
    prepare_cache(tmp_path / "pairs", tmp_path / "pc", progress=False)
    prepare_cache(tmp_path / "photos", tmp_path / "cc", progress=False)
    src, got = list(scan_paired_folders(tmp_path / "pairs")), list(scan_paired_folders(tmp_path / "pc"))
    assert [(r.cls, r.instance, r.height, r.width) for r in src] == [
        (r.cls, r.instance, r.height, r.width) for r in got]  # fmt: skip
    for r, q in zip(src, got, strict=True):
        np.testing.assert_array_equal(read_image(r.noisy_path), read_image(q.noisy_path))
    images, arrays = list(iter_images(tmp_path / "photos")), list(iter_images(tmp_path / "cc"))
    assert len(images) == len(arrays) == 3
    for p, q in zip(images, arrays, strict=True):  # the same walk order as the source folder
        np.testing.assert_array_equal(read_image(p), read_image(q))
    assert open_cache(tmp_path / "cc").kind == "clean"
    with pytest.raises(ValueError, match="clean images only"):
        list(scan_paired_folders(tmp_path / "cc"))
    with pytest.raises(ValueError, match="not of a SIDD-Medium folder"):
        list(scan_sidd_medium(tmp_path / "pc"))


def test_checksum_mismatch_and_damage_are_refused(sim, cache, tmp_path):
    import shutil

    bad = tmp_path / "bad"
    shutil.copytree(cache, bad)
    victim = sorted((bad / "arrays").glob("*.npy"))[3]
    data = bytearray(victim.read_bytes())
    data[-1] ^= 0xFF  # same size, same header: only the checksum can tell
    victim.write_bytes(bytes(data))
    open_cache(bad)  # the quick check on open reads headers and sizes only
    with pytest.raises(ValueError, match=f"{victim}: checksum mismatch"):
        open_cache(bad, verify=True)
    assert cli_main(["prepare", "--verify", "--out", str(bad), "--no-progress"]) == 2
    victim.write_bytes(bytes(data[:-10]))  # truncated: refused by every reader on open
    with pytest.raises(ValueError, match=f"{victim}: .* bytes, the manifest records"):
        SiddMediumDataset(bad, crop_size=8)
    victim.unlink()
    with pytest.raises(ValueError, match="missing from the cache"):
        list(scan_sidd_medium(bad))


def test_incomplete_cache_and_changed_source_are_refused(sim, tmp_path):
    import shutil

    src = tmp_path / "src"
    shutil.copytree(sim, src)
    out = tmp_path / "c"
    prepare_cache(src, out, progress=False)
    manifest = json.loads((out / "manifest.json").read_text())
    manifest["items"][5]["done"] = False
    manifest["complete"] = False
    (out / "manifest.json").write_text(json.dumps(manifest))
    with pytest.raises(ValueError, match="incomplete .*--resume"):
        open_cache(out)
    with pytest.raises(ValueError, match="holds a cache already; pass resume"):
        prepare_cache(src, out, progress=False)
    png = next((src / "Data").rglob("*GT*"))
    os.utime(png, ns=(png.stat().st_atime_ns, png.stat().st_mtime_ns + 10**9))
    with pytest.raises(ValueError, match="changed in the source"):
        prepare_cache(src, out, resume=True, progress=False)


def _write_slow_source(root: Path, n: int = 24, size: int = 384) -> Path:
    """SIDD-layout pairs of incompressible noise: each item takes some milliseconds to decode."""
    rng = np.random.default_rng(1)
    for i in range(1, n + 1):
        d = root / "Data" / f"{i:04d}_001_S6_00100_00060_3200_L"
        d.mkdir(parents=True)
        for kind in ("GT", "NOISY"):
            Image.fromarray(rng.integers(0, 256, (size, size, 3), dtype=np.uint8)).save(
                d / f"{i:04d}_{kind}_SRGB_010.PNG", compress_level=1)  # fmt: skip
    return root


def test_killed_build_resumed_equals_an_uninterrupted_one(tmp_path):
    src = _write_slow_source(tmp_path / "src")
    reference = tmp_path / "ref"
    prepare_cache(src, reference, progress=False)
    out = tmp_path / "killed"
    cmd = [sys.executable, "-m", "naflow_aug.cli", "prepare", "--data", str(src), "--out", str(out),
           "--no-progress"]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    manifest = out / "manifest.json"
    deadline = time.monotonic() + 120
    done = 0
    while time.monotonic() < deadline and proc.poll() is None:
        try:
            done = sum(it["done"] for it in json.loads(manifest.read_text())["items"])
        except (FileNotFoundError, json.JSONDecodeError, KeyError):
            done = 0
        if done:
            break
        time.sleep(0.005)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = json.loads(manifest.read_text())
    assert not state["complete"], "the build finished before it could be killed"
    done = sum(it["done"] for it in state["items"])
    assert 0 < done < len(state["items"])
    with pytest.raises(ValueError, match="incomplete"):
        open_cache(out)
    assert cli_main(["prepare", "--data", str(src), "--out", str(out), "--resume", "--no-progress"]) == 0
    assert _tree(out) == _tree(reference)  # manifest and arrays byte for byte; no temporaries left
    assert cli_main(["prepare", "--data", str(src), "--out", str(out), "--resume", "--no-progress"]) == 0


def test_cli_with_worker_processes_and_errors(sim, cache, tmp_path, capsys):
    out = tmp_path / "c2"
    (tmp_path / "split.toml").write_text('train = ["0001", "0002"]\nval = ["0003"]\n')
    argv = ["prepare", "--data", str(sim), "--out", str(out), "--workers", "2", "--split",
            str(tmp_path / "split.toml"), "--no-progress"]  # fmt: skip
    assert cli_main(argv) == 0
    assert "12 sidd items, 24 arrays" in capsys.readouterr().out
    ref, got = _tree(cache), _tree(out)
    assert {k: v for k, v in got.items() if k != "manifest.json"} == {
        k: v for k, v in ref.items() if k != "manifest.json"}  # fmt: skip
    items = json.loads(got["manifest.json"])["items"]
    parts = {it["meta"]["instance"]: it["meta"]["split"] for it in items}
    expected = {"0001": "train", "0002": "train", "0003": "val", "0004": None, "0005": None, "0006": None}
    assert parts == expected
    assert cli_main(["prepare", "--verify", "--out", str(out), "--no-progress"]) == 0
    assert "checksums match" in capsys.readouterr().out
    assert cli_main(argv) == 2
    assert "holds a cache already" in capsys.readouterr().err
    assert cli_main(["prepare", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("naflow-aug prepare: error: ") and err.count("\n") == 1
    assert cli_main(["prepare", "--data", str(cache), "--out", str(tmp_path / "c3")]) == 2
    assert "is a cache already" in capsys.readouterr().err
    assert cli_main(["prepare", "--data", str(sim), "--out", str(tmp_path / "c4"), "--workers", "0"]) == 2


def test_generate_from_the_cache_equals_generate_from_the_folder(sim, cache, tmp_path):
    from naflow_aug.generate import GenerateConfig, generate, verify

    outs = []
    for name, root in (("png", sim), ("cache", cache)):
        out = tmp_path / f"{name}.h5"
        generate(GenerateConfig(out=str(out), source=str(root), model="unused", noise="gaussian:5", crop=16,
                                samples_per_crop=2, part_size=4, batch_size=2, progress=False))  # fmt: skip
        outs.append(out)
    with h5py.File(outs[0], "r") as a, h5py.File(outs[1], "r") as b:
        for key in ("clean", "noisy", "meta/seed", "meta/crop", "meta/label"):
            np.testing.assert_array_equal(a[key][...], b[key][...])
    assert verify(outs[1], regenerate=4, tolerance=0).ok


def test_train_and_bench_read_the_cache(sim, cache, tmp_path):
    from naflow_aug import train as training
    from naflow_aug.bench import bench_from_paths

    losses = []
    for name, root in (("png", sim), ("cache", cache)):
        config = training.preset("cpu").replace(
            data=str(root), model={"hidden_channels": 8, "encoder_channels": 8}, steps=2, batch_size=2,
            crop_size=16, log_every=1, val_every=0, checkpoint_every=100, val_max_pairs=1, device="cpu",
            refit_prior=False)  # fmt: skip
        training.train(config, tmp_path / f"train-{name}", progress=False)
        rows = (tmp_path / f"train-{name}" / "metrics.jsonl").read_text().splitlines()
        losses.append([json.loads(r)["loss"] for r in rows if json.loads(r).get("kind") == "train"])
    assert len(losses[0]) == 2 and losses[0] == losses[1]

    instances = sorted({p.instance for p in scan_sidd_medium(sim)})
    split = f"train = {instances[:4]}\nval = {instances[4:]}\n".replace("'", '"')
    (tmp_path / "split.toml").write_text(split)
    psnr = []
    for name, root in (("png", sim), ("cache", cache)):
        res = bench_from_paths(tmp_path / f"bench-{name}", clean=root, noise=["real"],
                               split=str(tmp_path / "split.toml"), preset="cpu", epochs=1, steps_per_epoch=2,
                               patch_size=16, progress=False)  # fmt: skip
        psnr.append([r["pairs"]["overall"]["psnr"] for r in res["rows"]])
    assert psnr[0] == psnr[1]
