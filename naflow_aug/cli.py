"""The `naflow-aug` command: the only module that parses arguments."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="naflow-aug", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_prepare(sub)
    _add_train(sub)
    _add_refit_prior(sub)
    _add_generate(sub)
    _add_verify(sub)
    _add_sample(sub)
    _add_simulate(sub)
    _add_bench(sub)
    _add_calibrate(sub)
    _add_fit_baselines(sub)
    _add_demo(sub)
    _add_debug(parser)
    for command in sub.choices.values():
        _add_debug(command)
    return parser


def _add_prepare(sub: argparse._SubParsersAction) -> None:
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
    import logging
    import time

    from naflow_aug.data import prepare

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
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


def _add_train(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("train", help="train NAFlow on (clean, noisy) pairs in the SIDD-Medium layout")
    p.add_argument("--preset", choices=("cpu", "paper"), default=None,
                   help="training recipe (default: the config file's `preset`, else paper)")
    p.add_argument("--data", help="folder of pairs in the SIDD-Medium layout (Data/<inst>_<phone>_<ISO>_...) "
                   "or a cache of one (naflow-aug prepare)")
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
    data = str(Path(args.data).resolve()) if args.data else None  # the run may be resumed from elsewhere
    init = str(Path(args.init).resolve()) if args.init and Path(args.init).exists() else args.init
    overrides = {k: v for k, v in (("data", data), ("init", init), ("split", args.split),
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
    except training.NonFiniteLossError as err:  # the data or settings diverge training: not a bug
        print(f"naflow-aug train: error: {err}", file=sys.stderr)
        return 2
    final = results.get("final_val", {})
    print(f"trained {results['steps']} steps in {results['train_seconds']:.0f} s; model: {results['model']}")
    if final:
        print("validation: " + ", ".join(f"{k} {v:.4f}" for k, v in final.items()))
    return 0


def _sidd_training_pairs(data: str, split: str | None) -> list:
    """The pairs of a SIDD-Medium-layout folder, only the split's training instances when one is given."""
    from naflow_aug.data.sidd import load_split, scan_sidd_medium

    train = set(load_split(split)[0]) if split else None
    return [r for r in scan_sidd_medium(data) if train is None or r.instance in train]


def _add_refit_prior(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("refit-prior", help="refit a model's per-configuration latent Gaussians on pairs "
                       "(closed-form maximum likelihood with the flow fixed)")  # fmt: skip
    p.add_argument("--model", required=True, help="bundled model name or checkpoint path")
    p.add_argument("--data", required=True, help="folder of pairs in the SIDD-Medium layout")
    p.add_argument("--split", help="use this split's training instances only (sidd-mini or a TOML)")
    p.add_argument("--max-size", type=int, default=1024,
                   help="centre crop of at most this side per image (0: whole images; default 1024)")
    p.add_argument("--out", required=True, help="checkpoint to write (project format)")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cpu)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_refit_prior)


def _run_refit_prior(args: argparse.Namespace) -> int:
    import naflow_aug
    from naflow_aug.data.sidd import _load_uint8
    from naflow_aug.train import refit_prior

    model = naflow_aug.load(args.model, device=args.device)
    records = _sidd_training_pairs(args.data, args.split)
    if not records:
        raise ValueError(f"no pairs in {args.data}" + (f" among split {args.split}'s training instances"
                                                       if args.split else ""))
    pairs = ((_load_uint8(r.noisy_path), _load_uint8(r.clean_path), r.cls) for r in records)
    summary = refit_prior(model, pairs, max_size=args.max_size, progress=not args.no_progress)
    extra = {"prior_refit": {"from": str(args.model), "from_sha256": model.checkpoint_sha256,
                             "data": str(args.data), "split": args.split or "", "pairs": summary["pairs"],
                             "max_size": args.max_size}}  # fmt: skip
    path = naflow_aug.save_checkpoint(model, args.out, extra=extra)
    print(f"refit {len(summary['classes'])} configurations on {summary['pairs']} pairs "
          f"({summary['skipped']} of unknown configurations skipped); written to {path}")
    if summary["unchanged"]:
        print(f"  without pairs, unchanged: {', '.join(summary['unchanged'])}")
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
    import logging

    from naflow_aug import bench
    from naflow_aug.bench import seeds as bench_seeds

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")

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

