from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
import torch
from torch import nn

from naflow_aug import bench, metrics
from naflow_aug.data import sidd_blocks as sb
from naflow_aug.denoisers import DnCNN, latest_checkpoint, load_dncnn

TINY = bench.BenchPreset(
    preset="custom", depth=3, width=8, patch_size=16, batch_size=4, epochs=3, steps_per_epoch=4,
    lr_milestones=(2,), val_images=2, val_blocks=2, eval_batch_size=16, grid_crop=12,
)  # fmt: skip


def _pairs_dataset(n=4, size=24, sigma=0.1, seed=0):
    g = torch.Generator().manual_seed(seed)
    items = []
    for i in range(n):
        clean = torch.rand(3, size, size, generator=g) * 0.5 + 0.25
        noisy = (clean + sigma * torch.randn(clean.shape, generator=g)).clamp(0, 1)
        items.append({"clean": clean, "noisy": noisy, "cls": ["S6_00100", "GP_00800"][i % 2]})
    return items


def _val_pairs(n=2, size=20, seed=5):
    items = _pairs_dataset(n, size, seed=seed)
    return lambda: [(f"v{i}", it["cls"][:2], it["noisy"], it["clean"]) for i, it in enumerate(items)]


def test_presets_and_toml(tmp_path):
    assert bench.PAPER.patch_size == 96 and bench.PAPER.batch_size == 8 and bench.PAPER.epochs == 300
    assert bench.PAPER.dncnn.depth == 20 and bench.PAPER.dncnn.width == 64 and bench.PAPER.lr == 1e-3
    assert bench.CPU.dncnn.width < 64
    assert bench.PAPER.lr_at(1) == 1e-3 and bench.PAPER.lr_at(251) == pytest.approx(1e-4)
    (tmp_path / "p.toml").write_text('preset = "paper"\nepochs = 2\n')
    p = bench.load_preset(tmp_path / "p.toml")
    assert p.epochs == 2 and p.patch_size == 96
    (tmp_path / "bad.toml").write_text("epoch = 2\n")
    with pytest.raises(ValueError, match="unknown key"):
        bench.load_preset(tmp_path / "bad.toml")
    with pytest.raises(ValueError, match="preset must be"):
        bench.load_preset("gpu")
    assert bench.load_preset("cpu", steps_per_epoch=3).steps_per_epoch == 3
    # the CPU preset's small DnCNN starts as the identity; the paper one keeps the default init
    x = torch.rand(1, 3, 12, 12, generator=torch.Generator().manual_seed(0))
    assert torch.equal(bench.make_dncnn(bench.CPU).eval()(x), x)
    assert not bench.PAPER.zero_init_last
    assert sum(p.numel() for p in bench.make_dncnn(bench.PAPER).parameters()) == 670_531


def test_train_from_memory_pairs_and_exact_resume(tmp_path):
    data = _pairs_dataset()
    batches = bench.PatchBatches(data, patch_size=16, batch_size=4)
    model = DnCNN(depth=3, width=8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    val = _val_pairs()
    bench.train_denoiser(
        model, batches, TINY, tmp_path / "a", progress=False,
        validate=lambda m: {"psnr": bench.evaluate_pairs(m, val())["overall"]["psnr"]},
    )  # fmt: skip
    log = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in log] == [1, 2, 3]
    assert all(np.isfinite(r["loss"]) and np.isfinite(r["val_psnr"]) for r in log)
    assert log[2]["lr"] == pytest.approx(1e-4)
    assert sorted(p.name for p in (tmp_path / "a").glob("checkpoint_G3_*.pth")) == [
        "checkpoint_G3_00000002.pth", "checkpoint_G3_00000003.pth"]  # fmt: skip
    assert any(not torch.equal(before[k], v) for k, v in model.state_dict().items())
    # interrupted after 2 epochs, then resumed: bit-identical to the uninterrupted run
    m2 = DnCNN(depth=3, width=8)
    m2.load_state_dict(before)
    two = bench.BenchPreset(**{**TINY.__dict__, "epochs": 2})
    bench.train_denoiser(m2, batches, two, tmp_path / "b", progress=False)
    m3 = DnCNN(depth=3, width=8)
    bench.train_denoiser(m3, batches, TINY, tmp_path / "b", progress=False)
    for k, v in model.state_dict().items():
        assert torch.equal(m3.state_dict()[k], v), k
    assert latest_checkpoint(tmp_path / "b")[1] == 3
    # the checkpoint is a KAIR-layout file
    assert load_dncnn(tmp_path / "b" / "checkpoint_G3_00000003.pth").config.depth == 3


