"""What ``naflow-aug bench`` does: build the training sources and the scoring sets from paths (HDF5 files,
a clean or SIDD folder with noise-source spellings, denoiser checkpoints, paired folders), then run."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import torch
from torch import nn

from naflow_aug.bench.batches import Pair
from naflow_aug.bench.datasets import CleanFolder, load_pairs, paired_folder_pairs, sidd_split_data
from naflow_aug.bench.presets import BenchPreset, load_preset
from naflow_aug.bench.runner import run_benchmark
from naflow_aug.bench.sources import TrainSource, fit_dataset_baselines, hdf5_batches, noise_sources
from naflow_aug.data.sidd import looks_like_sidd_medium
from naflow_aug.denoisers.dncnn import load_dncnn
from naflow_aug.noise.baselines import Baselines
from naflow_aug.noise.registry import parse_noise_spec
from naflow_aug.runs import RunDir
from naflow_aug.runtime.distributed import init_distributed

Evaluation = Callable[[], Iterator[Pair]]


def bench_from_paths(
    out: str | os.PathLike,
    *,
    train: Sequence[str | os.PathLike] = (),
    clean: str | os.PathLike | None = None,
    noise: Sequence[str] = (),
    split: str | os.PathLike | None = None,
    denoisers: Sequence[str | os.PathLike] = (),
    sidd_val: str | os.PathLike | None = None,
    pairs: str | os.PathLike | None = None,
    sidd_bench: str | os.PathLike | None = None,
    preset: str | os.PathLike | BenchPreset = "cpu",
    model: Any = None,
    baselines: str | os.PathLike | None = None,
    resume: bool = False,
    device: str | torch.device | None = None,
    progress: bool = True,
    **overrides: Any,
) -> dict[str, Any]:
    """What ``naflow-aug bench`` does: build the training sources and scoring sets from paths, then
    :func:`run_benchmark`. ``train``: HDF5 files (one row); ``clean`` + ``noise``: one row per noise
    source (a SIDD-Medium-layout folder also gives real noisy references: ``real``, ``nas``, fitted
    baselines; a plain folder gives clean images only); ``denoisers``: checkpoints scored as they are
    (``'identity'``: the noisy input, a reference row).
    ``overrides`` change preset fields (``epochs=``, ``steps_per_epoch=``, ``seed=``).
    """
    run = RunDir(out)
    if resume and run.finished:
        return run_benchmark([], out, resume=True)
    preset = load_preset(preset, **overrides)
    device = init_distributed(device)
    sources: list[TrainSource] = []
    evaluation = None
    if train:
        paths = [str(p) for p in train]
        sources.append(
            TrainSource(
                "hdf5:" + ",".join(Path(p).name for p in paths),
                hdf5_batches(paths, preset, device=device),
                describe=" ".join(paths),
            )
        )
    if clean is not None:
        added, evaluation = _clean_sources(
            Path(clean),
            noise,
            split,
            run,
            preset,
            model=model,
            baselines=baselines,
            device=device,
            progress=progress,
        )
        sources += added
    elif noise:
        raise ValueError("--noise needs --clean DIR (the clean images the noise is added to)")
    sources += [_checkpoint_source(ckpt, device) for ckpt in denoisers]
    if not sources:
        raise ValueError("nothing to benchmark: give --train FILE.h5, --clean DIR --noise SRC, or --denoiser")
    if pairs is not None:
        evaluation = _with_paired_folder(evaluation, paired_folder_pairs(pairs))
    return run_benchmark(
        sources,
        out,
        preset=preset,
        evaluation=evaluation,
        sidd_val=sidd_val,
        sidd_bench=sidd_bench,
        resume=resume,
        device=device,
        progress=progress,
        extra_config={"split": str(split or ""), "model": str(model or ""), "clean": str(clean or "")},
    )


def _clean_sources(
    root: Path,
    noise: Sequence[str],
    split: str | os.PathLike | None,
    run: RunDir,
    preset: BenchPreset,
    *,
    model: Any,
    baselines: str | os.PathLike | None,
    device: torch.device,
    progress: bool,
) -> tuple[list[TrainSource], Evaluation | None]:
    """One source per noise spelling over the clean (or SIDD) folder ``root``, and a SIDD split's
    held-out pairs. Baselines fitted here (on the training pairs) are saved in ``run``."""
    if not noise:
        raise ValueError("--clean needs at least one --noise source (e.g. --noise nas --noise real)")
    if not root.is_dir():
        raise ValueError(f"clean folder {root} does not exist")
    evaluation = None
    if looks_like_sidd_medium(root):
        dataset, evaluation = sidd_split_data(root, split, progress=progress)
    elif split is not None:
        raise ValueError(f"--split needs a SIDD-Medium-layout folder; {root} is a plain image folder")
    else:
        dataset = CleanFolder(root)
    specs = [parse_noise_spec(n) for n in noise]
    fitted = Baselines.load(baselines) if baselines is not None else None
    if fitted is None and any(spec.info.fitted for spec in specs):
        fitted = fit_dataset_baselines(dataset, progress=progress)
        fitted.save(run.path / "baselines.json")
    sources = noise_sources(specs, dataset, preset, model=model, baselines=fitted, device=device)
    return sources, evaluation


def _checkpoint_source(ckpt: str | os.PathLike, device: torch.device) -> TrainSource:
    """A denoiser checkpoint scored as it is (``'identity'``: the noisy input, the reference row)."""
    if str(ckpt) == "identity":
        return TrainSource("noisy input", None, describe="no denoising", model=nn.Identity())
    return TrainSource(
        f"checkpoint:{Path(ckpt).name}", None, describe=str(ckpt), model=load_dncnn(ckpt, device)
    )


def _with_paired_folder(held: Evaluation | None, listed: list[tuple[str, str, Path, Path]]) -> Evaluation:
    """The scoring pairs: a split's held-out pairs (if any), then the paired folder's."""

    def evaluation() -> Iterator[Pair]:
        if held is not None:
            yield from held()
        yield from load_pairs(listed)

    return evaluation
