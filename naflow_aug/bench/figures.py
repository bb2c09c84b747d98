"""The benchmark's figures: each source's denoised example stacked into ``grid.png``, and the validation
PSNR curves (one benchmark run, or the mean and range over the runs of several seeds) in ``curves.png``."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import numpy as np
import torch

from naflow_aug.bench.sources import slug
from naflow_aug.images import round_half_up
from naflow_aug.runs import RunDir


def save_strip(example: Sequence[torch.Tensor], path: Path) -> None:
    """(noisy, denoised, clean) crops, each (3, h, w) float in [0, 1], side by side into one PNG."""
    from PIL import Image

    strip = np.concatenate(
        [round_half_up(x).to(torch.uint8).permute(1, 2, 0).cpu().numpy() for x in example], axis=1
    )
    Image.fromarray(strip).save(path)


def write_grid(out: Path, sources: Sequence[str]) -> Path | None:
    """Stack each source's ``example.png`` strip (noisy | denoised | clean) into ``grid.png``."""
    from PIL import Image, ImageDraw

    strips = []
    for name in sources:
        p = out / "sources" / slug(name) / "example.png"
        if p.is_file():
            with Image.open(p) as im:
                strips.append((name, np.asarray(im.convert("RGB"))))
    if not strips:
        return None
    label_w = 160
    h = max(s.shape[0] for _, s in strips)
    w = max(s.shape[1] for _, s in strips)
    canvas = Image.new("RGB", (label_w + w, h * len(strips) + 16), "white")
    draw = ImageDraw.Draw(canvas)
    third = w // 3
    for j, title in enumerate(("noisy", "denoised", "clean")):
        draw.text((label_w + j * third + 4, 2), title, fill="black")
    for i, (name, s) in enumerate(strips):
        canvas.paste(Image.fromarray(s), (label_w, 16 + i * h))
        draw.text((4, 16 + i * h + h // 2), name[:26], fill="black")
    path = out / "grid.png"
    canvas.save(path)
    return path


def validation_curve(run: Path, source: str) -> dict[int, float]:
    """Epoch -> validation PSNR that ``source`` logged in the benchmark run directory ``run``."""
    records = RunDir(run / "sources" / slug(source)).read_log()
    return {r["epoch"]: r["val_psnr"] for r in records if r.get("val_psnr") is not None}


def plot_curves(out: Path, runs: Mapping[str, Iterable[Path]]) -> Path:
    """Validation PSNR per epoch of every source in one figure: ``out / 'curves.png'``.

    ``runs``: source -> the benchmark run directories holding it (one, or one per seed). Over several
    runs the line is their mean at the epochs that all of them logged, and their range is shaded."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.5, 4))
    n_runs = 0
    for name, dirs in runs.items():
        curves = [validation_curve(Path(d), name) for d in dirs]
        n_runs = max(n_runs, len(curves))
        epochs = sorted(set.intersection(*(set(c) for c in curves))) if curves else []
        if not epochs:
            continue
        v = np.array([[c[e] for e in epochs] for c in curves])
        (line,) = ax.plot(epochs, v.mean(0), marker="o", ms=3, label=name)
        if len(curves) > 1:
            ax.fill_between(epochs, v.min(0), v.max(0), color=line.get_color(), alpha=0.2)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation PSNR (dB)")
    if n_runs > 1:
        ax.set_title(f"mean over {n_runs} seeds (shaded: range)", fontsize=9)
    ax.grid(alpha=0.3)
    if ax.lines:
        ax.legend(fontsize=8)
    else:  # a run too short to validate (e.g. the tiny demo): say so rather than draw an empty legend
        ax.text(0.5, 0.5, "no validation epochs logged", ha="center", va="center", transform=ax.transAxes)
    fig.tight_layout()
    path = out / "curves.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