def _add_sample(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="add noise to clean image(s); write noisy PNGs and a grid")
    p.add_argument("clean", nargs="+", help="clean image file(s) (model noise: cropped to a multiple of 8)")
    p.add_argument("--model", default="sidd-mini", help="bundled model name or checkpoint path")
    p.add_argument("--noise", default="random",
                   help="any noise source spelling: random (a random camera configuration per image), "
                        "config:<NAME>, weights:<...>, nas (from --reference), profile:<file.json>, "
                        "gaussian:<sigma>, gaussian-per-config:<baselines.json>, ..., real")  # fmt: skip
    p.add_argument("--reference", nargs="+", default=[],
                   help="with --noise nas or real: the real noisy image(s) of the same size, one for all or "
                        "one per clean image")  # fmt: skip
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--out", default="samples", help="output folder (default: samples)")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cuda if available)")
    p.set_defaults(func=_run_sample)


def _sample_names(paths: list[str]) -> list[str]:
    """One output name per input: ``<stem>_noisy.png``, numbered by position where stems repeat (so
    ``a/img0.png b/img0.png`` do not overwrite each other)."""
    from collections import Counter
    from pathlib import Path

    stems = [Path(p).stem for p in paths]
    repeated = {s for s, n in Counter(stems).items() if n > 1}
    return [f"{s}_{i}_noisy.png" if s in repeated else f"{s}_noisy.png" for i, s in enumerate(stems)]


def _run_sample(args: argparse.Namespace) -> int:
    from pathlib import Path

    import torch

    from naflow_aug.data.images import load_image, write_png
    from naflow_aug.sampling import ModelSource, make_noise_source

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    source = make_noise_source(args.noise, args.model, device=device)
    if source.needs_reference and len(args.reference) not in (1, len(args.clean)):
        raise ValueError(f"--noise {args.noise} needs --reference: one image or one per clean image "
                         f"({len(args.clean)})")  # fmt: skip
    if args.reference and not source.needs_reference:
        raise ValueError(f"--reference is only used by --noise nas or real, not {args.noise}")
    model = source.model if isinstance(source, ModelSource) else None
    m = model.size_multiple if model is not None else 1
    generator = torch.Generator().manual_seed(args.seed)
    out = Path(args.out)
    rows = []
    for path, name, i in zip(args.clean, _sample_names(args.clean), range(len(args.clean)), strict=True):
        clean = load_image(path)
        full = tuple(clean.shape[1:])
        h, w = full[0] // m * m, full[1] // m * m
        if (h, w) != full:
            print(f"{path}: cropped {full[0]}x{full[1]} to {h}x{w} (multiple of {m})")
        clean = clean[None, :, :h, :w]
        reference = None
        if source.needs_reference:
            ref_path = args.reference[i if len(args.reference) > 1 else 0]
            reference = load_image(ref_path)[None]
            if tuple(reference.shape[2:]) not in (full, (h, w)):
                raise ValueError(f"reference {ref_path} is {reference.shape[2]}x{reference.shape[3]}, "
                                 f"clean image {path} is {full[0]}x{full[1]}: they must be the same size")
            reference = reference[:, :, :h, :w]
        if model is not None:
            clean = clean.to(device)
            reference = None if reference is None else reference.to(device)
        noisy, params = source(clean, reference=reference, generator=generator)
        dest = write_png(out / name, noisy[0])
        print(f"{dest}: seed {int(params.seeds[0])}, {_describe_params(params)}")
        noise_vis = (0.5 + 4 * (noisy - clean)).clamp(0, 1)  # noise x4 around mid-grey
        rows.append(torch.cat([clean[0], noisy[0], noise_vis[0]], dim=2).cpu())
    width = max(r.shape[2] for r in rows)
    grid = torch.cat([torch.nn.functional.pad(r, (0, width - r.shape[2]), value=1.0) for r in rows], dim=1)
    print(f"grid (rows: images; columns: clean, noisy, noise x4 + 0.5): {write_png(out / 'grid.png', grid)}")
    return 0


def _describe_params(params) -> str:
    if params.weights is not None and params.classes:
        top = params.weights[0].topk(min(3, len(params.classes)))
        pairs = zip(*top, strict=True)
        mix = ", ".join(f"{params.classes[int(k)]} {float(v):.2f}" for v, k in pairs if v >= 0.005)
        return f"configuration weights {mix}"
    if params.configs:
        return f"configuration {params.configs[0]}"
    return f"noise {params.source}"


