"""The HDF5 generator (naflow_aug.generate): contents vs metadata, kill -9 + resume, torchrun, bad input."""

from __future__ import annotations

import errno
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from naflow_aug import NAFlow, NAFlowConfig, save_checkpoint
from naflow_aug.cli import main as cli_main
from naflow_aug.data import hdf5
from naflow_aug.data.images import read_image, write_png
from naflow_aug.data.simcam import DEFAULT_CAMERAS, write_simulated_sidd
from naflow_aug.generate import GenerateConfig, generate, make_plan, sample_seeds, verify

ROOT = Path(__file__).resolve().parents[2]


class StandIn:
    """A cheap noise function with the generator's interface: per-item Gaussian noise from the item's seed."""

    mode = "stand-in"
    classes = ["A", "B"]
    needs_reference = False
    device = torch.device("cpu")

    def __call__(self, clean, reference, seeds, labels=None):
        noisy, weights = [], []
        for c, s in zip(clean, seeds, strict=True):
            g = torch.Generator().manual_seed(int(s))
            noisy.append((c + 0.1 * torch.randn(c.shape, generator=g)).clamp(0, 1))
            p = float(torch.rand((), generator=g))
            weights.append([p, 1 - p])
        return torch.stack(noisy), torch.tensor(weights)


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> Path:
    """A simulated camera in the SIDD-Medium layout: 3 configurations x 2 scenes, 32-48 pixel images."""
    root = tmp_path_factory.mktemp("sim")
    write_simulated_sidd(root, seed=0, cameras=DEFAULT_CAMERAS[:3], scenes_per_config=2, size_range=(32, 48))
    return root


@pytest.fixture(scope="module")
def tiny_ckpt(sim, tmp_path_factory) -> Path:
    """A tiny random NAFlow over the simulated classes; ActNorm initialised by one training-mode forward."""
    from naflow_aug.data.sidd import scan_sidd_medium

    classes = tuple(sorted({p.cls for p in scan_sidd_medium(sim)}))
    g = torch.Generator().manual_seed(0)
    cfg = NAFlowConfig(
        classes=classes,
        levels=2,
        hidden_channels=8,
        encoder_channels=8,
        transition_steps=1,
        conditional_steps=1,
    )
    torch.manual_seed(0)
    net = NAFlow(cfg)
    clean = torch.rand(2, 3, 16, 16, generator=g) * 0.8 + 0.1
    net.train()
    net.encode((clean + 0.05 * torch.randn(clean.shape, generator=g)).clamp(0, 1), clean)
    path = tmp_path_factory.mktemp("model") / "tiny.pt"
    save_checkpoint(net.freeze(), path)
    return path


def _config(out, source, model="unused", **kw) -> GenerateConfig:
    base = dict(crop=16, samples_per_crop=2, part_size=4, batch_size=2, progress=False)
    return GenerateConfig(out=str(out), source=str(source), model=str(model), **{**base, **kw})


def _read(path: Path) -> dict[str, np.ndarray]:
    with h5py.File(path, "r") as f:
        return {
            k: f[k][...] for k in ("clean", "noisy", "meta/seed", "meta/crop", "meta/weights", "meta/source")
        }


# ------------------------------------------------------------------------------------ contents & verify


