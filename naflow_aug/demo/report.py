"""The demo's report: an HTML page and its Markdown twin, from the results dict.

``write_report(run_dir, results)`` writes ``report.html`` and ``report.md``, which reference the figures
of :mod:`naflow_aug.demo.figures` by relative paths (the folder can be moved or served as it is).
Every number that depends on a seed carries its spread over the seeds (mean ± standard deviation):
noise quality (KLD / AKLD per noise source and configuration, one sampling seed each) and denoising
(PSNR / SSIM of one DnCNN per training source and seed), with the paired per-image PSNR differences
and one sentence naming the noise whose denoiser won and by how much (:func:`winner_sentence`).
"""

from __future__ import annotations

import html
import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from naflow_aug.runtime import atomic_write_text

__all__ = [
    "denoising_table",
    "noise_quality_tables",
    "paired_table",
    "posterior_table",
    "winner_sentence",
    "write_report",
]

Table = tuple[list[str], list[list[str]]]


# ------------------------------------------------------------------------------------------------ tables


def _fmt(x: Any, digits: int) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}f}"


def _pm(mean: Any, std: Any, digits: int) -> str:
    """``mean ± std`` (a dash for a missing mean; the mean alone without a std)."""
    m = _fmt(mean, digits)
    if m == "–" or std is None or (isinstance(std, float) and not math.isfinite(std)):
        return m
    return f"{m} ± {std:.{digits}f}"


def noise_quality_tables(nq: Mapping[str, Any]) -> tuple[Table, Table]:
    """(KLD table, AKLD table): per noise source, mean ± std over seeds, overall and per configuration."""
    classes = sorted({c for r in nq["sources"] for c in r["classes"]})
    tables = []
    for key in ("kld", "akld"):
        head = ["noise source", f"{key.upper()} (all pairs)", *classes, "pairs x samples"]
        rows = []
        for r in nq["sources"]:
            cells = [r["source"], _pm(r[key], r.get(f"{key}_std"), 4)]
            for c in classes:
                v = r["classes"].get(c)
                cells.append(_pm(v[key], v.get(f"{key}_std"), 4) if v else "–")
            rows.append([*cells, str(r["n"])])
        tables.append((head, rows))
    return tables[0], tables[1]


def posterior_table(posterior: Mapping[str, Any] | None) -> Table:
    """(header, rows): the true configuration's rank in NAFlow's posterior, per configuration."""
    head = ["configuration", "top-1 accuracy", "top-3 accuracy", "pairs"]
    if not posterior:
        return head, []
    rows = [[c, _fmt(v["top1"], 2), _fmt(v["top3"], 2), str(v["n"])] for c, v in posterior["classes"].items()]
    o = posterior["overall"]
    rows.append(["all", _fmt(o["top1"], 2), _fmt(o["top3"], 2), str(o["n"])])
    return head, rows


def denoising_table(rows_in: Sequence[Mapping[str, Any]]) -> Table:
    """(header, rows): per training source (best first), PSNR / SSIM on the held-out pairs and PSNR per
    configuration, each mean ± std over seeds (:func:`naflow_aug.bench.aggregate_seeds` rows)."""
    groups = sorted({g for r in rows_in for g in r.get("groups", {})})
    head = ["trained on", "PSNR (dB)", "SSIM", *[f"{g} PSNR" for g in groups], "train s"]
    rows = []
    for r in sorted(rows_in, key=lambda r: -r["psnr"] if math.isfinite(r["psnr"]) else math.inf):
        cells = [str(r["source"]), _pm(r["psnr"], r["psnr_std"], 2), _pm(r["ssim"], r["ssim_std"], 4)]
        cells += [_pm(*r["groups"][g], 2) if g in r["groups"] else "–" for g in groups]
        cells.append(f"{r['train_seconds']:.0f}" if r.get("train_seconds") else "–")
        rows.append(cells)
    return head, rows


def paired_table(denoising: Mapping[str, Any]) -> Table:
    """(header, rows): each source's paired per-image PSNR difference against the best baseline."""
    best = denoising.get("best_baseline")
    head = ["trained on", f"PSNR - {best} (dB)", "95% interval", "per seed", "ahead in every seed"]
    rows = []
    for name, p in (denoising.get("paired") or {}).items():
        per = ", ".join(f"{d:+.2f}" for d in p["seed_diffs"])
        interval = f"[{p['lo']:+.2f}, {p['hi']:+.2f}]"
        rows.append([name, f"{p['mean']:+.2f}", interval, per, "yes" if p["wins_every_seed"] else "no"])
    return head, rows


