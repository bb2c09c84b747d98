"""NAFlowNoise (torchvision.transforms.v2): pipelines, kinds, randomness, replay, workers, errors."""

from __future__ import annotations

import PIL.Image
import pytest
import torch
from torch.utils.data import DataLoader, Dataset
from torchvision import tv_tensors
from torchvision.transforms import v2

from naflow_aug.noise import NoiseParams
from naflow_aug.noise.profiles import NoiseProfile
from naflow_aug.transforms import NAFlowNoise

CLASSES = ("A_00100", "B_00800", "C_03200")  # the tiny model of conftest.py


def _uint8(b: int | None, h: int = 24, w: int = 32, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    shape = (3, h, w) if b is None else (b, 3, h, w)
    return torch.randint(30, 220, shape, generator=g, dtype=torch.uint8)


def test_in_v2_compose_batched_image_uint8(tiny_model, device) -> None:
    model = tiny_model.to(device)
    add_noise = NAFlowNoise(model, noise="random", seed=0, return_params=True)
    pipe = v2.Compose([v2.RandomHorizontalFlip(p=0.5), add_noise])
    clean = tv_tensors.Image(_uint8(4).to(device))
    noisy, params = pipe(clean)
    assert isinstance(noisy, tv_tensors.Image) and noisy.dtype == torch.uint8
    assert noisy.shape == clean.shape and noisy.device == clean.device
    assert isinstance(params, NoiseParams) and len(params) == 4 and set(params.configs) <= set(CLASSES)
    assert float((noisy.float() - clean.float()).abs().mean()) > 1.0


def test_per_image_independence_and_seed_replay(tiny_model) -> None:
    same = _uint8(None).expand(4, -1, -1, -1).contiguous()
    a, pa = NAFlowNoise(tiny_model, "config:B_00800", seed=3, return_params=True)(same)
    b, pb = NAFlowNoise(tiny_model, "config:B_00800", seed=3, return_params=True)(same)
    assert torch.equal(a, b) and torch.equal(pa.seeds, pb.seeds)
    for i in range(3):  # every image of the batch gets its own noise
        assert not torch.equal(a[i], a[i + 1])
    c = NAFlowNoise(tiny_model, "config:B_00800", seed=4)(same)
    assert not torch.equal(a, c)
    # replay from the returned params, and a single image from its own params
    t = NAFlowNoise(tiny_model, "config:B_00800", return_params=True)
    replayed, _ = t(same, params=pa)
    assert torch.equal(replayed, a)
    one, _ = t(same[2], params=pa.select(2))
    assert torch.equal(one, a[2])


def test_uint8_and_float_round_trip(tiny_model) -> None:
    clean_u8 = _uint8(2, h=16, w=16)
    clean_f = clean_u8.float() / 255
    noisy_u8, params = NAFlowNoise(tiny_model, "random", seed=1, return_params=True)(clean_u8)
    noisy_f, _ = NAFlowNoise(tiny_model, "random", return_params=True)(clean_f, params=params)
    assert noisy_u8.dtype == torch.uint8 and noisy_f.dtype == torch.float32
    assert float(noisy_f.min()) >= 0 and float(noisy_f.max()) <= 1
    # the uint8 result is the float result rounded to 8 bits
    assert torch.equal(noisy_u8, (noisy_f * 255).round().to(torch.uint8))
    # (3, H, W) in, (3, H, W) out; float64 stays float64
    single = NAFlowNoise(tiny_model, seed=0)(clean_f[0].double())
    assert single.shape == (3, 16, 16) and single.dtype == torch.float64


def test_plain_tensor_pil_and_passthrough(tiny_model) -> None:
    t = NAFlowNoise(tiny_model, seed=0)
    img = tv_tensors.Image(_uint8(None, 16, 24))
    label = torch.tensor([5])
    out_img, out_label = t(img, label)  # with an Image present, plain tensors pass through
    assert torch.equal(out_label, label) and not torch.equal(out_img, img)
    pil = PIL.Image.fromarray(_uint8(None, 16, 24).permute(1, 2, 0).numpy())
    out = t({"image": pil, "target": 3})
    assert isinstance(out["image"], PIL.Image.Image) and out["image"].size == pil.size and out["target"] == 3
    with pytest.raises(ValueError, match="RGB"):
        t(pil.convert("L"))


def test_any_size_and_tiling(tiny_model) -> None:
    clean = _uint8(1, h=45, w=70, seed=2).float() / 255
    untiled = NAFlowNoise(tiny_model, "config:C_03200", seed=0, tile_size=None, return_params=True)
    tiled = NAFlowNoise(tiny_model, "config:C_03200", tile_size=32, overlap=8)
    whole, params = untiled(clean)
    parts = tiled(clean, params=params)
    assert whole.shape == clean.shape == parts.shape
    rw, rt = whole - clean, parts - clean
    assert torch.allclose(rw.std(dim=(0, 2, 3)), rt.std(dim=(0, 2, 3)), rtol=0.05)
    assert float((whole - parts).abs().mean()) < 0.02


def test_nas_with_reference_and_real(tiny_model) -> None:
    clean = _uint8(2, 32, 32, seed=5).float() / 255
    reference = tiny_model.sample(
        clean, config=["A_00100", "C_03200"], generator=torch.Generator().manual_seed(0)
    )
    noisy, params = NAFlowNoise(tiny_model, "nas", seed=0, return_params=True)(clean, reference=reference)
    assert params.weights.argmax(1).tolist() == [0, 2] and noisy.shape == clean.shape
    real = NAFlowNoise(tiny_model, "real")(clean, reference=reference)
    assert torch.equal(real, reference)
    with pytest.raises(ValueError, match="reference"):
        NAFlowNoise(tiny_model, "nas")(clean)
    with pytest.raises(ValueError, match="differs"):
        NAFlowNoise(tiny_model, "nas")(clean, reference=reference[..., :16])


def test_output_trains_a_network(tiny_model) -> None:
    noisy = NAFlowNoise(tiny_model, seed=0)(torch.rand(2, 3, 16, 16))
    conv = torch.nn.Conv2d(3, 3, 3, padding=1)
    conv(noisy).square().mean().backward()  # not an inference tensor: usable in a training step
    assert conv.weight.grad is not None


def test_profile_apply_and_mismatch(tiny_model, tmp_path) -> None:
    profile = NoiseProfile(classes=CLASSES, weights=(0.1, 0.0, 0.9), pairs=3)
    path = profile.save(tmp_path / "camera.json")
    clean = _uint8(2, 16, 16).float() / 255
    via_profile, params = NAFlowNoise(tiny_model, profile=path, seed=0, return_params=True)(clean)
    via_spec = NAFlowNoise(tiny_model, f"profile:{path}", seed=0)(clean)
    via_weights = NAFlowNoise(tiny_model, "weights:0.1,0,0.9", seed=0)(clean)
    assert torch.equal(via_profile, via_spec) and torch.equal(via_profile, via_weights)
    assert torch.allclose(params.weights[0], torch.tensor([0.1, 0.0, 0.9]))
    other = NoiseProfile(classes=("X_00100", "Y_00200"), weights=(0.5, 0.5)).save(tmp_path / "other.json")
    with pytest.raises(ValueError) as e:
        NAFlowNoise(tiny_model, profile=other)
    assert "X_00100" in str(e.value) and "C_03200" in str(e.value)


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        (torch.rand(2, 1, 16, 16), ValueError, "RGB"),
        (torch.rand(4, 16, 16), ValueError, "RGB"),
        (torch.rand(2, 4, 16, 16), ValueError, "RGB"),
        (torch.randint(0, 255, (3, 16, 16), dtype=torch.int16), TypeError, "int16"),
        (torch.randint(0, 255, (3, 16, 16), dtype=torch.int64), TypeError, "uint8"),
        (torch.ones(3, 16, 16, dtype=torch.bool), TypeError, "bool"),
        (torch.rand(3, 16, 16) * 255, ValueError, r"\[0, 1\]"),
        (torch.rand(3, 16, 16) - 0.5, ValueError, r"\[0, 1\]"),
        (torch.zeros(0, 3, 16, 16), ValueError, "empty batch"),
        (torch.full((3, 16, 16), float("nan")), ValueError, "NaN"),
    ],
)
def test_bad_inputs(bad, error, match, tiny_model) -> None:
    with pytest.raises(error, match=match):
        NAFlowNoise(tiny_model, seed=0)(bad)


