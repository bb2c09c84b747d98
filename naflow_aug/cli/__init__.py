"""The `naflow-aug` command: the only package that parses arguments."""

# one module per group of subcommands; each adds its parsers (add_<command>) and runs them
from __future__ import annotations

import argparse
import sys

from naflow_aug.cli import bench, data, demo, generate, noise, train
from naflow_aug.devices import check_device
from naflow_aug.runs import check_writable


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="naflow-aug", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    data.add_prepare(sub)
    train.add_train(sub)
    train.add_refit_prior(sub)
    generate.add_generate(sub)
    generate.add_verify(sub)
    noise.add_sample(sub)
    data.add_simulate(sub)
    bench.add_bench(sub)
    noise.add_calibrate(sub)
    noise.add_fit_baselines(sub)
    demo.add_demo(sub)
    _add_debug(parser)
    for command in sub.choices.values():
        _add_debug(command)
    return parser


# what each command's --out names: checked writable before any work is done
_OUT_KIND = {"train": "dir", "refit-prior": "file", "generate": "file", "sample": "dir", "simulate": "dir",
             "bench": "dir", "calibrate": "file", "fit-baselines": "file", "demo": "dir"}  # fmt: skip
# what a user can cause by what they give (files, values, devices); anything else is a bug: traceback
USER_ERRORS: tuple[type[BaseException], ...] = (ValueError, TypeError, OSError)


def _add_debug(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                        help="show the traceback of an error instead of one `error:` line")  # fmt: skip


def _preflight(args: argparse.Namespace) -> None:
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
