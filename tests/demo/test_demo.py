"""The main job at tiny size: every stage runs, the report's numbers are finite, its images exist and load."""

from __future__ import annotations

import html
import html.parser
import json
import math
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import torch
from PIL import Image

from naflow_aug import cli, evaluate
from naflow_aug.bench import slug
from naflow_aug.data.sidd import load_split
from naflow_aug.demo import run_demo
from naflow_aug.demo.report import winner_sentence
from naflow_aug.demo.stages import aggregate_quality

CHROMIUM = os.environ.get("NAFLOW_AUG_CHROMIUM", "/usr/bin/chromium")


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("demo") / "run"
    results = run_demo(out, size="tiny", progress=False)
    return out, results


class _Images(html.parser.HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.src: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag == "img":
            self.src.append(dict(attrs)["src"] or "")


def _finite(x: object) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def test_every_stage_ran_and_the_numbers_are_finite(run):
    out, results = run
    for name in (
        "report.html",
        "report.md",
        "results.json",
        "profile.json",
        "baselines.json",
        "synthetic.h5",
        "naflow/model.pt",
        "data/split.toml",
    ):
        assert (out / name).is_file(), name
    assert json.loads((out / "results.json").read_text()) == json.loads(json.dumps(results))
    d = results["data"]
    assert d["test_pairs"] > 0 and d["calibration_pairs"] > 0 and d["train_instances"] > 0
    # the calibration instances are held out: neither trained on nor scored
    train_ids, test_ids = load_split(out / "data" / "split.toml")
    assert not set(d["calibration_instances"]) & (set(train_ids) | set(test_ids))
    assert len(train_ids) == d["train_instances"] and len(test_ids) == d["test_instances"]

    nq = results["noise_quality"]
    rows = {r["source"]: r for r in nq["sources"]}
    profile = f"NAFlow profile ({d['calibration_class']})"
    assert {"NAFlow NAS", "NAFlow true config", profile, "gaussian-per-config", "poisson-gaussian"} <= set(
        rows
    )
    for name, r in rows.items():
        assert r["n"] > 0, name
        # (KLD drops bins empty in either histogram, as the official code does: it can dip below 0)
        assert _finite(r["kld"]) and _finite(r["akld"]) and r["akld"] >= 0, name
        assert all(_finite(v["kld"]) and _finite(v["akld"]) for v in r["classes"].values()), name
    assert set(rows[profile]["classes"]) == {d["calibration_class"]}  # scored on its own camera only
    assert rows["NAFlow NAS"]["n"] == d["test_pairs"]
    post = nq["posterior"]
    assert post["overall"]["n"] == d["test_pairs"]
    for v in [*post["classes"].values(), post["overall"]]:
        assert 0.0 <= v["top1"] <= v["top3"] <= 1.0

    denoise = {r["source"]: r for r in results["denoising"]["rows"]}
    assert {
        "noisy input",
        "NAFlow NAS (HDF5)",
        "real pairs",
        "gaussian-per-config",
        "poisson-gaussian",
    } <= set(denoise)
    assert any(n.startswith("gaussian:") for n in denoise) and len(denoise) == 6
    seeds = results["denoising"]["seeds"]
    assert seeds == [0, 1] == nq["seed_list"]  # tiny: two seeds, the demo's seed and the next
    for name, r in denoise.items():
        assert _finite(r["psnr"]) and _finite(r["psnr_std"]) and r["psnr_std"] >= 0, name
        assert 0 < r["ssim"] <= 1 and _finite(r["ssim_std"]), name
        assert r["psnr"] == pytest.approx(sum(r["psnr_per_seed"].values()) / len(seeds)), name
        for s in seeds:  # each (source, seed) is its own benchmark run, scored on every test pair
            one = json.loads((out / "bench" / slug(name) / f"seed-{s}" / "results.json").read_text())
            assert one["rows"][0]["pairs"]["overall"]["n"] == d["test_pairs"], name
            assert one["rows"][0]["pairs"]["overall"]["psnr"] == pytest.approx(r["psnr_per_seed"][s])
    assert denoise["noisy input"]["psnr_std"] == 0.0  # no training: nothing depends on the seed
    for r in nq["sources"]:
        assert _finite(r["kld_std"]) and _finite(r["akld_std"]) and r["kld_std"] >= 0, r["source"]
    assert nq["seeds"] == 2
    assert results["generated"]["samples"] > 0
    assert _finite(results["naflow_training"]["final_val"]["val_nll"])


def test_html_and_markdown_reference_existing_images(run):
    out, results = run
    page = (out / "report.html").read_text()
    parser = _Images()
    parser.feed(page)
    expected = {
        "figures/samples.png",
        "figures/correlation.png",
        "figures/naflow_training.png",
        "figures/dncnn_curves.png",
        "figures/dncnn_grid.png",
    }
    assert expected <= set(parser.src)
    for src in parser.src:
        path = out / src
        assert path.is_file(), src
        with Image.open(path) as im:
            im.verify()
            assert im.size[0] > 50 and im.size[1] > 50
    md = (out / "report.md").read_text()
    for src in parser.src:
        assert f"]({src})" in md
    # the tables show the numbers of results.json, each with its spread over the seeds
    nas = next(r for r in results["noise_quality"]["sources"] if r["source"] == "NAFlow NAS")
    real = next(r for r in results["denoising"]["rows"] if r["source"] == "real pairs")
    for text in (page, md):
        assert f"{nas['kld']:.4f} ± {nas['kld_std']:.4f}" in text
        assert f"{real['psnr']:.2f} ± {real['psnr_std']:.2f}" in text


def _md_tables(md: str) -> dict[str, list[list[str]]]:
    """First header cell -> body rows of every Markdown table."""
    tables: dict[str, list[list[str]]] = {}
    lines = md.splitlines()
    for i, line in enumerate(lines):
        if line.startswith("|") and i + 1 < len(lines) and lines[i + 1].startswith("|---"):
            head = [c.strip() for c in line.strip("|").split("|")]
            body = []
            for row in lines[i + 2 :]:
                if not row.startswith("|"):
                    break
                body.append([c.strip() for c in row.strip("|").split("|")])
            tables[head[0] + " " + head[1]] = body
    return tables


def test_every_number_carries_its_seed_spread_and_the_winner_sentence_matches(run):
    out, results = run
    md = (out / "report.md").read_text()
    tables = _md_tables(md)
    for key in ("noise source KLD (all pairs)", "noise source AKLD (all pairs)", "trained on PSNR (dB)"):
        for row in tables[key]:
            numbers = [c for c in row[1:] if c not in ("–",) and not c.isdigit()]
            assert numbers and all(" ± " in c for c in numbers), (key, row)
    paired = tables[next(k for k in tables if k.startswith("trained on PSNR - "))]
    assert {r[0] for r in paired} == {r["source"] for r in results["denoising"]["rows"]} - {
        results["denoising"]["best_baseline"]
    }
    assert all(r[2].startswith("[") and r[2].endswith("]") for r in paired)

    den = results["denoising"]
    w = den["winner"]
    trained = [r for r in den["rows"] if r["source"] != "noisy input"]
    ranked = sorted(trained, key=lambda r: -r["psnr"])
    assert w["winner"]["source"] == ranked[0]["source"] and w["runner_up"]["source"] == ranked[1]["source"]
    # the paired mean over images equals the difference of the mean PSNRs (every seed scores every image)
    assert w["paired"]["mean"] == pytest.approx(ranked[0]["psnr"] - ranked[1]["psnr"], abs=1e-9)
    ahead = sum(ranked[0]["psnr_per_seed"][s] > ranked[1]["psnr_per_seed"][s] for s in den["seeds"])
    assert w["paired"]["seeds_ahead"] == ahead
    sentence = winner_sentence(w)
    assert sentence in md and html.escape(sentence) in (out / "report.html").read_text()
    assert sentence.startswith(f"Winner: {ranked[0]['source']}.")
    assert f"{ranked[0]['psnr']:.2f} ± {ranked[0]['psnr_std']:.2f} dB" in sentence
    assert f"{w['paired']['mean']:+.2f} dB ahead of {ranked[1]['source']}" in sentence
    assert f"ahead in {ahead} of 2 seeds" in sentence

    # the best synthetic noise: the ranking without real pairs, named in its own sentence
    sw = den["synthetic_winner"]
    synthetic = [r for r in ranked if r["source"] != "real pairs"]
    assert sw["winner"]["source"] == synthetic[0]["source"]
    assert sw["runner_up"]["source"] == synthetic[1]["source"]
    assert sw["paired"]["mean"] == pytest.approx(synthetic[0]["psnr"] - synthetic[1]["psnr"], abs=1e-9)
    named = winner_sentence(sw, "Best synthetic noise")
    assert named.startswith(f"Best synthetic noise: {synthetic[0]['source']}.")
    assert (named in md) == (sw["winner"]["source"] != w["winner"]["source"])


def test_winner_sentence_says_when_the_interval_includes_zero():
    def row(name, psnr, std):
        return {"source": name, "psnr": psnr, "psnr_std": std}

    w = {
        "winner": row("real pairs", 32.456, 0.1),
        "runner_up": row("gaussian:16.0", 31.2, 0.05),
        "paired": {"mean": 1.256, "lo": 1.01, "hi": 1.5, "seeds_ahead": 3},
        "seeds": [0, 1, 2],
    }
    text = winner_sentence(w)
    assert text == (
        "Winner: real pairs. Its DnCNN scored 32.46 ± 0.10 dB (mean ± std over 3 seeds), +1.26 dB ahead of "
        "gaussian:16.0 (31.20 ± 0.05 dB; paired 95% interval [+1.01, +1.50] dB, ahead in 3 of 3 seeds)."
    )
    w["paired"] = {"mean": 0.05, "lo": -0.1, "hi": 0.2, "seeds_ahead": 2}
    assert winner_sentence(w).endswith(
        "; the interval includes zero: this benchmark cannot tell the two apart."
    )


def test_aggregate_quality_gives_mean_and_std_over_seeds():
    def one(kld, akld):
        row = {
            "source": "nas",
            "kld": kld,
            "akld": akld,
            "n": 2,
            "classes": {"A": {"kld": kld, "akld": akld, "n": 2}},
        }
        return {"sources": [row], "posterior": None, "pairs": 2, "samples": 1}

    agg = aggregate_quality([one(0.1, 0.5), one(0.3, 0.7)])
    r = agg["sources"][0]
    assert r["kld"] == pytest.approx(0.2) and r["kld_std"] == pytest.approx(0.1414213562, rel=1e-6)
    assert r["akld"] == pytest.approx(0.6) and r["classes"]["A"]["akld_std"] == pytest.approx(
        0.1414213562, rel=1e-6
    )
    assert agg["seeds"] == 2 and r["n"] == 2
    assert aggregate_quality([one(0.1, 0.5)])["sources"][0]["kld_std"] == 0.0


def test_resume_of_a_finished_run_does_nothing_and_reuse_is_refused(run):
    out, results = run
    before = (out / "results.json").stat().st_mtime_ns
    assert run_demo(out, size="tiny", progress=False, resume=True) == json.loads(json.dumps(results))
    assert (out / "results.json").stat().st_mtime_ns == before
    with pytest.raises(ValueError, match="not empty"):
        run_demo(out, size="tiny", progress=False)
    with pytest.raises(ValueError, match="size must be one of"):
        run_demo(out.parent / "other", size="huge")


def test_cli_parses_the_demo_command():
    args = cli.build_parser().parse_args(
        ["demo", "--out", "x", "--size", "tiny", "--resume", "--device", "cpu", "--model", "m.pt"]
    )
    assert args.func is cli.demo._run_demo and args.size == "tiny" and args.resume and args.model == "m.pt"
    assert args.data is None


def test_noise_quality_scores_a_perfect_source_zero():
    g = torch.Generator().manual_seed(0)
    clean = torch.rand(3, 3, 32, 32, generator=g) * 0.5 + 0.25
    noisy = (clean + 0.05 * torch.randn(clean.shape, generator=g)).clamp(0, 1)
    pairs = [evaluate.HeldOutPair(f"p{i}", "A_00100", clean[i], noisy[i]) for i in range(3)]
    from naflow_aug.noise import make_noise_source

    res = evaluate.noise_quality(
        pairs, {"real": make_noise_source("real"), "white": make_noise_source("gaussian:40")}
    )
    rows = {r["source"]: r for r in res["sources"]}
    assert rows["real"]["kld"] == pytest.approx(0.0, abs=1e-9) and rows["real"]["n"] == 3
    assert rows["white"]["kld"] > 0.1  # sigma 40/255 is far from the real 0.05
    assert res["posterior"] is None
    with pytest.raises(ValueError, match="needs the model"):
        evaluate.noise_quality(pairs, {"t": evaluate.TRUE_CONFIG})


_PROBE = """<script>window.addEventListener('load', function () {
  var out = document.createElement('pre'); out.id = 'img-probe';
  out.textContent = JSON.stringify(Array.from(document.images).map(function (i) {
    return [i.getAttribute('src'), i.complete && i.naturalWidth > 0]; }));
  document.body.appendChild(out);
});</script>"""


def test_report_opens_in_headless_chromium_with_every_image_loaded(run, tmp_path):
    exe = CHROMIUM if Path(CHROMIUM).is_file() else shutil.which("chromium")
    if not exe:
        pytest.skip(
            f"no Chromium at {CHROMIUM} (Debian: `apt-get install -y chromium`; or set NAFLOW_AUG_CHROMIUM)"
        )
    out, _ = run
    probe = out / "report_probe.html"  # beside the report, so the relative image paths resolve the same
    probe.write_text((out / "report.html").read_text().replace("</body>", _PROBE + "</body>"))
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--virtual-time-budget=10000",
        "--dump-dom",
    ]
    try:
        dom = subprocess.run(
            [exe, *flags, probe.resolve().as_uri()], capture_output=True, text=True, timeout=120, check=True
        ).stdout
    finally:
        probe.unlink()
    start = dom.find('<pre id="img-probe">')
    assert start >= 0, f"the probe did not run; Chromium's DOM starts: {dom[:300]!r}"
    text = dom[start + len('<pre id="img-probe">') : dom.index("</pre>", start)]
    images = json.loads(html.unescape(text))
    assert len(images) >= 4
    assert [src for src, ok in images if not ok] == []