def test_nas_from_simulated_camera_matches_its_metadata(sim, tiny_ckpt, tmp_path):
    out = tmp_path / "synth.h5"
    result = generate(_config(out, sim, tiny_ckpt, noise="nas"), command=["generate", "--out", str(out)])
    plan = make_plan(_config(out, sim, tiny_ckpt))
    assert result.num_samples == plan.num_samples > 0 and result.samples_made == plan.num_samples
    assert not hdf5.parts_dir(out).exists()  # copy join: parts removed once joined

    attrs = hdf5.read_attrs(out)
    assert attrs["complete"] == 1 and attrs["noise"] == "nas" and attrs["model"] == str(tiny_ckpt)
    assert len(attrs["model_sha256"]) == 64 and attrs["config"]["crop"] == 16
    assert attrs["command"] == ["generate", "--out", str(out)] and attrs["library_version"]
    data = _read(out)
    n = plan.num_samples
    assert data["noisy"].shape == (n, 16, 16, 3) and data["noisy"].dtype == np.uint8
    np.testing.assert_array_equal(data["meta/seed"], sample_seeds(0, np.arange(n)))
    np.testing.assert_allclose(data["meta/weights"].sum(axis=1), 1.0, atol=1e-5)
    assert data["meta/weights"].shape[1] == len(attrs["classes"])
    assert (data["noisy"] != data["clean"]).mean() > 0.5
    # the clean rows are the recorded crops of the recorded source files
    for i in (0, n // 2, n - 1):
        t, left, h, w = data["meta/crop"][i]
        src = Path(attrs["source_root"]) / data["meta/source"][i].decode()
        np.testing.assert_array_equal(read_image(src)[t : t + h, left : left + w], data["clean"][i])
    with h5py.File(out, "r") as f:
        assert f["meta/reference"].asstr()[0].replace("NOISY", "GT") == f["meta/source"].asstr()[0]
        assert f["noisy"].chunks == (1, 16, 16, 3)
    # regenerate samples from their recorded seeds and compare (model reloaded from the recorded path)
    report = verify(out, regenerate=6, seed=1)
    assert report.ok, report.problems
    assert report.regenerated == 6 and report.exact == 6 and report.max_abs_diff == 0
    if shutil.which("h5ls"):
        listing = subprocess.run(["h5ls", "-r", str(out)], capture_output=True, text=True, check=True).stdout
        assert f"/noisy                   Dataset {{{n}, 16, 16, 3}}" in listing


def test_verify_catches_tampered_samples(sim, tmp_path):
    out = tmp_path / "o.h5"
    generate(_config(out, sim, source_kind="clean"), noise_fn=StandIn())
    assert verify(out, regenerate=4, noise_fn=StandIn()).ok
    with h5py.File(out, "r+") as f:
        f["noisy"][3] = 255 - f["noisy"][3]
        f["meta/seed"][5] += 1
    report = verify(out, regenerate=int(hdf5.read_attrs(out)["num_samples"]), noise_fn=StandIn())
    assert not report.ok and any("meta/seed does not follow" in p for p in report.problems)
    with h5py.File(out, "r+") as f:
        f["meta/seed"][5] -= 1
    report = verify(out, regenerate=int(hdf5.read_attrs(out)["num_samples"]), noise_fn=StandIn(), tolerance=0)
    assert [p for p in report.problems if "sample 3:" in p] and report.exact == report.regenerated - 1


def test_random_crops_are_seeded_and_batch_size_does_not_change_the_samples(sim, tmp_path):
    a = generate(
        _config(tmp_path / "a.h5", sim, crops="random", crops_per_image=3, batch_size=1), noise_fn=StandIn()
    )
    b = generate(
        _config(tmp_path / "b.h5", sim, crops="random", crops_per_image=3, batch_size=3), noise_fn=StandIn()
    )
    c = generate(
        _config(tmp_path / "c.h5", sim, crops="random", crops_per_image=3, seed=5), noise_fn=StandIn()
    )
    da, db, dc = _read(a.out), _read(b.out), _read(c.out)
    assert a.num_samples == 6 * 3 * 2
    for key in da:
        np.testing.assert_array_equal(da[key], db[key])
    assert not np.array_equal(da["meta/crop"], dc["meta/crop"])


# ----------------------------------------------------------------------------- kill -9, resume, torchrun

SCRIPT = textwrap.dedent(
    """
    import sys, time
    import torch
    torch.set_num_threads(1)
    from naflow_aug.generate import GenerateConfig, generate, load_noise

    out, source, ckpt, resume, delay = sys.argv[1:6]
    noise, sha = load_noise(ckpt, "nas", None)

    class Slowed:  # the real model, slowed down so that a kill lands mid-run
        mode, classes, device = noise.mode, noise.classes, noise.device
        needs_reference = noise.needs_reference

        def __call__(self, *args):
            time.sleep(float(delay))
            return noise(*args)

    config = GenerateConfig(out=out, source=source, model=ckpt, noise="nas", crop=16, samples_per_crop=2,
                            part_size=4, batch_size=2, resume=resume == "1", progress=False)
    generate(config, noise_fn=Slowed(), model_sha=sha)
    """
)


def _env() -> dict[str, str]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=str(ROOT))
    env.pop("WORLD_SIZE", None)
    return env


