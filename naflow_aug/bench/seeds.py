"""Repeat a denoiser benchmark over seeds and compare its sources honestly.

``naflow-aug bench --seeds 0,1,2`` runs the whole benchmark once per seed (``<out>/seed-<N>/``, each an
ordinary, resumable benchmark run directory), then writes into ``<out>``:

- ``results.json`` / ``results.md``: per source, the mean +- standard deviation over seeds of the overall
  PSNR / SSIM (and of each group's PSNR), and, for every source against the best parametric baseline
  (the baseline noise source with the highest mean PSNR), the paired per-image PSNR difference: each
  scored image's difference averaged over seeds, its mean over images and a bootstrap 95% interval
  (images resampled with replacement);
- ``curves.png``: validation PSNR per epoch, mean over seeds with the seeds' range shaded.

A difference is a result only when its interval excludes zero and it exceeds the seeds' spread.
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from naflow_aug.bench.figures import plot_curves
from naflow_aug.bench.reports import seeds_markdown
from naflow_aug.bench.spellings import BASELINE_KINDS, is_baseline
from naflow_aug.runs import RunDir, atomic_write_text

log = logging.getLogger(__name__)

# the names of the former naflow_aug.bench_seeds module, kept together here
__all__ = [
    "BASELINE_KINDS",
    "aggregate_seeds",
    "combine_runs",
    "is_baseline",
    "paired_bootstrap",
    "parse_seeds",
    "run_seeds",
    "seeds_markdown",
]


def parse_seeds(text: str | Sequence[int]) -> list[int]:
    """``'0,1,2'`` (or a sequence of ints) -> distinct non-negative seeds, in the order given."""
    if isinstance(text, str):
        parts = [p.strip() for p in text.split(",") if p.strip()]
        try:
            seeds = [int(p) for p in parts]
        except ValueError:
            raise ValueError(f"seeds must be a comma-separated list of integers, got {text!r}") from None
    else:
        seeds = list(text)
        if any(isinstance(s, bool) or not isinstance(s, int) for s in seeds):
            raise TypeError(f"seeds must be integers, got {seeds!r}")
    if not seeds:
        raise ValueError(f"seeds must name at least one seed, got {text!r}")
    if any(s < 0 for s in seeds) or len(set(seeds)) != len(seeds):
        raise ValueError(f"seeds must be distinct non-negative integers, got {seeds}")
    return seeds


def paired_bootstrap(
    diffs: Sequence[float] | np.ndarray, *, resamples: int = 10_000, seed: int = 0, level: float = 0.95
) -> dict[str, float]:
    """Mean of per-image differences and its bootstrap interval (percentile method).

    ``diffs`` (N,): one paired difference per scored image (already averaged over seeds). Returns
    ``{'mean', 'lo', 'hi', 'n'}``; with a single image the interval is that value.
    """
    d = np.asarray(diffs, dtype=np.float64)
    if d.ndim != 1 or d.size == 0:
        raise ValueError(f"paired_bootstrap needs a non-empty 1-D array of differences, got shape {d.shape}")
    if not np.isfinite(d).all():
        raise ValueError("paired_bootstrap got non-finite differences")
    if not 0 < level < 1:
        raise ValueError(f"level must be in (0, 1), got {level}")
    rng = np.random.default_rng(seed)
    idx = rng.integers(0, d.size, size=(resamples, d.size))
    means = d[idx].mean(axis=1)
    alpha = (1 - level) / 2
    lo, hi = np.quantile(means, [alpha, 1 - alpha])
    return {"mean": float(d.mean()), "lo": float(lo), "hi": float(hi), "n": int(d.size)}


def _scores(row: Mapping[str, Any]) -> Mapping[str, Any]:
    return row.get("sidd_val") or row.get("pairs") or {}


def _items(row: Mapping[str, Any]) -> dict[str, float]:
    return {it["name"]: float(it["psnr"]) for it in _scores(row).get("items", [])}


def _mean_std(values: Sequence[float]) -> tuple[float, float]:
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return math.nan, math.nan
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def aggregate_seeds(per_seed: Mapping[int, Mapping[str, Any]]) -> dict[str, Any]:
    """Seed -> a benchmark's ``results.json`` -> one summary (see the module doc).

    Every seed must hold the same sources. Returns ``{'seeds', 'rows': [{'source', 'psnr', 'psnr_std',
    'ssim', 'ssim_std', 'psnr_per_seed', 'groups': {g: (mean, std)}}], 'best_baseline',
    'paired': {source: {'mean', 'lo', 'hi', 'n'}}}``.
    """
    if not per_seed:
        raise ValueError("aggregate_seeds got no seeds")
    seeds = sorted(per_seed)
    names = [r["source"] for r in per_seed[seeds[0]]["rows"]]
    for s in seeds[1:]:
        other = [r["source"] for r in per_seed[s]["rows"]]
        if other != names:
            raise ValueError(f"seed {s} has sources {other}, seed {seeds[0]} has {names}")
    rows = []
    for i, name in enumerate(names):
        runs = [per_seed[s]["rows"][i] for s in seeds]
        psnrs = [_scores(r).get("overall", {}).get("psnr", math.nan) for r in runs]
        ssims = [_scores(r).get("overall", {}).get("ssim", math.nan) for r in runs]
        groups_key = "cameras" if "sidd_val" in runs[0] else "groups"
        group_names = sorted({g for r in runs for g in _scores(r).get(groups_key, {})})
        groups = {
            g: _mean_std([_scores(r).get(groups_key, {}).get(g, {}).get("psnr", math.nan) for r in runs])
            for g in group_names
        }
        m, sd = _mean_std(psnrs)
        ms, sds = _mean_std(ssims)
        rows.append(
            {
                "source": name,
                "psnr": m,
                "psnr_std": sd,
                "ssim": ms,
                "ssim_std": sds,
                "psnr_per_seed": dict(zip(seeds, psnrs, strict=True)),
                "groups": groups,
                "train_seconds": float(np.mean([r.get("train_seconds", 0.0) for r in runs])),
            }
        )
    baselines = [r for r in rows if is_baseline(r["source"]) and math.isfinite(r["psnr"])]
    best = max(baselines, key=lambda r: r["psnr"])["source"] if baselines else None
    paired: dict[str, dict[str, float]] = {}
    if best is not None:
        j = names.index(best)
        for i, name in enumerate(names):
            if name == best:
                continue
            per_image: dict[str, list[float]] = {}
            for s in seeds:
                a, b = _items(per_seed[s]["rows"][i]), _items(per_seed[s]["rows"][j])
                for key in a.keys() & b.keys():
                    per_image.setdefault(key, []).append(a[key] - b[key])
            diffs = [float(np.mean(v)) for _, v in sorted(per_image.items()) if len(v) == len(seeds)]
            if diffs:
                paired[name] = paired_bootstrap(diffs)
                seed_diffs = [
                    _scores(per_seed[s]["rows"][i]).get("overall", {}).get("psnr", math.nan)
                    - _scores(per_seed[s]["rows"][j]).get("overall", {}).get("psnr", math.nan)
                    for s in seeds
                ]
                paired[name]["seed_diffs"] = seed_diffs
                paired[name]["wins_every_seed"] = bool(all(d > 0 for d in seed_diffs))
    return {"seeds": seeds, "rows": rows, "best_baseline": best, "paired": paired}


def run_seeds(
    out: str | os.PathLike,
    seeds: Sequence[int],
    run_one: Callable[[Path, int], Mapping[str, Any]],
) -> dict[str, Any]:
    """Run ``run_one(out / f'seed-{s}', s)`` for each seed (each resumable on its own), then aggregate.

    ``run_one`` returns the benchmark's results (``{'rows': [...]}``). Writes ``results.json``,
    ``results.md`` and ``curves.png`` into ``out``.
    """
    seeds = parse_seeds(seeds)
    root = RunDir(out)
    per_seed: dict[int, Mapping[str, Any]] = {}
    dirs: dict[int, Path] = {}
    for s in seeds:
        dirs[s] = root.path / f"seed-{s}"
        log.info("benchmark seed %d -> %s", s, dirs[s])
        per_seed[s] = run_one(dirs[s], s)
    if not all(r.get("rows") for r in per_seed.values()):
        return {}  # not rank 0 of a distributed run
    runs = {r["source"]: dict(dirs) for r in per_seed[seeds[0]]["rows"]}
    return _write_summary(root, per_seed, runs)


def _write_summary(
    root: RunDir, per_seed: Mapping[int, Mapping[str, Any]], runs: Mapping[str, Mapping[int, Path]]
) -> dict[str, Any]:
    summary = aggregate_seeds(per_seed)
    summary["runs"] = {name: {str(s): str(d) for s, d in by_seed.items()} for name, by_seed in runs.items()}
    atomic_write_text(root.path / "results.md", seeds_markdown(summary))
    try:
        curves = plot_curves(root.path, {name: by_seed.values() for name, by_seed in runs.items()})
        summary["curves"] = str(curves)
    except ImportError as err:  # matplotlib is optional at run time
        log.warning("no curves plot: %s", err)
    root.write_results(json.loads(json.dumps(summary, default=str)))
    return summary


def combine_runs(runs: Sequence[str | os.PathLike], out: str | os.PathLike) -> dict[str, Any]:
    """Aggregate finished ``--seeds`` runs that trained other sources with the same seeds and preset.

    Each source's denoiser depends only on the preset, the seed and the source, so rows of separate runs
    (e.g. one process per core) form one table. A source present in several runs is taken from the first.
    """
    if not runs:
        raise ValueError("combine_runs needs at least one run directory")
    loaded = []
    for r in runs:
        path = Path(r) / "results.json"
        if not path.is_file():
            raise ValueError(f"{r} holds no finished --seeds run (no results.json)")
        data = json.loads(path.read_text(encoding="utf-8"))
        if "seeds" not in data:
            raise ValueError(f"{r} is not a --seeds run (its results.json has no 'seeds')")
        loaded.append((Path(r), data))
    seeds = loaded[0][1]["seeds"]
    presets: dict[int, set[str]] = {s: set() for s in seeds}
    for r, data in loaded:
        if data["seeds"] != seeds:
            raise ValueError(f"{r} has seeds {data['seeds']}, {loaded[0][0]} has {seeds}")
        for s in seeds:
            cfg = (r / f"seed-{s}" / "config.toml").read_text(encoding="utf-8")
            presets[s].add(cfg[cfg.find("[preset]") :].split("\n[", 1)[0])
    if any(len(p) != 1 for p in presets.values()):
        raise ValueError(f"runs {[str(r) for r, _ in loaded]} were made with different presets")
    per_seed: dict[int, dict[str, Any]] = {s: {"rows": []} for s in seeds}
    where: dict[str, dict[int, Path]] = {}
    for r, _ in loaded:
        for s in seeds:
            one = json.loads((r / f"seed-{s}" / "results.json").read_text(encoding="utf-8"))
            for row in one["rows"]:
                if row["source"] in where and s in where[row["source"]]:
                    continue
                per_seed[s]["rows"].append(row)
                where.setdefault(row["source"], {})[s] = r / f"seed-{s}"
    return _write_summary(RunDir(out), per_seed, where)
