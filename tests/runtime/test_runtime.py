"""The shared job runtime: seed derivations pinned to the values recorded outputs hold, and the
process-group set-up (backend, device check first, teardown only of a group joined here)."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
import torch

from naflow_aug import runs
from naflow_aug.runtime import distributed, seeding
from naflow_aug.runtime.distributed import DistContext, process_group, rank_device, setup_distributed

# ---------------------------------------------------------------------------------------------- seeding


def test_seed_derivations_keep_their_values() -> None:
    """Generated files, training checkpoints and worker seeds record these: they must never change."""
    assert seeding.sample_seeds(7, [0, 1, 2, 1000]).tolist() == [
        6654738377353848610, 2207009715805324207, 2545488658212934290, 3392982003344921179,
    ]  # fmt: skip
    assert seeding.sample_seeds(2**63 - 1, [0, 2**40]).tolist() == [3811431516645549711, 8786682047809814152]
    g = seeding.step_generator(3, 5, 1)
    assert g.initial_seed() == 516500206117211855
    assert torch.randint(2**62, (3,), generator=g).tolist() == [
        2588509234780246621, 654411823821617787, 2601970779145830713,
    ]  # fmt: skip
    assert seeding.step_generator(2**40 + 3, 0, 0, 2).initial_seed() == 5065036218310820254  # low 32 bits
    low = seeding.step_generator(3, 0, 0, 2).initial_seed()
    assert seeding.step_generator(2**40 + 3, 0, 0, 2).initial_seed() == low
    assert seeding.derive_seed(-1, 12345) == 8776113012795426410  # words taken modulo 2**64
    assert seeding.derive_seed(0, 0) == 7896617691693857887
    assert seeding.derive_seed(2**70, 3) == seeding.derive_seed(0, 3) == 3291213472928352369
    assert seeding.epoch_generator(4, 2, 1).initial_seed() == 4036014127
    assert seeding.numpy_generator(5, 3, 0x5EED).integers(0, 1000, 4).tolist() == [337, 544, 741, 833]


def test_derive_seed_is_a_seed_sequence_hash() -> None:
    for words in ([1, 2, 3, 0], [0xFFFFFFFF, 10**6, 7, 1], [5]):
        state = np.random.SeedSequence(words).generate_state(2, np.uint64)
        assert seeding.derive_seed(*words) == int(state[0] >> np.uint64(1))
        assert 0 <= seeding.derive_seed(*words) < 2**63
    assert seeding.derive_seed(1, 2) != seeding.derive_seed(2, 1)


def test_sample_seeds_are_per_index() -> None:
    """A sample's seed depends on its index only, not on which batch or process asks."""
    whole = seeding.sample_seeds(11, np.arange(100))
    assert np.array_equal(np.concatenate([seeding.sample_seeds(11, np.arange(a, a + 10))
                                          for a in range(0, 100, 10)]), whole)  # fmt: skip
    assert whole.dtype == np.int64 and (whole >= 0).all() and len(set(whole.tolist())) == 100


def test_build_seeded_leaves_the_global_rng_alone() -> None:
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    a = seeding.build_seeded(lambda: torch.nn.Linear(4, 2), 5)
    b = seeding.build_seeded(lambda: torch.nn.Linear(4, 2), 5)
    assert torch.equal(torch.rand(3), expected)
    assert torch.equal(a.weight, b.weight)
    assert not torch.equal(a.weight, seeding.build_seeded(lambda: torch.nn.Linear(4, 2), 6).weight)


def test_runs_reexports_the_runtime_names() -> None:
    from naflow_aug.runtime import configs, files, rundir

    assert runs.RunDir is rundir.RunDir
    assert runs.atomic_write_json is files.atomic_write_json
    assert runs.config_from_dict is configs.config_from_dict
    assert runs.build_seeded is seeding.build_seeded


# ------------------------------------------------------------------------------------------ distributed


@pytest.fixture
def fake_group(monkeypatch: pytest.MonkeyPatch) -> list[tuple[str, dict]]:
    """torchrun's environment for rank 1 of 2 and a recorded init/destroy instead of a real group."""
    calls: list[tuple[str, dict]] = []
    state = {"initialized": False}

    def init(backend: str, **kw: object) -> None:
        calls.append((backend, kw))
        state["initialized"] = True

    def destroy() -> None:
        calls.append(("destroy", {}))
        state["initialized"] = False

    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.distributed, "is_initialized", lambda: state["initialized"])
    monkeypatch.setattr(torch.distributed, "init_process_group", init)
    monkeypatch.setattr(torch.distributed, "destroy_process_group", destroy)
    monkeypatch.setattr(torch.distributed, "get_world_size", lambda: 2)
    monkeypatch.setattr(torch.distributed, "get_rank", lambda: 1)
    return calls


def test_outside_torchrun_nothing_is_joined(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    monkeypatch.setattr(torch.distributed, "init_process_group", lambda *a, **k: pytest.fail("joined"))
    ctx = setup_distributed("cpu")
    assert ctx == DistContext() and ctx.main and not ctx.distributed and not ctx.owns_group
    ctx.barrier()  # nothing to wait for
    t = torch.tensor([1.0, 0.0])
    assert ctx.all_min_(t) is t and t.tolist() == [1.0, 0.0]
    ctx.teardown()


def test_join_and_leave(fake_group) -> None:
    with process_group("cpu", timeout=timedelta(minutes=3)) as ctx:
        assert (ctx.rank, ctx.world, ctx.local_rank, ctx.main, ctx.owns_group) == (1, 2, 1, False, True)
        assert fake_group == [("gloo", {"timeout": timedelta(minutes=3)})]
        again = setup_distributed("cpu")  # a group joined before is used and not left
        assert not again.owns_group and again.rank == 1
        again.teardown()
        assert len(fake_group) == 1
    assert fake_group[-1] == ("destroy", {})


def test_generate_joins_gloo_with_a_long_timeout(fake_group, monkeypatch: pytest.MonkeyPatch) -> None:
    """generate's ranks only meet at barriers while rank 0 joins the parts: gloo, hours of patience."""
    from naflow_aug import generate

    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    ctx = generate.join_process_group("cuda")
    assert fake_group == [("gloo", {"timeout": timedelta(hours=12)})] and ctx.owns_group


def test_a_bad_device_fails_before_the_group_is_joined(fake_group, monkeypatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError, match="CUDA is not available"):
        setup_distributed("cuda")
    with pytest.raises(ValueError, match="unknown device"):
        setup_distributed("bogus")
    assert fake_group == []


def test_backend_by_device(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert distributed.backend_for(None) == "nccl"
    assert distributed.backend_for(torch.device("cuda", 1)) == "nccl"
    assert distributed.backend_for(torch.device("cpu")) == "gloo"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert distributed.backend_for(None) == "gloo"


def test_rank_device(monkeypatch: pytest.MonkeyPatch) -> None:
    rank1 = DistContext(rank=1, world=2, local_rank=1)
    assert rank_device(None, rank1) is None
    assert rank_device("cpu", rank1) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert rank_device("auto", rank1) == torch.device("cpu")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 4)
    assert rank_device("auto", rank1) == torch.device("cuda", 1)
    assert rank_device("cuda", rank1) == torch.device("cuda", 1)
    assert rank_device("cuda") == torch.device("cuda", 0)
    assert rank_device("cuda:3", rank1) == torch.device("cuda", 3)  # an explicit index is kept
