"""The `naflow-aug` command: the only module that parses arguments."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="naflow-aug", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
    _add_simulate(sub)
    _add_bench(sub)
    return parser


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train NAFlow on (clean, noisy) pairs in the SIDD-Medium layout")
    p.add_argument("--preset", choices=("cpu", "paper"), default=None,
                   help="training recipe (default: the config file's `preset`, else paper)")
    p.add_argument("--data", help="folder of pairs in the SIDD-Medium layout (Data/<inst>_<phone>_<ISO>_...)")
    p.add_argument("--config", help="TOML file overriding the preset (unknown keys are rejected)")
    p.add_argument("--out", required=True, help="run directory (checkpoints, metrics.jsonl, model.pt)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out (fresh if there is none)")
    p.add_argument("--init", help="fine-tune from this checkpoint (official, project format or bundled name)")
    p.add_argument("--split", help="split TOML naming the training and validation instances")
    p.add_argument("--steps", type=int, help="number of steps (the schedule is scaled; on --resume: extends)")
    p.add_argument("--seed", type=int)
    p.add_argument("--device", help="auto (default), cpu, cuda, cuda:1, ...")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    import logging
    from pathlib import Path

    from naflow_aug import train as training

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    overrides = {k: v for k, v in (("data", args.data), ("init", args.init), ("split", args.split),
                                   ("seed", args.seed), ("device", args.device)) if v is not None}
    config = training.config_for_resume(args.out) if args.resume else None
    if config is not None:
        if args.steps is not None:
            overrides["steps"] = args.steps
        config = config.replace(**overrides)
    else:
        if args.steps is not None:
            overrides["steps"] = args.steps
        config = training.load_train_config(args.config, preset_name=args.preset, overrides=overrides)
    try:
        results = training.train(config, Path(args.out), resume=args.resume, progress=not args.no_progress)
    except (ValueError, training.NonFiniteLossError) as err:
        print(f"naflow-aug train: error: {err}", file=sys.stderr)
        return 2
    final = results.get("final_val", {})
    print(f"trained {results['steps']} steps in {results['train_seconds']:.0f} s; model: {results['model']}")
    if final:
        print("validation: " + ", ".join(f"{k} {v:.4f}" for k, v in final.items()))
    return 0


def _add_simulate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "simulate", help="write the simulated-camera data set (SIDD-Medium layout); print its noise per class"
    )
    p.add_argument("--out", required=True, help="new folder; the pairs go to OUT/Data/<inst>_..._<L|N|H>/")
    p.add_argument("--seed", type=int, default=0, help="the data set is a function of the seed (default 0)")
    p.add_argument("--scenes", type=int, default=8, help="scenes per camera configuration (default 8)")
    p.add_argument("--min-size", type=int, default=128, help="smallest image side (multiple of 8)")
    p.add_argument("--max-size", type=int, default=192, help="largest image side (multiple of 8)")
    p.add_argument("--shots", type=int, choices=(1, 2), default=1, help="noisy/clean pairs per scene folder")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_simulate)


def _run_simulate(args: argparse.Namespace) -> int:
    import torch

    from naflow_aug.data import simcam

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # many small tensor ops: threads only contend (measured 12 s vs 1 s)
    try:
        result = simcam.write_simulated_sidd(
            args.out,
            seed=args.seed,
            scenes_per_config=args.scenes,
            size_range=(args.min_size, args.max_size),
            shots=args.shots,
            progress=not args.no_progress,
        )
        stats = simcam.noise_statistics(result.root)
    except ValueError as err:
        print(f"naflow-aug simulate: error: {err}", file=sys.stderr)
        return 2
    finally:
        torch.set_num_threads(threads)
    data_dir = result.root / "Data"
    print(f"wrote {len(result.folders)} scene folders, {len(result.classes)} classes to {data_dir}")
    print(f"{'class':<10} {'pairs':>5} {'noise std (8-bit)':>18} {'neighbour corr':>15}")
    for cls, s in stats.items():
        print(f"{cls:<10} {s['pairs']:>5} {s['noise_std']:>18.2f} {s['neighbour_corr']:>15.3f}")
    return 0


def _add_bench(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "bench", help="train a denoiser (DnCNN) per noise source and score it on real noisy images"
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
        help="noise source (repeatable): nas, random, config:S6_03200, profile:P.json, gaussian:25, "
        "gaussian-per-config, poisson-gaussian, real, albumentations-gauss, albumentations-iso",
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
        help="score this DnCNN checkpoint as it is (KAIR layout; repeatable)",
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
    p.add_argument("--seed", type=int, help="override the preset's seed")
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
    import logging

    from naflow_aug import bench

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        results = bench.bench_from_paths(
            args.out,
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
            seed=args.seed,
        )
    except (ValueError, FileNotFoundError) as err:
        print(f"naflow-aug bench: error: {err}", file=sys.stderr)
        return 2
    if results.get("rows"):
        print(bench.results_markdown(results["rows"]), end="")
        print(f"results: {args.out}/results.json, results.md, grid.png, curves.png")
    return 0


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
