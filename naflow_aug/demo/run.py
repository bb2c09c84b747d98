"""``run_demo``: the main job's stages in order, the independent ones side by side (see the package doc)."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import Future
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch

from naflow_aug.demo.data import DemoData, prepare_data, read_pairs, training_pairs
from naflow_aug.demo.denoisers import (
    REAL,
    BenchJob,
    bench_sources,
    combine,
    run_bench_job,
    seed_dir,
    winner,
)
from naflow_aug.demo.sizes import DemoSize, get_size
from naflow_aug.demo.stages import (
    calibrate_profile,
    figure_samples,
    generate_hdf5,
    mean_sigma,
    noise_quality_seeds,
    train_naflow,
)
from naflow_aug.demo.workers import JobResult, Workers
from naflow_aug.runtime import atomic_write_json

log = logging.getLogger(__name__)

__all__ = ["run_demo"]

# the layout of a run directory; a run made by an earlier layout is not resumed
LAYOUT = 2


class _Timer:
    """Wall and CPU seconds per stage (``timings.json``); a job's CPU seconds count for its stage."""

    def __init__(self, path: Path):
        self.path = path
        saved = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
        self.wall: dict[str, float] = saved.get("wall", {})
        self.cpu: dict[str, float] = saved.get("cpu", {})
        self.jobs: dict[str, dict[str, float]] = saved.get("jobs", {})

    def _add(self, name: str, wall: float, cpu: float) -> None:
        self.wall[name] = self.wall.get(name, 0.0) + wall
        self.cpu[name] = self.cpu.get(name, 0.0) + cpu
        atomic_write_json(self.path, {"wall": self.wall, "cpu": self.cpu, "jobs": self.jobs})

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        log.info("demo stage: %s", name)
        t0, c0 = time.perf_counter(), time.process_time()
        result = fn()
        self._add(name, time.perf_counter() - t0, time.process_time() - c0)
        return result

    def wait(self, name: str, futures: Sequence[Future[JobResult]]) -> list[Any]:
        """Wait for jobs; their CPU seconds (and this process's while waiting) count for ``name``."""
        log.info("demo stage: %s (%d job(s))", name, len(futures))
        t0, c0 = time.perf_counter(), time.process_time()
        done = [f.result() for f in futures]
        for job in done:
            self.jobs[job.name] = {"wall": job.wall_seconds, "cpu": job.cpu_seconds}
        cpu = time.process_time() - c0 + sum(j.cpu_seconds for j in done)
        self._add(name, time.perf_counter() - t0, cpu)
        return [j.value for j in done]


@dataclass
class _Run:
    """What the stages share: the run directory, settings and the data."""

    out: Path
    size: DemoSize
    data: str | None
    model: str | None
    device: str
    seed: int
    resume: bool
    progress: bool
    timer: _Timer
    workers: int = 1
    d: DemoData | None = None

    @property
    def seeds(self) -> list[int]:
        return [self.seed + i for i in range(self.size.seeds)]

    def bench_job(self, name: str, spec: str, bench_seed: int) -> BenchJob:
        return BenchJob(str(self.out), self.data, self.size, self.seed, name, spec, bench_seed, self.device)


def run_demo(
    out: str | os.PathLike,
    *,
    data: str | os.PathLike | None = None,
    model: str | os.PathLike | None = None,
    device: str = "cpu",
    size: str | DemoSize = "default",
    progress: bool = True,
    resume: bool = False,
    seed: int = 0,
    threads: int = 1,
    workers: int | None = None,
) -> dict[str, Any]:
    """Run the main job into the run directory ``out`` (see the package doc); returns ``results.json``'s dict.

    ``data``: a SIDD-Medium folder to use instead of the simulated camera. ``model``: a bundled model name
    or a checkpoint path to use instead of training NAFlow. ``size``: ``"default"`` or ``"tiny"``.
    ``resume``: continue (or, when finished, only re-read) the run in ``out``; without it ``out`` must be
    new or empty. ``seed``: the data's and NAFlow's seed; the denoisers and noise-quality samples use
    ``seed, seed + 1, ...`` (the size's ``seeds``). ``threads``: torch CPU threads of this process during
    the run, restored afterwards (0: leave as is). ``workers``: processes that run the independent jobs
    side by side, one torch thread each (1: all in this process, one after another; None: 2, or 1 on a
    1-core machine); with 2 the denoisers of the fitted noises train while NAFlow does.
    """
    if not isinstance(threads, int) or threads < 0:
        raise ValueError(f"threads must be an integer >= 0, got {threads!r}")
    if workers is None:
        workers = min(2, os.cpu_count() or 1)
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 1:
        raise ValueError(f"workers must be an integer >= 1, got {workers!r}")
    spec = get_size(size)
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _run_demo(
            Path(out), spec, data=data, model=model, device=device, progress=progress, resume=resume,
            seed=seed, workers=workers,
        )  # fmt: skip
    finally:
        torch.set_num_threads(before)