def test_train_from_hdf5(tmp_path):
    rng = np.random.default_rng(0)
    clean = rng.integers(60, 200, size=(3, 20, 20, 3), dtype=np.uint8)
    noisy = np.clip(clean + rng.normal(0, 20, clean.shape), 0, 255).astype(np.uint8)
    path = tmp_path / "synth.h5"
    with h5py.File(path, "w") as f:
        f["clean"], f["noisy"] = clean, noisy
        f.attrs["complete"] = 1
    batches = bench.hdf5_batches(path, TINY)
    noisy_b, clean_b = batches(torch.Generator().manual_seed(0))
    assert noisy_b.shape == clean_b.shape == (4, 3, 16, 16)
    # the patches are crops of the stored rows (same window in both images)
    assert any(
        np.array_equal((clean_b[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8),
                       clean[r, t:t + 16, s:s + 16])
        for r in range(3) for t in range(5) for s in range(5)
    )  # fmt: skip
    model = DnCNN(depth=3, width=8)
    bench.train_denoiser(model, batches, TINY, tmp_path / "run", progress=False)
    assert latest_checkpoint(tmp_path / "run")[1] == 3


def test_train_with_on_the_fly_noise(tmp_path):
    clean_only = [{"clean": it["clean"], "cls": it["cls"]} for it in _pairs_dataset()]
    seen = []

    def source(clean, *, reference=None, labels=None, generator=None):
        seen.append((reference, list(labels)))
        return (clean + 0.05 * torch.randn(clean.shape, generator=generator)).clamp(0, 1), None

    batches = bench.PatchBatches(clean_only, patch_size=16, batch_size=4, noise=source)
    noisy, clean = batches(torch.Generator().manual_seed(0))
    assert seen[0][0] is None and set(seen[0][1]) <= {"S6_00100", "GP_00800"}
    assert 0.02 < (noisy - clean).std() < 0.08
    with pytest.raises(ValueError, match="no noise source"):
        bench.PatchBatches(clean_only, patch_size=16, batch_size=4)(torch.Generator())
    # the library's noise sources through the same path
    (src,) = bench.noise_sources(["gaussian:25"], clean_only, TINY)
    model = DnCNN(depth=3, width=8)
    bench.train_denoiser(model, src.batches, TINY, tmp_path / "g", progress=False)
    assert latest_checkpoint(tmp_path / "g")[1] == 3


def test_nas_source_batches_are_replayable():
    import naflow_aug

    data = _pairs_dataset(size=24)
    flow = naflow_aug.NAFlow(
        naflow_aug.NAFlowConfig(classes=("GP_00800", "S6_00100"), hidden_channels=8, encoder_channels=8)
    ).eval()
    (src,) = bench.noise_sources(["nas"], data, TINY, model=flow)
    a_noisy, a_clean = src.batches(torch.Generator().manual_seed(3))
    b_noisy, b_clean = src.batches(torch.Generator().manual_seed(3))
    assert a_noisy.shape == (4, 3, 16, 16) and torch.isfinite(a_noisy).all()
    assert torch.equal(a_noisy, b_noisy) and torch.equal(a_clean, b_clean)
    c_noisy, _ = src.batches(torch.Generator().manual_seed(4))
    assert not torch.equal(a_noisy, c_noisy)
    with pytest.raises(ValueError):  # NAS needs the real noisy reference
        (bad,) = bench.noise_sources(["nas"], [{"clean": d["clean"]} for d in data], TINY, model=flow)
        bad.batches(torch.Generator().manual_seed(0))


def test_identity_denoiser_scores_the_noisy_input(tmp_path):
    pairs = _val_pairs(3)()
    res = bench.evaluate_pairs(nn.Identity(), pairs, quantize=False)
    expected = [float(metrics.psnr(n[None].double(), c[None].double())) for _, _, n, c in pairs]
    assert res["overall"]["psnr"] == pytest.approx(np.mean(expected), abs=1e-9)
    assert res["overall"]["n"] == 3 and set(res["groups"]) == {"S6", "GP"}
    # SIDD validation .mat (tiny blocks): uint8 inputs are already 8-bit, so quantising changes nothing
    rng = np.random.default_rng(1)
    cl = rng.integers(40, 200, size=(40, 32, 16, 16, 3), dtype=np.uint8)
    no = np.clip(cl.astype(int) + rng.integers(-20, 21, cl.shape), 0, 255).astype(np.uint8)
    sb.write_blocks_mat(tmp_path / "ValidationNoisyBlocksSrgb.mat", no, sb.VALIDATION_NOISY_KEY)
    sb.write_blocks_mat(tmp_path / "ValidationGtBlocksSrgb.mat", cl, sb.VALIDATION_GT_KEY)
    val = sb.SiddValidation(tmp_path, images=[0, 1, 2], blocks=[0, 5], block_size=None)
    res = bench.evaluate_sidd_validation(nn.Identity(), val)
    tn = torch.from_numpy(no[[0, 1, 2]][:, [0, 5]].reshape(6, 16, 16, 3)).permute(0, 3, 1, 2).double() / 255
    tc = torch.from_numpy(cl[[0, 1, 2]][:, [0, 5]].reshape(6, 16, 16, 3)).permute(0, 3, 1, 2).double() / 255
    assert res["overall"]["psnr"] == pytest.approx(float(metrics.psnr(tn, tc).mean()), abs=1e-9)
    assert res["groups"]["S6"]["n"] == 2 and set(res["groups"]) == {"S6", "GP", "N6"}


def test_run_benchmark_end_to_end(tmp_path):
    rng = np.random.default_rng(2)
    cl = rng.integers(40, 200, size=(40, 32, 16, 16, 3), dtype=np.uint8)
    no = np.clip(cl.astype(int) + rng.integers(-20, 21, cl.shape), 0, 255).astype(np.uint8)
    val_dir = tmp_path / "val"
    sb.write_validation_png_folder(val_dir / "validation", no[:2, :2], cl[:2, :2])
    sb.write_blocks_mat(tmp_path / "BenchmarkNoisyBlocksSrgb.mat", no, sb.BENCHMARK_NOISY_KEY)
    data = _pairs_dataset()
    sources = [bench.TrainSource("real", bench.PatchBatches(data, patch_size=16, batch_size=4))]
    sources += bench.noise_sources(["gaussian:25"], data, TINY)
    out = tmp_path / "run"
    res = bench.run_benchmark(
        sources, out, preset=TINY, sidd_val=val_dir, sidd_bench=tmp_path / "BenchmarkNoisyBlocksSrgb.mat",
        evaluation=_val_pairs(), progress=False,
    )  # fmt: skip
    assert [r["source"] for r in res["rows"]] == ["real", "gaussian:25"]
    for row in res["rows"]:
        assert row["sidd_val"]["overall"]["n"] == 4 and set(row["sidd_val"]["cameras"]) == {"S6", "GP"}
        assert np.isfinite(row["pairs"]["overall"]["psnr"])
        sub = sb.read_submission(row["submission"])
        assert sub.shape == (40, 32, 16, 16, 3)
    md = (out / "results.md").read_text()
    assert "| real |" in md and "| gaussian:25 |" in md
    for name in ("results.json", "config.toml", "grid.png", "curves.png"):
        assert (out / name).is_file(), name
    # the submission holds what the trained denoiser outputs, rounded half up
    model = load_dncnn(out / "sources" / "real" / "denoiser.pth")
    den = bench.denoise(model, bench.to_batch(no[3]), quantize=True)
    sub_real = sb.read_submission(out / "sources" / "real" / "SubmitSrgb.csv")
    assert np.array_equal(sub_real[3], (den * 255).round().to(torch.uint8).permute(0, 2, 3, 1).numpy())
    # resume on a finished run does nothing
    stamp = (out / "results.json").stat().st_mtime_ns
    again = bench.run_benchmark(sources, out, preset=TINY, sidd_val=val_dir, resume=True, progress=False)
    assert again["rows"] == json.loads((out / "results.json").read_text())["rows"]
    assert (out / "results.json").stat().st_mtime_ns == stamp
    with pytest.raises(ValueError, match="finished"):
        bench.run_benchmark(sources, out, preset=TINY, sidd_val=val_dir, progress=False)


def _write_sidd_folder(root, seed=0):
    from PIL import Image

    rng = np.random.default_rng(seed)
    names = ["0001_001_S6_00100_00060_3200_L", "0002_001_GP_00800_00350_3200_N",
             "0003_001_S6_00100_00100_4400_N", "0004_002_GP_00800_00500_5500_L"]  # fmt: skip
    for name in names:
        d = root / "Data" / name
        d.mkdir(parents=True)
        clean = rng.integers(50, 200, size=(24, 32, 3), dtype=np.uint8)
        noisy = np.clip(clean + rng.normal(0, 12, clean.shape), 0, 255).astype(np.uint8)
        inst = name[:4]
        Image.fromarray(clean).save(d / f"{inst}_GT_SRGB_010.PNG")
        Image.fromarray(noisy).save(d / f"{inst}_NOISY_SRGB_010.PNG")
    return names


def _write_sidd_split_and_preset(tmp_path):
    """tmp_path/sidd (4 instances), split.toml (2 train, 2 held out) and tiny.toml (the TINY preset)."""
    _write_sidd_folder(tmp_path / "sidd")
    (tmp_path / "split.toml").write_text('name = "t"\ntrain = ["0001", "0002"]\nval = ["0003", "0004"]\n')
    fields = {k: v for k, v in TINY.__dict__.items() if k != "lr_milestones"}
    lines = [f"{k} = {json.dumps(v)}" for k, v in fields.items()]
    (tmp_path / "tiny.toml").write_text("\n".join(lines).replace("True", "true") + "\n")


def test_cli_bench_on_a_sidd_folder_with_split(tmp_path, capsys):
    from naflow_aug.cli import main

    _write_sidd_split_and_preset(tmp_path)
    argv = ["bench", "--clean", str(tmp_path / "sidd"), "--noise", "real", "--noise", "poisson-gaussian",
            "--split", str(tmp_path / "split.toml"), "--preset", str(tmp_path / "tiny.toml"), "--steps", "2",
            "--out", str(tmp_path / "run"), "--no-progress", "--denoiser", "identity"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "| real |" in printed and "| poisson-gaussian |" in printed
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert [r["source"] for r in res["rows"]] == ["real", "poisson-gaussian", "noisy input"]
    for row in res["rows"]:
        assert row["pairs"]["overall"]["n"] == 2 and set(row["pairs"]["groups"]) == {"S6", "GP"}
        assert row["steps"] == (0 if row["source"] == "noisy input" else 3 * 2)
    # the reference row scores the held-out noisy images themselves (instances 0003 and 0004)
    from naflow_aug.data.images import load_image

    held = [sorted((tmp_path / "sidd" / "Data").glob(f"{i}_*"))[0] for i in ("0003", "0004")]
    direct = [
        float(metrics.psnr(load_image(next(d.glob("*NOISY*")))[None].double(),
                           load_image(next(d.glob("*GT*")))[None].double()))
        for d in held
    ]  # fmt: skip
    assert res["rows"][2]["pairs"]["overall"]["psnr"] == pytest.approx(np.mean(direct), abs=1e-6)
    assert (tmp_path / "run" / "baselines.json").is_file()
    assert main([*argv, "--resume"]) == 0
    assert main(["bench", "--noise", "real", "--out", str(tmp_path / "x")]) == 2
    assert "--clean" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_under_torchrun_ddp(tmp_path):
    import os
    import subprocess
    import sys

    _write_sidd_folder(tmp_path / "sidd")
    (tmp_path / "split.toml").write_text('name = "t"\ntrain = ["0001", "0002"]\nval = ["0003", "0004"]\n')
    (tmp_path / "tiny.toml").write_text('preset = "cpu"\npatch_size = 16\nbatch_size = 4\nval_crop = 16\n')
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m",
           "naflow_aug.cli",
           "bench", "--clean", str(tmp_path / "sidd"), "--split", str(tmp_path / "split.toml"),
           "--noise", "real", "--epochs", "2", "--steps", "2", "--preset", str(tmp_path / "tiny.toml"),
           "--out", str(tmp_path / "run"), "--no-progress", "--device", "cpu"]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=240, env=env)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert proc.stdout.count("| real |") == 1  # only rank 0 prints and writes
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert res["rows"][0]["pairs"]["overall"]["n"] == 2
    log = [json.loads(line) for line in (tmp_path / "run" / "sources" / "real" / "metrics.jsonl").open()]
    assert [r["epoch"] for r in log] == [1, 2]
    assert latest_checkpoint(tmp_path / "run" / "sources" / "real")[1] == 2


