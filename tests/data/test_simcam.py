"""Simulated camera: SIDD layout read back, determinism, configurations that differ, the CLI."""

from __future__ import annotations

import hashlib

import pytest
import torch

from naflow_aug import cli
from naflow_aug.data.sidd import SiddMediumDataset, scan_sidd_medium
from naflow_aug.data.simcam import (
    DEFAULT_CAMERAS,
    make_scene,
    noise_statistics,
    render,
    write_simulated_sidd,
)
from naflow_aug.metrics import neighbour_correlation

SMALL = dict(scenes_per_config=3, size_range=(64, 80))


def _digest(root) -> str:
    h = hashlib.sha256()
    for p in sorted((root / "Data").rglob("*.PNG")):
        h.update(p.relative_to(root).as_posix().encode())
        h.update(p.read_bytes())
    return h.hexdigest()


@pytest.fixture(scope="module")
def sim(tmp_path_factory):
    root = tmp_path_factory.mktemp("sim") / "a"
    result = write_simulated_sidd(root, seed=3, **SMALL)
    return root, result


def test_written_in_sidd_layout_and_read_back(sim):
    root, result = sim
    assert result.classes == ["SA_00100", "SA_00800", "SA_03200", "SB_00100", "SB_00800", "SB_03200"]
    pairs = list(scan_sidd_medium(root))
    assert len(pairs) == 6 * 3 and len(result.folders) == 18
    assert {p.cls for p in pairs} == set(result.classes)
    for p in pairs:
        assert p.height % 8 == 0 and p.width % 8 == 0 and 64 <= p.height <= 80 and 64 <= p.width <= 80
        assert p.sidd.brightness in "LNH" and p.sidd.temperature in (3200, 4400, 5500)
    ds = SiddMediumDataset(root, crop_size=32, generator=torch.Generator().manual_seed(0))
    item = ds[5]
    assert item["clean"].shape == (3, 32, 32)
    # 8-bit levels
    assert torch.equal(item["noisy"] * 255, (item["noisy"] * 255).round())


def test_deterministic_from_seed(sim, tmp_path):
    root, _ = sim
    again = tmp_path / "b"
    write_simulated_sidd(again, seed=3, **SMALL)
    assert _digest(again) == _digest(root)
    other = tmp_path / "c"
    write_simulated_sidd(other, seed=4, **SMALL)
    assert _digest(other) != _digest(root)


def test_configurations_differ(sim):
    root, _ = sim
    stats = noise_statistics(root)
    for phone in ("SA", "SB"):
        s100, s800, s3200 = (stats[f"{phone}_{iso:05d}"]["noise_std"] for iso in (100, 800, 3200))
        assert s800 > 1.6 * s100 and s3200 > 1.6 * s800, stats  # noise grows with ISO
    for name, s in stats.items():
        assert s["neighbour_corr"] > 0.3, (name, s)  # demosaicking correlates neighbours
    for iso in (100, 800, 3200):
        # phone B's noise reduction makes its noise more correlated than phone A's
        assert stats[f"SB_{iso:05d}"]["neighbour_corr"] > stats[f"SA_{iso:05d}"]["neighbour_corr"] + 0.05


def test_noise_is_signal_dependent_and_correlated_only_after_demosaicking():
    scene = torch.full((3, 64, 64), 0.5)
    cam = DEFAULT_CAMERAS[1]  # SA_00800
    dark_c, dark_n = render(scene, cam, torch.Generator().manual_seed(0), exposure=0.05)
    bright_c, bright_n = render(scene, cam, torch.Generator().manual_seed(0), exposure=0.9)
    # RAW variance shot * x + read^2: brighter scenes have larger RAW noise, which the tone curve compresses;
    # the two differ clearly either way
    sd, sb = (dark_n - dark_c).std().item(), (bright_n - bright_c).std().item()
    assert abs(sd - sb) / max(sd, sb) > 0.2, (sd, sb)
    assert neighbour_correlation(bright_n, bright_c).item() > 0.3
    # the scene itself: in [0.02, 1], not flat, deterministic
    a = make_scene(48, 40, torch.Generator().manual_seed(1))
    b = make_scene(48, 40, torch.Generator().manual_seed(1))
    assert torch.equal(a, b) and a.shape == (3, 48, 40) and a.std() > 0.05
    assert a.min() >= 0.02 and a.max() <= 1.0


def test_bad_arguments(tmp_path, sim):
    root, _ = sim
    with pytest.raises(ValueError, match="not empty"):
        write_simulated_sidd(root, **SMALL)
    with pytest.raises(ValueError, match="multiples of 8"):
        write_simulated_sidd(tmp_path / "x", size_range=(60, 80))
    with pytest.raises(ValueError, match="even"):
        render(torch.rand(3, 5, 6), DEFAULT_CAMERAS[0], torch.Generator())


def test_cli_simulate(tmp_path, capsys):
    out = tmp_path / "cli"
    code = cli.main(["simulate", "--out", str(out), "--seed", "1", "--scenes", "1", "--min-size", "64",
                     "--max-size", "64", "--no-progress"])  # fmt: skip
    assert code == 0
    text = capsys.readouterr().out
    assert "SA_00100" in text and "SB_03200" in text and "neighbour corr" in text
    assert len(list(scan_sidd_medium(out))) == 6
    assert cli.main(["simulate", "--out", str(out), "--scenes", "1", "--no-progress"]) == 2
