"""Training sources: one row of the comparison each (a name and its batches, or a ready denoiser), made
from generated HDF5 files or from noise-source spellings over a clean (or paired) dataset."""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from tqdm.auto import tqdm

from naflow_aug.bench.batches import Batch, PatchBatches, to_image
from naflow_aug.bench.presets import BenchPreset
from naflow_aug.data.hdf5 import HDF5PairDataset
from naflow_aug.noise.baselines import fit_baselines
from naflow_aug.noise.registry import NoiseSpec, make_noise_source, parse_noise_spec


@dataclass
class TrainSource:
    """One row of the comparison: a name and the batches to train on (a :class:`PatchBatches`), or a
    ready ``model`` to score without training."""

    name: str
    batches: Callable[[torch.Generator], Batch] | None
    describe: str = ""
    #: a trained denoiser to score as it is (e.g. a published checkpoint): no training
    model: nn.Module | None = None


def slug(name: str) -> str:
    """A file-system-safe folder name for a noise-source spelling (``gaussian:0.05`` -> ``gaussian-0.05``)."""
    s = re.sub(r"[^A-Za-z0-9._-]+", "-", name).strip("-")
    return s or "source"


def hdf5_batches(
    paths: str | os.PathLike | Sequence[str | os.PathLike], preset: BenchPreset, *, device: Any = None
) -> PatchBatches:
    """Batches of stored (clean, noisy) pairs from generated HDF5 files (``naflow-aug generate``)."""
    return PatchBatches(
        HDF5PairDataset(paths), patch_size=preset.patch_size, batch_size=preset.batch_size, device=device
    )


def fit_dataset_baselines(dataset: Any, *, progress: bool = False) -> Any:
    """Fit the per-configuration Gaussian / Poisson-Gaussian baselines on a paired dataset's items
    (``'clean'``, ``'noisy'``, ``'cls'``): the baselines see the training pairs only."""

    def pairs() -> Iterator[tuple[torch.Tensor, torch.Tensor, str]]:
        for i in tqdm(range(len(dataset)), desc="fit baselines", disable=not progress, leave=False):
            item = dataset[i]
            name = next((item[k] for k in ("cls", "config", "label") if isinstance(item.get(k), str)), None)
            if name is None or item.get("noisy") is None:
                raise ValueError("fitting baselines needs items with 'clean', 'noisy' and a 'cls' name")
            yield to_image(item["clean"]), to_image(item["noisy"]), name

    return fit_baselines(pairs())


def noise_sources(
    specs: Sequence[str | NoiseSpec],
    dataset: Any,
    preset: BenchPreset,
    *,
    model: Any = None,
    baselines: Any = None,
    device: Any = None,
    progress: bool = False,
) -> list[TrainSource]:
    """One :class:`TrainSource` per noise-source spelling over a clean (or paired) dataset.

    ``real``, ``nas`` need the dataset's real noisy images; ``gaussian-per-config`` and
    ``poisson-gaussian`` without a file argument are fitted here on the dataset's pairs (once).
    ``model``: the NAFlow (bundled name, path or module) for the model sources.
    """

    out = []
    for spec in specs:
        parsed = parse_noise_spec(spec)
        if parsed.needs_fitted_baselines and baselines is None:
            baselines = fit_dataset_baselines(dataset, progress=progress)
        source = make_noise_source(parsed, model, baselines=baselines, device=device)
        batches = PatchBatches(
            dataset, patch_size=preset.patch_size, batch_size=preset.batch_size, noise=source, device=device
        )
        out.append(TrainSource(str(spec), batches, describe=repr(source)))
    return out

