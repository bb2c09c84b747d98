"""The main job: from clean images to a scored denoiser, with a report (``naflow-aug demo``).

``run_demo(out)`` wires the library's jobs together in one run directory:

1. data: the simulated camera (:mod:`naflow_aug.data.simcam`, SIDD-Medium layout) or a real
   SIDD-Medium folder, split by scene instance into training, held-out test and calibration instances
   (``data/split.toml``; ``data/train`` is a view of the training instances);
2. NAFlow trained on the training instances (:func:`naflow_aug.train.train`, cpu preset), or a given model;
3. the fitted baselines (Gaussian / Poisson-Gaussian per configuration) of the training pairs;
4. a noise profile calibrated from the calibration pairs of one camera (:mod:`naflow_aug.noise.profiles`);
5. noise quality on the held-out pairs (:mod:`naflow_aug.evaluate`): KLD / AKLD, posterior accuracy;
6. an HDF5 of synthetic NAS pairs of the training images (:func:`naflow_aug.generate.generate`);
7. one DnCNN per noise source, scored on the held-out pairs (:func:`naflow_aug.bench.run_benchmark`);
8. the report: ``report.html`` with figures in ``figures/``, ``report.md``, ``results.json``.

Every stage leaves its output in the run directory; ``resume=True`` skips the finished stages and
continues the interrupted one (NAFlow training, HDF5 generation and denoiser training resume exactly).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch

from naflow_aug.data.pairs import Pair, select_instances
from naflow_aug.images import round_nearest
from naflow_aug.runs import atomic_write_json, atomic_write_text, dumps_toml

log = logging.getLogger(__name__)

__all__ = ["SIZES", "DemoSize", "run_demo"]


@dataclass(frozen=True)
class DemoSize:
    """How big a demo run is. ``default``: the full run (its time: README); ``tiny``: a smoke test of every
    stage."""

    name: str
    # simulated camera
    scenes_per_config: int
    size_range: tuple[int, int]
    shots: int
    heldout_scenes: int  # scenes whose instances are held out (never trained on)
    # real data (--data): fraction of scenes held out, centre crop of held-out images (0: whole)
    heldout_fraction: float = 0.15
    eval_crop: int = 0
    # NAFlow training (overrides of the cpu preset)
    naflow_steps: int = 1500
    naflow_model: dict[str, Any] = field(default_factory=dict)  # NAFlowConfig fields (empty: published)
    naflow_crop: int = 64
    naflow_batch: int = 8
    naflow_val_every: int = 500
    naflow_val_pairs: int = 12
    # noise quality
    eval_samples: int = 1
    figure_pairs: int = 6
    # HDF5 generation (NAS from each training crop's own real noisy image)
    gen_crop: int = 96
    gen_stride: int = 64
    gen_crops_per_image: int = 2  # real data: random crops per image
    # real data: the training pairs of the baselines and denoisers are random crops, decoded once
    train_crop: int = 256
    train_crops_per_image: int = 4
    # denoiser bench (overrides of bench's cpu preset)
    bench: dict[str, Any] = field(default_factory=dict)
    bench_val_pairs: int = 12  # held-out pairs scored after every epoch (the curves), all configurations


SIZES: dict[str, DemoSize] = {
    "default": DemoSize(
        name="default",
        scenes_per_config=10,
        size_range=(128, 192),
        shots=2,
        heldout_scenes=3,
        eval_crop=512,
        # 3000 steps: NAS-trained DnCNN 30.47 dB vs 29.08 dB at 1200 steps; the run stays near 9 minutes
        naflow_steps=3000,
        naflow_model={"hidden_channels": 32, "encoder_channels": 64},
        # pinned here (the small DnCNN, not the bench cpu preset's depth-8 one and its length) so that the
        # run stays within 15 minutes
        bench={"depth": 5, "width": 16, "epochs": 8, "steps_per_epoch": 75, "lr_milestones": (6,)},
    ),
    "tiny": DemoSize(
        name="tiny",
        scenes_per_config=4,
        size_range=(64, 64),
        shots=1,
        heldout_scenes=2,
        eval_crop=128,
        naflow_steps=20,
        naflow_model={"hidden_channels": 8, "encoder_channels": 8, "conditional_steps": 1},
        naflow_crop=32,
        naflow_batch=4,
        naflow_val_every=0,
        naflow_val_pairs=3,
        figure_pairs=2,
        gen_crop=32,
        gen_stride=32,
        gen_crops_per_image=2,
        bench={
            "depth": 3,
            "width": 8,
            "patch_size": 32,
            "batch_size": 4,
            "epochs": 2,
            "steps_per_epoch": 3,
            "lr_milestones": (),
            "grid_crop": 48,
        },
        bench_val_pairs=3,
    ),
}


def _size(size: str | DemoSize) -> DemoSize:
    if isinstance(size, DemoSize):
        return size
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    return SIZES[size]


def _iso(cls: str) -> int:
    tail = cls.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else 0


# ------------------------------------------------------------------------------------------------ data


@dataclass
class _Data:
    root: Path  # the SIDD-layout folder holding every pair
    split: Path  # split TOML: train = training instances, val = held-out test instances
    train_view: Path  # SIDD-layout folder of links to the training instance folders
    pairs: list[Pair]  # every pair
    train_ids: list[str]
    test_ids: list[str]
    calib_ids: list[str]
    calib_class: str
    simulated: bool

    def select(self, ids: list[str]) -> list[Pair]:
        return select_instances(self.pairs, ids)


def _split_instances(
    pairs: list[Any], heldout_scenes: list[str]
) -> tuple[list[str], list[str], list[str], str]:
    """(train, test, calibration instance ids, calibration class): held-out scenes' instances are split
    into calibration (the first instance of the noisiest held-out camera that has two or more) and test."""
    held = sorted({p.instance for p in pairs if p.sidd.scene in set(heldout_scenes)})
    train = sorted({p.instance for p in pairs} - set(held))
    by_class: dict[str, list[str]] = {}
    for p in pairs:
        if p.instance in held and p.instance not in by_class.get(p.cls, []):
            by_class.setdefault(p.cls, []).append(p.instance)
    candidates = [c for c, ids in by_class.items() if len(ids) >= 2] or list(by_class)
    calib_class = max(candidates, key=lambda c: (_iso(c), c))
    calib = sorted(by_class[calib_class])[:1]
    test = [i for i in held if i not in set(calib)]
    if not train or not test:
        raise ValueError(f"the split left {len(train)} training and {len(test)} test instances; need both")
    return train, test, calib, calib_class


def _link_view(view: Path, folders: list[Path]) -> None:
    data = view / "Data"
    data.mkdir(parents=True, exist_ok=True)
    for folder in folders:
        link = data / folder.name
        if not link.exists():
            os.symlink(folder.resolve(), link, target_is_directory=True)


def _prepare_data(
    out: Path, data: str | os.PathLike | None, size: DemoSize, seed: int, progress: bool
) -> _Data:
    from naflow_aug.data import simcam
    from naflow_aug.data.sidd import scan_sidd_medium

    ddir = out / "data"
    marker = ddir / "data.json"
    simulated = data is None
    if simulated:
        root = ddir / "sim"
        if not marker.is_file():
            if ddir.exists():
                shutil.rmtree(ddir)  # an interrupted simulation: cheap to redo
            threads = torch.get_num_threads()
            torch.set_num_threads(1)  # many small tensor ops: threads only contend
            try:
                simcam.write_simulated_sidd(
                    root,
                    seed=seed,
                    scenes_per_config=size.scenes_per_config,
                    size_range=size.size_range,
                    shots=size.shots,
                    progress=progress,
                )
            finally:
                torch.set_num_threads(threads)
    else:
        root = Path(data)
        if not root.is_dir():
            raise ValueError(
                f"data must be a SIDD-Medium folder (Data/<instance folders>), got {str(data)!r}"
            )
    pairs = list(scan_sidd_medium(root, progress=progress))
    scenes = sorted({p.sidd.scene for p in pairs})
    if simulated:
        held_scenes = scenes[-size.heldout_scenes :]
    else:
        n = max(1, round(len(scenes) * size.heldout_fraction))
        order = torch.randperm(len(scenes), generator=torch.Generator().manual_seed(seed)).tolist()
        held_scenes = sorted(scenes[i] for i in order[:n])
    train_ids, test_ids, calib_ids, calib_class = _split_instances(pairs, held_scenes)
    split = ddir / "split.toml"
    view = ddir / "train"
    if not marker.is_file():
        ddir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(
            split,
            dumps_toml(
                {
                    "name": "demo",
                    "description": f"demo split: scenes {held_scenes} held out; calibration {calib_ids}",
                    "dataset": str(root),
                    "train": train_ids,
                    "val": test_ids,
                }
            ),
        )
        folders = sorted({p.clean_path.parent for p in pairs if p.instance in set(train_ids)})
        if view.exists():
            shutil.rmtree(view)
        _link_view(view, folders)
        atomic_write_json(
            marker,
            {
                "root": str(root),
                "simulated": simulated,
                "heldout_scenes": held_scenes,
                "train": train_ids,
                "test": test_ids,
                "calibration": calib_ids,
                "calibration_class": calib_class,
            },
        )
    log.info(
        "data: %d pairs, %d training / %d test / %d calibration instances (calibration camera %s)",
        len(pairs),
        len(train_ids),
        len(test_ids),
        len(calib_ids),
        calib_class,
    )
    return _Data(root, split, view, pairs, train_ids, test_ids, calib_ids, calib_class, simulated)


def _read_pairs(pairs: list[Any], crop: int, multiple: int = 8) -> list[Any]:
    from naflow_aug.data.images import load_image
    from naflow_aug.evaluate import HeldOutPair, trim_to_multiple

    out = []
    for p in pairs:
        clean = trim_to_multiple(load_image(p.clean_path), multiple, crop)
        noisy = trim_to_multiple(load_image(p.noisy_path), multiple, crop)
        out.append(HeldOutPair(p.name, p.cls, clean, noisy))
    return out


def _spread(pairs: list[Any], k: int) -> list[Any]:
    """Up to ``k`` pairs taken round-robin over their configurations (each configuration's first, then
    second, ...), so that a small subset covers every configuration."""
    by_class: dict[str, list[Any]] = {}
    for p in pairs:
        by_class.setdefault(p.cls, []).append(p)
    out: list[Any] = []
    for i in range(max((len(v) for v in by_class.values()), default=0)):
        out += [v[i] for _, v in sorted(by_class.items()) if i < len(v)]
    return out[:k]


def _training_pairs(d: _Data, size: DemoSize, seed: int, progress: bool) -> Any:
    """The training pairs the baselines are fitted on and the denoisers train on: the whole (small)
    simulated images, or ``train_crops_per_image`` random crops of each real image, decoded once."""
    from tqdm.auto import tqdm

    from naflow_aug.data.sidd import SiddMediumDataset

    pairs = d.select(d.train_ids)
    if d.simulated:
        return SiddMediumDataset(pairs=pairs, augment=False, preload=True, progress=progress)
    ds = SiddMediumDataset(
        pairs=pairs, crop_size=size.train_crop, augment=False, generator=torch.Generator().manual_seed(seed)
    )
    items = []
    for i in tqdm(range(len(ds)), desc="training crops", unit="image", disable=not progress, leave=False):
        for _ in range(size.train_crops_per_image):
            it = ds[i]
            items.append(
                {"clean": round_nearest(it["clean"]), "noisy": round_nearest(it["noisy"]), "cls": it["cls"]}
            )
    return items


# ---------------------------------------------------------------------------------------------- stages


class _Timer:
    def __init__(self, path: Path):
        self.path = path
        self.times: dict[str, float] = json.loads(path.read_text()) if path.is_file() else {}

    def run(self, name: str, fn: Callable[[], Any]) -> Any:
        log.info("demo stage: %s", name)
        t0 = time.perf_counter()
        result = fn()
        self.times[name] = self.times.get(name, 0.0) + time.perf_counter() - t0
        atomic_write_json(self.path, self.times)
        return result


def _train_naflow(
    out: Path, d: _Data, size: DemoSize, device: str, seed: int, resume: bool, progress: bool
) -> dict[str, Any]:
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


def _calibrate(out: Path, net: Any, calib: list[Any], progress: bool) -> Path:
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


def _generate(
    out: Path, d: _Data, size: DemoSize, model_ref: str, device: str, seed: int, progress: bool
) -> dict[str, Any]:
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


def _sigma(baselines: Any) -> float:
    stds = [baselines[c].gaussian_std for c in baselines.classes]
    return round(255.0 * sum(stds) / len(stds), 1)


def _bench(
    out: Path,
    d: _Data,
    size: DemoSize,
    net: Any,
    baselines: Any,
    profile: Path,
    h5: Path,
    train_ds: Any,
    test: list[Any],
    device: str,
    seed: int,
    resume: bool,
    progress: bool,
) -> dict[str, Any]:
    from torch import nn

    from naflow_aug import bench

    preset = bench.load_preset("cpu", seed=seed, **size.bench)
    sigma = _sigma(baselines)
    specs = ["real", f"profile:{profile}", "gaussian-per-config", "poisson-gaussian", f"gaussian:{sigma}"]
    names = [
        "real pairs",
        f"NAFlow profile ({d.calib_class})",
        "gaussian-per-config",
        "poisson-gaussian",
        f"gaussian:{sigma}",
    ]
    on_the_fly = bench.noise_sources(
        specs, train_ds, preset, model=net, baselines=baselines, device=device, progress=progress
    )
    for src, name in zip(on_the_fly, names, strict=True):
        src.name = name
    sources = [
        bench.TrainSource(
            "noisy input", None, describe="no denoiser: the noisy input scored as it is", model=nn.Identity()
        ),
        bench.TrainSource(
            "NAFlow NAS (HDF5)",
            bench.hdf5_batches([str(h5)], preset, device=device),
            describe=f"{h5.name}: NAS samples of the training crops",
        ),
        *on_the_fly,
    ]

    def pairs(items: list[Any]) -> Callable[[], Iterator[Any]]:
        return lambda: ((p.name, p.cls, p.noisy, p.clean) for p in items)

    return bench.run_benchmark(
        sources,
        out / "bench",
        preset=preset,
        evaluation=pairs(test),
        validation=pairs(_spread(test, size.bench_val_pairs)),
        resume=resume,
        device=device,
        progress=progress,
        extra_config={"split": str(d.split), "data": str(d.root)},
    )


def _figure_samples(net: Any, test: list[Any], sources: dict[str, Any], k: int, seed: int) -> dict[str, Any]:
    """Up to ``k`` held-out pairs (one per configuration first) with a synthetic version per source, and
    the mean noise correlation map of every source over all held-out pairs."""
    from naflow_aug import metrics

    chosen = _spread(test, k)
    g = torch.Generator().manual_seed(seed + 1)
    examples = []
    for p in chosen:
        fake = {}
        for name, src in sources.items():
            labels = [p.cls] if p.cls in (getattr(src, "classes", None) or ()) else None
            fake[name] = src(p.clean[None], reference=p.noisy[None], configs=labels, generator=g)[0][0]
        examples.append({"name": p.name, "cls": p.cls, "clean": p.clean, "noisy": p.noisy, "fake": fake})
    maps: dict[str, torch.Tensor] = {"real": torch.zeros(9, 9, dtype=torch.float64)}
    for p in test:
        maps["real"] += metrics.noise_correlation_map(p.noisy, p.clean, radius=4) / len(test)
        for name, src in sources.items():
            labels = [p.cls] if p.cls in (getattr(src, "classes", None) or ()) else None
            fake = src(p.clean[None], reference=p.noisy[None], configs=labels, generator=g)[0][0]
            cmap = metrics.noise_correlation_map(fake.float(), p.clean, radius=4) / len(test)
            maps[name] = maps.get(name, torch.zeros_like(cmap)) + cmap
    return {"examples": examples, "correlation": maps}


# ------------------------------------------------------------------------------------------------ main


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
) -> dict[str, Any]:
    """Run the main job into the run directory ``out`` (see the module doc); returns ``results.json``'s dict.

    ``data``: a SIDD-Medium folder to use instead of the simulated camera. ``model``: a bundled model name
    or a checkpoint path to use instead of training NAFlow. ``size``: ``"default"`` or ``"tiny"``.
    ``resume``: continue (or, when finished, only re-read) the run in ``out``; without it ``out`` must be
    new or empty. ``threads``: torch CPU threads during the run, restored afterwards (0: leave as is);
    1 is the default: on a busy machine more threads than free cores slow the NAFlow step down (README).
    """
    if not isinstance(threads, int) or threads < 0:
        raise ValueError(f"threads must be an integer >= 0, got {threads!r}")
    before = torch.get_num_threads()
    if threads:
        torch.set_num_threads(threads)
    try:
        return _run_demo(
            out, data=data, model=model, device=device, size=size, progress=progress, resume=resume, seed=seed
        )
    finally:
        torch.set_num_threads(before)


def _run_demo(
    out: str | os.PathLike,
    *,
    data: str | os.PathLike | None,
    model: str | os.PathLike | None,
    device: str,
    size: str | DemoSize,
    progress: bool,
    resume: bool,
    seed: int,
) -> dict[str, Any]:
    import naflow_aug
    from naflow_aug import bench, report
    from naflow_aug.evaluate import TRUE_CONFIG, noise_quality
    from naflow_aug.noise.baselines import Baselines
    from naflow_aug.noise.registry import make_noise_source

    spec = _size(size)
    out = Path(out)
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
    settings = {
        "data": str(data or ""),
        "model": str(model or ""),
        "device": device,
        "size": spec.name,
        "seed": seed,
    }
    settings_path = out / "demo.json"
    if settings_path.is_file():
        before = json.loads(settings_path.read_text(encoding="utf-8"))
        changed = [k for k in settings if k != "device" and before.get(k) != settings[k]]
        if changed:
            raise ValueError(
                f"cannot resume {out} with different settings: "
                + "; ".join(f"{k} {before.get(k)!r} -> {settings[k]!r}" for k in changed)
            )
    atomic_write_json(settings_path, {**settings, "size_settings": asdict(spec)})
    timer = _Timer(out / "timings.json")
    t_start = time.perf_counter()

    d = timer.run("data", lambda: _prepare_data(out, data, spec, seed, progress))
    if model is None:
        naflow_results = timer.run(
            "train NAFlow", lambda: _train_naflow(out, d, spec, device, seed, resume, progress)
        )
        model_ref = str(out / "naflow" / "model.pt")
    else:
        naflow_results = None
        model_ref = str(model)
    net = naflow_aug.load(model_ref, device=device)
    unknown = sorted({p.cls for p in d.pairs} - set(net.classes))
    if unknown:
        log.warning(
            "the model does not know the data's configurations %s: no true-configuration scores or "
            "posterior accuracy for them",
            unknown,
        )

    test = _read_pairs(d.select(d.test_ids), spec.eval_crop, net.size_multiple)
    calib = _read_pairs(d.select(d.calib_ids), spec.eval_crop, net.size_multiple)

    train_ds = timer.run("read training pairs", lambda: _training_pairs(d, spec, seed, progress))

    def fit_baselines() -> Baselines:
        path = out / "baselines.json"
        if path.is_file():
            return Baselines.load(path)
        fitted = bench.fit_dataset_baselines(train_ds, progress=progress)
        fitted.save(path)
        return fitted

    baselines = timer.run("fit baselines", fit_baselines)
    profile = timer.run("calibrate profile", lambda: _calibrate(out, net, calib, progress))
    sigma = _sigma(baselines)
    sources: dict[str, Any] = {
        "NAFlow NAS": make_noise_source("nas", net, device=device),
        "NAFlow true config": TRUE_CONFIG,
        f"NAFlow profile ({d.calib_class})": make_noise_source(f"profile:{profile}", net, device=device),
        "gaussian-per-config": make_noise_source("gaussian-per-config", baselines=baselines),
        "poisson-gaussian": make_noise_source("poisson-gaussian", baselines=baselines),
        f"gaussian:{sigma}": make_noise_source(f"gaussian:{sigma}"),
    }

    def quality() -> dict[str, Any]:
        path = out / "noise_quality.json"
        if path.is_file():
            return json.loads(path.read_text(encoding="utf-8"))
        res = noise_quality(
            test,
            sources,
            model=net,
            samples=spec.eval_samples,
            generator=torch.Generator().manual_seed(seed),
            only_classes={f"NAFlow profile ({d.calib_class})": [d.calib_class]},
            progress=progress,
        )
        atomic_write_json(path, res)
        return res

    nq = timer.run("noise quality", quality)
    gen = timer.run("generate HDF5", lambda: _generate(out, d, spec, model_ref, device, seed, progress))
    bench_results = timer.run(
        "denoisers",
        lambda: _bench(
            out,
            d,
            spec,
            net,
            baselines,
            profile,
            Path(gen["file"]),
            train_ds,
            test,
            device,
            seed,
            resume,
            progress,
        ),
    )

    def figures() -> list[dict[str, str]]:
        fig_sources = {
            k: v for k, v in sources.items() if k in ("NAFlow NAS", "gaussian-per-config", "poisson-gaussian")
        }
        samples = _figure_samples(net, test, fig_sources, spec.figure_pairs, seed)
        return report.write_figures(
            out,
            samples=samples,
            naflow_run=out / "naflow" if model is None else None,
            bench_run=out / "bench",
        )

    figs = timer.run("figures", figures)
    results = {
        "settings": settings,
        "size_settings": asdict(spec),
        "data": {
            "root": str(d.root),
            "simulated": d.simulated,
            "pairs": len(d.pairs),
            "train_instances": len(d.train_ids),
            "test_instances": len(d.test_ids),
            "test_pairs": len(test),
            "calibration_instances": d.calib_ids,
            "calibration_pairs": len(calib),
            "calibration_class": d.calib_class,
            "classes": sorted({p.cls for p in d.pairs}),
        },
        "model": {
            "ref": model_ref,
            "classes": list(net.classes),
            "trained_here": model is None,
            "sha256": getattr(net, "checkpoint_sha256", ""),
        },
        "naflow_training": naflow_results,
        "baselines": str(out / "baselines.json"),
        "profile": json.loads(Path(profile).read_text(encoding="utf-8")),
        "noise_quality": nq,
        "generated": gen,
        "denoising": {"preset": bench_results.get("preset"), "rows": bench_results.get("rows", [])},
        "figures": figs,
        "timings": dict(timer.times),
    }
    results["timings"]["total (this process)"] = time.perf_counter() - t_start
    report.write_report(out, results)
    atomic_write_json(out / "results.json", results)
    log.info("demo finished: %s", out / "report.html")
    return results