@pytest.fixture(scope="module")
def script(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("script") / "gen.py"
    path.write_text(SCRIPT)
    return path


@pytest.fixture(scope="module")
def reference(sim, tiny_ckpt, script, tmp_path_factory) -> Path:
    """An uninterrupted single-process run."""
    out = tmp_path_factory.mktemp("ref") / "ref.h5"
    subprocess.run([sys.executable, str(script), str(out), str(sim), str(tiny_ckpt), "0", "0"],
                   env=_env(), check=True, timeout=120)  # fmt: skip
    return out


def test_killed_runs_resumed_equal_an_uninterrupted_run(sim, tiny_ckpt, script, reference, tmp_path):
    out = tmp_path / "killed.h5"
    parts = hdf5.parts_dir(out)
    rng = random.Random(7)
    killed_mid_run = 0
    for attempt in range(3):
        cmd = [
            sys.executable,
            str(script),
            str(out),
            str(sim),
            str(tiny_ckpt),
            "1" if attempt else "0",
            "0.05",
        ]
        proc = subprocess.Popen(cmd, env=_env())
        before = len(list(parts.glob("part-*.h5"))) if parts.exists() else 0
        deadline = time.monotonic() + 60
        while proc.poll() is None and time.monotonic() < deadline:  # wait for progress, then kill at random
            if parts.exists() and len(list(parts.glob("part-*.h5"))) > before:
                break
            time.sleep(0.01)
        time.sleep(rng.uniform(0.0, 0.3))
        if proc.poll() is None:
            proc.send_signal(signal.SIGKILL)
            killed_mid_run += 1
        proc.wait(timeout=30)
        assert not out.exists() or proc.returncode == 0
    assert killed_mid_run >= 2, "the runs finished before they could be killed"
    done = len(list(parts.glob("part-*.h5")))
    assert 0 < done < 100
    with pytest.raises(ValueError, match="partial generation .* --resume"):
        generate(_config(out, sim, tiny_ckpt))
    (out.parent / f".{out.name}.99999.tmp").write_bytes(b"the output of a join killed midway")
    subprocess.run([sys.executable, str(script), str(out), str(sim), str(tiny_ckpt), "1", "0"],
                   env=_env(), check=True, timeout=120)  # fmt: skip
    got, want = _read(out), _read(reference)
    assert got["noisy"].tobytes() == want["noisy"].tobytes()
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])
    assert hdf5.check_structure(out)[1] == []
    assert not list(out.parent.glob(".*.tmp"))


