"""The demo's report: figures as PNG files, an HTML page and its Markdown twin, from the results dict.

``write_figures(run_dir, ...)`` draws into ``run_dir/figures/``; ``write_report(run_dir, results)`` writes
``report.html`` and ``report.md`` that reference those files by relative paths (the folder can be moved or
served as it is). Tables: noise quality (KLD / AKLD per noise source and configuration, the posterior's
top-1 / top-3 accuracy per configuration) and denoising (PSNR / SSIM per noise source, the noisy input as
reference). matplotlib is imported only here, lazily.
"""

from __future__ import annotations

import html
import logging
import math
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from naflow_aug.runs import RunDir, atomic_write_text

log = logging.getLogger(__name__)

__all__ = ["denoising_table", "noise_quality_table", "posterior_table", "write_figures", "write_report"]

FIGURES = "figures"


# ------------------------------------------------------------------------------------------------ tables


def _fmt(x: Any, digits: int) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return "–"
    return f"{x:.{digits}f}"


def noise_quality_table(nq: Mapping[str, Any]) -> tuple[list[str], list[list[str]]]:
    """(header, rows): per noise source, KLD / AKLD over all held-out pairs and KLD per configuration."""
    classes = sorted({c for r in nq["sources"] for c in r["classes"]})
    head = ["noise source", "KLD", "AKLD", "samples", *[f"{c} KLD / AKLD" for c in classes]]
    rows = []
    for r in nq["sources"]:
        cells = [r["source"], _fmt(r["kld"], 4), _fmt(r["akld"], 4), str(r["n"])]
        for c in classes:
            v = r["classes"].get(c)
            cells.append(f"{_fmt(v['kld'], 4)} / {_fmt(v['akld'], 4)}" if v else "–")
        rows.append(cells)
    return head, rows


def posterior_table(posterior: Mapping[str, Any] | None) -> tuple[list[str], list[list[str]]]:
    """(header, rows): the true configuration's rank in NAFlow's posterior, per configuration."""
    head = ["configuration", "top-1 accuracy", "top-3 accuracy", "pairs"]
    if not posterior:
        return head, []
    rows = [[c, _fmt(v["top1"], 2), _fmt(v["top3"], 2), str(v["n"])] for c, v in posterior["classes"].items()]
    o = posterior["overall"]
    rows.append(["all", _fmt(o["top1"], 2), _fmt(o["top3"], 2), str(o["n"])])
    return head, rows


def denoising_table(rows_in: Sequence[Mapping[str, Any]]) -> tuple[list[str], list[list[str]]]:
    """(header, rows): per training source, PSNR / SSIM on the held-out pairs, PSNR per configuration."""
    groups = sorted({g for r in rows_in for g in r.get("pairs", {}).get("groups", {})})
    head = ["trained on", "PSNR (dB)", "SSIM", *[f"{g} PSNR" for g in groups], "train s"]
    rows = []
    for r in rows_in:
        res = r.get("pairs", {})
        ov = res.get("overall", {})
        cells = [str(r["source"]), _fmt(ov.get("psnr"), 2), _fmt(ov.get("ssim"), 4)]
        cells += [_fmt(res.get("groups", {}).get(g, {}).get("psnr"), 2) for g in groups]
        cells.append("–" if not r.get("steps") else f"{r.get('train_seconds', 0):.0f}")
        rows.append(cells)
    return head, rows


def _md_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines) + "\n"


