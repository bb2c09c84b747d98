"""The folded inference path (naflow_aug/flow/fast.py) against the layer-by-layer reference path."""

from __future__ import annotations

import pickle

import pytest
import torch

import naflow_aug.flow.fast as fast_module
from naflow_aug import NAFlow, NAFlowConfig
from naflow_aug.flow.fast import FastNAFlow, draw_item_noise
from naflow_aug.flow.model import LayerEngine
from naflow_aug.flow.nas import CudaGraphNAS
from naflow_aug.noise import make_noise_source

CLASSES = ("A_00100", "B_00200", "C_00400", "D_00800")
TINY = NAFlowConfig(classes=CLASSES, levels=2, transition_steps=1, conditional_steps=2,
                    hidden_channels=8, encoder_channels=8)  # fmt: skip
# no transition steps and one level with a conditional step right after the squeeze
BARE = NAFlowConfig(classes=CLASSES, levels=1, transition_steps=0, conditional_steps=1,
                    hidden_channels=4, encoder_channels=4)  # fmt: skip
# hidden wider than the level-1 sub-network outputs: their residual layer folds into the output layer
WIDE = NAFlowConfig(classes=CLASSES, levels=2, transition_steps=1, conditional_steps=2,
                    hidden_channels=32, encoder_channels=8)  # fmt: skip
# encoder wider than the level-1 squeezed image (12 channels), narrower than level 2's (48): level 1's
# users read the squeezed clean image through the folded encoder, level 2's read its features; the
# level-1 couplings concatenate that image to x1 (12 < 32 / 2), level 2's add a projection (16 = 32 / 2)
ENC = NAFlowConfig(classes=CLASSES, levels=2, transition_steps=1, conditional_steps=2,
                   hidden_channels=32, encoder_channels=16)  # fmt: skip
FULL = NAFlowConfig(classes=CLASSES, levels=2, transition_steps=1, conditional_steps=1,
                    hidden_channels=8, encoder_channels=8, covariance="full")  # fmt: skip


def _model(config: NAFlowConfig = TINY, dtype: torch.dtype = torch.float32, seed: int = 0) -> NAFlow:
    """A model whose every weight (ActNorms and zero-initialised output layers included) is non-trivial."""
    torch.manual_seed(seed)
    model = NAFlow(config)
    with torch.no_grad():
        for name, p in model.named_parameters():
            if name == "prior.mean":
                p.copy_(0.3 * torch.randn_like(p))
            elif name == "prior.std":
                if p.dim() == 2:
                    p.copy_(0.5 + torch.rand_like(p))
                else:
                    p.copy_(torch.eye(p.shape[-1]) + 0.1 * torch.randn_like(p))
            else:
                p.add_(0.05 * torch.randn_like(p))
    return model.to(dtype).freeze()


def _rel(a: torch.Tensor, b: torch.Tensor) -> float:
    return float((a - b).abs().max() / b.abs().max())


def _images(b: int = 3, h: int = 8, w: int = 16, seed: int = 1, dtype=torch.float32):
    g = torch.Generator().manual_seed(seed)
    clean = torch.rand(b, 3, h, w, generator=g)
    noisy = (clean + 0.08 * torch.randn(b, 3, h, w, generator=g)).clamp(0, 1)
    return noisy.to(dtype), clean.to(dtype)


def _reference_sample(model: NAFlow, clean, **kwargs):
    model.fast_sampling = False
    try:
        return model.sample(clean, **kwargs)
    finally:
        model.fast_sampling = True


