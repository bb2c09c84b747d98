"""Damaged, NaN, hostile and deeply nested checkpoints: refused with a ValueError naming the file, never
loaded as a silently wrong model, never a stray IndexError/TypeError/RecursionError, never unbounded work."""

from __future__ import annotations

import io
import pickle
import struct
import time
import zipfile
from pathlib import Path

import pytest
import torch

import naflow_aug
from naflow_aug import checkpoints


def _data_offset(path: Path, member: str) -> int:
    """Byte offset of a stored (uncompressed) zip member's data inside the file."""
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo(member)
    raw = path.read_bytes()
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26 : info.header_offset + 30])
    return info.header_offset + 30 + name_len + extra_len


def _largest_tensor_record(path: Path) -> tuple[str, int]:
    with zipfile.ZipFile(path) as zf:
        info = max((i for i in zf.infolist() if "/data/" in i.filename), key=lambda i: i.file_size)
    return info.filename, info.file_size


def test_flipped_bytes_in_tensor_data_are_refused(tiny_checkpoint: Path, tmp_path: Path) -> None:
    member, size = _largest_tensor_record(tiny_checkpoint)
    raw = bytearray(tiny_checkpoint.read_bytes())
    at = _data_offset(tiny_checkpoint, member) + size // 2 + 3  # the high byte of a float32
    raw[at] ^= 0x40
    bad = tmp_path / "flipped.pt"
    bad.write_bytes(bytes(raw))
    with pytest.raises(ValueError, match=r"flipped\.pt.*do not match the SHA-256.*corrupt"):
        naflow_aug.load(bad)


def test_checksum_covers_names_dtypes_shapes_and_bytes() -> None:
    state = {"a": torch.arange(6, dtype=torch.float32), "b": torch.tensor(True)}
    base = checkpoints.state_sha256(state)
    swapped = {"b": torch.tensor(True), "a": torch.arange(6, dtype=torch.float32)}
    assert base == checkpoints.state_sha256(swapped)
    assert base != checkpoints.state_sha256({**state, "a": state["a"].reshape(2, 3)})
    assert base != checkpoints.state_sha256({**state, "a": state["a"].double()})
    assert base != checkpoints.state_sha256({"c": state["a"], "b": state["b"]})
    changed = state["a"].clone()
    changed[4] = 4.0000005
    assert base != checkpoints.state_sha256({**state, "a": changed})


def test_nan_parameters_are_refused(tiny_model, tmp_path: Path) -> None:
    import copy

    model = copy.deepcopy(tiny_model)
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if n.startswith("flow.")).fill_(float("nan"))
    path = naflow_aug.save_checkpoint(model, tmp_path / "nan.pt")  # the checksum matches: NaN is the data
    with pytest.raises(ValueError, match=r"nan\.pt.*tensor 'flow\..*NaN/Inf"):
        naflow_aug.load(path)
    with torch.no_grad():
        next(p for n, p in model.named_parameters() if n.startswith("flow.")).fill_(0.5)
        model.prior.std[1, 2] = float("inf")
    path = naflow_aug.save_checkpoint(model, tmp_path / "inf.pt")
    with pytest.raises(ValueError, match=r"inf\.pt.*tensor 'prior\.std' holds 1 NaN/Inf"):
        naflow_aug.load(path)


def test_checkpoint_without_checksum_still_loads(tiny_checkpoint: Path, tmp_path: Path) -> None:
    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    assert ckpt["state_sha256"] == checkpoints.state_sha256(ckpt["state_dict"])
    del ckpt["state_sha256"]
    torch.save(ckpt, tmp_path / "old.pt")
    old, new = naflow_aug.load(tmp_path / "old.pt"), naflow_aug.load(tiny_checkpoint)
    for (k, v), (k2, v2) in zip(old.state_dict().items(), new.state_dict().items(), strict=True):
        assert k == k2 and torch.equal(v, v2)


@pytest.mark.parametrize(
    "damage",
    [
        lambda c: c.pop("config"),
        lambda c: c.update(config=[1, 2]),
        lambda c: c.update(state_dict=[1, 2]),
        lambda c: c["state_dict"].update({"flow.0.invconv.l": 3}),
        lambda c: c["config"].update(levels="3"),
        lambda c: c["config"].update(hidden_channels=60_000),  # would allocate gigabytes before a check
        lambda c: c["config"].update(transition_steps=10**9),
        lambda c: c["state_dict"].update({"prior.std": torch.zeros(3, 48, dtype=torch.int64)}),
    ],
    ids=["no-config", "config-list", "state-list", "state-int", "levels-str", "huge-width", "huge-steps",
         "int-tensor"],
)  # fmt: skip
def test_malformed_project_checkpoints_give_value_errors(tiny_checkpoint: Path, tmp_path: Path,
                                                         damage) -> None:
    ckpt = torch.load(tiny_checkpoint, weights_only=True)
    damage(ckpt)
    ckpt.pop("state_sha256", None)
    torch.save(ckpt, tmp_path / "bad.pt")
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=r"bad\.pt"):
        naflow_aug.load(tmp_path / "bad.pt")
    assert time.perf_counter() - t0 < 10


