"""Checking a generated file: structure, metadata that must follow from the recorded settings, and
samples re-made from their recorded source crop and seed (``naflow-aug verify``)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import torch

from naflow_aug.data import hdf5
from naflow_aug.data.images import read_image
from naflow_aug.generate.batches import to_float_bchw
from naflow_aug.generate.noise import NoiseFunction, load_noise
from naflow_aug.images import samples_to_hwc
from naflow_aug.runtime.distributed import rank_device
from naflow_aug.runtime.seeding import sample_seeds


@dataclass
class VerifyReport:
    path: Path
    summary: dict[str, Any]
    problems: list[str]
    regenerated: int = 0
    max_abs_diff: int = 0
    exact: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(
    path: str | os.PathLike,
    *,
    regenerate: int = 0,
    seed: int = 0,
    noise_fn: NoiseFunction | None = None,
    device: str | None = None,
    tolerance: int = 1,
    batch_size: int = 8,
) -> VerifyReport:
    """Check a generated file: counts, completion marker, metadata consistency (indices, seeds derived from
    the recorded global seed, weights, crop boxes, noise mode, model hash) and, with ``regenerate=k``,
    re-make ``k`` random samples (chosen with ``seed``) from their recorded source crop and seed and compare:
    ``clean`` must be equal, ``noisy`` within ``tolerance`` grey levels (0 = byte-exact)."""
    for name, value in (("regenerate", regenerate), ("tolerance", tolerance)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    path = Path(path)
    summary, problems = hdf5.check_structure(path)
    report = VerifyReport(path, summary, problems)
    if problems:
        return report
    attrs = hdf5.read_attrs(path)
    summary["attrs"] = {k: v for k, v in attrs.items() if k not in ("config", "command")}
    n = _check_metadata(path, attrs, problems)
    if regenerate <= 0 or problems:
        return report
    noise_fn = _noise_of_file(attrs, noise_fn, device, problems)
    if noise_fn is not None:
        _regenerate(report, attrs, n, noise_fn, count=regenerate, seed=seed, tolerance=tolerance,
                    batch_size=batch_size)  # fmt: skip
    return report


def _check_metadata(path: Path, attrs: dict[str, Any], problems: list[str]) -> int:
    """The sample count; problems of the per-sample metadata appended."""
    with h5py.File(path, "r") as f:
        n = f["clean"].shape[0]
        seeds = f["meta/seed"][...]
        if not np.array_equal(seeds, sample_seeds(int(attrs["seed"]), np.arange(n))):
            problems.append("meta/seed does not follow from the recorded global seed: samples are misplaced")
        modes = set(f["meta/noise"].asstr()[...].tolist())
        if modes - {attrs.get("noise")}:
            problems.append(
                f"meta/noise holds {sorted(modes)} but the file's noise mode is {attrs.get('noise')!r}"
            )
    flat = sorted(set(hdf5.flat_samples(path, "noisy")) - set(hdf5.flat_samples(path, "clean")))
    if flat:
        problems.append(f"{len(flat)} noisy samples are one flat colour (no noise: a model with NaN or "
                        f"broken weights?), e.g. sample(s) {flat[:5]}")  # fmt: skip
    return n


def _noise_of_file(attrs: dict[str, Any], noise_fn: NoiseFunction | None, device: str | None,
                   problems: list[str]) -> NoiseFunction | None:
    """The given noise function or the file's recorded one, if its classes match the file's (else None,
    with the problem appended)."""
    if noise_fn is None:
        try:
            noise_fn, sha = load_noise(attrs["model"], attrs["noise"], rank_device(device))
        except (ValueError, FileNotFoundError, OSError) as err:
            problems.append(f"cannot load the recorded model {attrs['model']!r} to regenerate: {err}")
            return None
        if attrs.get("model_sha256") and sha and sha != attrs["model_sha256"]:
            problems.append(
                f"model {attrs['model']!r} has SHA-256 {sha}, the file was made with {attrs['model_sha256']}"
            )
            return None
    if list(noise_fn.classes) != list(attrs.get("classes", [])):
        problems.append(
            f"noise function classes {list(noise_fn.classes)} differ from the file's {attrs.get('classes')}"
        )
        return None
    return noise_fn


def _regenerate(report: VerifyReport, attrs: dict[str, Any], n: int, noise_fn: NoiseFunction, *,
                count: int, seed: int, tolerance: int, batch_size: int) -> None:
    """Re-make ``count`` samples picked with ``seed`` and compare them with the stored ones."""
    problems = report.problems
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(n, size=min(count, n), replace=False))
    root = Path(attrs["source_root"])
    max_diff, exact = 0, 0
    with h5py.File(report.path, "r") as f:
        for b0 in range(0, len(picks), batch_size):
            idx = picks[b0 : b0 + batch_size]
            made = _remake(f, idx, root, noise_fn, problems)
            if made is None:
                return
            for i, a, b in zip(idx, made, f["noisy"][idx], strict=True):
                d = int(np.abs(a - b.astype(np.int16)).max())
                max_diff = max(max_diff, d)
                exact += int(d == 0)
                if d > tolerance:
                    problems.append(
                        f"sample {i}: regenerated noisy differs by up to {d} levels (tolerance {tolerance})"
                    )
    report.regenerated, report.max_abs_diff, report.exact = len(picks), max_diff, exact


def _remake(f: h5py.File, idx: np.ndarray, root: Path, noise_fn: NoiseFunction,
            problems: list[str]) -> np.ndarray | None:
    """Samples ``idx`` made again, (b, c, c, 3) int16; their stored clean crops checked against the source.
    None when they cannot be made (a source image is missing, the noise is not finite)."""
    crops = f["meta/crop"][idx]
    sources = f["meta/source"].asstr()[idx]
    references = f["meta/reference"].asstr()[idx]
    labels = [label or None for label in f["meta/label"].asstr()[idx]]
    clean_rows, ref_rows = [], []
    for (t, left, h, w), src, ref in zip(crops, sources, references, strict=True):
        if not (root / src).is_file():
            problems.append(f"source image {root / src} of the file is missing; cannot regenerate")
            return None
        clean_rows.append(read_image(root / src)[t : t + h, left : left + w])
        if noise_fn.needs_reference:
            ref_rows.append(read_image(root / ref)[t : t + h, left : left + w])
    clean = np.stack(clean_rows)
    for i, a, b in zip(idx, clean, f["clean"][idx], strict=True):
        if not np.array_equal(a, b):
            problems.append(f"sample {i}: stored clean crop differs from its source crop")
    reference = to_float_bchw(np.stack(ref_rows), noise_fn.device) if ref_rows else None
    seeds = torch.from_numpy(f["meta/seed"][idx])
    noisy, _ = noise_fn(to_float_bchw(clean, noise_fn.device), reference, seeds, labels)
    if not bool(torch.isfinite(noisy).all()):
        problems.append(f"the regenerated noisy samples {idx.tolist()} hold NaN or Inf values")
        return None
    return samples_to_hwc(noisy).astype(np.int16)