def test_spread_covers_every_configuration_first():
    from naflow_aug.demo.data import spread as _spread

    pairs = [evaluate.HeldOutPair(f"{c}{i}", c, torch.zeros(1), torch.zeros(1)) for c in "AAAB" for i in (0,)]
    pairs += [evaluate.HeldOutPair("C0", "C", torch.zeros(1), torch.zeros(1))]
    assert [p.cls for p in _spread(pairs, 3)] == ["A", "B", "C"]
    assert [p.cls for p in _spread(pairs, 10)] == ["A", "B", "C", "A", "A"]


def test_an_interrupted_run_resumes_without_redoing_finished_stages(tmp_path, monkeypatch):
    import naflow_aug.demo.run as demo_run

    real_job = demo_run.run_bench_job

    def broken(job):
        if job.name == "NAFlow NAS (HDF5)":
            raise RuntimeError("killed during the denoisers")
        return real_job(job)

    out = tmp_path / "run"
    with monkeypatch.context() as m:
        m.setattr(demo_run, "run_bench_job", broken)
        with pytest.raises(RuntimeError, match="killed"):
            run_demo(out, size="tiny", progress=False, workers=1)
    assert (out / "synthetic.h5").is_file() and not (out / "report.html").exists()
    done = "bench/real-pairs/seed-1/sources/real-pairs/denoiser.pth"
    stamps = {
        n: (out / n).stat().st_mtime_ns
        for n in ("naflow/model.pt", "noise_quality.json", "synthetic.h5", done)
    }
    with pytest.raises(ValueError, match="different settings"):
        run_demo(out, size="tiny", progress=False, resume=True, seed=1)
    results = run_demo(out, size="tiny", progress=False, resume=True, workers=1)
    assert {n: (out / n).stat().st_mtime_ns for n in stamps} == stamps  # not redone
    assert (out / "report.html").is_file() and len(results["denoising"]["rows"]) == 6


def test_workers_run_jobs_in_processes_or_inline_when_asked():
    import math as _math

    from naflow_aug.demo.workers import Workers

    with Workers(2) as pool:
        futures = [pool.submit(f"f{n}", _math.factorial, n) for n in (5, 6)]
        done = [f.result() for f in futures]
    assert [j.value for j in done] == [120, 720] and [j.name for j in done] == ["f5", "f6"]
    assert all(j.wall_seconds >= 0 and j.cpu_seconds >= 0 for j in done)
    with Workers(1) as pool:
        future = pool.submit("bad", _math.factorial, -1)  # inline: nothing runs until asked
        assert not future.done()
        with pytest.raises(ValueError):
            future.result()
    with pytest.raises(ValueError, match="workers must be"):
        Workers(0)