def test_a_text_file_is_not_a_checkpoint(tmp_path: Path) -> None:
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\ndaemon:x:1:1:daemon:/usr/sbin:/usr/sbin/nologin\n")
    with pytest.raises(ValueError, match=r"passwd is not a readable checkpoint"):
        naflow_aug.load(passwd)


def _deep_list_pickle(depth: int) -> bytes:
    """A pickle of a list nested `depth` deep, built from opcodes (pickle.dumps itself would recurse)."""
    return b"\x80\x02" + b"]" * depth + b"a" * (depth - 1) + b"."


def _torch_file_with_pickle(data_pkl: bytes, path: Path) -> Path:
    """A torch zip checkpoint whose data.pkl is `data_pkl` (the other records from a real torch.save)."""
    buffer = io.BytesIO()
    torch.save({}, buffer)
    with zipfile.ZipFile(io.BytesIO(buffer.getvalue())) as src, zipfile.ZipFile(path, "w") as dst:
        for info in src.infolist():
            dst.writestr(info, data_pkl if info.filename.endswith("data.pkl") else src.read(info))
    return path


def test_deeply_nested_checkpoints_give_value_errors(tmp_path: Path) -> None:
    deep = _deep_list_pickle(100_000)
    assert len(deep) < 300_000
    path = _torch_file_with_pickle(deep, tmp_path / "deep.pt")
    with pytest.raises(ValueError, match=r"deep\.pt"):
        naflow_aug.load(path)
    nested: list = []
    for _ in range(5000):
        nested = [nested]
    for where in ("format_version", "config", "hyper_parameters"):
        ckpt = {"format": "naflow-aug/model", "format_version": 1, "config": {}, "state_dict": {}}
        if where == "hyper_parameters":
            ckpt = {"state_dict": {"cond_net.down1.weight": torch.zeros(8, 3, 3, 3)},
                    "hyper_parameters": {"network_G_config": nested}}  # fmt: skip
        else:
            ckpt[where] = nested
        with pytest.raises(ValueError, match="checkpoint"):
            checkpoints.model_from_checkpoint(ckpt, "checkpoint")


@pytest.mark.timeout(60)
def test_shared_reference_hyper_parameters_take_linear_work(tmp_path: Path) -> None:
    """A few hundred bytes describing 2**40 list nodes through shared references: the reader converts
    each object once (before: exponential time and memory, 8.7 s and 1.3 GB at depth 22)."""
    graph: list = []
    for _ in range(40):
        graph = [graph, graph]
    state = {"cond_net.down1.weight": torch.zeros(8, 3, 3, 3), "mean_shift_A_00100": torch.zeros(48)}
    path = tmp_path / "bomb.ckpt"
    torch.save({"state_dict": state, "hyper_parameters": {"network_G_config": graph}}, path)
    assert path.stat().st_size < 4000
    t0 = time.perf_counter()
    with pytest.raises(ValueError, match=r"bomb\.ckpt"):
        naflow_aug.load(path)
    assert time.perf_counter() - t0 < 5
    wide = [[i] for i in range(checkpoints.HPARAM_MAX_NODES + 1)]
    with pytest.raises(ValueError, match="more than"):
        checkpoints._plain(wide)
    small: list = [[], []]
    for _ in range(3):
        small = [small, small]
    assert checkpoints._plain(small) == small  # shared sub-results still give the same plain value


def test_mutated_checkpoint_bytes_load_identically_or_raise_value_error(tiny_checkpoint: Path, tmp_path: Path,
                                                                         tiny_model) -> None:
    """Deterministic byte mutations all over the file (the pickle, zip records, tensor data): each load
    either refuses with a ValueError or gives exactly the saved model."""
    raw = tiny_checkpoint.read_bytes()
    reference = tiny_model.state_dict()
    bad = tmp_path / "mutated.pt"
    positions = list(range(0, len(raw), max(1, len(raw) // 120)))
    escaped = []
    for i, pos in enumerate(positions):
        mutated = bytearray(raw)
        mutated[pos] = (mutated[pos] + 1 + 37 * i) % 256
        bad.write_bytes(bytes(mutated))
        try:
            model = naflow_aug.load(bad)
        except ValueError:
            continue
        except Exception as err:  # noqa: BLE001 - collecting what escapes is the point of this test
            escaped.append((pos, f"{type(err).__name__}: {err}"))
            continue
        for k, v in model.state_dict().items():
            if not torch.equal(v, reference[k]):
                escaped.append((pos, f"loaded with a different {k}"))
                break
    assert not escaped, escaped[:5]


def test_deep_list_pickle_helper() -> None:
    assert pickle.loads(_deep_list_pickle(3)) == [[[]]]


def test_training_checkpoint_without_config_gives_a_message(tmp_path: Path) -> None:
    from naflow_aug.cli import main

    run = tmp_path / "run"
    run.mkdir()
    torch.save({"format": "naflow-aug-train/1", "step": 3, "model": {}}, run / "checkpoint.pt")
    (run / "config.toml").write_text(f'data = "{tmp_path}"\n')
    with pytest.raises(ValueError, match=r"checkpoint\.pt is an incomplete training checkpoint.*'config'"):
        checkpoints.read_training_checkpoint(run / "checkpoint.pt")
    assert main(["train", "--data", str(tmp_path), "--out", str(run), "--resume", "--no-progress"]) == 2
