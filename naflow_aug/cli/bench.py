"""`naflow-aug bench`: train a denoiser per noise source and score it on real noisy images."""

from __future__ import annotations

import argparse
from typing import Any

from naflow_aug.cli._common import setup_logging
from naflow_aug.noise.registry import noise_help, noise_kinds_help


def add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench", help="train a denoiser (DnCNN) per noise source and score it on real noisy images",
        epilog="noise sources:\n" + noise_kinds_help(), formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    src = p.add_argument_group("training data (one row per source)")
    src.add_argument("--train", nargs="+", metavar="H5", default=[], help="generated HDF5 file(s) of pairs")
    src.add_argument(
        "--clean",
        metavar="DIR",
        help="clean images: a SIDD-Medium-layout folder (its noisy images serve `real`, `nas` and "
        "the fitted baselines) or a plain image folder",
    )
    src.add_argument(
        "--noise",
        action="append",
        default=[],
        metavar="SRC",
        help=noise_help("noise source (repeatable)"),
    )
    src.add_argument(
        "--split",
        help="with a SIDD folder: train on the split's training instances and score "
        "on its held-out instances (e.g. sidd-mini or a split .toml)",
    )
    src.add_argument("--model", help="NAFlow for the model noise sources (bundled name or checkpoint path)")
    src.add_argument("--baselines", help="fitted baselines JSON (default: fit on the --clean pairs)")
    src.add_argument(
        "--denoiser",
        action="append",
        default=[],
        metavar="CKPT",
        help="score this DnCNN checkpoint as it is (KAIR layout; repeatable); `identity`: the noisy input",
    )
    ev = p.add_argument_group("scoring")
    ev.add_argument(
        "--sidd-val", metavar="DIR_OR_MAT", help="SIDD validation blocks (.mat files or PNG folder)"
    )
    ev.add_argument("--pairs", metavar="DIR", help="a paired folder (noisy/ and clean/ with the same names)")
    ev.add_argument("--sidd-bench", metavar="MAT", help="BenchmarkNoisyBlocksSrgb.mat: write SubmitSrgb.csv")
    p.add_argument("--preset", default="cpu", help="cpu (default), paper, or a preset .toml")
    p.add_argument("--epochs", type=int, help="override the preset's epochs")
    p.add_argument("--steps", type=int, help="override the preset's steps per epoch")
    seeds = p.add_mutually_exclusive_group()
    seeds.add_argument("--seed", type=int, help="override the preset's seed")
    seeds.add_argument(
        "--seeds",
        metavar="N,N,...",
        help="repeat the whole benchmark per seed (--out/seed-N/) and report mean +- std per source and "
        "each source's paired per-image PSNR difference to the best baseline with a bootstrap 95%% interval",
    )
    p.add_argument(
        "--out", required=True, help="run directory (results.json, results.md, grid.png, curves.png)"
    )
    p.add_argument(
        "--resume", action="store_true", help="continue the run in --out (a finished one: nothing)"
    )
    p.add_argument("--device", help="cpu, cuda, cuda:1, ... (default: cuda if available)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_run_bench)


def _run_bench(args: argparse.Namespace) -> int:

    from naflow_aug import bench
    from naflow_aug.bench import seeds as bench_seeds

    setup_logging()

    def run_one(out: Any, seed: int | None) -> dict:
        return bench.bench_from_paths(
            out,
            train=args.train,
            clean=args.clean,
            noise=args.noise,
            split=args.split,
            denoisers=args.denoiser,
            sidd_val=args.sidd_val,
            pairs=args.pairs,
            sidd_bench=args.sidd_bench,
            preset=args.preset,
            model=args.model,
            baselines=args.baselines,
            resume=args.resume,
            device=args.device,
            progress=not args.no_progress,
            epochs=args.epochs,
            steps_per_epoch=args.steps,
            seed=seed,
        )

    if args.seeds is not None:
        summary = bench_seeds.run_seeds(args.out, bench_seeds.parse_seeds(args.seeds), run_one)
        if summary:
            print(bench_seeds.seeds_markdown(summary), end="")
            print(f"results: {args.out}/results.json, results.md, curves.png; runs in {args.out}/seed-N/")
        return 0
    results = run_one(args.out, args.seed)
    if results.get("rows"):
        print(bench.results_markdown(results["rows"]), end="")
        print(f"results: {args.out}/results.json, results.md, grid.png, curves.png")
    return 0