def _html_table(head: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    th = "".join(f"<th>{html.escape(h)}</th>" for h in head)
    body = "".join("<tr>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"


# ----------------------------------------------------------------------------------------------- figures


def _plt():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _hwc(x: torch.Tensor) -> Any:
    return x.detach().float().clamp(0, 1).permute(1, 2, 0).cpu().numpy()


def _noise_view(noisy: torch.Tensor, clean: torch.Tensor, gain: float = 4.0) -> Any:
    return _hwc(0.5 + gain * (noisy.float() - clean.float()))


def plot_samples(examples: Sequence[Mapping[str, Any]], path: Path) -> Path:
    """Rows of held-out pairs: clean, real noisy, each source's synthetic noisy, then the noises (x4)."""
    plt = _plt()
    names = list(examples[0]["fake"]) if examples else []
    cols = 2 + 2 * len(names) + 1
    fig, axes = plt.subplots(
        len(examples), cols, figsize=(1.7 * cols, 1.8 * len(examples) + 0.4), squeeze=False
    )
    for i, ex in enumerate(examples):
        panels = [("clean", _hwc(ex["clean"])), ("real noisy", _hwc(ex["noisy"]))]
        panels += [(n, _hwc(ex["fake"][n])) for n in names]
        panels += [("real noise x4", _noise_view(ex["noisy"], ex["clean"]))]
        panels += [(f"{n} noise x4", _noise_view(ex["fake"][n], ex["clean"])) for n in names]
        for j, (title, img) in enumerate(panels):
            ax = axes[i][j]
            ax.imshow(img, interpolation="nearest")
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0:
                ax.set_title(title, fontsize=7)
        axes[i][0].set_ylabel(ex["cls"], fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def plot_correlation(maps: Mapping[str, torch.Tensor], path: Path) -> Path:
    """Mean noise correlation maps (offsets within radius r; the centre, always 1, left blank)."""
    plt = _plt()
    fig, axes = plt.subplots(1, len(maps), figsize=(2.4 * len(maps), 2.7), squeeze=False)
    im = None
    for ax, (name, cmap) in zip(axes[0], maps.items(), strict=True):
        m = cmap.detach().double().clone()
        r = m.shape[-1] // 2
        m[r, r] = float("nan")
        im = ax.imshow(m.numpy(), vmin=-0.1, vmax=0.6, cmap="viridis")
        ax.set_title(name, fontsize=8)
        ax.set_xticks([0, r, 2 * r], [-r, 0, r])
        ax.set_yticks([0, r, 2 * r], [-r, 0, r])
    if im is not None:
        fig.colorbar(im, ax=axes[0].tolist(), shrink=0.8)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    return path


def plot_naflow_training(run: Path, path: Path) -> Path | None:
    """NAFlow's training NLL (running mean per log interval) and held-out NLL against the step."""
    records = RunDir(run).read_log()
    train = [(r["step"], r["loss"]) for r in records if r.get("kind") == "train" and _finite(r.get("loss"))]
    val = [(r["step"], r["val_nll"]) for r in records if r.get("kind") == "val" and _finite(r.get("val_nll"))]
    if not train and not val:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6, 3.6))
    if train:
        ax.plot(*zip(*train, strict=True), label="training NLL", lw=1)
    if val:
        ax.plot(*zip(*val, strict=True), "o-", label="held-out NLL (true configuration)")
    ax.set_xlabel("step")
    ax.set_ylabel("NLL (bits per pixel)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def _finite(x: Any) -> bool:
    return isinstance(x, int | float) and math.isfinite(x)


def write_figures(
    run_dir: str | Path,
    *,
    samples: Mapping[str, Any] | None = None,
    naflow_run: str | Path | None = None,
    bench_run: str | Path | None = None,
) -> list[dict[str, str]]:
    """Draw the report's figures into ``run_dir/figures``; returns ``[{'file', 'title', 'caption'}]`` with
    paths relative to ``run_dir``. ``samples``: ``{'examples': [...], 'correlation': {name: (2r+1, 2r+1)}}``
    as the demo makes them; ``naflow_run``/``bench_run``: run directories whose curves are shown."""
    run_dir = Path(run_dir)
    fig_dir = run_dir / FIGURES
    fig_dir.mkdir(parents=True, exist_ok=True)
    figs: list[dict[str, str]] = []

    def add(path: Path | None, title: str, caption: str) -> None:
        if path is not None and path.is_file():
            figs.append({"file": path.relative_to(run_dir).as_posix(), "title": title, "caption": caption})

    if samples and samples.get("examples"):
        add(
            plot_samples(samples["examples"], fig_dir / "samples.png"),
            "Held-out pairs and synthetic noise",
            "Each row: a held-out pair (clean, real noisy), the synthetic noisy images that the noise "
            "sources make from the same clean image (NAS takes the real noisy image as its reference), "
            "and the noise (noisy - clean, amplified 4x around grey).",
        )
    if samples and samples.get("correlation"):
        add(
            plot_correlation(samples["correlation"], fig_dir / "correlation.png"),
            "Noise correlation maps",
            "Correlation between a pixel's noise and its neighbour's at each offset, averaged over the "
            "held-out pairs (the paper's Fig. 5). Demosaicking and the ISP spread real noise over "
            "neighbours; white noise has none.",
        )
    if naflow_run is not None and Path(naflow_run).is_dir():
        add(
            plot_naflow_training(Path(naflow_run), fig_dir / "naflow_training.png"),
            "NAFlow training",
            "Negative log-likelihood of the training batches and of the held-out pairs under their true "
            "configuration.",
        )
    if bench_run is not None:
        for name, title, caption in (
            (
                "curves.png",
                "Denoiser training",
                "PSNR after each epoch on a subset of the held-out test pairs (every configuration), per "
                "training source; the tables use all of them.",
            ),
            (
                "grid.png",
                "Denoised examples",
                "Noisy input, DnCNN output and clean image of a held-out pair, per training source.",
            ),
        ):
            src = Path(bench_run) / name
            if src.is_file():
                dst = fig_dir / f"dncnn_{name}"
                shutil.copyfile(src, dst)
                add(dst, title, caption)
    return figs


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


def _sections(results: Mapping[str, Any]) -> list[tuple[str, str, Any]]:
    """(kind, title-or-text, payload) blocks shared by the HTML and the Markdown writers."""
    d = results["data"]
    m = results["model"]
    nq = results["noise_quality"]
    t = results["timings"]
    out: list[tuple[str, str, Any]] = []
    source = "the simulated camera (naflow_aug.data.simcam)" if d["simulated"] else f"`{d['root']}`"
    model = "trained here (naflow/model.pt)" if m["trained_here"] else f"`{m['ref']}` (given)"
    out.append(
        (
            "p",
            f"Data: {source}; {d['pairs']} pairs of {len(d['classes'])} configurations, split by scene "
            f"instance: {d['train_instances']} training instances, {d['test_instances']} held-out test "
            f"instances ({d['test_pairs']} pairs), calibration instances "
            f"{', '.join(d['calibration_instances'])} "
            f"({d['calibration_pairs']} pair(s) of camera {d['calibration_class']}).",
            None,
        )
    )
    out.append(
        (
            "p",
            f"NAFlow: {model}, {len(m['classes'])} configurations. Size: {results['settings']['size']}, "
            f"device: {results['settings']['device']}.",
            None,
        )
    )
    out.append(("h2", "Noise quality", None))
    out.append(
        (
            "p",
            f"KLD / AKLD between the real and the synthetic noise of the {nq['pairs']} held-out test "
            f"pairs ({nq['samples']} sample(s) per pair; lower is better). NAS: noise-aware sampling with "
            "the pair's real noisy image as reference; true config: the model's Gaussian of the pair's "
            "configuration; "
            f"profile: the mixture calibrated on camera {d['calibration_class']} (scored on its pairs only); "
            "gaussian-per-config / poisson-gaussian: fitted on the training pairs; gaussian:sigma: one white "
            "Gaussian (their mean std).",
            None,
        )
    )
    out.append(("table", "noise quality", noise_quality_table(nq)))
    if nq.get("posterior"):
        out.append(
            (
                "p",
                "Posterior accuracy: how often the pair's true configuration is NAFlow's most likely "
                "(top-1) or among its three most likely (top-3) configurations.",
                None,
            )
        )
        out.append(("table", "posterior", posterior_table(nq["posterior"])))
    out.append(("h2", "Denoising", None))
    gen = results["generated"]
    out.append(
        (
            "p",
            f"One DnCNN per training source (preset {results['denoising']['preset']}), scored on the "
            f"held-out test pairs (PSNR / SSIM of the 8-bit output; higher is better). NAFlow NAS (HDF5): "
            f"{gen['samples']} synthetic pairs of {gen['crop']}x{gen['crop']} training crops; the others add "
            "their noise to the training images on the fly; real pairs: the real noisy training images; "
            "noisy input: no denoiser.",
            None,
        )
    )
    out.append(("table", "denoising", denoising_table(results["denoising"]["rows"])))
    out.append(("h2", "Figures", None))
    for f in results["figures"]:
        out.append(("figure", f["title"], f))
    out.append(("h2", "Run", None))
    times = [[k, f"{v:.0f}"] for k, v in t.items()]
    out.append(("table", "timings", (["stage", "seconds"], times)))
    return out


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
