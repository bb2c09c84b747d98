"""benchmarks/gpu_check.sh, the one-call GPU check of issue 19, runs end to end on the CPU (``--device cpu
--quick``) and writes the JSON a GPU session reads: every section ran, every issue target has a line."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.gpu_check
@pytest.mark.slow
def test_gpu_check_quick_cpu_mode(tmp_path: Path) -> None:
    out = tmp_path / "out"
    env = {**os.environ, "PYTHON": sys.executable, "GPU_CHECK_TIMEOUT": "400"}
    # the suite's device tests are left out here: this test is one of the suite's (no recursion)
    proc = subprocess.run(
        [
            "bash",
            str(ROOT / "benchmarks" / "gpu_check.sh"),
            "--device",
            "cpu",
            "--quick",
            "--out",
            str(out),
            "--skip",
            "tests",
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=420,
    )
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-4000:]
    assert sorted(p.name for p in out.iterdir()) == ["gpu_check.json", "gpu_check.log"]
    result = json.loads((out / "gpu_check.json").read_text())
    assert result["device"] == "cpu" and result["quick"] is True and result["ok"] is True
    sections = result["sections"]
    assert sections["tests"]["status"] == "skipped"
    for name in ("env", "nas_speed", "quality", "tiled_memory", "generate", "loader"):
        assert sections[name]["status"] == "ok", (name, sections[name])
    assert sections["nas_compiled"]["status"] == "skipped"  # torch.compile on the CPU: minutes
    speed = sections["nas_speed"]
    for row in speed["batches"].values():
        assert row["fp32"]["crops_per_s"] > 0 and row["bf16"]["crops_per_s"] > 0
        assert row["fp32"]["fraction_of_dncnn_step"] > 0 and "skipped" in row["cudagraph"]
    assert speed["reference_batch1"]["max_diff_vs_fast"] < 1e-3  # the reference runs the same model
    quality = sections["quality"]
    assert 0 <= quality["bf16_vs_fp32_same_weights"]["kld"] < 0.5
    gen = sections["generate"]
    assert gen["within_tolerance"] and gen["samples"] > 0 and gen["noisy_max_levels"] == 0  # CPU vs CPU
    assert sections["loader"]["nas_random_images_per_s"] > 0
    alb = sections["loader"]["albumentations"]
    assert isinstance(alb, dict) and alb["images_per_s"] > 0 or alb.startswith("skipped: albumentations")
    # the four targets, each a pass/fail line; on the CPU marked as not meaningful
    names = [t["name"] for t in result["targets"]]
    assert len(names) == 4 and any("crops/s" in n for n in names) and any("KLD" in n for n in names), names
    for t in result["targets"]:
        assert "not the target machine" in t["note"]
        if "GPU memory" in t["name"]:
            assert t["value"] is None and t["pass"] is None  # no GPU: not measured
        else:
            assert t["value"] is not None and t["pass"] in (True, False), t
    assert "simulated camera" in result["data"]
