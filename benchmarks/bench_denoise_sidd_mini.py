"""DnCNN trained on each noise source, scored on real noisy images of held-out SIDD-mini instances.

The CPU-preset version of the paper's Table 4 on ``../shared/data/sidd-medium-mini``, using the committed
split (``naflow_aug/splits/sidd_mini.toml``): the denoiser trains on the clean images of the training
instances with each noise source added on the fly (``real`` uses the real noisy counterparts: the upper
bound; the fitted baselines are fitted on the training pairs only) and is scored (PSNR / SSIM, output
rounded to 8 bits) on the real (noisy, clean) pairs of the held-out instances, per phone and overall.

    .venv/bin/python benchmarks/bench_denoise_sidd_mini.py --out runs/bench-sidd-mini
    .venv/bin/python benchmarks/bench_denoise_sidd_mini.py --out /tmp/b --epochs 1 --steps 2   # smoke run
    .venv/bin/python benchmarks/bench_denoise_sidd_mini.py --seeds 0,1,2 --out runs/b3  # intervals
    # two processes (one per core), one table: each source's training does not depend on the others
    ... --seeds 0,1,2 --noise real --noise poisson-gaussian --out runs/a &
    ... --seeds 0,1,2 --noise nas --out runs/b; ... --combine runs/a runs/b --out runs/ab

Model sources (``nas``, ``random``) need a NAFlow: ``--model NAME_OR_PATH``, else the bundled default if
there is one (skipped with a note otherwise). Prints the results table and the wall time.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from pathlib import Path

DEFAULT_DATA = (
    Path(os.environ.get("NAFLOW_AUG_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
    / "data"
    / "sidd-medium-mini"
)
BASELINE_SOURCES = [
    "real",
    "gaussian:10",
    "gaussian-per-config",
    "poisson-gaussian",
    "albumentations-gauss",
    "albumentations-iso",
]
MODEL_SOURCES = ["nas", "random"]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument(
        "--data", default=str(DEFAULT_DATA), help="SIDD-Medium-layout folder (default: the mini set)"
    )
    p.add_argument("--split", default="sidd-mini", help="committed split name or split .toml")
    p.add_argument("--out", required=True, help="run directory")
    p.add_argument("--noise", action="append", help="noise sources (default: model sources + baselines)")
    p.add_argument("--model", help="NAFlow for nas/random (bundled name or checkpoint; default: bundled)")
    p.add_argument("--preset", default="cpu", help="cpu (default), paper or a .toml")
    p.add_argument("--epochs", type=int, help="override the preset's epochs")
    p.add_argument("--steps", type=int, help="override the preset's steps per epoch")
    p.add_argument("--sidd-val", help="also score on SIDD validation blocks (.mat or PNG folder)")
    p.add_argument("--device", help="cpu (default here) or cuda")
    p.add_argument("--threads", type=int, help="torch CPU threads (on a busy machine 1 is much faster)")
    p.add_argument("--seeds", help="repeat per seed (e.g. 0,1,2): mean +- std and paired intervals")
    p.add_argument(
        "--combine",
        nargs="+",
        metavar="RUN",
        help="only aggregate finished --seeds runs (same seeds and preset, other sources) into --out",
    )
    p.add_argument("--resume", action="store_true")
    p.add_argument("--no-progress", action="store_true")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

    import torch

    import naflow_aug
    from naflow_aug import bench

    if args.threads:
        torch.set_num_threads(args.threads)

    if args.combine:
        from naflow_aug.bench import seeds as bench_seeds

        summary = bench_seeds.combine_runs(args.combine, args.out)
        print(bench_seeds.seeds_markdown(summary), end="")
        return 0
    if not Path(args.data).is_dir():
        print(f"no data at {args.data} (set --data or NAFLOW_AUG_SHARED)", file=sys.stderr)
        return 2
    sources = args.noise
    if sources is None:
        has_model = args.model is not None or bool(_available(naflow_aug))
        sources = (MODEL_SOURCES if has_model else []) + BASELINE_SOURCES
        if not has_model:
            print("note: no NAFlow model given and none bundled: skipping the model sources", MODEL_SOURCES)
    t0 = time.perf_counter()

    def run_one(out, seed):
        return bench.bench_from_paths(
            out,
            clean=args.data,
            noise=sources,
            split=args.split,
            denoisers=["identity"],  # the noisy input: the reference row
            sidd_val=args.sidd_val,
            preset=args.preset,
            model=args.model,
            resume=args.resume,
            device=args.device or "cpu",
            progress=not args.no_progress,
            epochs=args.epochs,
            steps_per_epoch=args.steps,
            seed=seed,
        )

    if args.seeds:
        from naflow_aug.bench import seeds as bench_seeds

        summary = bench_seeds.run_seeds(args.out, bench_seeds.parse_seeds(args.seeds), run_one)
        print(bench_seeds.seeds_markdown(summary), end="")
        print(f"\nwall {time.perf_counter() - t0:.0f} s this call; run directory {args.out}")
        return 0
    results = run_one(args.out, None)
    elapsed = time.perf_counter() - t0
    rows = results["rows"]
    print(bench.results_markdown(rows), end="")
    total_train = sum(r.get("train_seconds", 0) for r in rows)
    print(
        f"\n{len(rows)} sources; preset {results['preset']}; wall {elapsed:.0f} s this call "
        f"(training {total_train:.0f} s in all); run directory {args.out}"
    )
    return 0


def _available(naflow_aug) -> list[str]:
    try:
        return list(naflow_aug.available_models())
    except Exception:  # a missing or broken registry means: no bundled model
        return []


if __name__ == "__main__":
    sys.exit(main())
