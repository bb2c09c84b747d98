from __future__ import annotations

import dataclasses

import pytest

from naflow_aug.runs import RunDir, atomic_write_text, config_from_dict, dumps_toml, read_toml


@dataclasses.dataclass(frozen=True)
class Inner:
    width: int = 4


@dataclasses.dataclass(frozen=True)
class Outer:
    name: str = "x"
    lr: float = 1e-3
    sizes: tuple[int, ...] = (1, 2)
    inner: Inner = Inner()


def test_toml_round_trip(tmp_path):
    cfg = Outer(name="run", lr=2e-4, sizes=(3, 4, 5), inner=Inner(width=7))
    path = tmp_path / "c.toml"
    atomic_write_text(path, dumps_toml(dataclasses.asdict(cfg)))
    assert config_from_dict(Outer, read_toml(path)) == cfg


def test_unknown_and_mistyped_keys_are_rejected():
    with pytest.raises(ValueError, match="unknown key"):
        config_from_dict(Outer, {"nmae": "typo"})
    with pytest.raises(TypeError, match="expected an integer"):
        config_from_dict(Outer, {"inner": {"width": "wide"}})


def test_run_dir_log_skips_torn_line(tmp_path):
    run = RunDir(tmp_path / "run")
    run.log({"step": 1, "loss": 0.5})
    with open(run.file("metrics.jsonl"), "a") as f:
        f.write('{"step": 2, "lo')  # a line torn by a crash
    assert run.read_log() == [{"step": 1, "loss": 0.5}]
    assert not run.finished
    run.write_results({"ok": True})
    assert run.finished
