"""CUDA-safety rules that a CPU can check (issue 19).

Host syncs are counted with a dispatch mode that follows the data: the clean and reference images are
marked, every result of an op on a marked tensor is marked, and a read-back of a marked tensor to the
host (``.item()``/``bool()``/``float()``/``int()`` -> ``aten._local_scalar_dense``, ``.cpu()``,
``.tolist()``, ``.numpy()``) counts as one sync. The per-item CPU generators of the randomness contract
are never marked (they live on the host on a GPU too), so what is counted is what would stall a CUDA
stream. The rule: a batch of NAS costs a fixed number of syncs, whatever its batch size or tile count.
"""

from __future__ import annotations

import pytest
import torch
from torch.utils import _pytree as pytree
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils.weak import WeakIdKeyDictionary

from naflow_aug import bench, generate, train
from naflow_aug.flow.nas import draw_item_noise
from naflow_aug.noise import check_images, draw_seeds, make_noise_source
from naflow_aug.runtime.distributed import setup_distributed


class HostSyncCounter(TorchDispatchMode):
    """Counts read-backs to the host of tensors computed from ``roots`` (see the module doc)."""

    def __init__(self, *roots: torch.Tensor) -> None:
        super().__init__()
        self.marked = WeakIdKeyDictionary()
        for r in roots:
            self.marked[r] = True
        self.syncs: list[str] = []
        self._patched: dict[str, object] = {}

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        if any(isinstance(t, torch.Tensor) and t in self.marked for t in pytree.tree_leaves((args, kwargs))):
            if func is torch.ops.aten._local_scalar_dense.default:
                self.syncs.append("item")
            for t in pytree.tree_leaves(out):
                if isinstance(t, torch.Tensor):
                    self.marked[t] = True
        return out

    def __enter__(self):
        counter = self
        for name in ("cpu", "tolist", "numpy"):
            original = getattr(torch.Tensor, name)
            self._patched[name] = original

            def patched(t, *a, _name=name, _original=original, **k):
                if t in counter.marked:
                    counter.syncs.append(_name)
                return _original(t, *a, **k)

            setattr(torch.Tensor, name, patched)
        return super().__enter__()

    def __exit__(self, *exc):
        for name, original in self._patched.items():
            setattr(torch.Tensor, name, original)
        return super().__exit__(*exc)


def _pair(b: int, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(b * 1000 + h)
    clean = torch.rand(b, 3, h, w, generator=g) * 0.8 + 0.1
    return clean, (clean + 0.05 * torch.randn(clean.shape, generator=g)).clamp(0, 1)


def _nas_syncs(model, b: int, h: int, w: int, **kw) -> list[str]:
    clean, reference = _pair(b, h, w)
    source = make_noise_source("nas", model, **kw)
    with HostSyncCounter(clean, reference) as counter:
        source(clean, reference=reference, seeds=list(range(b)))
    return counter.syncs


def test_counter_sees_syncs() -> None:
    """The counter itself: it counts read-backs of marked tensors and ignores host-only tensors."""
    x = torch.rand(3)
    with HostSyncCounter(x) as counter:
        y = x * 2
        float(y.sum()), y.tolist(), y.cpu(), bool((y > 5).any())
        int(torch.randint(3, (1,)))  # host-only: not counted
    assert counter.syncs == ["item", "tolist", "cpu", "item"]


def test_batched_nas_syncs_do_not_grow_with_batch(tiny_model) -> None:
    one = _nas_syncs(tiny_model, 1, 32, 32)
    many = _nas_syncs(tiny_model, 6, 32, 32)
    assert many == one, f"batch 1: {one}; batch 6: {many}"
    # per batch: the range checks of clean and reference (once each, by the source), the NAS weights sent
    # to the params, the mixture weights' check before the decode
    assert len(one) <= 4, one


def test_tiled_nas_syncs_do_not_grow_with_tiles(tiny_model) -> None:
    whole = _nas_syncs(tiny_model, 1, 96, 96, tile_size=None)
    tiled = _nas_syncs(tiny_model, 1, 96, 96, tile_size=48, overlap=8)
    assert tiled == whole, f"untiled: {whole}; 4+ tiles: {tiled}"


def test_model_sources_syncs(tiny_model) -> None:
    for spec in ("random", "config:B_00800", "weights:0.2,0.3,0.5"):
        counts = []
        for b in (1, 5):
            clean, _ = _pair(b, 16, 16)
            with HostSyncCounter(clean) as counter:
                make_noise_source(spec, tiny_model)(clean, seeds=list(range(b)))
            counts.append(counter.syncs)
        # the source's range check of clean (the model does not check it again); nothing per item
        assert counts[0] == counts[1] and len(counts[0]) <= 1, (spec, counts)


def test_check_images_reads_back_once() -> None:
    clean, _ = _pair(4, 8, 8)
    with HostSyncCounter(clean) as counter:
        check_images(clean)
    assert len(counter.syncs) == 1, counter.syncs


def test_eps_draw_is_pinned_on_request() -> None:
    """The per-item eps drawn on the host can go to a GPU without a pageable copy."""
    if not torch.cuda.is_available():
        _, eps = draw_item_noise(torch.arange(3), 4, (2, 3, 3), pin_memory=False)
        assert not eps.is_pinned()
        return
    _, eps = draw_item_noise(torch.arange(3), 4, (2, 3, 3), pin_memory=True)
    assert eps.is_pinned()


def test_seeds_from_any_generator_come_back_to_the_host() -> None:
    g = torch.Generator().manual_seed(0)
    seeds = draw_seeds(4, g)
    assert seeds.device.type == "cpu" and seeds.dtype == torch.int64
    if torch.cuda.is_available():  # a CUDA generator: seeds drawn there, one read-back, host tensor
        assert draw_seeds(4, torch.Generator("cuda").manual_seed(0)).device.type == "cpu"


def test_process_group_backend_per_device(monkeypatch) -> None:
    """NCCL only for CUDA devices; gloo for the CPU (training, harness) and for the generator's barriers,
    which carry no tensors. Checked without starting a group: the init call is recorded."""
    seen: list[str] = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "0")
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: False)
    monkeypatch.setattr(torch.distributed, "init_process_group", lambda backend, **kw: seen.append(backend))
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 0)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda d: None)
    assert bench.init_distributed("cpu") == torch.device("cpu")
    assert bench.init_distributed("cuda") == torch.device("cuda", 0)
    setup_distributed("cpu")  # training: the backend by its device
    setup_distributed("cuda")
    generate.join_process_group()
    assert seen == ["gloo", "nccl", "gloo", "nccl", "gloo"]
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    seen.clear()
    # no CUDA: asking for it is a clear error before any group is joined; otherwise gloo
    with pytest.raises(ValueError, match="CUDA is not available"):
        bench.init_distributed("cuda")
    bench.init_distributed(None)
    setup_distributed("auto")
    assert seen == ["gloo", "gloo"]


