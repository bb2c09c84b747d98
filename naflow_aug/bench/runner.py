"""Running the benchmark: one denoiser per training source, trained (or taken as it is) and scored in a
resumable run directory (``sources/<name>/`` each); then the table, the grid and the curves."""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from naflow_aug.bench.batches import Pair
from naflow_aug.bench.figures import plot_curves, save_strip, write_grid
from naflow_aug.bench.presets import CPU, BenchPreset
from naflow_aug.bench.reports import results_markdown
from naflow_aug.bench.scoring import evaluate_pairs, evaluate_sidd_validation, score_items, validation_subset
from naflow_aug.bench.sources import TrainSource, slug
from naflow_aug.bench.submission import denoise_sidd_benchmark
from naflow_aug.bench.training import make_dncnn, train_denoiser
from naflow_aug.data.sidd_blocks import SiddValidation
from naflow_aug.denoisers.dncnn import save_dncnn
from naflow_aug.runs import RunDir, atomic_write_text, build_seeded, config_to_dict
from naflow_aug.runtime.distributed import current_context, init_distributed

log = logging.getLogger(__name__)


def run_benchmark(
    sources: Sequence[TrainSource],
    out: str | os.PathLike,
    *,
    preset: BenchPreset = CPU,
    evaluation: Callable[[], Iterable[Pair]] | None = None,
    validation: Callable[[], Iterable[Pair]] | None = None,
    sidd_val: str | os.PathLike | None = None,
    sidd_bench: str | os.PathLike | None = None,
    model_factory: Callable[[], nn.Module] | None = None,
    resume: bool = False,
    device: str | torch.device | None = None,
    progress: bool = True,
    extra_config: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Train one denoiser per source and score each; write the table, grid and curves into ``out``.

    Scoring sets: ``sidd_val`` (SIDD validation .mat / PNG folder; per-epoch validation on a subset of
    ``preset.val_images`` x ``preset.val_blocks``, final scoring on all blocks) and/or ``evaluation``
    (a callable returning fresh ``(name, group, noisy, clean)`` pairs; per-epoch validation uses
    ``validation`` if given, else the same pairs). ``sidd_bench`` writes ``SubmitSrgb.csv`` per source.
    Returns the results (also ``results.json``). On a finished run with ``resume`` it only reads them.
    """
    run = RunDir(out)
    device = init_distributed(device)
    if run.finished:
        if resume:
            log.info("%s is finished; nothing to do", run.path)
            return json.loads(run.results_path.read_text(encoding="utf-8"))
        raise ValueError(f"{run.path} already holds a finished run; pass resume=True or another folder")
    _check_new_run(run, sources, resume=resume, scored=sidd_val is not None or evaluation is not None)
    ctx = current_context()
    rank = ctx.rank
    ctx.barrier()  # every rank has checked the folder before rank 0 writes into it
    model_factory = model_factory or (lambda: make_dncnn(preset))
    config = {
        "preset": config_to_dict(preset),
        "sources": {s.name: s.describe for s in sources},
        "sidd_val": str(sidd_val) if sidd_val else "",
        "sidd_bench": str(sidd_bench) if sidd_bench else "",
        **(extra_config or {}),
    }
    if rank == 0:
        run.write_config(config)
    sets = _ScoringSets.build(preset, sidd_val, evaluation, validation, progress=progress)
    rows = []
    for source in sources:
        sub = RunDir(run.path / "sources" / slug(source.name))
        if sub.finished:
            rows.append(json.loads(sub.results_path.read_text(encoding="utf-8")))
            continue
        if rank == 0:
            sub.write_config(
                {"source": source.name, "describe": source.describe, "preset": config_to_dict(preset)}
            )
        t0 = time.perf_counter()
        model = _denoiser(source, sub, preset, model_factory, sets.validate, device=device, progress=progress)
        train_seconds = time.perf_counter() - t0
        if rank != 0:
            ctx.barrier()  # wait while rank 0 scores, so that every rank starts the next source together
            continue
        row = _score_source(model, source, sub, sets, train_seconds, sidd_bench=sidd_bench)
        sub.write_results(row)
        rows.append(row)
        ctx.barrier()
    if rank != 0:
        return {}
    return _write_results(run, preset, rows)


def _check_new_run(run: RunDir, sources: Sequence[TrainSource], *, resume: bool, scored: bool) -> None:
    """Refuse an unfinished run without ``resume``, no or clashing source names, nothing to score on."""
    if not resume and any(run.path.iterdir()):
        existing = [p.name for p in run.path.iterdir()]
        if "sources" in existing or "metrics.jsonl" in existing:
            raise ValueError(f"{run.path} holds an unfinished run; pass resume=True to continue it")
    if not sources:
        raise ValueError("no training sources given")
    names = [s.name for s in sources]
    if len(set(map(slug, names))) != len(names):
        raise ValueError(f"source names must be distinct, got {names}")
    if not scored:
        raise ValueError("nothing to score on: give sidd_val and/or evaluation pairs")


@dataclass(frozen=True)
class _ScoringSets:
    """What every source is scored on: SIDD validation blocks (all of them, and the per-epoch subset)
    and/or held-out pairs (``evaluation``; per epoch ``validation``, else a subset of the same pairs)."""

    preset: BenchPreset
    full_val: SiddValidation | None
    val_subset: SiddValidation | None
    evaluation: Callable[[], Iterable[Pair]] | None
    validation: Callable[[], Iterable[Pair]] | None
    progress: bool

    @classmethod
    def build(
        cls,
        preset: BenchPreset,
        sidd_val: str | os.PathLike | None,
        evaluation: Callable[[], Iterable[Pair]] | None,
        validation: Callable[[], Iterable[Pair]] | None,
        *,
        progress: bool,
    ) -> _ScoringSets:
        full_val = val_subset = None
        if sidd_val is not None:
            # any square block size (the tests use tiny ones)
            full_val = SiddValidation(sidd_val, block_size=None)
            n_img = preset.val_images or len(full_val.images)
            n_blk = preset.val_blocks or len(full_val.blocks)
            val_subset = full_val.subset(images=full_val.images[:n_img], blocks=full_val.blocks[:n_blk])
        return cls(preset, full_val, val_subset, evaluation, validation, progress)

    def validate(self, model: nn.Module) -> dict[str, float]:
        """Per-epoch validation PSNR (no SSIM) on the subsets: ``sidd_psnr``, ``pairs_psnr``, ``psnr``."""
        preset = self.preset
        res: dict[str, float] = {}
        if self.val_subset is not None:
            r = evaluate_sidd_validation(
                model,
                self.val_subset,
                batch_size=preset.eval_batch_size,
                quantize=preset.quantize,
                with_ssim=False,
            )
            res["sidd_psnr"] = r["overall"]["psnr"]
        if self.validation is not None or self.evaluation is not None:
            if self.validation is not None:
                pairs = self.validation()
            else:
                pairs = validation_subset(self.evaluation(), preset)
            r = evaluate_pairs(
                model, pairs, batch_size=preset.eval_batch_size, quantize=preset.quantize, with_ssim=False
            )
            res["pairs_psnr"] = r["overall"]["psnr"]
        res["psnr"] = res.get("sidd_psnr", res.get("pairs_psnr"))
        return res

    def score(self, model: nn.Module) -> tuple[dict[str, Any], tuple[torch.Tensor, ...] | None]:
        """Final scores (a row's ``sidd_val`` and/or ``pairs``) and the first image's example crops."""
        preset, scores, example = self.preset, {}, None
        if self.full_val is not None:
            r = evaluate_sidd_validation(
                model,
                self.full_val,
                batch_size=preset.eval_batch_size,
                quantize=preset.quantize,
                progress=self.progress,
                example_crop=preset.grid_crop,
            )
            scores["sidd_val"] = {"overall": r["overall"], "cameras": r["groups"], "items": score_items(r)}
            example = r.get("example")
        if self.evaluation is not None:
            r = evaluate_pairs(
                model,
                self.evaluation(),
                batch_size=preset.eval_batch_size,
                quantize=preset.quantize,
                progress=self.progress,
                example_crop=preset.grid_crop,
            )
            scores["pairs"] = {"overall": r["overall"], "groups": r["groups"], "items": score_items(r)}
            example = example or r.get("example")
        return scores, example


def _denoiser(
    source: TrainSource,
    sub: RunDir,
    preset: BenchPreset,
    model_factory: Callable[[], nn.Module],
    validate: Callable[[nn.Module], Mapping[str, float]],
    *,
    device: torch.device,
    progress: bool,
) -> nn.Module:
    """The source's ready model, or a fresh one (the same start for every source) trained in ``sub``."""
    if source.model is not None:
        return source.model.to(device).eval()
    if source.batches is None:
        raise ValueError(f"source {source.name!r} has neither batches nor a model")
    model = build_seeded(model_factory, preset.seed).to(device)  # same start for every source
    train_denoiser(
        model,
        source.batches,
        preset,
        sub,
        validate=validate,
        device=device,
        progress=progress,
        desc=source.name,
    )
    return model


def _score_source(
    model: nn.Module,
    source: TrainSource,
    sub: RunDir,
    sets: _ScoringSets,
    train_seconds: float,
    *,
    sidd_bench: str | os.PathLike | None,
) -> dict[str, Any]:
    """The source's row of ``results.json``; writes its example strip, submission and final weights."""
    preset = sets.preset
    row: dict[str, Any] = {
        "source": source.name,
        "describe": source.describe,
        "train_seconds": round(train_seconds, 1),
        "steps": 0 if source.model is not None else preset.epochs * preset.steps_per_epoch,
    }
    t0 = time.perf_counter()
    scores, example = sets.score(model)
    row.update(scores)
    row["eval_seconds"] = round(time.perf_counter() - t0, 1)
    if sidd_bench is not None:
        csv_path = denoise_sidd_benchmark(
            model,
            sidd_bench,
            sub.path / "SubmitSrgb.csv",
            batch_size=preset.eval_batch_size,
            progress=sets.progress,
            block_size=None,
        )
        row["submission"] = str(csv_path)
    if example is not None:
        save_strip(example, sub.path / "example.png")
    if source.model is None:
        save_dncnn(model, sub.path / "denoiser.pth")  # bare state dict of the final weights
    return row


def _write_results(run: RunDir, preset: BenchPreset, rows: list[dict[str, Any]]) -> dict[str, Any]:
    """``results.md``, ``grid.png``, ``curves.png`` and ``results.json`` of the finished run."""
    results: dict[str, Any] = {"preset": preset.preset, "rows": rows}
    atomic_write_text(run.path / "results.md", results_markdown(rows))
    grid = write_grid(run.path, [r["source"] for r in rows])
    if grid is not None:
        results["grid"] = str(grid)
    try:
        results["curves"] = str(plot_curves(run.path, {r["source"]: [run.path] for r in rows}))
    except ImportError as err:  # matplotlib is optional at run time
        log.warning("no curves plot: %s", err)
    run.write_results(results)
    return results