def _check_out(out: Path, settings: dict[str, Any], spec: DemoSize, resume: bool) -> dict[str, Any] | None:
    """Refuse a used folder without ``resume`` and a resume with other settings; the results of a
    finished run (resumed), else None."""
    if out.exists() and not out.is_dir():
        raise ValueError(f"out must be a folder, got the file {out}")
    if out.is_dir() and any(out.iterdir()) and not resume:
        raise ValueError(
            f"{out} is not empty; pass resume=True (--resume) to continue that run, or a new folder"
        )
    if resume and (out / "results.json").is_file() and (out / "report.html").is_file():
        log.info("%s has finished; nothing to do", out)
        return json.loads((out / "results.json").read_text(encoding="utf-8"))
    out.mkdir(parents=True, exist_ok=True)
    path = out / "demo.json"
    if path.is_file():
        before = json.loads(path.read_text(encoding="utf-8"))
        changed = [k for k in settings if k != "device" and before.get(k) != settings[k]]
        if changed:
            raise ValueError(
                f"cannot resume {out} with different settings: "
                + "; ".join(f"{k} {before.get(k)!r} -> {settings[k]!r}" for k in changed)
            )
    atomic_write_json(path, {**settings, "size_settings": asdict(spec)})
    return None


def _run_demo(
    out: Path, spec: DemoSize, *, data: Any, model: Any, device: str, progress: bool, resume: bool,
    seed: int, workers: int,
) -> dict[str, Any]:  # fmt: skip
    settings = {
        "data": str(data or ""),
        "model": str(model or ""),
        "device": device,
        "size": spec.name,
        "seed": seed,
        "layout": LAYOUT,
    }
    finished = _check_out(out, settings, spec, resume)
    if finished is not None:
        return finished
    r = _Run(
        out, spec, str(data) if data else None, str(model) if model else None, device, seed, resume,
        progress, _Timer(out / "timings.json"), workers,
    )  # fmt: skip
    t_start = time.perf_counter()
    r.d = r.timer.run("data", lambda: prepare_data(out, data, spec, seed, progress))
    train_ds = r.timer.run("read training pairs", lambda: training_pairs(r.d, spec, seed, progress))
    baselines = r.timer.run("fit baselines", lambda: _fit_baselines(out, train_ds, progress))
    independent, dependent = bench_sources(mean_sigma(baselines))
    with Workers(workers) as pool:
        naflow = None
        if model is None:
            naflow = pool.submit("train NAFlow", train_naflow, out, r.d, spec, device, seed, resume, progress)
        jobs = [
            pool.submit(f"denoiser {name}, seed {s}", run_bench_job, r.bench_job(name, kind, s))
            for name, kind in independent
            for s in r.seeds
        ]
        naflow_results = r.timer.wait("train NAFlow", [naflow])[0] if naflow is not None else None
        stage = _naflow_stages(r, baselines)
        jobs += [
            pool.submit(f"denoiser {name}, seed {s}", run_bench_job, r.bench_job(name, kind, s))
            for name, kind in dependent
            for s in r.seeds
        ]
        r.timer.wait("denoisers", jobs)
    names = [name for name, _ in independent + dependent]
    summary = r.timer.run("combine seeds", lambda: combine(out, names, r.seeds))
    summary["winner"] = winner(out, summary)
    summary["synthetic_winner"] = winner(out, summary, exclude=(REAL,))
    figs = r.timer.run("figures", lambda: _figures(r, stage, names))
    results = _results(r, stage, naflow_results, summary, figs)
    results["timings"]["total (this process)"] = time.perf_counter() - t_start
    from naflow_aug.demo.report import write_report

    write_report(out, results)
    atomic_write_json(out / "results.json", results)
    log.info("demo finished: %s", out / "report.html")
    return results


def _fit_baselines(out: Path, train_ds: Any, progress: bool) -> Any:
    from naflow_aug.bench import fit_dataset_baselines
    from naflow_aug.noise.baselines import Baselines

    path = out / "baselines.json"
    if path.is_file():
        return Baselines.load(path)
    fitted = fit_dataset_baselines(train_ds, progress=progress)
    fitted.save(path)
    return fitted


