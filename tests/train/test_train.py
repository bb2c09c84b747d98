"""Training: a tiny model learns on simulated pairs, resumes exactly, stops on non-finite losses."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import naflow_aug
from naflow_aug import train as training
from naflow_aug.checkpoints import model_from_training_checkpoint
from naflow_aug.runs import config_from_dict

# Three configurations whose noise differs in level (std in [0, 1] units).
CONFIGS = {"S6_00100": 0.01, "S6_03200": 0.08, "GP_00800": 0.04}
TINY_MODEL = {"hidden_channels": 8, "encoder_channels": 8}


def _write_sidd_like(root: Path, pairs_per_config: int = 3, size: int = 48, seed: int = 0) -> Path:
    """A small data set in the SIDD-Medium layout: smooth clean images plus Gaussian noise per config."""
    rng = np.random.default_rng(seed)
    inst = 1
    for name, std in CONFIGS.items():
        phone, iso = name.split("_")
        for _ in range(pairs_per_config):
            folder = root / "Data" / f"{inst:04d}_001_{phone}_{iso}_00100_4400_N"
            folder.mkdir(parents=True)
            yy, xx = np.mgrid[0:size, 0:size] / size
            base = 0.2 + 0.6 * rng.random(3)[:, None, None] * (0.5 + 0.5 * np.sin(3 * xx + 2 * yy))[None]
            clean = np.clip(base, 0, 1).transpose(1, 2, 0)
            noisy = np.clip(clean + rng.normal(0, std, clean.shape), 0, 1)
            for kind, image in (("GT", clean), ("NOISY", noisy)):
                png = Image.fromarray((image * 255).round().astype(np.uint8))
                png.save(folder / f"{inst:04d}_{kind}_SRGB_010.PNG")
            inst += 1
    return root


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _write_sidd_like(tmp_path_factory.mktemp("sidd_like"))


def _config(data_dir: Path, **changes) -> training.TrainConfig:
    base = training.preset("cpu").replace(
        data=str(data_dir),
        model=TINY_MODEL,
        steps=24,
        batch_size=4,
        crop_size=16,
        lr=2e-3,
        latent_lr=2e-2,
        lr_milestones=(16,),
        log_every=4,
        checkpoint_every=8,
        val_every=12,
        val_crop=32,
        val_samples=1,
        val_fraction=0.2,
        preload=True,
        device="cpu",
    )
    return base.replace(**changes)


def _train_losses(run: Path) -> list[float]:
    return [r["loss"] for r in map(json.loads, (run / "metrics.jsonl").read_text().splitlines())
            if r.get("kind") == "train"]


def test_tiny_model_learns_and_exports(data_dir: Path, tmp_path: Path) -> None:
    config = _config(data_dir, steps=40, lr_milestones=(30,), val_every=0, checkpoint_every=20)
    results = training.train(config, tmp_path / "run", progress=False)
    losses = _train_losses(tmp_path / "run")
    assert len(losses) == 10
    assert np.mean(losses[-3:]) < np.mean(losses[:2]) - 0.5, losses
    assert results["nonfinite_steps"] == 0
    assert results["val_pairs"] >= 1 and results["train_pairs"] + results["val_pairs"] == 9
    for key in ("val_nll", "val_nas_kld", "val_nas_akld", "val_top1", "val_top3", "val_cfg_kld"):
        assert np.isfinite(results["final_val"][key]), key
    assert 0 <= results["final_val"]["val_top1"] <= results["final_val"]["val_top3"] <= 1
    model = naflow_aug.load(tmp_path / "run" / "model.pt")
    assert sorted(model.classes) == sorted(CONFIGS)
    assert (tmp_path / "run" / "results.json").is_file()


def test_resume_equals_uninterrupted(data_dir: Path, tmp_path: Path) -> None:
    config = _config(data_dir)
    full = training.train(config, tmp_path / "full", progress=False)
    # The same run, stopped after step 8 (a checkpoint), then resumed to the end.
    training.train(config.replace(steps=8), tmp_path / "part", progress=False)
    with pytest.raises(ValueError, match="different configuration"):
        training.train(config.replace(lr=1e-3), tmp_path / "part", resume=True, progress=False)
    resumed = training.train(config, tmp_path / "part", resume=True, progress=False)
    a = torch.load(tmp_path / "full" / "checkpoint.pt", weights_only=True)
    b = torch.load(tmp_path / "part" / "checkpoint.pt", weights_only=True)
    assert a["step"] == b["step"] == 24
    for key, value in a["model"].items():
        assert torch.equal(value, b["model"][key]), key
    for sa, sb in zip(a["optimizer"]["state"].values(), b["optimizer"]["state"].values(), strict=True):
        assert torch.equal(sa["exp_avg_sq"], sb["exp_avg_sq"])
    assert _train_losses(tmp_path / "full") == _train_losses(tmp_path / "part")
    assert full["final_val"] == resumed["final_val"]
    # Resuming a finished run does nothing and returns its results.
    again = training.train(config, tmp_path / "part", resume=True, progress=False)
    assert again["final_val"] == resumed["final_val"]


def test_nonfinite_steps_are_skipped_then_stop(data_dir: Path, tmp_path: Path,
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    real = training.loop._batch_loss
    calls = {"n": 0}

    def sometimes_nan(objective, batch):
        calls["n"] += 1
        loss = real(objective, batch)
        return loss * float("nan") if calls["n"] in (3, 5) else loss

    monkeypatch.setattr(training.loop, "_batch_loss", sometimes_nan)
    config = _config(data_dir, steps=8, val_every=0, max_nonfinite=2, val_max_pairs=1)
    results = training.train(config, tmp_path / "ok", progress=False)
    assert results["nonfinite_steps"] == 2
    state = torch.load(tmp_path / "ok" / "checkpoint.pt", weights_only=True)
    assert all(torch.isfinite(v).all() for v in state["model"].values() if v.is_floating_point())

    monkeypatch.setattr(training.loop, "_batch_loss", lambda obj, batch: real(obj, batch) * float("inf"))
    with pytest.raises(training.NonFiniteLossError, match="non-finite"):
        training.train(config, tmp_path / "bad", progress=False)


def test_config_files_reject_unknown_keys(tmp_path: Path) -> None:
    path = tmp_path / "c.toml"
    path.write_text('preset = "cpu"\nsteps = 100\nlearning_rate = 1.0\n')
    with pytest.raises(ValueError, match="learning_rate"):
        training.load_train_config(path)
    path.write_text('preset = "cpu"\nsteps = 3000\n')
    config = training.load_train_config(path)
    assert config.steps == 3000 and config.crop_size == 64
    assert config.lr_milestones == (1500, 2250, 2700)  # the cpu schedule scaled to the new length
    with pytest.raises(ValueError, match="unknown training preset"):
        training.load_train_config(preset_name="gpu")
    with pytest.raises(TypeError):
        config_from_dict(training.TrainConfig, {"steps": "many"})


@pytest.mark.parametrize("name", ["train_cpu.toml", "train_paper.toml", "train_sidd_mini.toml",
                                  "train_sidd_mini_continue.toml"])
def test_pipeline_presets_load(name: str) -> None:
    path = Path(__file__).resolve().parents[2] / "pipelines" / name
    config = training.load_train_config(path)
    assert config.preset in training.PRESETS
    if name == "train_paper.toml":
        assert config == training.PRESETS["paper"].replace(**{k: getattr(config, k) for k in ("data",)})
        assert (config.lr, config.betas, config.batch_size, config.crop_size) == (1e-4, (0.9, 0.99), 8, 160)
        assert config.lr_milestones == (50_000, 75_000, 90_000) and config.steps == 100_000


DDP_SCRIPT = """
import sys, torch
from pathlib import Path
sys.path.insert(0, {tests!r})
from test_train import _config
from naflow_aug import train as training
torch.set_num_threads(1)
training.train(_config(Path({data!r}), steps=8, checkpoint_every=4, val_every=0, val_max_pairs=1),
               {run!r}, progress=False)