def test_cli_bench_from_hdf5_with_sidd_mat_files(tmp_path, capsys):
    from naflow_aug.cli import main

    rng = np.random.default_rng(7)
    clean = rng.integers(60, 200, size=(4, 20, 20, 3), dtype=np.uint8)
    with h5py.File(tmp_path / "synth.h5", "w") as f:
        f["clean"] = clean
        f["noisy"] = np.clip(clean + rng.normal(0, 15, clean.shape), 0, 255).astype(np.uint8)
        f.attrs["complete"] = 1
    cl = rng.integers(40, 200, size=(40, 32, 16, 16, 3), dtype=np.uint8)
    no = np.clip(cl.astype(int) + rng.integers(-15, 16, cl.shape), 0, 255).astype(np.uint8)
    sb.write_blocks_mat(tmp_path / "val" / "ValidationNoisyBlocksSrgb.mat", no, sb.VALIDATION_NOISY_KEY)
    sb.write_blocks_mat(tmp_path / "val" / "ValidationGtBlocksSrgb.mat", cl, sb.VALIDATION_GT_KEY)
    sb.write_blocks_mat(tmp_path / "BenchmarkNoisyBlocksSrgb.mat", no, sb.BENCHMARK_NOISY_KEY)
    (tmp_path / "tiny.toml").write_text('preset = "cpu"\npatch_size = 16\nbatch_size = 4\n')
    argv = ["bench", "--train", str(tmp_path / "synth.h5"), "--sidd-val", str(tmp_path / "val"),
            "--sidd-bench", str(tmp_path / "BenchmarkNoisyBlocksSrgb.mat"),
            "--preset", str(tmp_path / "tiny.toml"), "--epochs", "1", "--steps", "2",
            "--out", str(tmp_path / "run"), "--no-progress"]  # fmt: skip
    assert main(argv) == 0
    assert "| hdf5:synth.h5 |" in capsys.readouterr().out
    (row,) = json.loads((tmp_path / "run" / "results.json").read_text())["rows"]
    assert row["sidd_val"]["overall"]["n"] == 1280
    assert {k: v["n"] for k, v in row["sidd_val"]["cameras"].items()} == {c: 256 for c in sb.CAMERAS}
    assert sb.read_submission(row["submission"]).shape == (40, 32, 16, 16, 3)