def _naflow_stages(r: _Run, baselines: Any) -> dict[str, Any]:
    """With the trained (or given) NAFlow: the profile, noise quality over seeds and the HDF5."""
    from naflow_aug.checkpoints import load
    from naflow_aug.evaluate import TRUE_CONFIG
    from naflow_aug.noise.registry import make_noise_source

    d, dev = r.d, r.device
    assert d is not None
    model_ref = r.model or str(r.out / "naflow" / "model.pt")
    net = load(model_ref, device=dev)
    unknown = sorted({p.cls for p in d.pairs} - set(net.classes))
    if unknown:
        log.warning(
            "the model does not know the data's configurations %s: no true-configuration scores or "
            "posterior accuracy for them",
            unknown,
        )
    test = read_pairs(d.select(d.test_ids), r.size.eval_crop, net.size_multiple)
    calib = read_pairs(d.select(d.calib_ids), r.size.eval_crop, net.size_multiple)
    profile = r.timer.run("calibrate profile", lambda: calibrate_profile(r.out, net, calib, r.progress))
    sigma = mean_sigma(baselines)
    sources: dict[str, Any] = {
        "NAFlow NAS": make_noise_source("nas", net, device=dev),
        "NAFlow true config": TRUE_CONFIG,
        f"NAFlow profile ({d.calib_class})": make_noise_source(f"profile:{profile}", net, device=dev),
        "gaussian-per-config": make_noise_source("gaussian-per-config", baselines=baselines),
        "poisson-gaussian": make_noise_source("poisson-gaussian", baselines=baselines),
        f"gaussian:{sigma}": make_noise_source(f"gaussian:{sigma}"),
    }
    nq = r.timer.run(
        "noise quality",
        lambda: noise_quality_seeds(r.out, test, sources, net, d, r.size, r.seeds, r.progress),
    )
    gen = r.timer.run(
        "generate HDF5", lambda: generate_hdf5(r.out, d, r.size, model_ref, dev, r.seed, r.progress)
    )
    return {
        "net": net, "model_ref": model_ref, "test": test, "calib": calib, "profile": profile,
        "sources": sources, "noise_quality": nq, "generated": gen,
    }  # fmt: skip


def _figures(r: _Run, stage: dict[str, Any], names: list[str]) -> list[dict[str, str]]:
    from naflow_aug.demo.figures import write_figures

    keep = ("NAFlow NAS", "gaussian-per-config", "poisson-gaussian")
    fig_sources = {k: v for k, v in stage["sources"].items() if k in keep}
    samples = figure_samples(stage["test"], fig_sources, r.size.figure_pairs, r.seed)
    return write_figures(
        r.out,
        samples=samples,
        naflow_run=r.out / "naflow" if r.model is None else None,
        curves=r.out / "bench" / "curves.png",
        grids=[seed_dir(r.out, name, r.seeds[0]) / "grid.png" for name in names],
    )


def _results(
    r: _Run, stage: dict[str, Any], naflow_results: Any, summary: dict[str, Any], figs: list[Any]
) -> dict[str, Any]:
    from naflow_aug.bench import load_preset

    d, net = r.d, stage["net"]
    assert d is not None
    preset = load_preset("cpu", seed=r.seeds[0], **r.size.bench)
    return {
        "settings": {"data": r.data or "", "model": r.model or "", "device": r.device, "size": r.size.name,
                     "seed": r.seed, "layout": LAYOUT},
        "size_settings": asdict(r.size),
        "data": {
            "root": str(d.root),
            "simulated": d.simulated,
            "pairs": len(d.pairs),
            "train_instances": len(d.train_ids),
            "test_instances": len(d.test_ids),
            "test_pairs": len(stage["test"]),
            "calibration_instances": d.calib_ids,
            "calibration_pairs": len(stage["calib"]),
            "calibration_class": d.calib_class,
            "classes": sorted({p.cls for p in d.pairs}),
        },
        "model": {
            "ref": stage["model_ref"],
            "classes": list(net.classes),
            "trained_here": r.model is None,
            "sha256": getattr(net, "checkpoint_sha256", ""),
        },
        "naflow_training": naflow_results,
        "baselines": str(r.out / "baselines.json"),
        "profile": json.loads(Path(stage["profile"]).read_text(encoding="utf-8")),
        "noise_quality": stage["noise_quality"],
        "generated": stage["generated"],
        "denoising": {**summary, "preset": asdict(preset)},
        "figures": figs,
        "timings": dict(r.timer.wall),
        "cpu_seconds": dict(r.timer.cpu),
        "workers": r.workers,
        "jobs": dict(r.timer.jobs),
    }  # fmt: skip
