"""Denoiser benchmark harness: train a denoiser on (synthetic or real) pairs, score it on real noisy images.

The denoiser is any ``nn.Module`` mapping ``(B, 3, H, W)`` noisy float in [0, 1] to clean (DnCNN by
default). Training batches come from a :class:`PatchBatches` sampler over a torch ``Dataset`` of dicts
(``'clean'`` and, for stored pairs such as HDF5 files, ``'noisy'``), optionally with an on-the-fly noise
source ``source(clean, reference=..., labels=..., generator=...) -> (noisy, params)`` (the noise-source
abstraction of :mod:`naflow_aug.noise`). Scoring: PSNR / SSIM (:mod:`naflow_aug.metrics`) of the
denoised image, clamped to [0, 1] and rounded to 8 bits as the official test script does, on SIDD
validation blocks (per camera and overall) or on any list of pairs.

A run directory holds ``config.toml``, ``metrics.jsonl``, per-source sub-runs (``sources/<name>/`` with
``checkpoint_G3_<epoch>.pth`` files) and at the end ``results.json``, ``results.md``, ``grid.png`` and
``curves.png``. ``resume=True`` continues from the last checkpoint; on a finished run it does nothing.
:func:`run_seeds` repeats a benchmark over seeds and compares its sources with paired bootstrap intervals.

Modules: ``presets`` (:class:`BenchPreset`), ``batches`` (:class:`PatchBatches`, image conversions),
``sources`` (:class:`TrainSource` from HDF5 files or noise spellings), ``datasets`` (folders, SIDD
splits and paired folders read from disk), ``training`` (:func:`train_denoiser`), ``scoring``
(:func:`evaluate_pairs`, :func:`evaluate_sidd_validation`), ``submission`` (``SubmitSrgb.csv``),
``runner`` (:func:`run_benchmark`), ``from_paths`` (:func:`bench_from_paths`, the CLI), ``reports``
(Markdown tables), ``figures`` (grid and curves), ``seeds`` (``--seeds`` aggregation), ``spellings``
(the noise kinds the bench reads). Its torchrun set-up and per-epoch generators are the jobs' runtime
(:mod:`naflow_aug.runtime`), shared with ``generate`` and ``train``.
"""

from naflow_aug.bench.batches import Batch, NoiseSource, Pair, PatchBatches, to_batch, to_image
from naflow_aug.bench.datasets import (
    CleanFolder,
    SiddPairsInMemory,
    load_pairs,
    paired_folder_pairs,
    sidd_split_data,
)
from naflow_aug.bench.figures import plot_curves, write_grid
from naflow_aug.bench.from_paths import bench_from_paths
from naflow_aug.bench.presets import CPU, PAPER, PRESETS, BenchPreset, load_preset
from naflow_aug.bench.reports import results_markdown, seeds_markdown
from naflow_aug.bench.runner import run_benchmark
from naflow_aug.bench.scoring import (
    denoise,
    evaluate_pairs,
    evaluate_sidd_validation,
    quantize_float,
    sidd_validation_pairs,
)
from naflow_aug.bench.seeds import aggregate_seeds, combine_runs, paired_bootstrap, parse_seeds, run_seeds
from naflow_aug.bench.sources import TrainSource, fit_dataset_baselines, hdf5_batches, noise_sources, slug
from naflow_aug.bench.spellings import BASELINE_KINDS, is_baseline
from naflow_aug.bench.submission import denoise_sidd_benchmark
from naflow_aug.bench.training import make_dncnn, train_denoiser
from naflow_aug.runtime.distributed import init_distributed

__all__ = [
    "BASELINE_KINDS",
    "CPU",
    "PAPER",
    "PRESETS",
    "Batch",
    "BenchPreset",
    "CleanFolder",
    "NoiseSource",
    "Pair",
    "PatchBatches",
    "SiddPairsInMemory",
    "TrainSource",
    "aggregate_seeds",
    "bench_from_paths",
    "combine_runs",
    "denoise",
    "denoise_sidd_benchmark",
    "evaluate_pairs",
    "evaluate_sidd_validation",
    "fit_dataset_baselines",
    "hdf5_batches",
    "init_distributed",
    "is_baseline",
    "load_pairs",
    "load_preset",
    "make_dncnn",
    "noise_sources",
    "paired_bootstrap",
    "paired_folder_pairs",
    "parse_seeds",
    "plot_curves",
    "quantize_float",
    "results_markdown",
    "run_benchmark",
    "run_seeds",
    "seeds_markdown",
    "sidd_split_data",
    "sidd_validation_pairs",
    "slug",
    "to_batch",
    "to_image",
    "train_denoiser",
    "write_grid",
]
