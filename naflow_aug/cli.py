"""The `naflow-aug` command: the only module that parses arguments."""

from __future__ import annotations

import argparse
import sys


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="naflow-aug", description=__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    _add_train(sub)
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


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
