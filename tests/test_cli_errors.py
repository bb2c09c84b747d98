"""The CLI's error policy: every expected user error is one `naflow-aug CMD: error: ...` line on stderr and
exit code 2, found before any work is done; `--debug` shows the traceback instead."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

import naflow_aug
from naflow_aug.cli import main
from naflow_aug.data.images import write_png


def _error_line(capsys, command: str) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"naflow-aug {command}: error: "), err
    return err[0]


@pytest.fixture()
def clean_png(tmp_path: Path) -> Path:
    return write_png(tmp_path / "clean.png", np.full((16, 16, 3), 100, np.uint8))


@pytest.fixture()
def not_a_folder(tmp_path: Path) -> Path:
    blocker = tmp_path / "blocker"
    blocker.write_text("a file where a folder would have to be")  # unwritable for root too
    return blocker / "out"


def _fail(*_args, **_kwargs):
    raise AssertionError("the work started although --out cannot be written")


@pytest.mark.parametrize("command", ["sample", "calibrate", "fit-baselines", "refit-prior", "bench", "train",
                                     "simulate", "demo", "generate"])  # fmt: skip
def test_unwritable_out_is_refused_before_the_work(command, tmp_path, clean_png, not_a_folder,
                                                    tiny_checkpoint, capsys, monkeypatch) -> None:
    import naflow_aug.noise.baselines
    import naflow_aug.noise.model_source
    import naflow_aug.noise.profiles
    import naflow_aug.train

    monkeypatch.setattr(naflow_aug.noise.profiles, "calibrate_folder", _fail)
    monkeypatch.setattr(naflow_aug.noise.baselines, "fit_baselines_from_files", _fail)
    monkeypatch.setattr(naflow_aug.train, "refit_prior", _fail)
    monkeypatch.setattr(naflow_aug, "load", _fail)
    monkeypatch.setattr(naflow_aug.noise.model_source, "load", _fail)  # what the noise sources load with
    data, ckpt = str(tmp_path), str(tiny_checkpoint)
    args = {
        "sample": [str(clean_png), "--model", ckpt],
        "calibrate": ["--pairs", data, "--model", ckpt],
        "fit-baselines": ["--data", data],
        "refit-prior": ["--model", ckpt, "--data", data],
        "bench": ["--clean", data],
        "train": ["--data", data, "--preset", "cpu"],
        "simulate": [],
        "demo": [],
        "generate": ["--clean", data, "--model", ckpt],
    }[command]
    assert main([command, *args, "--out", str(not_a_folder / "x.json"), "--no-progress"
                 if command not in ("sample",) else "--seed=0"]) == 2  # fmt: skip
    line = _error_line(capsys, command)
    assert "cannot write" in line and "blocker" in line and "is not a folder" in line


def test_out_that_is_a_file_where_a_folder_is_expected(tmp_path, clean_png, tiny_checkpoint, capsys) -> None:
    out = tmp_path / "results.txt"
    out.write_text("")
    assert main(["sample", str(clean_png), "--model", str(tiny_checkpoint), "--out", str(out)]) == 2
    assert "exists and is not a folder" in _error_line(capsys, "sample")


@pytest.mark.parametrize(
    "device, expected", [("bogus", "unknown device 'bogus'"), ("cuda:99", "cuda:99"), ("meta", "unsupported")]
)
def test_bad_devices(device, expected, clean_png, tiny_checkpoint, tmp_path, capsys) -> None:
    args = ["sample", str(clean_png), "--model", str(tiny_checkpoint), "--out", str(tmp_path / "o")]
    assert main([*args, "--device", device]) == 2
    assert expected in _error_line(capsys, "sample")
    with pytest.raises(ValueError, match=expected.split(" '")[0]):
        naflow_aug.load(tiny_checkpoint, device=device)


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the message on a machine without CUDA")
def test_cuda_without_a_gpu(clean_png, tiny_checkpoint, tmp_path, capsys) -> None:
    args = ["sample", str(clean_png), "--model", str(tiny_checkpoint), "--out", str(tmp_path / "o")]
    assert main([*args, "--device", "cuda"]) == 2
    assert "CUDA is not available" in _error_line(capsys, "sample")
    assert main(["train", "--data", str(tmp_path), "--out", str(tmp_path / "run"), "--device", "cuda"]) == 2
    assert "CUDA is not available" in _error_line(capsys, "train")


@pytest.mark.parametrize("extra, expected", [
    (["--steps", "0"], "steps must be a positive integer, got 0"),
    (["--steps", "-3"], "steps must be a positive integer, got -3"),
    (["--config", "/nonexistent.toml"], "/nonexistent.toml does not exist"),
    (["--data", "/nonexistent"], "'/nonexistent' is not a folder"),
])  # fmt: skip
def test_train_argument_errors(extra, expected, tmp_path, capsys) -> None:
    base = ["train", "--preset", "cpu", "--out", str(tmp_path / "run"), "--no-progress"]
    if "--data" not in extra:
        base += ["--data", str(tmp_path)]
    assert main([*base, *extra]) == 2
    assert expected in _error_line(capsys, "train")


def test_a_text_file_as_model(tmp_path, clean_png, capsys) -> None:
    passwd = tmp_path / "passwd"
    passwd.write_text("root:x:0:0:root:/root:/bin/bash\n")
    assert main(["sample", str(clean_png), "--model", str(passwd), "--out", str(tmp_path / "o")]) == 2
    assert "passwd is not a readable checkpoint" in _error_line(capsys, "sample")


def test_debug_shows_the_traceback(tmp_path, clean_png) -> None:
    args = ["sample", str(clean_png), "--model", str(tmp_path / "missing.pt"), "--out", str(tmp_path / "o")]
    with pytest.raises(ValueError, match="neither a bundled model"):
        main([*args, "--debug"])
    with pytest.raises(ValueError, match="neither a bundled model"):
        main(["--debug", *args])


def _deep_json(path: Path, depth: int = 100_000) -> Path:
    path.write_text("[" * depth + "]" * depth)
    return path


def test_deep_or_broken_json_files_name_the_file(tmp_path) -> None:
    from naflow_aug.noise.baselines import Baselines
    from naflow_aug.noise.profiles import NoiseProfile
    from naflow_aug.weights import parse_weights

    deep = _deep_json(tmp_path / "deep.json")
    broken = tmp_path / "broken.json"
    broken.write_text('{"weights": [1, 2')
    latin = tmp_path / "latin.json"
    latin.write_bytes(b'{"name": "caf\xe9"}')
    for path in (deep, broken, latin):
        with pytest.raises(ValueError, match=path.name):
            NoiseProfile.load(path)
        with pytest.raises(ValueError, match=path.name):
            Baselines.load(path)
        with pytest.raises(ValueError, match=path.name):
            parse_weights(str(path), ["A", "B"])
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"kind": "naflow-aug-baselines", "format_version": 1, "classes": ["A"],
                                 "configs": {"A": {"gaussian_std": "x"}}}))  # fmt: skip
    with pytest.raises(ValueError, match="wrong.json is malformed"):
        Baselines.load(wrong)
