"""NAFlowNoiseAlb (albumentations 2.x): pipelines with a clean target, serialisation, workers, errors."""

from __future__ import annotations

import json

import albumentations as A
import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from naflow_aug.transforms import NAFlowNoiseAlb


def _image(h: int = 24, w: int = 32, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(30, 220, (h, w, 3), dtype=np.uint8)


def test_compose_noises_image_and_keeps_clean_target(tiny_model) -> None:
    img = _image()
    pipe = A.Compose(
        [A.RandomCrop(16, 16), A.HorizontalFlip(p=0.5), NAFlowNoiseAlb(tiny_model, noise="gaussian:3")],
        additional_targets={"clean": "image"},
    )
    out = pipe(image=img, clean=img)
    assert out["image"].shape == out["clean"].shape == (16, 16, 3) and out["image"].dtype == np.uint8
    diff = out["image"].astype(float) - out["clean"].astype(float)
    assert 1.0 < diff.std() < 6.0  # the clean target is the same crop, untouched: only the noise differs
    # the crop of the clean target is a real crop of the input
    assert any(
        np.array_equal(out["clean"], img[y : y + 16, x : x + 16])
        or np.array_equal(out["clean"], img[y : y + 16, x : x + 16][:, ::-1])
        for y in range(9)
        for x in range(17)
    )


def test_model_noise_without_clean_target_adds_it(tiny_model) -> None:
    img = _image()
    t = NAFlowNoiseAlb(tiny_model, noise="config:C_03200")
    out = A.Compose([t])(image=img)
    assert np.array_equal(out["clean"], img) and not np.array_equal(out["image"], img)
    params = t.get_applied_params()["noise_params"]
    assert params["source"] == "config:C_03200" and len(params["seeds"]) == 1
    assert params["weights"][0] == [0.0, 0.0, 1.0]
    # float32 in, float32 out, in [0, 1]
    out = A.Compose([t])(image=img.astype(np.float32) / 255)
    assert out["image"].dtype == np.float32 and 0 <= out["image"].min() and out["image"].max() <= 1


def test_images_stack_gets_independent_noise(tiny_model) -> None:
    img = _image(16, 16)
    t = NAFlowNoiseAlb(tiny_model, noise="config:B_00800")
    out = A.Compose([t], seed=1)(images=np.stack([img] * 3))
    assert out["images"].shape == (3, 16, 16, 3) and np.array_equal(out["clean"][0], img)
    assert not np.array_equal(out["images"][0], out["images"][1])
    assert len(t.get_applied_params()["noise_params"]["seeds"]) == 3
    single = A.Compose([t])(image=img, noise_seed_check=None)  # unknown extra keys pass through
    assert single["noise_seed_check"] is None


def test_seeded_pipeline_is_reproducible(tiny_model) -> None:
    img = _image()

    def run(seed: int) -> np.ndarray:
        pipe = A.Compose([A.RandomCrop(16, 16), NAFlowNoiseAlb(tiny_model)], seed=seed)
        return np.stack([pipe(image=img)["image"] for _ in range(3)])

    a, b, c = run(7), run(7), run(8)
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert not np.array_equal(a[0], a[1])  # successive calls differ


def test_nas_reads_reference_target(tiny_model) -> None:
    clean = torch.from_numpy(_image(32, 32)).permute(2, 0, 1)[None].float() / 255
    ref = tiny_model.sample(clean, config="C_03200", generator=torch.Generator().manual_seed(0))
    ref_hwc = (ref[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    img = (clean[0].permute(1, 2, 0).numpy() * 255).round().astype(np.uint8)
    t = NAFlowNoiseAlb(tiny_model, noise="nas")
    out = A.Compose([t], additional_targets={"reference": "image"})(image=img, reference=ref_hwc)
    assert np.array_equal(out["reference"], ref_hwc)  # untouched
    assert int(np.argmax(t.get_applied_params()["noise_params"]["weights"][0])) == 2
    with pytest.raises(ValueError, match="reference"):
        A.Compose([t])(image=img)


def test_serialisation_round_trip(tiny_model, tiny_checkpoint) -> None:
    pipe = A.Compose(
        [A.RandomCrop(16, 16), NAFlowNoiseAlb(str(tiny_checkpoint), noise="config:B_00800", p=1.0)]
    )
    data = json.loads(json.dumps(A.to_dict(pipe)))
    entry = data["transform"]["transforms"][1]
    assert entry["model"] == str(tiny_checkpoint) and entry["noise"] == "config:B_00800"
    restored = A.from_dict(data)
    t = restored.transforms[1]
    assert isinstance(t, NAFlowNoiseAlb) and t.noise == "config:B_00800"
    img = _image()
    restored.set_random_seed(3)
    pipe.set_random_seed(3)
    assert np.array_equal(restored(image=img)["image"], pipe(image=img)["image"])
    with pytest.raises(TypeError, match="name or a checkpoint path"):
        A.to_dict(A.Compose([NAFlowNoiseAlb(tiny_model)]))


@pytest.mark.parametrize(
    ("bad", "error", "match"),
    [
        (np.zeros((16, 16), np.uint8), ValueError, "RGB"),
        (np.zeros((16, 16, 4), np.uint8), ValueError, "RGB"),
        (np.zeros((16, 16, 3), np.int16), TypeError, "int16"),
        (np.full((16, 16, 3), 2.0, np.float32), ValueError, r"\[0, 1\]"),
        (np.full((16, 16, 3), np.nan, np.float32), ValueError, "NaN"),
    ],
)
def test_bad_inputs(bad, error, match, tiny_model) -> None:
    with pytest.raises(error, match=match):
        NAFlowNoiseAlb(tiny_model)(image=bad)


def test_bad_arguments(tiny_model) -> None:
    with pytest.raises(ValueError, match="valid noise sources"):
        NAFlowNoiseAlb(tiny_model, noise="iso")
    with pytest.raises(ValueError, match="not both"):
        NAFlowNoiseAlb(tiny_model, noise="nas", profile="p.json")


class _Pairs(Dataset):
    def __init__(self, pipe) -> None:
        self.pipe, self.img = pipe, _image(20, 20)

    def __len__(self) -> int:
        return 8

    def __getitem__(self, i: int):
        out = self.pipe(image=self.img, clean=self.img)
        return torch.from_numpy(out["image"]), torch.from_numpy(out["clean"]), torch.get_num_threads()


def test_dataloader_two_workers_lazy_model(tiny_checkpoint) -> None:
    t = NAFlowNoiseAlb(str(tiny_checkpoint))
    assert t._source is None  # given by path: nothing loaded until first use (in each worker)
    pipe = A.Compose([A.RandomCrop(16, 16), t], additional_targets={"clean": "image"})
    batches = list(DataLoader(_Pairs(pipe), batch_size=2, num_workers=2))
    noisy = torch.cat([b[0] for b in batches])
    clean = torch.cat([b[1] for b in batches])
    assert noisy.shape == clean.shape == (8, 16, 16, 3)
    assert len({tuple(x.flatten().tolist()) for x in noisy}) == 8  # independent across items and workers
    assert all(int(n) == 1 for b in batches for n in b[2])  # one torch thread per worker
    assert t._source is None  # the main process never loaded the model


class _SameImage(Dataset):
    """One clean image n times, through a pipeline in the worker."""

    def __init__(self, pipe, n: int = 8) -> None:
        self.pipe, self.n, self.img = pipe, n, _image(16, 16)

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, i: int):
        return torch.from_numpy(self.pipe(image=self.img)["image"])


def test_seeded_pipeline_differs_per_worker_and_epoch_and_replays(tiny_checkpoint) -> None:
    """Compose(seed=7) in two workers, two epochs without persistent workers: 16 distinct noisy images,
    and the same 16 again under the same torch.manual_seed in the main process."""

    def run(main_seed: int) -> torch.Tensor:
        torch.manual_seed(main_seed)
        pipe = A.Compose([NAFlowNoiseAlb(str(tiny_checkpoint))], seed=7)
        loader = DataLoader(_SameImage(pipe), batch_size=2, num_workers=2)
        return torch.cat([batch for _epoch in range(2) for batch in loader])

    first = run(0)
    assert first.shape == (16, 16, 16, 3)
    assert len({tuple(x.flatten().tolist()) for x in first}) == 16  # per worker and per epoch
    assert torch.equal(run(0), first)  # reproducible
    assert not torch.equal(run(1), first)  # the main process's seed decides the workers' draws


class _Applied(Dataset):
    """Whether the pipeline changed the image, and which worker ran it."""

    def __init__(self, pipe) -> None:
        self.pipe, self.img = pipe, np.full((16, 16, 3), 128, np.uint8)

    def __len__(self) -> int:
        return 32

    def __getitem__(self, i: int):
        changed = not np.array_equal(self.pipe(image=self.img)["image"], self.img)
        return int(changed), torch.utils.data.get_worker_info().id


def test_p_draws_differ_per_worker_and_epoch_in_an_unseeded_pipeline() -> None:
    torch.manual_seed(0)
    pipe = A.Compose([NAFlowNoiseAlb(noise="gaussian:50", p=0.5)])  # no model needed
    patterns = set()
    for _epoch in range(2):
        rows = [(int(a), int(w)) for a, w in DataLoader(_Applied(pipe), num_workers=2)]  # batches of one
        for worker in (0, 1):
            patterns.add(tuple(a for a, w in rows if w == worker))
    assert len(patterns) == 4  # 16 p draws each: equal only if the workers or epochs repeat each other
