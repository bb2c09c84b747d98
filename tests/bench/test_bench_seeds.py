from __future__ import annotations

import json

import numpy as np
import pytest

from naflow_aug.bench import seeds as bench_seeds
from tests.bench.test_bench import _write_sidd_split_and_preset


def _row(source, psnrs, group="S6"):
    items = [{"name": f"img{i}", "group": group, "psnr": p, "ssim": 0.5} for i, p in enumerate(psnrs)]
    overall = {"psnr": float(np.mean(psnrs)), "ssim": 0.5, "n": len(psnrs)}
    return {"source": source, "pairs": {"overall": overall, "groups": {group: overall}, "items": items}}


def test_parse_seeds():
    assert bench_seeds.parse_seeds("0, 1,2") == [0, 1, 2]
    assert bench_seeds.parse_seeds([3, 1]) == [3, 1]
    for bad in ("", "0,x", "1,1", "-1"):
        with pytest.raises(ValueError, match="seeds"):
            bench_seeds.parse_seeds(bad)
    with pytest.raises(TypeError, match="integers"):
        bench_seeds.parse_seeds([0, 1.5])


def test_paired_bootstrap_interval():
    rng = np.random.default_rng(0)
    d = 0.3 + 0.1 * rng.standard_normal(200)
    r = bench_seeds.paired_bootstrap(d)
    assert r["n"] == 200 and r["mean"] == pytest.approx(d.mean())
    assert r["lo"] < r["mean"] < r["hi"]
    # the interval is about +-1.96 standard errors wide
    se = d.std(ddof=1) / np.sqrt(d.size)
    assert r["hi"] - r["lo"] == pytest.approx(2 * 1.96 * se, rel=0.15)
    centred = bench_seeds.paired_bootstrap(d - d.mean())
    assert centred["lo"] < 0 < centred["hi"]
    with pytest.raises(ValueError, match="non-finite"):
        bench_seeds.paired_bootstrap([0.1, float("nan")])
    with pytest.raises(ValueError, match="non-empty"):
        bench_seeds.paired_bootstrap([])


def test_aggregate_picks_the_best_baseline_and_pairs_images():
    per_seed = {
        0: {"rows": [_row("real", [30, 31, 32]), _row("gaussian:10", [29, 30, 31]),
                     _row("poisson-gaussian", [29.5, 30.5, 31.5]), _row("nas", [30, 31, 31.8])]},
        1: {"rows": [_row("real", [30.2, 31.2, 32.2]), _row("gaussian:10", [29, 30, 31]),
                     _row("poisson-gaussian", [29.4, 30.4, 31.4]), _row("nas", [29.0, 30.5, 31.5])]},
    }  # fmt: skip
    s = bench_seeds.aggregate_seeds(per_seed)
    assert s["seeds"] == [0, 1] and s["best_baseline"] == "poisson-gaussian"
    real = next(r for r in s["rows"] if r["source"] == "real")
    assert real["psnr"] == pytest.approx(31.1)
    assert real["psnr_std"] == pytest.approx(np.std([31, 31.2], ddof=1))
    p = s["paired"]["real"]
    # per image, averaged over seeds: (0.5 + 0.8) / 2 = 0.65 for every image
    assert p["mean"] == pytest.approx(0.65) and p["lo"] == pytest.approx(0.65) and p["wins_every_seed"]
    nas = s["paired"]["nas"]
    assert nas["seed_diffs"][1] < 0 and not nas["wins_every_seed"]
    assert "poisson-gaussian" not in s["paired"]
    md = bench_seeds.seeds_markdown(s)
    assert "| real | 31.10 +- 0.14 |" in md and "`poisson-gaussian`" in md and "| nas |" in md
    with pytest.raises(ValueError, match="sources"):
        bench_seeds.aggregate_seeds({0: per_seed[0], 1: {"rows": per_seed[1]["rows"][:2]}})


def test_cli_bench_seeds_on_a_sidd_folder(tmp_path, capsys):
    from naflow_aug.cli import main

    _write_sidd_split_and_preset(tmp_path)
    argv = ["bench", "--clean", str(tmp_path / "sidd"), "--noise", "real", "--noise", "gaussian:12",
            "--split", str(tmp_path / "split.toml"), "--preset", str(tmp_path / "tiny.toml"), "--steps", "2",
            "--out", str(tmp_path / "run"), "--no-progress", "--seeds", "0,1"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr().out
    assert "+-" in printed and "95% interval" in printed
    res = json.loads((tmp_path / "run" / "results.json").read_text())
    assert res["seeds"] == [0, 1] and res["best_baseline"] == "gaussian:12"
    assert set(res["paired"]) == {"real"} and res["paired"]["real"]["n"] == 2
    for s in (0, 1):
        one = json.loads((tmp_path / "run" / f"seed-{s}" / "results.json").read_text())
        assert [r["source"] for r in one["rows"]] == ["real", "gaussian:12"]
        assert len(one["rows"][0]["pairs"]["items"]) == 2
    # the two seeds really differ (another init and other batches)
    r0, r1 = res["rows"][0]["psnr_per_seed"].values()
    assert r0 != r1
    assert (tmp_path / "run" / "curves.png").is_file()
    # finished: --resume does nothing and reports the same
    assert main([*argv, "--resume"]) == 0
    assert json.loads((tmp_path / "run" / "results.json").read_text())["rows"] == res["rows"]
    assert main([*argv[:-2], "--seeds", "0,0"]) == 2
    assert "distinct" in capsys.readouterr().err


def test_combine_runs_of_other_sources(tmp_path, capsys):
    from naflow_aug.cli import main

    _write_sidd_split_and_preset(tmp_path)
    base = ["bench", "--clean", str(tmp_path / "sidd"), "--split", str(tmp_path / "split.toml"),
            "--preset", str(tmp_path / "tiny.toml"), "--steps", "2", "--no-progress",
            "--seeds", "0,1"]  # fmt: skip
    assert main([*base, "--noise", "real", "--noise", "gaussian:12", "--out", str(tmp_path / "both")]) == 0
    assert main([*base, "--noise", "real", "--out", str(tmp_path / "a")]) == 0
    assert main([*base, "--noise", "gaussian:12", "--out", str(tmp_path / "b")]) == 0
    merged = bench_seeds.combine_runs([tmp_path / "a", tmp_path / "b"], tmp_path / "ab")
    together = json.loads((tmp_path / "both" / "results.json").read_text())
    # separate runs of the sources give the same table as one run of both
    assert [r["source"] for r in merged["rows"]] == ["real", "gaussian:12"]
    for m, t in zip(merged["rows"], together["rows"], strict=True):
        assert m["psnr_per_seed"] == {int(k): v for k, v in t["psnr_per_seed"].items()}
    assert merged["paired"]["real"]["mean"] == pytest.approx(together["paired"]["real"]["mean"])
    assert (tmp_path / "ab" / "results.md").is_file()
    with pytest.raises(ValueError, match="no finished"):
        bench_seeds.combine_runs([tmp_path / "a", tmp_path / "nope"], tmp_path / "x")