@pytest.mark.parametrize(("config", "dtype", "tol"), [
    (TINY, torch.float64, 1e-12), (TINY, torch.float32, 1e-5), (BARE, torch.float64, 1e-12),
    (FULL, torch.float64, 1e-12), (WIDE, torch.float64, 1e-12), (WIDE, torch.float32, 1e-5),
    (ENC, torch.float64, 1e-12), (ENC, torch.float32, 1e-5),
])  # fmt: skip
@pytest.mark.parametrize("onednn", [True, False], ids=["onednn", "aten"])
def test_encode_decode_match_reference(config, dtype, tol, onednn, monkeypatch) -> None:
    """Both CPU kernel sets: oneDNN's fused products/convolutions (float32 default) and plain aten ops."""
    if onednn and not fast_module.ONEDNN:
        pytest.skip("oneDNN kernels unavailable in this torch build")
    monkeypatch.setattr(fast_module, "ONEDNN", onednn)
    calls = []
    linear = fast_module._ONEDNN_LINEAR
    monkeypatch.setattr(fast_module, "_ONEDNN_LINEAR", lambda *a: calls.append(1) or linear(*a))
    model = _model(config, dtype)
    fast = FastNAFlow(model)
    noisy, clean = _images(dtype=dtype)
    z_ref, ld_ref = model.encode(noisy, clean)
    z, ld = fast.encode(noisy, clean)
    assert z.shape == z_ref.shape and z.dtype == dtype and z.is_contiguous()
    shapes = {tuple(n.w_res.shape) for n in fast.plan.couplings + fast.plan.injectors}
    assert any(a != b for a, b in shapes) == (config in (WIDE, ENC))  # the folded residual is exercised
    assert fast.plan.from_image == [config is ENC] + [False] * (config.levels - 1)  # folded encoder
    concat = [n.w_first is not None for n in fast.plan.couplings]  # first layer on concat(x1, source)
    assert concat == {WIDE: [True] * 4, ENC: [True, True, False, False]}.get(config, [False] * len(concat))
    assert _rel(z, z_ref) < tol and _rel(ld, ld_ref) < tol
    assert _rel(fast.decode(z_ref, clean), model.decode(z_ref, clean)) < tol
    # one CleanFeatures shared by encode and decode gives the same as computing them twice
    feats = fast.condition(clean)
    assert torch.equal(fast.encode(noisy, clean, feats)[0], z)
    assert _rel(fast.decode(z, clean, feats), noisy) < (1e-10 if dtype == torch.float64 else 1e-4)
    assert bool(calls) == (onednn and dtype == torch.float32)  # the kernel set under test did run


def _count_calls(monkeypatch, name: str) -> list[int]:
    """Counts the calls of FastNAFlow.<name> from here on."""
    calls: list[int] = []
    original = getattr(FastNAFlow, name)
    monkeypatch.setattr(FastNAFlow, name, lambda self, *a, **k: calls.append(1) or original(self, *a, **k))
    return calls


@pytest.mark.parametrize("dtype", [torch.float64, torch.float32])
@pytest.mark.parametrize("source", ["nas", "random", "config", "weights", "nas_topk"])
def test_sample_matches_reference(source, dtype, monkeypatch) -> None:
    model = _model(TINY, dtype)
    noisy, clean = _images(dtype=dtype)
    kwargs = {
        "nas": dict(reference=noisy, temperature=0.7),
        "nas_topk": dict(reference=noisy, top_k=2, mix_mode="covariance"),
        "random": {},
        "config": dict(config=["B_00200", "random", "D_00800"]),
        "weights": dict(weights=torch.tensor([0.1, 0.2, 0.3, 0.4])),
    }[source]
    ref, p_ref = _reference_sample(model, clean, seeds=[5, 6, 7], return_params=True, **kwargs)
    decodes = _count_calls(monkeypatch, "to_image")
    out, p = model.sample(clean, seeds=[5, 6, 7], return_params=True, **kwargs)  # frozen + eval: fast path
    assert decodes == [1]  # the fast path did run
    assert out.dtype == dtype and out.shape == clean.shape
    assert _rel(out, ref) < (1e-12 if dtype == torch.float64 else 1e-4)
    assert _rel(p.weights, p_ref.weights) < (1e-10 if dtype == torch.float64 else 1e-4)
    assert torch.equal(p.seeds, p_ref.seeds)
    assert float(out.min()) >= 0 and float(out.max()) <= 1
    assert not torch.equal(out, clean)


def test_seed_replay_batch_and_generator() -> None:
    model = _model()
    fast = model.sampling_engine()
    assert isinstance(fast, FastNAFlow)
    noisy, clean = _images(4)
    g = torch.Generator().manual_seed(3)
    out, params = fast.sample(clean, reference=noisy, generator=g, return_params=True)
    # the same generator state gives the same seeds as the reference path draws
    # FastNAFlow.sample is the engine: the mixture's sample at its own level (noise_level="model")
    ref = _reference_sample(
        model, clean, reference=noisy, generator=torch.Generator().manual_seed(3), noise_level="model"
    )
    assert _rel(out, ref) < 1e-4
    # replay from seeds, via NAS again and via the recorded weights
    assert torch.equal(fast.sample(clean, reference=noisy, seeds=params.seeds), out)
    assert torch.equal(fast.sample(clean, weights=params.weights, seeds=params.seeds), out)
    # batched == one by one, bit for bit on the latent noise, to rounding on the images
    seeds = params.seeds
    singles = torch.cat([fast.sample(clean[i : i + 1], reference=noisy[i : i + 1], seeds=seeds[i : i + 1])
                         for i in range(4)])  # fmt: skip
    assert _rel(singles, out) < 1e-5
    other = fast.sample(clean, reference=noisy, seeds=params.seeds + 1)
    assert not torch.allclose(other, out)


def test_draw_item_noise_is_the_contract() -> None:
    seeds = torch.tensor([0, 2**62, 17])
    picks, eps = draw_item_noise(seeds, 34, (12, 3, 5))
    for i, s in enumerate(seeds.tolist()):
        g = torch.Generator().manual_seed(s)
        assert picks[i] == int(torch.randint(34, (1,), generator=g))
        assert torch.equal(eps[i], torch.randn((12, 3, 5), generator=g))


