from __future__ import annotations

import dataclasses
from pathlib import Path

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


def test_atomic_writes_honour_the_umask_and_keep_an_existing_mode(tmp_path: Path) -> None:
    import os
    import stat

    import numpy as np

    from naflow_aug.data.images import write_png
    from naflow_aug.runs import atomic_write_json, atomic_write_text, current_umask

    def mode(p: Path) -> int:
        return stat.S_IMODE(p.stat().st_mode)

    before = os.umask(0o022)
    try:
        assert current_umask() == 0o022
        assert mode(atomic_write_text(tmp_path / "a.txt", "x")) == 0o644  # before: 0600 (mkstemp)
        assert mode(write_png(tmp_path / "a.png", np.zeros((2, 2, 3), np.uint8))) == 0o644
        os.umask(0o027)
        assert current_umask() == 0o027
        assert mode(atomic_write_json(tmp_path / "b.json", {})) == 0o640
        os.chmod(tmp_path / "a.txt", 0o664)
        atomic_write_text(tmp_path / "a.txt", "rewritten")  # a rewrite keeps the file's own mode
        assert mode(tmp_path / "a.txt") == 0o664 and (tmp_path / "a.txt").read_text() == "rewritten"
    finally:
        os.umask(before)