def _add_generate(sub: argparse._SubParsersAction) -> None:
    # defaults as in naflow_aug.generate.GenerateConfig (not imported here: --help stays fast)
    p = sub.add_parser("generate", help="write a synthetic (clean, noisy) HDF5 data set (resumable)")
    p.add_argument("--out", required=True, help="output .h5 file")
    p.add_argument("--clean", "--source", dest="source", required=True,
                   help="source folder: SIDD-Medium, a paired folder (clean/ + noisy/) or any clean images")
    p.add_argument("--source-kind", choices=("auto", "sidd", "paired", "clean"), default="auto")
    p.add_argument("--model", default="sidd-mini", help="bundled model name or checkpoint path")
    p.add_argument("--noise", default="nas",
                   help="nas (each crop's own real noisy counterpart as reference), random, config:<NAME>, "
                        "profile:<file.json>, weights:<...>, or a baseline (gaussian:<sigma>, ...)")
    p.add_argument("--crop", type=int, default=256, help="crop size in pixels")
    p.add_argument("--crops", choices=("grid", "random"), default="grid", help="crops on a grid or at random")
    p.add_argument("--stride", type=int, default=None, help="grid step (default: --crop)")
    p.add_argument("--crops-per-image", type=int, default=1, help="random crops per image")
    p.add_argument("--samples-per-crop", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--batch-size", type=int, default=8)
    p.add_argument("--part-size", type=int, default=64, help="samples per crash-safe part")
    p.add_argument("--max-images", type=int, default=None)
    p.add_argument("--device", default=None,
                   help="cpu (default), auto, cuda, cuda:1 (torchrun: cuda -> cuda:LOCAL_RANK)")
    p.add_argument("--compression", choices=("none", "lzf", "gzip"), default="none")
    p.add_argument("--join", choices=("copy", "vds"), default="copy",
                   help="copy: one self-contained file; vds: virtual datasets over <out>.parts/")
    mode = p.add_mutually_exclusive_group()
    mode.add_argument("--resume", action="store_true", help="finish a killed run (done parts are kept)")
    mode.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_generate)


def _run_generate(args: argparse.Namespace) -> int:
    import logging

    from naflow_aug import generate as gen

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    config = gen.GenerateConfig(
        out=args.out, source=args.source, model=args.model, source_kind=args.source_kind,
        noise=args.noise,
        crop=args.crop, crops=args.crops, stride=args.stride, crops_per_image=args.crops_per_image,
        samples_per_crop=args.samples_per_crop, seed=args.seed, batch_size=args.batch_size,
        part_size=args.part_size, max_images=args.max_images, device=args.device,
        compression=args.compression, join=args.join, resume=args.resume, overwrite=args.overwrite,
        progress=not args.no_progress,
    )  # fmt: skip
    result = gen.generate(config, command=sys.argv[1:])
    if result.already_complete:
        print(f"{result.out} is already complete ({result.num_samples} samples); nothing to do")
    else:
        print(f"wrote {result.out}: {result.num_samples} samples ({result.samples_made} made by this process "
              f"in {result.seconds:.1f} s, {result.samples_per_s:.1f} samples/s)")
    return 0