def test_published_model_folds_the_encoder_into_levels_1_and_2() -> None:
    plan = FastNAFlow(NAFlow().freeze()).plan
    assert plan.from_image == [True, True, False]  # 12 and 48 image channels < 128 features < 192
    widths = {level: {n.w_cond.shape[0] for n, lv in zip(plan.couplings, plan.step_level, strict=True)
                      if lv == level} for level in (1, 2, 3)}  # fmt: skip
    assert widths == {1: {12}, 2: {48}, 3: {128}}  # stored (in, out): the users' input widths
    concat = {lv for n, lv in zip(plan.couplings, plan.step_level, strict=True) if n.w_first is not None}
    assert concat == {1}  # 12 image channels < 64 / 2 hidden: concatenated; 48 and 128 are not


def test_plan_follows_weight_updates_and_dtype() -> None:
    model = _model()
    fast = FastNAFlow(model)
    noisy, clean = _images(2)
    z0 = fast.encode(noisy, clean)[0]
    with torch.no_grad():
        model.flow[-1].coupling.net.res_conv.weight.mul_(1.5)
    z1 = fast.encode(noisy, clean)[0]
    assert not torch.allclose(z0, z1) and _rel(z1, model.encode(noisy, clean)[0]) < 1e-5
    model.double()
    z2 = fast.encode(noisy.double(), clean.double())[0]
    assert z2.dtype == torch.float64 and _rel(z2, model.encode(noisy.double(), clean.double())[0]) < 1e-12
    clone = pickle.loads(pickle.dumps(fast))  # the folded weights are not pickled, rebuilt on use
    assert clone._plan is None and torch.equal(clone.encode(noisy.double(), clean.double())[0], z2)


def test_fast_engine_only_for_frozen_eval_models(monkeypatch) -> None:
    model = _model()
    noisy, clean = _images(2)
    decodes = _count_calls(monkeypatch, "to_image")
    model.requires_grad_(True)
    assert isinstance(model.sampling_engine(), LayerEngine)
    model.sample(clean, reference=noisy, seeds=[1, 2])
    assert decodes == []
    model.freeze()
    fast = model.sampling_engine()
    assert isinstance(fast, FastNAFlow) and model.sampling_engine() is fast  # made once, then kept
    model.sample(clean, reference=noisy, seeds=[1, 2])
    assert decodes == [1]
    model.fast_sampling = False
    assert isinstance(model.sampling_engine(), LayerEngine)


def test_inputs_are_not_modified_and_errors() -> None:
    model = _model()
    fast = FastNAFlow(model)
    noisy, clean = _images(2)
    n0, c0 = noisy.clone(), clean.clone()
    z = fast.encode(noisy, clean)[0]
    z0 = z.clone()
    fast.decode(z, clean)
    fast.sample(clean, reference=noisy, seeds=[1, 2])
    assert torch.equal(noisy, n0) and torch.equal(clean, c0) and torch.equal(z, z0)
    with pytest.raises(ValueError, match="multiple of 4"):
        fast.encode(noisy[..., :6], clean[..., :6])
    with pytest.raises(ValueError, match="at most one"):
        fast.sample(clean, reference=noisy, config="A_00100")
    with pytest.raises(ValueError, match="features"):
        fast.decode(z, clean, features=fast.condition(clean[:1]))
    with pytest.raises(TypeError):
        FastNAFlow(torch.nn.Linear(2, 2))


def test_reduced_precision_subnets_stay_invertible() -> None:
    """autocast (meant for CUDA) on the CPU in bfloat16: the sub-networks lose precision, the flow stays
    invertible to float32 rounding because decode recomputes the same shift/scale from the same inputs."""
    model = _model()
    noisy, clean = _images(2)
    fast = FastNAFlow(model, autocast=torch.bfloat16)
    assert fast.check_invertibility(clean, noisy) < 1e-3
    z = fast.encode(noisy, clean)[0]
    assert 1e-6 < _rel(z, model.encode(noisy, clean)[0]) < 0.1  # bf16 really ran, and is close


def test_nas_conditions_each_clean_batch_once(monkeypatch) -> None:
    """NAS encodes the reference and decodes the sample with one computation of the clean features,
    through the model and through a noise source; a tiled image computes them per tile, each time."""
    model = _model()
    noisy, clean = _images(2, 16, 16)
    calls = _count_calls(monkeypatch, "clean_features")
    model.sample(clean, reference=noisy, seeds=[1, 2])
    assert len(calls) == 1
    source = make_noise_source("nas", model, tile_size=None)
    out, params = source(clean, reference=noisy, seeds=[1, 2])
    assert len(calls) == 2
    assert torch.equal(source.replay(clean, params), out) and len(calls) == 3
    tiled = make_noise_source("nas", model, tile_size=8, overlap=0)  # 4 tiles of 8x8
    tiled(clean, reference=noisy, seeds=[1, 2])
    assert len(calls) == 3 + 2 * 4


