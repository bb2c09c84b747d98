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
from naflow_aug.data.sidd import load_split
from naflow_aug.demo import run_demo

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
        f"NAFlow profile ({d['calibration_class']})",
    } <= set(denoise)
    assert any(n.startswith("gaussian:") for n in denoise)
    for name, r in denoise.items():
        ov = r["pairs"]["overall"]
        assert ov["n"] == d["test_pairs"] and _finite(ov["psnr"]) and 0 < ov["ssim"] <= 1, name
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
    # the tables show the numbers of results.json
    nas = next(r for r in results["noise_quality"]["sources"] if r["source"] == "NAFlow NAS")
    noisy = next(r for r in results["denoising"]["rows"] if r["source"] == "noisy input")
    for text in (page, md):
        assert f"{nas['kld']:.4f}" in text and f"{noisy['pairs']['overall']['psnr']:.2f}" in text


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
    from naflow_aug.demo import _spread

    pairs = [evaluate.HeldOutPair(f"{c}{i}", c, torch.zeros(1), torch.zeros(1)) for c in "AAAB" for i in (0,)]
    pairs += [evaluate.HeldOutPair("C0", "C", torch.zeros(1), torch.zeros(1))]
    assert [p.cls for p in _spread(pairs, 3)] == ["A", "B", "C"]
    assert [p.cls for p in _spread(pairs, 10)] == ["A", "B", "C", "A", "A"]


def test_an_interrupted_run_resumes_without_redoing_finished_stages(tmp_path, monkeypatch):
    import naflow_aug.demo as demo

    def broken(*args, **kwargs):
        raise RuntimeError("killed during the denoisers")

    out = tmp_path / "run"
    with monkeypatch.context() as m:
        m.setattr(demo, "_bench", broken)
        with pytest.raises(RuntimeError, match="killed"):
            run_demo(out, size="tiny", progress=False)
    assert (out / "synthetic.h5").is_file() and not (out / "report.html").exists()
    stamps = {
        n: (out / n).stat().st_mtime_ns for n in ("naflow/model.pt", "noise_quality.json", "synthetic.h5")
    }
    with pytest.raises(ValueError, match="different settings"):
        run_demo(out, size="tiny", progress=False, resume=True, seed=1)
    results = run_demo(out, size="tiny", progress=False, resume=True)
    assert {n: (out / n).stat().st_mtime_ns for n in stamps} == stamps  # not redone
    assert (out / "report.html").is_file() and len(results["denoising"]["rows"]) == 7