def _add_verify(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("verify", help="check a generated HDF5 file (counts, marker, metadata, re-generation)")
    p.add_argument("file", help="the .h5 file")
    p.add_argument("--regenerate", type=int, default=0, metavar="K",
                   help="re-make K random samples from their recorded source crop and seed and compare")
    p.add_argument("--seed", type=int, default=0, help="which samples --regenerate picks")
    p.add_argument("--tolerance", type=int, default=1, help="allowed difference in grey levels (0: exact)")
    p.add_argument("--device", default=None)
    p.set_defaults(func=_run_verify)


def _run_verify(args: argparse.Namespace) -> int:
    from naflow_aug import generate as gen

    report = gen.verify(args.file, regenerate=args.regenerate, seed=args.seed, device=args.device,
                        tolerance=args.tolerance)  # fmt: skip
    s = report.summary
    print(f"{args.file}: {s.get('num_samples', '?')} samples of {s.get('shape', '?')}, "
          f"complete={s.get('complete')}, virtual={s.get('virtual')}")  # fmt: skip
    if report.regenerated:
        print(f"regenerated {report.regenerated} samples: {report.exact} byte-exact, "
              f"max |difference| {report.max_abs_diff} levels")  # fmt: skip
    for problem in report.problems:
        print(f"problem: {problem}")
    print("OK" if report.ok else f"FAILED ({len(report.problems)} problems)")
    return 0 if report.ok else 1

def _add_calibrate(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("calibrate", help="make a noise profile of a camera from a few of its (clean, noisy) "
                       "pairs: adapt the model to it (default) or a mixture of the model's configurations")
    p.add_argument("--pairs", help="folder of (clean, noisy) pairs: noisy/ + clean/ subfolders, "
                   "<name>_clean/<name>_noisy files, or SIDD GT/NOISY files")  # fmt: skip
    p.add_argument("--noisy-token", help="one-folder naming rule, e.g. NOISY (with --clean-token GT)")
    p.add_argument("--clean-token", help="one-folder naming rule, e.g. GT")
    p.add_argument("--manifest", help="CSV manifest with noisy,clean columns (instead of --pairs)")
    p.add_argument("--out", required=True, help="profile JSON to write")
    p.add_argument("--model", default=None, help="bundled model name or checkpoint path (default: sidd-mini)")
    p.add_argument("--max-pairs", type=int, default=None, help="use at most this many pairs")
    p.add_argument("--mode", choices=("adapt", "mixture"), default="adapt",
                   help="adapt: learn a new configuration (latent Gaussian + a small change of the flow; "
                   "about 3 minutes for 2 pairs on a CPU); mixture: the mean NAS posterior over the model's "
                   "own configurations (seconds)")  # fmt: skip
    p.add_argument("--steps", type=int, default=None, help="adapt: training steps (default: the recipe)")
    p.add_argument("--seed", type=int, default=0, help="adapt: seed of the crops, flips and noise")
    p.add_argument("--temperature", type=float, default=1.0, help="mixture: NAS temperature (default 1)")
    p.add_argument("--top-k", type=int, default=None, help="mixture: keep the top-k configurations")
    p.add_argument("--device", default=None, help="cpu, cuda, ... (default: cpu)")
    p.add_argument("--threads", type=int, default=None, help="torch CPU threads (default: as torch sets)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_calibrate)


def _run_calibrate(args: argparse.Namespace) -> int:
    import torch

    import naflow_aug
    from naflow_aug.adapt import AdaptConfig
    from naflow_aug.profiles import calibrate_folder

    if args.pairs is None and args.manifest is None:
        raise ValueError("give --pairs DIR or --manifest CSV")
    if args.threads is not None:
        torch.set_num_threads(args.threads)
    model = naflow_aug.load(args.model or "sidd-mini", device=args.device)
    if args.mode == "adapt":
        changes = {"seed": args.seed} if args.steps is None else {"seed": args.seed, "steps": args.steps}
        kwargs = {"adapt_config": AdaptConfig(**changes)}
    else:
        kwargs = {"temperature": args.temperature, "top_k": args.top_k}
    profile = calibrate_folder(
        model, args.pairs, noisy_token=args.noisy_token, clean_token=args.clean_token,
        manifest=args.manifest, max_pairs=args.max_pairs, mode=args.mode, progress=not args.no_progress,
        **kwargs,
    )  # fmt: skip
    path = profile.save(args.out)
    if profile.mode == "adapt":
        info = profile.extra["adapt_info"]
        print(f"adapted profile from {profile.pairs} pairs ({info['steps']} steps, {info['seconds']:.0f} s) "
              f"written to {path} (tensors: {path.with_suffix('.pt').name})")  # fmt: skip
        return 0
    top = ", ".join(f"{name} {w:.3f}" for name, w in profile.top(5))
    print(f"profile from {profile.pairs} pairs written to {path}; top configurations: {top}")
    return 0


def _add_fit_baselines(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fit-baselines", help="fit per-configuration Gaussian / Poisson-Gaussian baselines")
    p.add_argument("--data", help="folder in the SIDD-Medium layout (configurations from folder names)")
    p.add_argument("--split", default=None,
                   help="with --data: fit on this split's training instances only (sidd-mini or a TOML)")
    p.add_argument("--pairs", help="paired folder (noisy/ + clean/ subfolders) of one --label configuration")
    p.add_argument("--manifest", help="CSV manifest with noisy,clean,class columns")
    p.add_argument("--label", help="configuration name for --pairs (e.g. S6_03200)")
    p.add_argument("--bins", type=int, default=32, help="clean-intensity bins of the Poisson-Gaussian fit")
    p.add_argument("--out", required=True, help="baselines JSON to write")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_fit_baselines)


def _run_fit_baselines(args: argparse.Namespace) -> int:
    from naflow_aug.baselines import fit_baselines_from_files

    given = [x is not None for x in (args.data, args.pairs, args.manifest)]
    if sum(given) != 1:
        raise ValueError("give one of --data, --pairs, --manifest")
    if args.data is not None:
        pairs = _sidd_training_pairs(args.data, args.split)
        records = [(r.clean_path, r.noisy_path, r.cls) for r in pairs]
    else:
        from naflow_aug.data.folders import scan_paired_folders

        records = [(r.clean_path, r.noisy_path, r.cls) for r in
                   scan_paired_folders(args.pairs, manifest=args.manifest, label=args.label)]  # fmt: skip
    if not records:
        raise ValueError("no pairs found")
    baselines = fit_baselines_from_files(records, bins=args.bins, progress=not args.no_progress)
    path = baselines.save(args.out)
    print(f"baselines of {len(baselines.classes)} configurations from {len(records)} pairs written to {path}")
    for name in baselines.classes:
        c = baselines[name]
        print(f"  {name}: gaussian std {c.gaussian_std * 255:.2f}/255, a {[round(a, 5) for a in c.pg_a]}, "
              f"b {[round(b, 6) for b in c.pg_b]}")  # fmt: skip
    return 0


def _add_demo(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="the main job: data -> NAFlow -> synthetic pairs -> denoisers -> report.html"
    )
    p.add_argument("--out", required=True, help="run directory (report.html, report.md, results.json, ...)")
    p.add_argument("--data", help="a SIDD-Medium folder (SIDD_Medium_Srgb) instead of the simulated camera")
    p.add_argument("--model", help="use this NAFlow (bundled name or checkpoint path), do not train one")
    p.add_argument("--device", default="cpu", help="cpu (default), cuda, cuda:1, ...")
    p.add_argument("--size", choices=("default", "tiny"), default="default",
                   help="default (about 10 min on 2 CPU cores) or tiny (about a minute, a smoke test)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default 1; 0: torch's own)")
    p.add_argument("--resume", action="store_true", help="continue the run in --out (finished: nothing)")
    p.add_argument("--no-progress", action="store_true", help="no progress bars")
    p.set_defaults(func=_run_demo)


def _run_demo(args: argparse.Namespace) -> int:
    import logging

    from naflow_aug.demo import run_demo

    if not logging.getLogger().handlers:
        logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    results = run_demo(args.out, data=args.data, model=args.model, device=args.device, size=args.size,
                       progress=not args.no_progress, resume=args.resume, seed=args.seed,
                       threads=args.threads)
    total = sum(v for k, v in results["timings"].items() if not k.startswith("total"))
    print(f"report: {args.out}/report.html (and report.md, results.json); stages took {total:.0f} s")
    return 0


# what each command's --out names: checked writable before any work is done
_OUT_KIND = {"train": "dir", "refit-prior": "file", "generate": "file", "sample": "dir", "simulate": "dir",
             "bench": "dir", "calibrate": "file", "fit-baselines": "file", "demo": "dir"}  # fmt: skip
# what a user can cause by what they give (files, values, devices); anything else is a bug: traceback
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, TypeError, OSError)


def _add_debug(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the traceback of an error instead of one `error:` line")  # fmt: skip


def _preflight(args: argparse.Namespace) -> None:
    from naflow_aug.devices import check_device
    from naflow_aug.runs import check_writable

    if getattr(args, "device", None) is not None:
        check_device(args.device)
    if args.command in _OUT_KIND and getattr(args, "out", None):
        check_writable(args.out, _OUT_KIND[args.command])  # type: ignore[arg-type]


def main(argv: list[str] | None = None) -> int:
    """Run one command. Every expected user error ends as one `naflow-aug CMD: error: ...` line on stderr
    and exit code 2 (argparse's own convention); `--debug` shows the traceback instead."""
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        _preflight(args)
        return int(args.func(args) or 0)
    except USER_ERRORS as err:
        if getattr(args, "debug", False):
            raise
        message = str(err) or type(err).__name__
        print(f"naflow-aug {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"naflow-aug {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