def test_bad_arguments(tiny_model) -> None:
    with pytest.raises(ValueError, match="valid noise sources"):
        NAFlowNoise(tiny_model, "gaussian-noise")
    with pytest.raises(ValueError, match="not both"):
        NAFlowNoise(tiny_model, seed=1, generator=torch.Generator())
    with pytest.raises(ValueError, match="no image"):
        NAFlowNoise(tiny_model)({"label": 3})


class _Repeated(Dataset):
    """The same clean image n times, noised in the worker."""

    def __init__(self, transform, n: int = 8) -> None:
        self.transform, self.n, self.clean = transform, n, _uint8(None, 16, 16)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return self.transform(self.clean), self.clean, torch.get_num_threads()


@pytest.mark.parametrize("how", ["object", "checkpoint"])
def test_dataloader_two_workers(how, tiny_model, tiny_checkpoint) -> None:
    model = tiny_model if how == "object" else tiny_checkpoint
    for seed in (
        None,
        0,
    ):  # torch's per-worker default generator, and a seeded generator re-derived per worker
        loader = DataLoader(_Repeated(NAFlowNoise(model, seed=seed)), batch_size=2, num_workers=2)
        batches = list(loader)
        noisy = torch.cat([b[0] for b in batches])
        assert noisy.shape == (8, 3, 16, 16) and noisy.dtype == torch.uint8
        flat = noisy.flatten(1)
        assert len({tuple(row.tolist()) for row in flat}) == 8, "images from different workers must differ"
        assert all(int(n) == 1 for b in batches for n in b[2]), "workers run torch on one thread"


def test_seeded_transform_differs_per_worker_and_epoch_and_replays(tiny_checkpoint) -> None:
    """seed=7 in two workers, two epochs without persistent workers: 16 distinct noisy images, and the same
    16 again under the same torch.manual_seed in the main process (the helper NAFlowNoiseAlb shares)."""

    def run(main_seed: int) -> torch.Tensor:
        torch.manual_seed(main_seed)
        loader = DataLoader(_Repeated(NAFlowNoise(tiny_checkpoint, seed=7)), batch_size=2, num_workers=2)
        return torch.cat([batch[0] for _epoch in range(2) for batch in loader])

    first = run(0)
    assert first.shape == (16, 3, 16, 16)
    assert len({tuple(x.flatten().tolist()) for x in first}) == 16
    assert torch.equal(run(0), first) and not torch.equal(run(1), first)
