"""`naflow-aug demo`: the main job, from data to a report."""

from __future__ import annotations

import argparse

from naflow_aug.cli._common import setup_logging


def add_demo(sub: argparse._SubParsersAction) -> None:
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

    from naflow_aug.demo import run_demo

    setup_logging()
    results = run_demo(args.out, data=args.data, model=args.model, device=args.device, size=args.size,
                       progress=not args.no_progress, resume=args.resume, seed=args.seed,
                       threads=args.threads)
    total = sum(v for k, v in results["timings"].items() if not k.startswith("total"))
    print(f"report: {args.out}/report.html (and report.md, results.json); stages took {total:.0f} s")
    return 0