def winner_sentence(w: Mapping[str, Any], label: str = "Winner") -> str:
    """One sentence: the noise whose denoiser scored best, by how much, and whether the seeds agree
    (``label``: its opening word, e.g. ``'Best synthetic noise'``)."""
    first, second, p = w["winner"], w["runner_up"], w["paired"]
    n = len(w["seeds"])
    text = (
        f"{label}: {first['source']}. Its DnCNN scored {_pm(first['psnr'], first['psnr_std'], 2)} dB "
        f"(mean ± std over {n} seeds), {p['mean']:+.2f} dB ahead of {second['source']} "
        f"({_pm(second['psnr'], second['psnr_std'], 2)} dB; paired 95% interval "
        f"[{p['lo']:+.2f}, {p['hi']:+.2f}] dB, ahead in {p['seeds_ahead']} of {n} seeds)"
    )
    if p["lo"] <= 0.0:
        text += "; the interval includes zero: this benchmark cannot tell the two apart"
    return text + "."


def _md_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _html_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


# ------------------------------------------------------------------------------------------------ report

_CSS = """
body { font-family: system-ui, sans-serif; max-width: 1200px; margin: 2em auto; padding: 0 1em; color: #222; }
table { border-collapse: collapse; margin: 1em 0; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
thead { background: #f0f0f0; }
figure { margin: 1.5em 0; }
figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.9em; color: #555; }
code { background: #f4f4f4; padding: 0 0.2em; }
"""


Block = tuple[str, str, Any]  # (kind, title or text, payload), shared by the HTML and Markdown writers


def _intro(results: Mapping[str, Any]) -> list[Block]:
    d = results["data"]
    m = results["model"]
    source = "the simulated camera (naflow_aug.data.simcam)" if d["simulated"] else f"`{d['root']}`"
    model = "trained here (naflow/model.pt)" if m["trained_here"] else f"`{m['ref']}` (given)"
    data = (
        f"Data: {source}; {d['pairs']} pairs of {len(d['classes'])} configurations, split by scene "
        f"instance: {d['train_instances']} training instances, {d['test_instances']} held-out test "
        f"instances ({d['test_pairs']} pairs), calibration instances {', '.join(d['calibration_instances'])} "
        f"({d['calibration_pairs']} pair(s) of camera {d['calibration_class']})."
    )
    naflow = (
        f"NAFlow: {model}, {len(m['classes'])} configurations (one training run). Size: "
        f"{results['settings']['size']}, device: {results['settings']['device']}."
    )
    return [("p", data, None), ("p", naflow, None)]


def _noise_quality(results: Mapping[str, Any]) -> list[Block]:
    nq = results["noise_quality"]
    calib = results["data"]["calibration_class"]
    text = (
        f"KLD / AKLD between the real and the synthetic noise of the {nq['pairs']} held-out test pairs "
        f"({nq['samples']} sample(s) per pair and seed; mean ± std over {nq.get('seeds', 1)} sampling "
        "seeds; lower is better). NAS: noise-aware sampling with the pair's real noisy image as "
        "reference; true config: the model's Gaussian of the pair's configuration; profile: the mixture "
        f"calibrated on camera {calib} (scored on its pairs only); gaussian-per-config / poisson-gaussian: "
        "fitted on the training pairs; gaussian:sigma: one white Gaussian (their mean std)."
    )
    kld, akld = noise_quality_tables(nq)
    out: list[Block] = [("h2", "Noise quality", None), ("p", text, None)]
    out += [("table", "KLD", kld), ("table", "AKLD", akld)]
    if nq.get("posterior"):
        text = (
            "Posterior accuracy (it draws nothing: no seed spread): how often the pair's true "
            "configuration is NAFlow's most likely (top-1) or among its three most likely (top-3)."
        )
        out += [("p", text, None), ("table", "posterior", posterior_table(nq["posterior"]))]
    return out


