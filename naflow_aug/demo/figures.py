"""The demo report's figures, drawn as PNG files into ``<run>/figures`` (matplotlib, imported lazily).

:func:`write_figures` draws the held-out pairs with each source's synthetic noise, the noise
correlation maps, NAFlow's training curve, and takes the denoiser stage's curves (mean over seeds, the
seeds' range shaded) and denoised examples (each source's first seed, one row per source).
"""

from __future__ import annotations

import math
import shutil
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch

from naflow_aug.runtime import RunDir

__all__ = [
    "FIGURES",
    "plot_correlation",
    "plot_naflow_training",
    "plot_samples",
    "stack_images",
    "write_figures",
]

FIGURES = "figures"


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


def stack_images(paths: Sequence[Path], path: Path) -> Path | None:
    """Stack the PNG files ``paths`` top to bottom (left-aligned, white margin) into ``path``."""
    from PIL import Image

    images = []
    for p in paths:
        if Path(p).is_file():
            with Image.open(p) as im:
                images.append(im.convert("RGB"))
    if not images:
        return None
    canvas = Image.new("RGB", (max(im.width for im in images), sum(im.height for im in images)), "white")
    top = 0
    for im in images:
        canvas.paste(im, (0, top))
        top += im.height
    canvas.save(path)
    return path


_SAMPLES_CAPTION = (
    "Each row: a held-out pair (clean, real noisy), the synthetic noisy images that the noise sources make "
    "from the same clean image (NAS takes the real noisy image as its reference), and the noise (noisy - "
    "clean, amplified 4x around grey)."
)
_CORRELATION_CAPTION = (
    "Correlation between a pixel's noise and its neighbour's at each offset, averaged over the held-out "
    "pairs (the paper's Fig. 5). Demosaicking and the ISP spread real noise over neighbours; white noise "
    "has none."
)
_NAFLOW_CAPTION = (
    "Negative log-likelihood of the training batches and of the held-out pairs under their true "
    "configuration."
)
_CURVES_CAPTION = (
    "PSNR after each epoch on a subset of the held-out test pairs (every configuration), per training "
    "source: the mean over the seeds, their range shaded; the tables use all test pairs."
)
_GRID_CAPTION = (
    "Noisy input, DnCNN output and clean image of a held-out pair, per training source (first seed)."
)


def write_figures(
    run_dir: str | Path,
    *,
    samples: Mapping[str, Any] | None = None,
    naflow_run: str | Path | None = None,
    curves: str | Path | None = None,
    grids: Sequence[str | Path] = (),
) -> list[dict[str, str]]:
    """Draw the report's figures into ``run_dir/figures``; returns ``[{'file', 'title', 'caption'}]`` with
    paths relative to ``run_dir``. ``samples``: ``{'examples': [...], 'correlation': {name: (2r+1, 2r+1)}}``
    as the demo makes them; ``naflow_run``: NAFlow's run directory (its curve is shown); ``curves``: the
    denoisers' curves PNG (copied); ``grids``: one denoised-example PNG per source (stacked)."""
    run_dir = Path(run_dir)
    fig_dir = run_dir / FIGURES
    fig_dir.mkdir(parents=True, exist_ok=True)
    figs: list[dict[str, str]] = []

    def add(path: Path | None, title: str, caption: str) -> None:
        if path is not None and path.is_file():
            figs.append({"file": path.relative_to(run_dir).as_posix(), "title": title, "caption": caption})

    if samples and samples.get("examples"):
        path = plot_samples(samples["examples"], fig_dir / "samples.png")
        add(path, "Held-out pairs and synthetic noise", _SAMPLES_CAPTION)
    if samples and samples.get("correlation"):
        path = plot_correlation(samples["correlation"], fig_dir / "correlation.png")
        add(path, "Noise correlation maps", _CORRELATION_CAPTION)
    if naflow_run is not None and Path(naflow_run).is_dir():
        add(
            plot_naflow_training(Path(naflow_run), fig_dir / "naflow_training.png"),
            "NAFlow training",
            _NAFLOW_CAPTION,
        )
    if curves is not None and Path(curves).is_file():
        dst = fig_dir / "dncnn_curves.png"
        shutil.copyfile(curves, dst)
        add(dst, "Denoiser training", _CURVES_CAPTION)
    add(
        stack_images([Path(g) for g in grids], fig_dir / "dncnn_grid.png"), "Denoised examples", _GRID_CAPTION
    )
    return figs
