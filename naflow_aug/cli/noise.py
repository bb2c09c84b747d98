"""`naflow-aug sample`, `naflow-aug calibrate` and `naflow-aug fit-baselines`: noise sources on images,
noise profiles and fitted baselines."""

from __future__ import annotations

import argparse
from collections import Counter
from pathlib import Path

from naflow_aug.cli._common import sidd_training_pairs
from naflow_aug.noise.registry import noise_help, noise_kinds_help


def add_sample(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sample", help="add noise to clean image(s); write noisy PNGs and a grid",
                       epilog="noise sources:\n" + noise_kinds_help(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("clean", nargs="+", help="clean image file(s) (model noise: cropped to a multiple of 8)")
    p.add_argument("--model", default="sidd-mini", help="bundled model name or checkpoint path")
    p.add_argument("--noise", default="random",
                   help=noise_help("noise source (default random; nas and real need --reference)"))
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
    stems = [Path(p).stem for p in paths]
    repeated = {s for s, n in Counter(stems).items() if n > 1}
    return [f"{s}_{i}_noisy.png" if s in repeated else f"{s}_noisy.png" for i, s in enumerate(stems)]


def _run_sample(args: argparse.Namespace) -> int:
    import torch

    from naflow_aug.data.images import load_image, write_png
    from naflow_aug.noise import ModelSource, make_noise_source

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


def add_calibrate(sub: argparse._SubParsersAction) -> None:
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
    from naflow_aug.noise.profiles import calibrate_folder

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


def add_fit_baselines(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("fit-baselines", help="fit per-configuration Gaussian / Poisson-Gaussian baselines")
    p.add_argument("--data", help="folder in the SIDD-Medium layout (configurations from folder names)")
    p.add_argument("--split", default=None,
                   help="with --data: fit on this split's training instances only (sidd-mini or a TOML)")
    p.add_argument("--pairs", help="paired folder (noisy/ + clean/ subfolders) of one --config configuration")
    p.add_argument("--manifest", help="CSV manifest with noisy,clean,class columns")
    p.add_argument("--config", "--label", dest="config",
                   help="camera configuration of the --pairs, e.g. S6_03200 (--label: its old name)")
    p.add_argument("--bins", type=int, default=32, help="clean-intensity bins of the Poisson-Gaussian fit")
    p.add_argument("--out", required=True, help="baselines JSON to write")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_run_fit_baselines)


def _run_fit_baselines(args: argparse.Namespace) -> int:
    from naflow_aug.noise.baselines import fit_baselines_from_files

    given = [x is not None for x in (args.data, args.pairs, args.manifest)]
    if sum(given) != 1:
        raise ValueError("give one of --data, --pairs, --manifest")
    if args.data is not None:
        pairs = sidd_training_pairs(args.data, args.split)
        records = [(r.clean_path, r.noisy_path, r.cls) for r in pairs]
    else:
        from naflow_aug.data.folders import scan_paired_folders

        records = [(r.clean_path, r.noisy_path, r.cls) for r in
                   scan_paired_folders(args.pairs, manifest=args.manifest, label=args.config)]  # fmt: skip
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

