"""naflow_aug.noise_inputs: which files a noise spelling reads, their SHA-256, and what changed."""

from __future__ import annotations

import pytest

from naflow_aug.checkpoints import resolve
from naflow_aug.noise_inputs import changed_inputs, hash_inputs, noise_input_files
from naflow_aug.runs import sha256_file


def test_files_of_each_spelling(tmp_path) -> None:
    weights = tmp_path / "w.json"
    weights.write_text("[0.5, 0.5]")
    bundled = resolve("sidd-mini").resolve()
    assert noise_input_files("random", None) == {"model": bundled}
    assert noise_input_files("nas", "sidd-mini") == {"model": bundled}
    assert noise_input_files(f"weights:{weights}", "sidd-mini") == {"model": bundled, "weights": weights}
    assert noise_input_files("weights:0.2,0.8", "sidd-mini") == {"model": bundled}  # inline: no file
    assert noise_input_files(f"profile:{tmp_path}/p.json", "sidd-mini")["profile"] == tmp_path / "p.json"
    assert noise_input_files(f"poisson-gaussian:{weights}", "unused") == {"baselines": weights}
    assert noise_input_files("gaussian:5", "unused") == {}  # no file, no model
    assert noise_input_files("gaussian-per-config", "unused") == {}


def test_hashes_and_changes(tmp_path) -> None:
    path = tmp_path / "p.json"
    path.write_text("{}")
    first = hash_inputs({"profile": path})
    assert first == {"profile": {"path": str(path), "sha256": sha256_file(path)}}
    assert hash_inputs({"model": path}, known={"model": "abc"})["model"]["sha256"] == "abc"
    assert changed_inputs(first, first) == []
    path.write_text('{"weights": []}')
    second = hash_inputs({"profile": path})
    (line,) = changed_inputs(first, second)
    assert str(path) in line and first["profile"]["sha256"] in line and second["profile"]["sha256"] in line
    moved = {"profile": {"path": "/elsewhere/p.json", "sha256": first["profile"]["sha256"]}}
    assert changed_inputs(first, moved) == []  # the same content read through another path
    assert changed_inputs(first, {}) == [f"noise profile: {path} then, none now"]
    with pytest.raises(ValueError, match="baselines file .*missing.json.* does not exist"):
        hash_inputs({"baselines": tmp_path / "missing.json"})
