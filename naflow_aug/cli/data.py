"""`naflow-aug prepare` and `naflow-aug simulate`: data sets on disk."""

from __future__ import annotations

import argparse
import sys
import time

from naflow_aug.cli._common import setup_logging


def add_prepare(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("prepare", help="decode a data folder once into a crop-friendly cache (resumable)")
    p.add_argument("--data",
                   help="SIDD-Medium folder, paired folder (noisy/ + clean/), CSV of pairs, or clean images")
    p.add_argument("--out", required=True, help="cache folder (manifest.json + arrays/*.npy)")
    p.add_argument("--kind", choices=("auto", "sidd", "paired", "clean"), default="auto")
    p.add_argument("--split", help="record each SIDD pair's part of this split (sidd-mini or a TOML)")
    p.add_argument("--workers", type=int, default=1, help="decoding processes (default 1)")
    p.add_argument("--resume", action="store_true", help="finish an interrupted cache (done items are kept)")
    p.add_argument("--verify", action="store_true", help="check every array's SHA-256 (with --out only)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_prepare)


def _run_prepare(args: argparse.Namespace) -> int:
    from naflow_aug.data import prepare

    setup_logging()
    start = time.perf_counter()
    try:
        if args.verify:
            if args.data or args.resume:
                raise ValueError("--verify checks an existing cache: give --out only")
            cache = prepare.verify_cache(args.out, progress=not args.no_progress)
        elif not args.data:
            raise ValueError("--data is required (the folder to decode), or --verify to check a cache")
        else:
            cache = prepare.prepare_cache(args.data, args.out, kind=args.kind, split=args.split,
                                          workers=args.workers, resume=args.resume,
                                          progress=not args.no_progress)  # fmt: skip
    except (ValueError, FileNotFoundError) as err:
        print(f"naflow-aug prepare: error: {err}", file=sys.stderr)
        return 2
    arrays = cache.arrays()
    what = "checksums match" if args.verify else "ready"
    print(f"{cache.root}: {len(cache.items)} {cache.kind} items, {len(arrays)} arrays, "
          f"{sum(a.bytes for a in arrays) / 1e9:.2f} GB; {what} ({time.perf_counter() - start:.1f} s)")
    return 0


def add_simulate(sub: argparse._SubParsersAction) -> None:
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
    finally:
        torch.set_num_threads(threads)
    data_dir = result.root / "Data"
    print(f"wrote {len(result.folders)} scene folders, {len(result.classes)} classes to {data_dir}")
    print(f"{'class':<10} {'pairs':>5} {'noise std (8-bit)':>18} {'neighbour corr':>15}")
    for cls, s in stats.items():
        print(f"{cls:<10} {s['pairs']:>5} {s['noise_std']:>18.2f} {s['neighbour_corr']:>15.3f}")
    return 0