def test_torchrun_two_processes_equal_one(sim, tiny_ckpt, script, reference, tmp_path):
    torchrun = Path(sys.executable).with_name("torchrun")
    if not torchrun.exists():
        pytest.skip("torchrun is not installed beside the interpreter")
    out = tmp_path / "ddp.h5"
    cmd = [str(torchrun), "--standalone", "--nproc_per_node", "2", str(script), str(out), str(sim),
           str(tiny_ckpt), "0", "0"]  # fmt: skip
    proc = subprocess.run(cmd, env=_env(), capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stderr[-3000:]
    got, want = _read(out), _read(reference)
    assert got["noisy"].tobytes() == want["noisy"].tobytes()
    for key in want:
        np.testing.assert_array_equal(got[key], want[key])


def test_disk_full_is_a_clear_error_and_resumable(sim, tmp_path, monkeypatch):
    out = tmp_path / "o.h5"
    commit = hdf5.PartWriter.commit
    calls = []

    def failing_commit(self):
        calls.append(self.path.name)
        if len(calls) == 2:
            raise OSError(errno.ENOSPC, "No space left on device")
        return commit(self)

    monkeypatch.setattr(hdf5.PartWriter, "commit", failing_commit)
    with pytest.raises(hdf5.DiskFullError, match="disk full .* --resume"):
        generate(_config(out, sim, source_kind="clean"), noise_fn=StandIn())
    parts = hdf5.parts_dir(out)
    assert sorted(p.name for p in parts.glob("part-*.h5")) == ["part-00000.h5"]
    assert not list(parts.glob(".*.tmp")) and not out.exists()
    monkeypatch.setattr(hdf5.PartWriter, "commit", commit)
    resumed = generate(_config(out, sim, source_kind="clean", resume=True), noise_fn=StandIn())
    assert resumed.parts_made == resumed.parts_total - 1
    fresh = generate(_config(tmp_path / "fresh.h5", sim, source_kind="clean"), noise_fn=StandIn())
    assert _read(out)["noisy"].tobytes() == _read(fresh.out)["noisy"].tobytes()
    # an --overwrite run that fails midway keeps the old file, and --resume finishes the new one
    before = out.read_bytes()
    calls.clear()
    monkeypatch.setattr(hdf5.PartWriter, "commit", failing_commit)
    with pytest.raises(hdf5.DiskFullError):
        generate(_config(out, sim, source_kind="clean", seed=9, overwrite=True), noise_fn=StandIn())
    assert out.read_bytes() == before
    monkeypatch.setattr(hdf5.PartWriter, "commit", commit)
    generate(_config(out, sim, source_kind="clean", seed=9, resume=True), noise_fn=StandIn())
    assert hdf5.read_attrs(out)["seed"] == 9 and verify(out, regenerate=3, noise_fn=StandIn()).ok


# ------------------------------------------------------------------------------------------- bad input


def test_existing_output_resume_and_overwrite(sim, tmp_path):
    out = tmp_path / "o.h5"
    first = generate(_config(out, sim, source_kind="clean"), noise_fn=StandIn())
    before = out.read_bytes()
    with pytest.raises(ValueError, match="already exists.*--overwrite"):
        generate(_config(out, sim, source_kind="clean"), noise_fn=StandIn())
    again = generate(_config(out, sim, source_kind="clean", resume=True), noise_fn=StandIn())
    assert again.already_complete and again.num_samples == first.num_samples and out.read_bytes() == before
    with pytest.raises(ValueError, match="complete but was made with other settings"):
        generate(_config(out, sim, source_kind="clean", seed=3, resume=True), noise_fn=StandIn())
    hdf5.parts_dir(out).mkdir()  # as if killed between the join and the removal of the parts
    assert generate(_config(out, sim, source_kind="clean", resume=True), noise_fn=StandIn()).already_complete
    assert not hdf5.parts_dir(out).exists()
    other = generate(_config(out, sim, source_kind="clean", seed=3, overwrite=True), noise_fn=StandIn())
    assert other.num_samples == first.num_samples and hdf5.read_attrs(out)["seed"] == 3
    # a partial run with other settings cannot be resumed by mistake
    generate(_config(tmp_path / "p.h5", sim, source_kind="clean", join="vds"), noise_fn=StandIn())
    os.remove(tmp_path / "p.h5")
    with pytest.raises(ValueError, match="other settings.*seed: 0 -> 4"):
        generate(
            _config(tmp_path / "p.h5", sim, source_kind="clean", seed=4, resume=True), noise_fn=StandIn()
        )


def test_bad_sources_and_outputs_are_clear_errors(sim, tmp_path):
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ValueError, match="holds no images"):
        generate(_config(tmp_path / "o.h5", empty), noise_fn=StandIn())
    with pytest.raises(ValueError, match="crop 64 is larger than image"):
        generate(_config(tmp_path / "o.h5", sim, crop=64), noise_fn=StandIn())
    blocker = tmp_path / "a-file"
    blocker.write_text("x")
    with pytest.raises(PermissionError, match="cannot write the output"):
        generate(_config(blocker / "o.h5", sim), noise_fn=StandIn())
    nas = StandIn()
    nas.needs_reference = True
    with pytest.raises(ValueError, match="clean-only source"):
        generate(_config(tmp_path / "o.h5", sim, source_kind="clean"), noise_fn=nas)
    with pytest.raises(ValueError, match="batch_size must be a positive integer"):
        _config(tmp_path / "o.h5", sim, batch_size=0)
    with pytest.raises(ValueError, match="exclude each other"):
        _config(tmp_path / "o.h5", sim, resume=True, overwrite=True)
    assert not (tmp_path / "o.h5").exists()


