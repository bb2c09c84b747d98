"""Every device-dependent path on the ``--device`` of the run (CPU by default; ``pytest -m device --device
cuda`` on a GPU, as benchmarks/gpu_check.py does): noise sources, transforms, the fast path and its
bfloat16 option, tiling, the HDF5 generator, the denoiser harness and NAFlow training steps. Each result
must stay on the input's device and agree with the same computation on the CPU."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import h5py
import numpy as np
import pytest
import torch

from naflow_aug import NAFlow, NAFlowConfig, bench, save_checkpoint
from naflow_aug import train as training
from naflow_aug.data.simcam import DEFAULT_CAMERAS, write_simulated_sidd
from naflow_aug.denoisers import DnCNN
from naflow_aug.flow.fast import FastNAFlow
from naflow_aug.generate import GenerateConfig, generate
from naflow_aug.noise import make_noise_source


@pytest.fixture(scope="module")
def model_on(tiny_model, device):
    return copy.deepcopy(tiny_model).to(device)


def _clean(b: int, h: int, w: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    base = torch.nn.functional.interpolate(torch.rand(b, 3, h // 8 + 1, w // 8 + 1, generator=g), size=(h, w))
    return base.mul(0.8).add(0.1)


@pytest.mark.parametrize("spec", ["random", "config:B_00800", "weights:0.2,0.3,0.5", "nas", "gaussian:10"])
def test_noise_source_on_device_equals_cpu(spec, tiny_model, model_on, device) -> None:
    clean = _clean(3, 24, 32)
    reference = (clean + 0.05 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(1))).clamp(
        0, 1
    )
    on_cpu, p_cpu = make_noise_source(spec, tiny_model)(clean, reference=reference, seeds=[5, 6, 7])
    source = make_noise_source(spec, model_on)
    noisy, params = source(clean.to(device), reference=reference.to(device), seeds=[5, 6, 7])
    assert noisy.device.type == device.type and noisy.dtype == torch.float32
    assert params.seeds.device.type == "cpu"  # params are host records (JSON, HDF5 rows)
    assert params.weights is None or params.weights.device.type == "cpu"
    torch.testing.assert_close(noisy.cpu(), on_cpu, atol=1e-4, rtol=0)
    if params.weights is not None:
        torch.testing.assert_close(params.weights, p_cpu.weights, atol=1e-4, rtol=0)
    # replay on the device reproduces the call; items one at a time equal the batch
    assert torch.equal(source.replay(clean.to(device), params, reference=reference.to(device)), noisy)
    one, _ = source(clean[1:2].to(device), reference=reference[1:2].to(device), seeds=[6])
    torch.testing.assert_close(one, noisy[1:2], atol=1e-5, rtol=0)


def test_prior_sample_with_a_cpu_generator(tiny_model, model_on, device) -> None:
    """A CPU generator may drive the latent draw of a model on any device (drawn on the host, moved)."""
    w = torch.tensor([[1.0, 0.0, 0.0], [0.2, 0.3, 0.5]])
    on_cpu = tiny_model.prior.sample(w, (4, 4), torch.Generator().manual_seed(0))
    z = model_on.prior.sample(w.to(device), (4, 4), torch.Generator().manual_seed(0))
    assert z.device.type == device.type
    torch.testing.assert_close(z.cpu(), on_cpu)


def test_torchvision_transform_on_device_batches(model_on, device) -> None:
    from naflow_aug.transforms import NAFlowNoise

    clean = (_clean(4, 16, 16) * 255).round().to(torch.uint8).to(device)
    noisy, params = NAFlowNoise(model_on, noise="random", seed=0, return_params=True)(clean)
    assert noisy.device == clean.device and noisy.dtype == torch.uint8 and noisy.shape == clean.shape
    again, _ = NAFlowNoise(model_on, noise="random", return_params=True)(clean, params=params)
    assert torch.equal(again, noisy)


def test_fast_path_and_bf16_on_device(model_on, device) -> None:
    clean = _clean(2, 32, 32).to(device)
    reference = clean + 0.05 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(2)).to(device)
    reference = reference.clamp(0, 1)
    fast = FastNAFlow(model_on).sample(clean, reference=reference, seeds=[1, 2])
    model_on.fast_sampling = False
    try:
        layered = model_on.sample(clean, reference=reference, seeds=[1, 2], noise_level="model")
    finally:
        model_on.fast_sampling = True
    assert fast.device.type == device.type
    torch.testing.assert_close(fast, layered, atol=1e-4, rtol=0)
    bf16 = FastNAFlow(model_on, autocast=torch.bfloat16)
    out, params = bf16.sample(clean, reference=reference, seeds=[1, 2], return_params=True)
    assert out.dtype == torch.float32 and params.weights.dtype == torch.float32  # autocast stays inside
    assert bf16.check_invertibility(clean, reference) < 2e-2
    # the same mixture and seeds: bfloat16 sub-networks move the noise by a small part of its size
    _, p32 = FastNAFlow(model_on).sample(clean, reference=reference, seeds=[1, 2], return_params=True)
    out = bf16.sample(clean, weights=p32.weights, seeds=[1, 2])
    assert float((out - fast).abs().mean()) < 0.1 * float((fast - clean).abs().mean())


def test_tiled_nas_on_device(tiny_model, model_on, device) -> None:
    clean = _clean(1, 72, 100)
    reference = (clean + 0.05 * torch.randn(clean.shape, generator=torch.Generator().manual_seed(3))).clamp(
        0, 1
    )
    kw = dict(tile_size=48, overlap=8)
    on_cpu, _ = make_noise_source("nas", tiny_model, **kw)(clean, reference=reference, seeds=[9])
    noisy, _ = make_noise_source("nas", model_on, **kw)(
        clean.to(device), reference=reference.to(device), seeds=[9]
    )
    assert noisy.device.type == device.type and noisy.shape == clean.shape
    torch.testing.assert_close(noisy.cpu(), on_cpu, atol=1e-4, rtol=0)


@pytest.fixture(scope="module")
def sim(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("sim")
    write_simulated_sidd(root, seed=0, cameras=DEFAULT_CAMERAS[:3], scenes_per_config=1, size_range=(32, 40))
    return root


def test_generate_on_device_matches_cpu(sim, device, tmp_path) -> None:
    from naflow_aug.data.sidd import scan_sidd_medium

    classes = tuple(sorted({p.cls for p in scan_sidd_medium(sim)}))
    torch.manual_seed(0)
    net = NAFlow(
        NAFlowConfig(
            classes=classes,
            levels=2,
            hidden_channels=8,
            encoder_channels=8,
            transition_steps=1,
            conditional_steps=1,
        )
    )
    clean = _clean(2, 16, 16)
    net.train().encode((clean + 0.05 * torch.randn(clean.shape)).clamp(0, 1), clean)  # ActNorm init
    ckpt = save_checkpoint(net.freeze(), tmp_path / "m.pt")
    files = {}
    for name, dev in (("cpu", "cpu"), ("dev", str(device))):
        cfg = GenerateConfig(
            out=str(tmp_path / f"{name}.h5"),
            source=str(sim),
            model=str(ckpt),
            crop=16,
            batch_size=4,
            part_size=4,
            device=dev,
            progress=False,
        )
        assert generate(cfg).num_samples > 0
        files[name] = h5py.File(tmp_path / f"{name}.h5", "r")
    a, b = files["cpu"], files["dev"]
    for key in ("index", "seed", "crop", "source", "reference", "noise", "label"):
        assert np.array_equal(a["meta"][key][...], b["meta"][key][...]), key
    assert np.array_equal(a["clean"][...], b["clean"][...])
    np.testing.assert_allclose(a["meta/weights"][...], b["meta/weights"][...], atol=1e-4)
    levels = np.abs(a["noisy"][...].astype(int) - b["noisy"][...].astype(int))
    assert levels.max() <= 1 and (levels > 0).mean() < 0.01
    assert json.loads(b.attrs["config"])["device"] == str(device)


def test_denoiser_training_on_device(device, tmp_path) -> None:
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(8, 3, 16, 16, generator=g)
    data = [{"clean": c, "noisy": (c + 0.1 * torch.randn(c.shape, generator=g)).clamp(0, 1)} for c in clean]
    batches = bench.PatchBatches(data, patch_size=8, batch_size=4, device=device)
    preset = bench.BenchPreset(**{**bench.CPU.__dict__, "epochs": 1, "steps_per_epoch": 3})
    model = bench.train_denoiser(
        DnCNN(depth=3, width=8), batches, preset, tmp_path / "run", device=device, progress=False
    )
    assert next(model.parameters()).device.type == device.type
    out = bench.denoise(model, clean.to(device))
    assert out.device.type == "cpu" and out.shape == clean.shape  # scores are computed on the host
    record = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert np.isfinite(record["loss"])


def test_naflow_training_steps_on_device(sim, device, tmp_path) -> None:
    config = training.preset("cpu").replace(
        data=str(sim),
        model={"hidden_channels": 8, "encoder_channels": 8},
        steps=3,
        batch_size=2,
        crop_size=16,
        log_every=1,
        checkpoint_every=3,
        val_every=0,
        preload=True,
        device=str(device),
        num_workers=0,
    )
    results = training.train(config, tmp_path / "run", progress=False)
    assert results["nonfinite_steps"] == 0
    state = torch.load(tmp_path / "run" / "checkpoint.pt", map_location="cpu", weights_only=True)
    if device.type == "cuda":
        assert "cuda" in state["rng"]  # the device's RNG state is saved for an exact resume
