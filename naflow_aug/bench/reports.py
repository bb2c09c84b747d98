"""The benchmark's Markdown tables: one run's ``results.md`` and the ``--seeds`` summary's."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


def results_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """One row per source: overall PSNR / SSIM, then PSNR per camera (group)."""
    key = "sidd_val" if any("sidd_val" in r for r in rows) else "pairs"
    groups_key = "cameras" if key == "sidd_val" else "groups"
    groups = sorted({g for r in rows for g in r.get(key, {}).get(groups_key, {})})
    head = ["source", "PSNR", "SSIM", *[f"{g} PSNR" for g in groups], "train s"]
    lines = [
        f"Scored on: {'SIDD validation blocks' if key == 'sidd_val' else 'held-out pairs'} "
        "(mean over images/blocks; denoised output clamped and rounded to 8 bits)",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in rows:
        res = r.get(key, {})
        ov = res.get("overall", {})
        cells = [
            str(r["source"]),
            f"{ov.get('psnr', float('nan')):.2f}",
            f"{ov.get('ssim', float('nan')):.4f}",
        ]
        cells += [f"{res.get(groups_key, {}).get(g, {}).get('psnr', float('nan')):.2f}" for g in groups]
        cells.append(f"{r.get('train_seconds', 0):.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def seeds_markdown(summary: Mapping[str, Any]) -> str:
    """The summary as Markdown: mean +- std over seeds per source, then the paired comparison."""
    seeds = summary["seeds"]
    rows = summary["rows"]
    groups = sorted({g for r in rows for g in r["groups"]})
    head = ["source", "PSNR (mean +- std)", "SSIM (mean +- std)", *[f"{g} PSNR" for g in groups]]
    lines = [
        f"Seeds {', '.join(map(str, seeds))}: mean +- standard deviation over seeds "
        "(denoised output clamped and rounded to 8 bits).",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in sorted(rows, key=lambda r: -r["psnr"] if math.isfinite(r["psnr"]) else math.inf):
        cells = [
            r["source"],
            f"{r['psnr']:.2f} +- {r['psnr_std']:.2f}",
            f"{r['ssim']:.4f} +- {r['ssim_std']:.4f}",
        ]
        cells += [f"{r['groups'][g][0]:.2f}" if g in r["groups"] else "" for g in groups]
        lines.append("| " + " | ".join(cells) + " |")
    best = summary.get("best_baseline")
    if best is not None and summary["paired"]:
        lines += [
            "",
            f"Paired per-image PSNR difference against the best baseline, `{best}` (each image's "
            "difference averaged over seeds; bootstrap 95% interval over images; per-seed differences "
            "of the overall PSNR):",
            "",
            "| source | mean difference (dB) | 95% interval | per seed | ahead in every seed |",
            "|---|---|---|---|---|",
        ]
        for name, p in summary["paired"].items():
            per = ", ".join(f"{d:+.2f}" for d in p["seed_diffs"])
            lines.append(
                f"| {name} | {p['mean']:+.3f} | [{p['lo']:+.3f}, {p['hi']:+.3f}] | {per} | "
                f"{'yes' if p['wins_every_seed'] else 'no'} |"
            )
    return "\n".join(lines) + "\n"