def test_paired_folder_and_cli(sim, tiny_ckpt, tmp_path, capsys):
    paired = tmp_path / "paired"
    for i, gt in enumerate(sorted(sim.glob("Data/*/*_GT_SRGB_010.PNG"))[:2]):
        write_png(paired / "clean" / f"{i}.png", read_image(gt))
        write_png(paired / "noisy" / f"{i}.png", read_image(str(gt).replace("_GT_", "_NOISY_")))
    out = tmp_path / "cli.h5"
    args = ["generate", "--out", str(out), "--clean", str(paired), "--model", str(tiny_ckpt), "--crop", "16",
            "--noise", "nas", "--part-size", "3", "--batch-size", "2", "--no-progress"]  # fmt: skip
    assert cli_main(args) == 0
    assert "wrote" in capsys.readouterr().out
    assert cli_main(args) == 2
    assert "already exists" in capsys.readouterr().err
    assert cli_main(["verify", str(out), "--regenerate", "3"]) == 0
    printed = capsys.readouterr().out
    assert "regenerated 3 samples: 3 byte-exact" in printed and printed.strip().endswith("OK")
    with h5py.File(out, "r+") as f:
        assert f["meta/reference"].asstr()[0] == "noisy/0.png"
        del f.attrs["complete"]
    assert cli_main(["verify", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "completion marker" in printed and "FAILED (1 problems)" in printed


def test_baseline_noise_without_a_model(sim, tmp_path):
    out = tmp_path / "g.h5"
    generate(_config(out, sim, model="no-model-needed", noise="gaussian:5", source_kind="clean"))
    attrs = hdf5.read_attrs(out)
    assert attrs["classes"] == ["gaussian:5"] and attrs["model_sha256"] == ""
    data = _read(out)
    np.testing.assert_array_equal(data["meta/weights"], 1.0)
    noise = data["noisy"].astype(float) - data["clean"].astype(float)
    assert 3.5 < noise.std() < 6.0  # sigma 5 in 0-255 units (a little clipping at the ends)
    assert verify(out, regenerate=4, tolerance=0).ok


def test_real_sidd_mini_tiles(shared_dir, tiny_ckpt, tmp_path):
    """Real SIDD-Medium tiles (any size): labels and NAS references come from the instance folders."""
    out = tmp_path / "sidd.h5"
    source = shared_dir / "data" / "sidd-medium-mini"
    generate(
        _config(
            out, source, tiny_ckpt, noise="nas", crop=64, crops="random", max_images=3, samples_per_crop=1
        )
    )
    with h5py.File(out, "r") as f:
        n = f["clean"].shape[0]
        labels, refs = f["meta/label"].asstr()[...], f["meta/reference"].asstr()[...]
        sources = f["meta/source"].asstr()[...]
    assert n == 3 and all(label.count("_") == 1 for label in labels)
    for label, ref, src in zip(labels, refs, sources, strict=True):
        assert "_NOISY_SRGB_" in ref and ref.replace("_NOISY_", "_GT_") == src and f"_{label}_" in src
    assert verify(out, regenerate=3).ok


def test_crops_are_read_with_few_images_held(sim, tmp_path, monkeypatch):
    from concurrent.futures import ThreadPoolExecutor

    from naflow_aug import generate as gen

    plan = make_plan(_config(tmp_path / "o.h5", sim, crops="random", crops_per_image=2, samples_per_crop=1))
    decoded = []

    def counting_read(path):
        decoded.append(path)
        return read_image(path)

    monkeypatch.setattr(gen.batches, "read_image", counting_read)
    cache: dict = {}
    rows = []
    with ThreadPoolExecutor(2) as pool:
        for b0 in range(0, plan.num_samples, 5):  # batches that span several images and split some
            idx = np.arange(b0, min(b0 + 5, plan.num_samples))
            clean, reference = gen.read_rows(plan, idx, True, cache, pool)
            rows.append((idx, clean, reference))
            assert set(cache) == {"j", "clean", "noisy"}  # one image pair kept between batches
    assert len(decoded) == 2 * len(plan.images)  # each (clean, noisy) pair decoded once: no re-reads
    for idx, clean, reference in rows:
        for i, c, r in zip(idx, clean, reference, strict=True):
            rec, t, left = plan.images[plan.image[i]], plan.top[i], plan.left[i]
            np.testing.assert_array_equal(c, read_image(rec.clean_path)[t : t + 16, left : left + 16])
            np.testing.assert_array_equal(r, read_image(rec.noisy_path)[t : t + 16, left : left + 16])


@pytest.mark.parametrize("compression,join", [("lzf", "copy"), ("gzip", "vds")])
def test_compression_and_virtual_join_keep_the_bytes(sim, tmp_path, compression, join):
    plain = generate(_config(tmp_path / "plain.h5", sim, source_kind="clean"), noise_fn=StandIn())
    packed = generate(
        _config(tmp_path / "packed.h5", sim, source_kind="clean", compression=compression, join=join),
        noise_fn=StandIn(),
    )
    with h5py.File(packed.out, "r") as f:
        assert f["clean"].is_virtual == (join == "vds")
        part = hdf5.part_path(hdf5.parts_dir(packed.out), 0)
        if join == "copy":
            assert f["clean"].compression == compression and not part.exists()
        else:
            with h5py.File(part, "r") as p:
                assert p["clean"].compression == compression
    a, b = _read(plain.out), _read(packed.out)
    for key in a:
        np.testing.assert_array_equal(a[key], b[key])
    ds = hdf5.HDF5PairDataset([plain.out, packed.out], crop=8, flips=True)
    loader = torch.utils.data.DataLoader(ds, batch_size=4, shuffle=True, num_workers=2)
    assert sum(batch["noisy"].shape[0] for batch in loader) == 2 * plain.num_samples


def test_profile_noise_on_a_clean_only_folder(sim, tiny_ckpt, tmp_path):
    import naflow_aug
    from naflow_aug.noise.profiles import NoiseProfile

    classes = naflow_aug.load(tiny_ckpt).classes
    profile = NoiseProfile(classes=classes, weights=[0.2, 0.0, 0.8][: len(classes)]).save(tmp_path / "p.json")
    out = tmp_path / "prof.h5"
    generate(
        _config(out, sim, tiny_ckpt, noise=f"profile:{profile}", source_kind="clean", samples_per_crop=1)
    )
    with h5py.File(out, "r") as f:
        np.testing.assert_allclose(f["meta/weights"][...], np.tile([0.2, 0.0, 0.8], (f["clean"].shape[0], 1)))
        assert (
            set(f["meta/noise"].asstr()[...]) == {f"profile:{profile}"}
            and f["meta/reference"].asstr()[0] == ""
        )
    assert verify(out, regenerate=3, tolerance=0).ok


def test_resume_refuses_when_the_profile_changed(sim, tiny_ckpt, tmp_path, capsys):
    """A partial generation with profile noise, the profile edited, --resume: a clear error naming the file
    and both SHA-256 (else the file would hold samples of two noise models)."""
    import naflow_aug
    from naflow_aug.noise.profiles import NoiseProfile
    from naflow_aug.runs import sha256_file

    classes = naflow_aug.load(tiny_ckpt).classes
    profile = tmp_path / "p.json"
    NoiseProfile(classes=classes, weights=[1.0] + [0.0] * (len(classes) - 1)).save(profile)
    out = tmp_path / "prof.h5"
    kw = dict(noise=f"profile:{profile}", source_kind="clean", samples_per_crop=1, join="vds")
    generate(_config(out, sim, tiny_ckpt, **kw))
    os.remove(out)  # the partial state of a killed run: plan.json and some parts
    os.remove(hdf5.part_path(hdf5.parts_dir(out), 1))
    before = sha256_file(profile)
    NoiseProfile(classes=classes, weights=[0.0] * (len(classes) - 1) + [1.0]).save(profile)
    after = sha256_file(profile)
    with pytest.raises(ValueError, match=rf"noise profile {re.escape(str(profile))}.*{before}.*{after}"):
        generate(_config(out, sim, tiny_ckpt, resume=True, **kw))
    assert not out.exists()
    args = ["generate", "--clean", str(sim), "--out", str(out), "--model", str(tiny_ckpt), "--noise",
            kw["noise"], "--source-kind", "clean", "--crop", "16", "--samples-per-crop", "1", "--part-size",
            "4", "--batch-size", "2", "--join", "vds", "--resume", "--no-progress"]  # fmt: skip
    assert cli_main(args) == 2
    err = capsys.readouterr().err
    assert "error: cannot resume" in err and str(profile) in err and before in err and after in err
    NoiseProfile(classes=classes, weights=[1.0] + [0.0] * (len(classes) - 1)).save(profile)  # restored
    generate(_config(out, sim, tiny_ckpt, resume=True, **kw))
    recorded = hdf5.read_attrs(out)["inputs"]
    assert recorded["profile"] == {"path": str(profile.resolve()), "sha256": before}
    assert recorded["model"]["sha256"] == sha256_file(tiny_ckpt)


def test_a_second_run_on_the_same_output_is_refused(sim, tiny_ckpt, script, tmp_path):
    """While one process generates `out`, a second `generate --overwrite --seed 1` on it exits with an error
    naming the first (PID, command) and changes nothing; the first finishes a correct file."""
    from naflow_aug.output_lock import lock_path

    out = tmp_path / "busy.h5"
    first = subprocess.Popen([sys.executable, str(script), str(out), str(sim), str(tiny_ckpt), "0", "0.3"],
                             env=_env(), stderr=subprocess.PIPE, text=True)  # fmt: skip
    try:
        deadline = time.monotonic() + 60
        while not (hdf5.parts_dir(out) / "plan.json").is_file() and time.monotonic() < deadline:
            time.sleep(0.02)
        second = subprocess.run(
            [sys.executable, "-m", "naflow_aug.cli", "generate", "--clean", str(sim), "--out", str(out),
             "--model", str(tiny_ckpt), "--crop", "16", "--samples-per-crop", "2", "--part-size", "4",
             "--batch-size", "2", "--seed", "1", "--overwrite", "--no-progress"],
            env=_env(), capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        running = first.poll() is None  # else it ended early (too fast to test anything) or crashed
    finally:
        _, first_err = first.communicate(timeout=120)
    assert running, f"the first run ended while the second ran: {first.returncode}, {first_err[-2000:]}"
    assert second.returncode == 2, second.stderr[-2000:]
    assert f"in use by another generate: PID {first.pid}" in second.stderr
    assert str(script) in second.stderr  # the other process's command
    assert first.returncode == 0, first_err[-2000:]
    assert hdf5.read_attrs(out)["seed"] == 0 and verify(out).ok
    assert not lock_path(out).exists()


def test_adapted_profile_noise(sim, tiny_ckpt, tmp_path):
    import naflow_aug
    from naflow_aug.adapt import AdaptConfig
    from naflow_aug.noise.profiles import calibrate

    model = naflow_aug.load(tiny_ckpt)
    clean = torch.rand(2, 3, 32, 32, generator=torch.Generator().manual_seed(0)) * 0.8 + 0.1
    noisy = model.sample(clean, config=model.classes[-1], seeds=[1, 2])
    config = AdaptConfig(steps=2, batch_size=2, crop_size=16, refit_max_size=32)
    profile = calibrate(model, list(zip(clean, noisy, strict=True)), adapt_config=config)
    profile = profile.save(tmp_path / "p.json")
    out = tmp_path / "adapted.h5"
    generate(
        _config(out, sim, tiny_ckpt, noise=f"profile:{profile}", source_kind="clean", samples_per_crop=1)
    )
    with h5py.File(out, "r") as f:
        weights = f["meta/weights"][...]
        assert weights.shape == (f["clean"].shape[0], len(model.classes) + 1) and (weights[:, -1] == 1).all()
        assert list(f.attrs["classes"]) == [*model.classes, "camera"]
    assert verify(out, regenerate=3, tolerance=0).ok
