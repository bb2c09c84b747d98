"""Noise quality of a trained NAFlow on held-out real (clean, noisy) pairs, per camera and overall.

For every held-out pair (default: the validation instances of the committed SIDD-mini split of
``../shared/data/sidd-medium-mini``) it draws ``--samples`` synthetic noisy images from each source and
prints KLD and AKLD (``naflow_aug.metrics``) against the real noise:

  (a) NAS: noise-aware sampling from the pair's own noisy image (no metadata),
  (b) the model's Gaussian of the pair's true configuration (metadata),
  (c) baselines fitted on the training split (``naflow_aug.noise.baselines.fit_baselines``): Gaussian noise
      with each configuration's std, and per-configuration, per-channel Poisson-Gaussian noise;

plus the top-1 / top-3 accuracy of the model's posterior over configurations. One table per camera
(phone), one over all pairs, and the paper-style mean of the per-camera rows. A figure per camera shows
clean, real noisy, NAS noisy, both noise images and both noise correlation maps.

    python benchmarks/noise_quality.py --model /work/runs/sidd-mini/model.pt --out runs/noise_quality
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

import torch

import naflow_aug
from naflow_aug import metrics
from naflow_aug.data import sidd
from naflow_aug.data.images import load_image
from naflow_aug.data.pairs import Pair, split_pairs
from naflow_aug.evaluate import TRUE_CONFIG, HeldOutPair, noise_quality, trim_to_multiple
from naflow_aug.noise import make_noise_source
from naflow_aug.noise.baselines import fit_baselines
from naflow_aug.runs import atomic_write_json

SHARED = Path(os.environ.get("NAFLOW_AUG_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
SOURCES = {
    "NAS (no metadata)": "nas",
    "true configuration": TRUE_CONFIG,
    "Gaussian, per-config std": "gaussian-per-config",
    "Poisson-Gaussian, per config/channel": "poisson-gaussian",
}


def _pairs(data: Path, split: str) -> tuple[list[Pair], list[Pair]]:
    return split_pairs(sidd.scan_sidd_medium(data), split)


def _camera(cls: str) -> str:
    return cls.split("_")[0]


def _per_camera(result: dict) -> dict[str, dict]:
    """Per camera: for each source the n-weighted mean KLD/AKLD of its classes; posterior accuracy."""
    out: dict[str, dict] = {}

    def camera(cls: str) -> dict:
        return out.setdefault(_camera(cls), {"sources": {}, "posterior": {"top1": 0.0, "top3": 0.0, "n": 0}})

    for row in result["sources"]:
        for cls, v in row["classes"].items():
            cam = camera(cls)
            s = cam["sources"].setdefault(row["source"], {"kld": 0.0, "akld": 0.0, "n": 0})
            s["kld"] += v["kld"] * v["n"]
            s["akld"] += v["akld"] * v["n"]
            s["n"] += v["n"]
    for cls, v in (result["posterior"] or {}).get("classes", {}).items():
        p = camera(cls)["posterior"]
        p["top1"] += v["top1"] * v["n"]
        p["top3"] += v["top3"] * v["n"]
        p["n"] += v["n"]
    for cam in out.values():
        for s in cam["sources"].values():
            s["kld"] /= max(s["n"], 1)
            s["akld"] /= max(s["n"], 1)
        p = cam["posterior"]
        if p["n"]:
            p["top1"] /= p["n"]
            p["top3"] /= p["n"]
    return dict(sorted(out.items()))


def _table(title: str, sources: dict[str, dict], posterior: dict | None) -> str:
    lines = [f"### {title}", "", "| noise | KLD | AKLD | samples |", "|---|---|---|---|"]
    for name, v in sources.items():
        lines.append(f"| {name} | {v['kld']:.4f} | {v['akld']:.4f} | {v['n']} |")
    if posterior and posterior.get("n"):
        lines.append(f"| posterior top-1 / top-3 | {posterior['top1']:.0%} | {posterior['top3']:.0%} | "
                     f"{posterior['n']} pairs |")
    return "\n".join(lines) + "\n"


def _figure(path: Path, pair: HeldOutPair, model, generator: torch.Generator) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    m = model.size_multiple
    clean = trim_to_multiple(pair.clean, m, 256)[None]
    noisy = trim_to_multiple(pair.noisy, m, 256)[None]
    device = next(model.parameters()).device
    with torch.no_grad():
        fake = model.sample(clean.to(device), reference=noisy.to(device), generator=generator).cpu()
    real_noise, fake_noise = noisy - clean, fake - clean
    scale = max(float(real_noise.abs().quantile(0.99)), 1e-3)
    corr_real = metrics.noise_correlation_map(noisy, clean, radius=4)[0]
    corr_fake = metrics.noise_correlation_map(fake, clean, radius=4)[0]
    kld = float(metrics.kld(noisy, fake, clean))
    akld = float(metrics.akld(noisy, fake, clean))

    def img(x: torch.Tensor):
        return x[0].permute(1, 2, 0).clamp(0, 1).numpy()

    def noise_img(n: torch.Tensor):
        return (n[0].permute(1, 2, 0) / (2 * scale) + 0.5).clamp(0, 1).numpy()

    panels = [
        ("clean", img(clean), None),
        (f"real noisy ({pair.cls})", img(noisy), None),
        (f"NAS noisy (KLD {kld:.3f}, AKLD {akld:.3f})", img(fake), None),
        (f"real noise (x{0.5 / scale:.0f})", noise_img(real_noise), None),
        ("NAS noise (same scale)", noise_img(fake_noise), None),
        ("real noise correlation", corr_real.numpy(), "corr"),
        ("NAS noise correlation", corr_fake.numpy(), "corr"),
    ]
    fig, axes = plt.subplots(1, len(panels), figsize=(3.0 * len(panels), 3.4))
    for ax, (title, data, kind) in zip(axes, panels, strict=True):
        if kind == "corr":
            shown = ax.imshow(data, cmap="coolwarm", vmin=-0.3, vmax=1.0, extent=(-4.5, 4.5, 4.5, -4.5))
            fig.colorbar(shown, ax=ax, fraction=0.046)
        else:
            ax.imshow(data)
            ax.set_xticks([])
            ax.set_yticks([])
        ax.set_title(title, fontsize=8)
    fig.suptitle(f"{pair.name}", fontsize=9)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="sidd-mini", help="bundled model name or checkpoint path")
    parser.add_argument("--data", default=str(SHARED / "data" / "sidd-medium-mini"),
                        help="SIDD-Medium folder")
    parser.add_argument("--split", default="sidd-mini", help="split name or TOML (train/val instances)")
    parser.add_argument("--samples", type=int, default=4, help="samples per held-out pair and source")
    parser.add_argument("--max-size", type=int, default=0,
                        help="centre-crop held-out pairs to this (0: whole tiles)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default=None)
    parser.add_argument("--out", default="runs/noise_quality", help="folder for the figures and results.json")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)
    data = Path(args.data)
    if not data.is_dir():
        print(f"data folder {data} is absent (set --data or NAFLOW_AUG_SHARED); nothing to measure")
        return 0

    t0 = time.perf_counter()
    model = naflow_aug.load(args.model, device=args.device)
    train_pairs, val_pairs = _pairs(data, args.split)

    def read(p: Pair) -> tuple[torch.Tensor, torch.Tensor]:
        return load_image(p.clean_path), load_image(p.noisy_path)

    baselines = fit_baselines((*read(p), p.cls) for p in train_pairs)
    held_out = []
    for p in val_pairs:
        clean, noisy = read(p)
        if args.max_size:
            clean, noisy = (trim_to_multiple(x, model.size_multiple, args.max_size) for x in (clean, noisy))
        name = f"{p.sidd.folder}/{p.noisy_path.name}"
        held_out.append(HeldOutPair(name=name, cls=p.cls, clean=clean, noisy=noisy))
    missing = sorted({p.cls for p in held_out} - set(baselines.classes))
    if missing:
        print(f"note: no training pairs (so no baseline) for held-out configurations {missing}",
              file=sys.stderr)
        held_out = [p for p in held_out if p.cls in baselines.classes]

    sources = {
        name: spec if spec == TRUE_CONFIG else make_noise_source(spec, model, baselines=baselines)
        for name, spec in SOURCES.items()
    }
    g = torch.Generator().manual_seed(args.seed)
    result = noise_quality(held_out, sources, model=model, samples=args.samples, generator=g, progress=True)
    cameras = _per_camera(result)

    header = (f"Noise quality of {args.model} on {len(held_out)} held-out pairs of {data.name} "
              f"(split {args.split}; {len(train_pairs)} training pairs for the baselines), "
              f"{args.samples} samples per pair and source; KLD/AKLD as in shared/reference/metrics.md.\n")
    print(header)
    for cam, v in cameras.items():
        print(_table(f"camera {cam}", v["sources"], v["posterior"]))
    overall = {row["source"]: row for row in result["sources"]}
    accuracy = (result["posterior"] or {}).get("overall")
    print(_table("overall (mean over all held-out pairs)", overall, accuracy))
    mean_cams = {}
    for name in overall:
        rows = [v["sources"][name] for v in cameras.values() if name in v["sources"]]
        mean_cams[name] = {"kld": sum(r["kld"] for r in rows) / len(rows),
                           "akld": sum(r["akld"] for r in rows) / len(rows), "n": sum(r["n"] for r in rows)}
    print(_table("mean of the per-camera rows (the paper's 'Average')", mean_cams, None))

    out = Path(args.out)
    figure_generator = torch.Generator().manual_seed(args.seed)
    figures = []
    for cam in cameras:
        pair = next(p for p in held_out if _camera(p.cls) == cam)
        path = out / f"noise_quality_{cam}.png"
        _figure(path, pair, model, figure_generator)
        figures.append(str(path))
    atomic_write_json(out / "results.json", {
        "model": str(args.model),
        "checkpoint_sha256": getattr(model, "checkpoint_sha256", None),
        "data": str(data), "split": args.split, "samples": args.samples, "seed": args.seed,
        "held_out": [p.name for p in held_out], "baselines": baselines.to_dict(),
        "result": result, "cameras": cameras, "mean_of_cameras": mean_cams, "figures": figures,
        "seconds": time.perf_counter() - t0,
    })
    print(f"figures: {', '.join(figures)}")
    print(f"results: {out / 'results.json'} ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
