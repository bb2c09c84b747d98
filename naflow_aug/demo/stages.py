"""The demo's NAFlow stages: training, the profile, noise quality over seeds, the HDF5, figure samples.

Each stage leaves its output in the run directory and, run again on a finished stage, only reads it.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from naflow_aug.demo.data import DemoData, spread
from naflow_aug.demo.sizes import DemoSize
from naflow_aug.runtime import atomic_write_json

__all__ = [
    "aggregate_quality",
    "calibrate_profile",
    "figure_samples",
    "generate_hdf5",
    "mean_sigma",
    "noise_quality_seeds",
    "train_naflow",
]


def train_naflow(
    out: Path, d: DemoData, size: DemoSize, device: str, seed: int, resume: bool, progress: bool
) -> dict[str, Any]:
    """NAFlow trained on the training instances (train's cpu preset with the size's overrides) into
    ``out/naflow``; returns its results."""
    from naflow_aug import train as training

    overrides: dict[str, Any] = {
        "data": str(d.root),
        "split": str(d.split),
        "seed": seed,
        "device": device,
        "steps": size.naflow_steps,
        "model": dict(size.naflow_model),
        "crop_size": size.naflow_crop,
        "batch_size": size.naflow_batch,
        "val_every": size.naflow_val_every,
        "val_max_pairs": size.naflow_val_pairs,
        "val_samples": 1,
        "val_crop": size.eval_crop - size.eval_crop % 8,
        "preload": d.simulated,
        "log_every": max(1, min(25, size.naflow_steps // 10)),
        "checkpoint_every": max(1, min(250, size.naflow_steps // 4)),
    }
    config = training.load_train_config(preset_name="cpu", overrides=overrides)
    run = out / "naflow"
    return training.train(
        config, run, resume=resume and (run / training.CHECKPOINT_NAME).exists(), progress=progress
    )


def calibrate_profile(out: Path, net: Any, calib: list[Any], progress: bool) -> Path:
    """``out/profile.json``: a noise profile calibrated from the calibration pairs."""
    from naflow_aug.noise.profiles import calibrate

    path = out / "profile.json"
    if not path.is_file():
        # the demo's camera is one of the model's own configurations: the mixture (seconds) fits it
        profile = calibrate(
            net, ((p.clean, p.noisy) for p in calib), mode="mixture", files=[p.name for p in calib],
            progress=progress,
        )  # fmt: skip
        profile.save(path)
    return path


def mean_sigma(baselines: Any) -> float:
    """The fitted per-configuration Gaussians' mean std, in 8-bit levels (one decimal)."""
    stds = [baselines[c].gaussian_std for c in baselines.classes]
    return round(255.0 * sum(stds) / len(stds), 1)


def _mean_std(values: list[float]) -> tuple[float, float]:
    v = np.asarray([x for x in values if x is not None and math.isfinite(x)], dtype=np.float64)
    if v.size == 0:
        return math.nan, math.nan
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0


def aggregate_quality(per_seed: list[dict[str, Any]]) -> dict[str, Any]:
    """Noise-quality results of several sampling seeds -> one: KLD / AKLD as mean and std over seeds.

    Rows keep :func:`naflow_aug.evaluate.noise_quality`'s layout; ``kld`` / ``akld`` (overall and per
    configuration) become the means and ``kld_std`` / ``akld_std`` are added. The posterior (it draws
    nothing) is the first seed's.
    """
    first = per_seed[0]
    rows = []
    for i, row in enumerate(first["sources"]):
        runs = [r["sources"][i] for r in per_seed]
        if any(r["source"] != row["source"] for r in runs):
            raise ValueError("the seeds' noise-quality results list different sources")
        out = {**row, "classes": {}}
        for key in ("kld", "akld"):
            out[key], out[f"{key}_std"] = _mean_std([r[key] for r in runs])
        for cls, v in row["classes"].items():
            c = {**v}
            for key in ("kld", "akld"):
                c[key], c[f"{key}_std"] = _mean_std([r["classes"][cls][key] for r in runs])
            out["classes"][cls] = c
        rows.append(out)
    return {**first, "sources": rows, "seeds": len(per_seed)}


def noise_quality_seeds(
    out: Path, test: list[Any], sources: dict[str, Any], net: Any, d: DemoData, size: DemoSize,
    seeds: list[int], progress: bool,
) -> dict[str, Any]:  # fmt: skip
    """``out/noise_quality.json``: KLD / AKLD of every source on the test pairs, once per seed (the seed
    of the sampling generator), aggregated by :func:`aggregate_quality`."""
    from naflow_aug.evaluate import noise_quality

    path = out / "noise_quality.json"
    if path.is_file():
        return json.loads(path.read_text(encoding="utf-8"))
    per_seed = [
        noise_quality(
            test,
            sources,
            model=net,
            samples=size.eval_samples,
            generator=torch.Generator().manual_seed(s),
            only_classes={f"NAFlow profile ({d.calib_class})": [d.calib_class]},
            progress=progress,
        )
        for s in seeds
    ]
    res = {**aggregate_quality(per_seed), "seed_list": list(seeds)}
    atomic_write_json(path, res)
    return res


def generate_hdf5(
    out: Path, d: DemoData, size: DemoSize, model_ref: str, device: str, seed: int, progress: bool
) -> dict[str, Any]:
    """``out/synthetic.h5``: NAS samples of the training crops, each crop's real noisy image the reference."""
    from naflow_aug.generate import GenerateConfig, generate

    crops: dict[str, Any] = (
        {"crops": "grid", "stride": size.gen_stride}
        if d.simulated
        else {"crops": "random", "crops_per_image": size.gen_crops_per_image}
    )
    config = GenerateConfig(
        out=str(out / "synthetic.h5"),
        source=str(d.train_view),
        source_kind="sidd",
        model=model_ref,
        noise="nas",
        crop=size.gen_crop,
        seed=seed,
        part_size=64,
        device=device,
        resume=True,
        progress=progress,
        **crops,
    )
    result = generate(config)
    return {
        "file": str(result.out),
        "samples": result.num_samples,
        "noise": "nas",
        "crop": size.gen_crop,
        "seconds": round(result.seconds, 1),
    }


def _fake(src: Any, p: Any, g: torch.Generator) -> torch.Tensor:
    labels = [p.cls] if p.cls in (getattr(src, "classes", None) or ()) else None
    return src(p.clean[None], reference=p.noisy[None], configs=labels, generator=g)[0][0]


def figure_samples(test: list[Any], sources: dict[str, Any], k: int, seed: int) -> dict[str, Any]:
    """Up to ``k`` held-out pairs (one per configuration first) with a synthetic version per source, and
    the mean noise correlation map of every source over all held-out pairs."""
    from naflow_aug import metrics

    g = torch.Generator().manual_seed(seed + 1)
    examples = []
    for p in spread(test, k):
        fake = {name: _fake(src, p, g) for name, src in sources.items()}
        examples.append({"name": p.name, "cls": p.cls, "clean": p.clean, "noisy": p.noisy, "fake": fake})
    maps: dict[str, torch.Tensor] = {"real": torch.zeros(9, 9, dtype=torch.float64)}
    for p in test:
        maps["real"] += metrics.noise_correlation_map(p.noisy, p.clean, radius=4) / len(test)
        for name, src in sources.items():
            cmap = metrics.noise_correlation_map(_fake(src, p, g).float(), p.clean, radius=4) / len(test)
            maps[name] = maps.get(name, torch.zeros_like(cmap)) + cmap
    return {"examples": examples, "correlation": maps}