"""


def test_torchrun_two_processes_gloo(data_dir: Path, tmp_path: Path) -> None:
    """`torchrun --nproc_per_node 2` trains with DDP on the CPU (gloo) without code changes."""
    import os
    import subprocess
    import sys

    script = tmp_path / "ddp_train.py"
    script.write_text(DDP_SCRIPT.format(tests=str(Path(__file__).parent), data=str(data_dir),
                                        run=str(tmp_path / "run")))
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
           str(script)]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads((tmp_path / "run" / "results.json").read_text())
    assert results["world_size"] == 2 and results["steps"] == 8
    assert naflow_aug.load(tmp_path / "run" / "model.pt").classes == results["classes"]


def test_fine_tune_starts_from_the_checkpoint(data_dir: Path, tmp_path: Path) -> None:
    first = training.train(_config(data_dir, steps=8, val_every=0, val_max_pairs=1), tmp_path / "a",
                           progress=False)
    start = naflow_aug.load(first["model"])
    # A near-zero learning rate: the fine-tuned weights must stay those of the checkpoint (in particular
    # ActNorm must not be re-initialised from the data).
    config = _config(data_dir, init=first["model"], steps=4, lr=1e-9, latent_lr=1e-9, val_every=0,
                     val_max_pairs=1, lr_milestones=())
    tuned = naflow_aug.load(training.train(config, tmp_path / "b", progress=False)["model"])
    assert tuned.classes == start.classes
    for (name, a), b in zip(start.state_dict().items(), tuned.state_dict().values(), strict=True):
        assert torch.allclose(a.float(), b.float(), atol=1e-6), name


def test_fine_tune_official_checkpoint(data_dir: Path, tmp_path: Path, shared_dir: Path) -> None:
    ckpt = shared_dir / "fixtures" / "official_naflow_lightning.ckpt"
    config = _config(data_dir, init=str(ckpt), steps=2, val_every=0, val_max_pairs=1, checkpoint_every=2,
                     model={})
    results = training.train(config, tmp_path / "official", progress=False)
    model = naflow_aug.load(results["model"])
    assert len(model.classes) == 34 and set(CONFIGS) <= set(model.classes)
    assert np.isfinite(results["last_train"]["loss"])


def test_cli_train_and_resume(data_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from naflow_aug import cli

    config = tmp_path / "tiny.toml"
    config.write_text('preset = "cpu"\nsteps = 4\nbatch_size = 2\ncrop_size = 16\nlog_every = 2\n'
                      'checkpoint_every = 2\nval_every = 0\nval_crop = 32\nval_samples = 1\n'
                      '[model]\nhidden_channels = 8\nencoder_channels = 8\n')
    args = ["train", "--config", str(config), "--data", str(data_dir), "--out", str(tmp_path / "run"),
            "--no-progress"]
    assert cli.main(args) == 0
    assert "trained 4 steps" in capsys.readouterr().out
    assert cli.main([*args, "--resume", "--steps", "6"]) == 0  # extends the finished run
    assert json.loads((tmp_path / "run" / "results.json").read_text())["steps"] == 6
    assert cli.main(args) == 2  # the run directory is taken: a clear error, not an overwrite
    assert "already holds a training run" in capsys.readouterr().err


def test_loader_workers_and_lazy_reading_give_the_same_run(data_dir: Path, tmp_path: Path) -> None:
    config = _config(data_dir, steps=6, val_every=0, val_max_pairs=1, checkpoint_every=6)
    training.train(config, tmp_path / "a", progress=False)
    training.train(config.replace(preload=False, num_workers=2), tmp_path / "b", progress=False)
    a = torch.load(tmp_path / "a" / "checkpoint.pt", weights_only=True)["model"]
    b = torch.load(tmp_path / "b" / "checkpoint.pt", weights_only=True)["model"]
    assert all(torch.equal(a[k], b[k]) for k in a)


# ------------------------------------------------------------------------------------------ prior refit
def _random_pairs(classes: list[str], seed: int = 0, size: int = 24) -> list[tuple]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for i, cls in enumerate(classes):
        clean = torch.rand(3, size, size + 8, generator=g) * 0.6 + 0.2
        noisy = (clean + (0.02 + 0.03 * i) * torch.randn(clean.shape, generator=g)).clamp(0, 1)
        out.append((noisy, (clean * 255).round().to(torch.uint8), cls))  # float and uint8 both accepted
    return out


@pytest.mark.parametrize("covariance", ["diagonal", "full"])
def test_refit_prior_is_the_closed_form_fit(covariance: str) -> None:
    from conftest import make_tiny_naflow

    from naflow_aug import flow

    base = make_tiny_naflow()
    model = flow.NAFlow(flow.NAFlowConfig(**{**base.config.__dict__, "covariance": covariance}))
    model.load_state_dict({k: v for k, v in base.state_dict().items() if not k.startswith("prior.")},
                          strict=False)
    model.freeze()
    a, b, c = model.classes
    size = 24 if covariance == "diagonal" else 128  # full: more positions than the 192 latent channels
    pairs = _random_pairs([a, a, b, "Z_99999"], size=size)  # two pairs of a, one of b, one unknown; no c
    before = {k: v.clone() for k, v in model.prior.state_dict().items()}
    summary = training.refit_prior(model, pairs)
    assert summary["pairs"] == 3 and summary["skipped"] == 1 and summary["unchanged"] == [c]
    assert summary["classes"][a] == {"pairs": 2, "positions": 2 * (size // 8) * (size // 8 + 1)}
    # The fit equals the moments of the latents of each configuration's pairs (every position a sample).
    latents = {}
    for noisy, clean, cls in pairs[:3]:
        z, _ = model.encode(noisy[None], clean[None].float() / 255)
        latents.setdefault(cls, []).append(z[0].flatten(1).double())
    nll_before = nll_after = 0.0
    for cls in (a, b):
        z = torch.cat(latents[cls], 1)
        k = model.classes.index(cls)
        assert torch.allclose(model.prior.mean[k].double(), z.mean(1), atol=1e-5)
        std = model.prior.std[k].double()
        cov = std @ std.T if covariance == "full" else std.pow(2)
        want = torch.cov(z, correction=0) if covariance == "full" else z.var(1, correction=0)
        assert torch.allclose(cov, want, atol=1e-4, rtol=1e-4), cls
        zz = z.float().T.reshape(1, -1, 1, model.prior.mean.shape[1]).permute(0, 3, 1, 2)  # (1, C, 1, N)
        ids = torch.tensor([k])
        nll_after -= float(model.prior.log_prob(zz, ids))
        with torch.no_grad():
            refit = {n: v.clone() for n, v in model.prior.state_dict().items()}
            model.prior.load_state_dict(before)
            nll_before -= float(model.prior.log_prob(zz, ids))
            model.prior.load_state_dict(refit)
    assert nll_after < nll_before  # the maximum-likelihood fit can only lower the latents' NLL
    kc = model.classes.index(c)
    assert torch.equal(model.prior.mean[kc], before["mean"][kc])
    assert torch.equal(model.prior.std[kc], before["std"][kc])
    # The fast sampling path follows the new Gaussians (its folded plan is rebuilt, not stale).
    clean = pairs[0][1][None].float()[..., :24] / 255
    fast = model.sample(clean, config=a, seeds=[7])
    model.fast_sampling = False
    assert torch.allclose(fast, model.sample(clean, config=a, seeds=[7]), atol=1e-5)
    with pytest.raises(ValueError, match="no pairs of the model's configurations"):
        training.refit_prior(model, _random_pairs(["Z_99999"]))
    if covariance == "full":
        with pytest.raises(ValueError, match="more latent positions than the 192 channels"):
            training.refit_prior(model, _random_pairs([a], size=24))


def test_train_refit_prior_writes_the_refit_model(data_dir: Path, tmp_path: Path) -> None:
    config = _config(data_dir, steps=8, val_every=0, val_max_pairs=1, checkpoint_every=8,
                     refit_prior=True, refit_max_size=32)
    results = training.train(config, tmp_path / "run", progress=False)
    assert results["prior_refit"]["pairs"] == results["train_pairs"]
    state = torch.load(tmp_path / "run" / "checkpoint.pt", weights_only=True)
    refit = naflow_aug.load(tmp_path / "run" / "model.pt")
    trained = model_from_training_checkpoint(state)  # checkpoint.pt keeps the trained (pre-refit) prior
    for name, value in trained.state_dict().items():
        same = torch.equal(value, refit.state_dict()[name])
        assert same != name.startswith("prior."), name  # only the prior changed
    pairs = training.split_training_pairs(training.scan_pairs(data_dir), config)[0]
    training.refit_prior(trained, [(*training.read_pair(p), p.cls) for p in pairs], max_size=32)
    assert torch.allclose(trained.prior.mean, refit.prior.mean, atol=1e-6)
    assert torch.allclose(trained.prior.std, refit.prior.std, atol=1e-6)


def test_cli_refit_prior(data_dir: Path, tmp_path: Path, tiny_checkpoint: Path,
                         capsys: pytest.CaptureFixture) -> None:
    from naflow_aug import cli

    model = training.train(_config(data_dir, steps=4, val_every=0, val_max_pairs=1, checkpoint_every=4),
                           tmp_path / "run", progress=False)["model"]
    out = tmp_path / "refit.pt"
    args = ["refit-prior", "--model", model, "--data", str(data_dir), "--out", str(out), "--no-progress"]
    assert cli.main(args) == 0
    assert "refit 3 configurations on 9 pairs" in capsys.readouterr().out
    refit = naflow_aug.load(out)
    assert not torch.equal(refit.prior.std, naflow_aug.load(model).prior.std)
    # a model without any of the data's configurations: a clear error, nothing written
    assert cli.main([*args[:2], str(tiny_checkpoint), *args[3:6], str(tmp_path / "no.pt")]) == 2
    assert "no pairs of the model's configurations" in capsys.readouterr().err
    assert not (tmp_path / "no.pt").exists()