def _denoising(results: Mapping[str, Any]) -> list[Block]:
    den = results["denoising"]
    gen = results["generated"]
    p = den["preset"]
    text = (
        f"One DnCNN (depth {p['depth']}, width {p['width']}, {p['epochs'] * p['steps_per_epoch']} steps of "
        f"{p['batch_size']} x {p['patch_size']}x{p['patch_size']} patches) per training source and seed "
        f"(seeds {', '.join(map(str, den['seeds']))}: another initialisation, other patches and noise "
        "draws), scored on the held-out test pairs (PSNR / SSIM of the 8-bit output; higher is better; "
        f"mean ± std over the seeds). NAFlow NAS (HDF5): {gen['samples']} synthetic pairs of "
        f"{gen['crop']}x{gen['crop']} training crops; the others add their noise to the training images "
        "on the fly; real pairs: the real noisy training images; noisy input: no denoiser."
    )
    out: list[Block] = [("h2", "Denoising", None), ("p", winner_sentence(den["winner"]), None)]
    if den.get("synthetic_winner") and den["synthetic_winner"]["winner"] != den["winner"]["winner"]:
        out.append(("p", winner_sentence(den["synthetic_winner"], "Best synthetic noise"), None))
    out += [("p", text, None), ("table", "denoising", denoising_table(den["rows"]))]
    if den.get("paired"):
        text = (
            f"Paired per-image PSNR difference against the best parametric baseline, {den['best_baseline']}: "
            "each test image's difference averaged over the seeds, its mean and a bootstrap 95% interval "
            "over the images; per seed: the difference of that seed's mean PSNR. A difference counts "
            "when its interval excludes zero and it holds in every seed."
        )
        out += [("p", text, None), ("table", "paired", paired_table(den))]
    return out


def _run(results: Mapping[str, Any]) -> list[Block]:
    wall = results["timings"]
    cpu = results.get("cpu_seconds", {})
    rows = [[k, f"{v:.0f}", _fmt(cpu.get(k), 0)] for k, v in wall.items()]
    total = sum(cpu.values())
    rows.append(["all stages (CPU)", "", f"{total:.0f}"])
    text = (
        "Seconds per stage: wall time of this run, and the CPU time (user + system) of every process "
        f"that worked on it ({results.get('workers', 1)} worker process(es) run the jobs side by side, "
        "one torch thread each; the denoisers of the noises that need no NAFlow train during "
        "'train NAFlow'). On an otherwise idle machine with a core per worker the run takes about the "
        "CPU total divided by the workers."
    )
    return [
        ("h2", "Run", None),
        ("p", text, None),
        ("table", "timings", (["stage", "wall s", "CPU s"], rows)),
    ]


def _sections(results: Mapping[str, Any]) -> list[Block]:
    out = _intro(results) + _noise_quality(results) + _denoising(results)
    out.append(("h2", "Figures", None))
    out += [("figure", f["title"], f) for f in results["figures"]]
    return out + _run(results)


def write_report(run_dir: str | Path, results: Mapping[str, Any]) -> tuple[Path, Path]:
    """Write ``report.html`` and ``report.md`` into ``run_dir`` (figures referenced relative to it)."""
    run_dir = Path(run_dir)
    title = "naflow-aug demo report"
    parts_html = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{title}</title>"
        f"<style>{_CSS}</style></head><body><h1>{title}</h1>"
    ]
    parts_md = [f"# {title}\n"]
    for kind, text, payload in _sections(results):
        if kind == "p":
            parts_html.append(f"<p>{html.escape(text).replace('`', '')}</p>")
            parts_md.append(text + "\n")
        elif kind == "h2":
            parts_html.append(f"<h2>{html.escape(text)}</h2>")
            parts_md.append(f"## {text}\n")
        elif kind == "table":
            head, rows = payload
            parts_html.append(_html_table(head, rows))
            parts_md.append(_md_table(head, rows))
        elif kind == "figure":
            src = html.escape(payload["file"], quote=True)
            parts_html.append(
                f"<figure><img src='{src}' alt='{html.escape(text, quote=True)}'>"
                f"<figcaption><b>{html.escape(text)}.</b> {html.escape(payload['caption'])}"
                "</figcaption></figure>"
            )
            parts_md.append(f"### {text}\n\n![{text}]({payload['file']})\n\n{payload['caption']}\n")
    parts_html.append("</body></html>\n")
    html_path = atomic_write_text(run_dir / "report.html", "\n".join(parts_html))
    md_path = atomic_write_text(run_dir / "report.md", "\n".join(parts_md))
    return html_path, md_path
