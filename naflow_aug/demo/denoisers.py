"""The demo's denoiser stage: one DnCNN per training source and seed, then one table over the seeds.

Each (source, seed) is its own job and its own benchmark run directory,
``bench/<source>/seed-<N>/`` (:func:`naflow_aug.bench.run_benchmark`, resumable), so that the jobs can
run side by side and the sources that do not need NAFlow train while NAFlow does. When all are done,
each source's seeds are summarised (:func:`naflow_aug.bench.run_seeds`) and the sources joined into
``bench/results.json|md`` and ``bench/curves.png`` (:func:`naflow_aug.bench.combine_runs`): mean
+- std over seeds per source and the paired per-image difference against the best parametric baseline.
:func:`winner` names the noise whose denoiser scored best and its margin over the next one (among all
sources, or among the synthetic ones).
"""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from naflow_aug.demo.data import prepare_data, read_pairs, spread, training_pairs
from naflow_aug.demo.sizes import DemoSize

__all__ = [
    "NAS_HDF5",
    "NOISY_INPUT",
    "REAL",
    "BenchJob",
    "bench_sources",
    "combine",
    "run_bench_job",
    "winner",
]

NOISY_INPUT = "noisy input"
NAS_HDF5 = "NAFlow NAS (HDF5)"
REAL = "real pairs"


def bench_sources(sigma: float) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """(sources that need no NAFlow, sources that do) as (row name, spelling) pairs. Spellings: a noise
    source of :func:`naflow_aug.noise.make_noise_source`, ``identity`` (no denoiser) or ``hdf5``."""
    independent = [
        (NOISY_INPUT, "identity"),
        (REAL, "real"),
        ("gaussian-per-config", "gaussian-per-config"),
        ("poisson-gaussian", "poisson-gaussian"),
        (f"gaussian:{sigma}", f"gaussian:{sigma}"),
    ]
    return independent, [(NAS_HDF5, "hdf5")]


@dataclass(frozen=True)
class BenchJob:
    """One denoiser: the source ``name`` (spelling ``spec``) trained with ``bench_seed``. ``out``, ``data``,
    ``size`` and ``seed`` are the demo run's (the job re-reads the run's data from them)."""

    out: str
    data: str | None
    size: DemoSize
    seed: int
    name: str
    spec: str
    bench_seed: int
    device: str = "cpu"


def seed_dir(out: str | os.PathLike, name: str, bench_seed: int) -> Path:
    from naflow_aug.bench import slug

    return Path(out) / "bench" / slug(name) / f"seed-{bench_seed}"


def _pairs(items: list[Any]) -> Callable[[], Iterator[Any]]:
    return lambda: ((p.name, p.cls, p.noisy, p.clean) for p in items)


def _train_source(job: BenchJob, d: Any, preset: Any) -> Any:
    from torch import nn

    from naflow_aug import bench

    if job.spec == "identity":
        return bench.TrainSource(
            job.name, None, describe="no denoiser: the noisy input scored as it is", model=nn.Identity()
        )
    if job.spec == "hdf5":
        h5 = Path(job.out) / "synthetic.h5"
        batches = bench.hdf5_batches([str(h5)], preset, device=job.device)
        return bench.TrainSource(job.name, batches, describe=f"{h5.name}: NAS samples of the training crops")
    from naflow_aug.noise.baselines import Baselines

    train_ds = training_pairs(d, job.size, job.seed, progress=False)
    baselines = Baselines.load(Path(job.out) / "baselines.json")
    (source,) = bench.noise_sources([job.spec], train_ds, preset, baselines=baselines, device=job.device)
    source.name = job.name
    return source


def run_bench_job(job: BenchJob) -> dict[str, Any]:
    """Train and score one denoiser into :func:`seed_dir` (resumes; a finished one is only read)."""
    from naflow_aug import bench

    out = Path(job.out)
    d = prepare_data(out, job.data, job.size, job.seed, progress=False)
    test = read_pairs(d.select(d.test_ids), job.size.eval_crop)
    preset = bench.load_preset("cpu", seed=job.bench_seed, **job.size.bench)
    return bench.run_benchmark(
        [_train_source(job, d, preset)],
        seed_dir(out, job.name, job.bench_seed),
        preset=preset,
        evaluation=_pairs(test),
        validation=_pairs(spread(test, job.size.bench_val_pairs)),
        resume=True,
        device=job.device,
        progress=False,
        extra_config={"split": str(d.split), "data": str(d.root)},
    )


def _read_results(path: Path, _seed: int) -> dict[str, Any]:
    return json.loads((path / "results.json").read_text(encoding="utf-8"))


def combine(out: Path, names: Sequence[str], seeds: Sequence[int]) -> dict[str, Any]:
    """Join the finished jobs: per source its seeds, then all sources (``out/bench/results.json``)."""
    from naflow_aug.bench import combine_runs, run_seeds, slug

    joined = out / "bench" / "results.json"
    if joined.is_file():
        return json.loads(joined.read_text(encoding="utf-8"))
    roots = []
    for name in names:
        root = out / "bench" / slug(name)
        if not (root / "results.json").is_file():
            run_seeds(root, list(seeds), _read_results)
        roots.append(root)
    return combine_runs(roots, out / "bench")


def _per_image(out: Path, name: str, seeds: Sequence[int]) -> dict[int, dict[str, float]]:
    per_seed = {}
    for s in seeds:
        rows = _read_results(seed_dir(out, name, s), s)["rows"]
        per_seed[s] = {it["name"]: float(it["psnr"]) for it in rows[0]["pairs"]["items"]}
    return per_seed


def paired_difference(out: Path, a: str, b: str, seeds: Sequence[int]) -> dict[str, Any]:
    """Source ``a`` minus source ``b``: each image's PSNR difference averaged over seeds, its mean and a
    bootstrap 95% interval (:func:`naflow_aug.bench.paired_bootstrap`), and how many seeds' overall
    PSNR has ``a`` ahead."""
    from naflow_aug.bench import paired_bootstrap

    pa, pb = _per_image(out, a, seeds), _per_image(out, b, seeds)
    names = sorted(set.intersection(*(set(pa[s]) & set(pb[s]) for s in seeds)))
    diffs = [float(np.mean([pa[s][n] - pb[s][n] for s in seeds])) for n in names]
    res = paired_bootstrap(diffs)
    res["seeds_ahead"] = sum(
        1 for s in seeds if np.mean([pa[s][n] for n in names]) > np.mean([pb[s][n] for n in names])
    )
    return res


def winner(out: Path, summary: Mapping[str, Any], exclude: Sequence[str] = ()) -> dict[str, Any]:
    """The trained source with the best mean PSNR, the next one, and the paired difference between them;
    ``exclude``: sources left out (e.g. real pairs, to name the best synthetic noise)."""
    skip = {NOISY_INPUT, *exclude}
    rows = [r for r in summary["rows"] if r["source"] not in skip and math.isfinite(r["psnr"])]
    ranked = sorted(rows, key=lambda r: -r["psnr"])
    if len(ranked) < 2:
        raise ValueError(f"need two trained sources to name a winner, got {[r['source'] for r in ranked]}")
    first, second = ranked[0], ranked[1]
    paired = paired_difference(out, first["source"], second["source"], summary["seeds"])
    return {"winner": first, "runner_up": second, "paired": paired, "seeds": list(summary["seeds"])}