def test_cli_bench_refuses_a_virtual_file_without_its_parts(tmp_path, capsys):
    """bench --train on a --join vds file copied without its parts: an error line naming the missing part
    files, not a model trained on zeros and a normal results table."""
    from naflow_aug.cli import main
    from naflow_aug.data import hdf5

    rng = np.random.default_rng(3)
    clean = rng.integers(60, 200, size=(4, 20, 20, 3), dtype=np.uint8)
    (tmp_path / "synth.h5.parts").mkdir()
    part = hdf5.PartWriter(hdf5.part_path(tmp_path / "synth.h5.parts", 0), 0, 4, 20, 20, 1)
    meta = {"index": np.arange(4), "seed": np.arange(4), "crop": np.tile([0, 0, 20, 20], (4, 1)),
            "weights": np.ones((4, 1)), "source": ["a.png"] * 4, "reference": [""] * 4,
            "noise": ["gaussian:10"] * 4, "label": [""] * 4}  # fmt: skip
    part.write(0, clean, np.clip(clean + rng.normal(0, 15, clean.shape), 0, 255).astype(np.uint8), meta)
    hdf5.join_parts(tmp_path / "synth.h5", [part.commit()], {"classes": ["gaussian:10"]}, mode="vds")
    (tmp_path / "copy").mkdir()
    (tmp_path / "copy" / "synth.h5").write_bytes((tmp_path / "synth.h5").read_bytes())
    (tmp_path / "tiny.toml").write_text('preset = "cpu"\npatch_size = 16\nbatch_size = 4\n')
    from naflow_aug.data.images import write_png

    for kind, image in (("clean", clean[0]), ("noisy", clean[0] // 2 + 60)):  # a pair to score on
        write_png(tmp_path / "pairs" / kind / "a.png", image)
    argv = ["bench", "--train", str(tmp_path / "copy" / "synth.h5"), "--preset", str(tmp_path / "tiny.toml"),
            "--pairs", str(tmp_path / "pairs"), "--epochs", "1", "--steps", "1",
            "--out", str(tmp_path / "run"), "--no-progress"]  # fmt: skip
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "naflow-aug bench: error:" in err and "part files are missing" in err
    assert str(tmp_path / "copy" / "synth.h5.parts" / "part-00000.h5") in err

def test_paired_folder_scoring(tmp_path):
    from PIL import Image

    rng = np.random.default_rng(3)
    (tmp_path / "p" / "noisy").mkdir(parents=True)
    (tmp_path / "p" / "clean").mkdir(parents=True)
    expected = []
    for i in range(2):
        c = rng.integers(50, 200, size=(16, 20, 3), dtype=np.uint8)
        n = np.clip(c + rng.normal(0, 10, c.shape), 0, 255).astype(np.uint8)
        Image.fromarray(n).save(tmp_path / "p" / "noisy" / f"im{i}.png")
        Image.fromarray(c).save(tmp_path / "p" / "clean" / f"im{i}.png")
        tn, tc = (torch.from_numpy(x).permute(2, 0, 1)[None].double() / 255 for x in (n, c))
        expected.append(float(metrics.psnr(tn, tc)))
    listed = bench.paired_folder_pairs(tmp_path / "p")
    assert [name for name, *_ in listed] == ["im0", "im1"]
    res = bench.evaluate_pairs(nn.Identity(), bench.load_pairs(listed))
    assert res["overall"]["psnr"] == pytest.approx(np.mean(expected), abs=1e-9)
    with pytest.raises(ValueError, match="expected subfolders"):
        bench.paired_folder_pairs(tmp_path / "p" / "noisy")
