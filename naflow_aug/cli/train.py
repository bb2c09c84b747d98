"""`naflow-aug train` and `naflow-aug refit-prior`: fit a NAFlow on (clean, noisy) pairs."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from naflow_aug.cli._common import setup_logging, sidd_training_pairs


def add_train(sub: argparse._SubParsersAction) -> None:
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
    from naflow_aug import train as training

    setup_logging()
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


def add_refit_prior(sub: argparse._SubParsersAction) -> None:
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
    from naflow_aug.data.images import load_uint8
    from naflow_aug.train import refit_prior

    model = naflow_aug.load(args.model, device=args.device)
    records = sidd_training_pairs(args.data, args.split)
    if not records:
        raise ValueError(f"no pairs in {args.data}" + (f" among split {args.split}'s training instances"
                                                       if args.split else ""))
    pairs = ((load_uint8(r.noisy_path), load_uint8(r.clean_path), r.cls) for r in records)
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