def test_tiles_still_refuse_bad_values(tiny_model) -> None:
    """The whole image is checked once, where it enters, instead of per tile: a NaN in the last tile is
    still refused, on the fast path and on the layers."""
    clean, noisy = _pair(1, 96, 96)
    noisy[..., -3, -3] = float("nan")
    source = make_noise_source("nas", tiny_model, tile_size=48, overlap=8)
    try:
        for fast in (True, False):
            tiny_model.fast_sampling = fast
            with pytest.raises(ValueError, match="NaN"):
                source(clean, reference=noisy, seeds=[0])
            with pytest.raises(ValueError, match="NaN"):
                source.nas_weights(clean, noisy)
    finally:
        tiny_model.fast_sampling = True


def test_denoiser_training_reads_the_loss_back_once_per_epoch(tmp_path) -> None:
    from naflow_aug.denoisers import DnCNN

    g = torch.Generator().manual_seed(0)
    data = [{"clean": c, "noisy": c.clamp(0.1, 0.9)} for c in torch.rand(4, 3, 8, 8, generator=g)]
    counts = []
    for steps in (2, 6):
        model = DnCNN(depth=2, width=4)
        preset = bench.BenchPreset(**{**bench.CPU.__dict__, "epochs": 1, "steps_per_epoch": steps})
        with HostSyncCounter(*model.parameters()) as counter:
            bench.train_denoiser(model, bench.PatchBatches(data, patch_size=8, batch_size=2), preset,
                                 tmp_path / f"run{steps}", progress=False)  # fmt: skip
        counts.append([s for s in counter.syncs if s != "cpu"])  # the checkpoint's .cpu() of each weight
    assert counts[0] == counts[1] and len(counts[0]) <= 1, counts


def test_naflow_training_step_reads_back_a_fixed_few_times(tmp_path, monkeypatch) -> None:
    """Per step: the input checks (labels, clean, noisy), the finite flag with the loss, the gradient norm."""
    from naflow_aug.data.simcam import DEFAULT_CAMERAS, write_simulated_sidd

    write_simulated_sidd(tmp_path / "sim", seed=0, cameras=DEFAULT_CAMERAS[:2], scenes_per_config=1,
                         size_range=(32, 32))  # fmt: skip
    original = train.loop._batch_loss
    counts = []
    for steps in (2, 4):
        counter = HostSyncCounter()

        def marked_loss(objective, batch, counter=counter):
            for t in batch.values():
                counter.marked[t] = True
            return original(objective, batch)

        monkeypatch.setattr(train.loop, "_batch_loss", marked_loss)
        config = train.preset("cpu").replace(
            data=str(tmp_path / "sim"), model={"hidden_channels": 8, "encoder_channels": 8}, steps=steps,
            batch_size=2, crop_size=16, log_every=100, checkpoint_every=100, val_every=0,
            preload=True, device="cpu", num_workers=0,
        )  # fmt: skip
        with counter:
            train.train(config, tmp_path / f"run{steps}", progress=False)
        counts.append(len([s for s in counter.syncs if s == "item" or s == "tolist"]))
    per_step = (counts[1] - counts[0]) / 2
    assert per_step <= 5, counts  # labels 1, clean 1, noisy 1, finite flag + loss 1, gradient norm 1


def test_host_eps_draw_in_threads_equals_one_thread() -> None:
    """Large batches draw their per-item eps in threads (the host draw bounds a GPU's NAS); same result."""
    seeds = torch.randint(0, 2**62, (37,), generator=torch.Generator().manual_seed(0))
    one = draw_item_noise(seeds, 5, (3, 4, 4))  # the test runs single-threaded: one thread
    torch.set_num_threads(4)  # restored by conftest's autouse fixture
    threaded = draw_item_noise(seeds, 5, (3, 4, 4))
    assert threaded[0] == one[0] and torch.equal(threaded[1], one[1])
    for i in (0, 17, 36):  # and each item equals its own generator's draw
        g = torch.Generator().manual_seed(int(seeds[i]))
        assert int(torch.randint(5, (1,), generator=g)) == one[0][i]
        assert torch.equal(torch.randn((3, 4, 4), generator=g), one[1][i])
