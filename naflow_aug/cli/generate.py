"""`naflow-aug generate` and `naflow-aug verify`: synthetic (clean, noisy) HDF5 data sets."""

from __future__ import annotations

import argparse
import sys

from naflow_aug.cli._common import setup_logging
from naflow_aug.noise.registry import noise_help, noise_kinds_help


def add_generate(sub: argparse._SubParsersAction) -> None:
    # defaults as in naflow_aug.generate.GenerateConfig (not imported here: --help stays fast)
    p = sub.add_parser("generate", help="write a synthetic (clean, noisy) HDF5 data set (resumable)",
                       epilog="noise sources:\n" + noise_kinds_help(),
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", required=True, help="output .h5 file")
    p.add_argument("--clean", "--source", dest="source", required=True,
                   help="source folder: SIDD-Medium, a paired folder (clean/ + noisy/) or any clean images")
    p.add_argument("--source-kind", choices=("auto", "sidd", "paired", "clean"), default="auto")
    p.add_argument("--model", default="sidd-mini", help="bundled model name or checkpoint path")
    p.add_argument("--noise", default="nas",
                   help=noise_help("noise source (default nas: each crop's own real noisy counterpart is its "
                                   "reference; clean-only folders: a source without a reference)"))
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

    from naflow_aug import generate as gen

    setup_logging()
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


def add_verify(sub: argparse._SubParsersAction) -> None:
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