def test_model_built_in_inference_mode() -> None:
    with torch.inference_mode():
        model = _model()
        noisy, clean = _images(2)
        out = FastNAFlow(model).sample(clean, reference=noisy, seeds=[1, 2])
        ref = _reference_sample(model, clean, reference=noisy, seeds=[1, 2], noise_level="model")
        assert _rel(out, ref) < 1e-4


@pytest.mark.slow
def test_compiled_steps_match_reference_on_the_cpu(tmp_path, monkeypatch) -> None:
    """compile=True (torch.compile of the per-step kernels; plain aten ops inside, oneDNN kernels
    outside) gives the reference's encode, decode and NAS on the CPU. Fresh inductor cache: the
    kernels really are built here."""
    from torch._dynamo.utils import counters

    monkeypatch.setenv("TORCHINDUCTOR_CACHE_DIR", str(tmp_path))
    torch._dynamo.reset()
    counters.clear()
    model = _model(BARE)
    noisy, clean = _images(2, 8, 8)
    fast = FastNAFlow(model, compile=True)
    z, ld = fast.encode(noisy, clean)
    z_ref, ld_ref = model.encode(noisy, clean)
    assert _rel(z, z_ref) < 1e-5 and _rel(ld, ld_ref) < 1e-5
    assert _rel(fast.decode(z_ref, clean), model.decode(z_ref, clean)) < 1e-5
    out = fast.sample(clean, reference=noisy, seeds=[1, 2])
    ref = _reference_sample(model, clean, reference=noisy, seeds=[1, 2], noise_level="model")
    assert _rel(out, ref) < 1e-4
    assert counters["frames"]["ok"] >= 2  # both step kernels were compiled (and nothing failed)


def test_subnetworks_run_on_cache_sized_chunks_on_the_cpu_only(monkeypatch) -> None:
    model = _model(WIDE)
    noisy, clean = _images(3)
    z = FastNAFlow(model).encode(noisy, clean)[0]  # the 3 small items fit in one chunk
    net = FastNAFlow(model).plan.couplings[0]  # hidden 32: 32 * 4 bytes per position
    x = torch.zeros(5, 16, 16, 6)
    monkeypatch.setattr(fast_module, "SUBNET_CHUNK_BYTES", 2 * 16 * 16 * 32 * 4)
    assert fast_module._chunks(x, net) == [slice(0, 2), slice(2, 4), slice(4, 6)]
    assert fast_module._chunks(x.to("meta"), net) == [slice(None)]  # not the CPU: whole batches
    monkeypatch.setattr(fast_module, "SUBNET_CHUNK_BYTES", 1)
    assert len(fast_module._chunks(x, net)) == 5  # at least one item per chunk
    assert _rel(FastNAFlow(model).encode(noisy, clean)[0], z) < 1e-6  # one item at a time: the same


def test_keep_freed_memory_sets_glibc_malloc_options() -> None:
    import platform

    # process-wide and harmless for the other tests: freed memory is only kept for reuse
    assert fast_module.keep_freed_memory() == (platform.libc_ver()[0] == "glibc")


def test_cuda_graph_nas_needs_cuda() -> None:
    with pytest.raises(ValueError, match="CUDA device"):
        CudaGraphNAS(FastNAFlow(_model()), (2, 3, 8, 16))


def test_cuda_graph_nas_replays_the_sampling_path(device) -> None:
    """The captured NAS equals `sample` (noise_level="model") for the same eps, call after call."""
    if device.type != "cuda":
        pytest.skip("CUDA graphs need a CUDA device: run with --device cuda")
    model = _model().to(device)
    fast = FastNAFlow(model)
    graph = CudaGraphNAS(fast, (3, 3, 8, 16), temperature=0.7)
    for seed in (1, 2):
        noisy, clean = (t.to(device) for t in _images(seed=seed))
        seeds = torch.tensor([seed, seed + 10, seed + 20])
        eps = draw_item_noise(seeds, model.num_classes, (model.latent_channels, 2, 4))[1].to(device)
        out = graph(clean, noisy, eps)
        ref = fast.sample(clean, reference=noisy, seeds=seeds, temperature=0.7)
        assert out.device.type == "cuda" and out.shape == clean.shape
        assert _rel(out, ref) < 1e-4 and not torch.equal(out, clean)
    with pytest.raises(ValueError, match="captured for"):
        graph(clean[:1], noisy[:1], eps[:1])
