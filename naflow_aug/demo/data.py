"""The demo's data: the simulated camera or a SIDD-Medium folder, split by scene instance.

:func:`prepare_data` writes ``data/split.toml`` (train = training instances, val = held-out test
instances), ``data/train`` (a SIDD-layout view of links to the training instance folders) and
``data/data.json``; a finished data stage is only re-read. The held-out instances are split into
calibration (one instance of the noisiest held-out camera) and test.
"""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from naflow_aug.data.pairs import Pair, select_instances
from naflow_aug.demo.sizes import DemoSize
from naflow_aug.images import round_nearest
from naflow_aug.runtime import atomic_write_json, atomic_write_text, dumps_toml

log = logging.getLogger(__name__)

__all__ = ["DemoData", "prepare_data", "read_pairs", "spread", "split_instances", "training_pairs"]


def iso(cls: str) -> int:
    """The ISO of a configuration name (``'SA_00800'`` -> 800; 0 when it has none)."""
    tail = cls.rsplit("_", 1)[-1]
    return int(tail) if tail.isdigit() else 0


@dataclass
class DemoData:
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


def split_instances(
    pairs: list[Pair], heldout_scenes: list[str]
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
    calib_class = max(candidates, key=lambda c: (iso(c), c))
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


def _simulate(ddir: Path, root: Path, size: DemoSize, seed: int, progress: bool) -> None:
    from naflow_aug.data import simcam

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


def _heldout_scenes(scenes: list[str], size: DemoSize, simulated: bool, seed: int) -> list[str]:
    if simulated:
        return scenes[-size.heldout_scenes :]
    n = max(1, round(len(scenes) * size.heldout_fraction))
    order = torch.randperm(len(scenes), generator=torch.Generator().manual_seed(seed)).tolist()
    return sorted(scenes[i] for i in order[:n])


def _write_split(ddir: Path, root: Path, d: DemoData, held_scenes: list[str]) -> None:
    atomic_write_text(
        d.split,
        dumps_toml(
            {
                "name": "demo",
                "description": f"demo split: scenes {held_scenes} held out; calibration {d.calib_ids}",
                "dataset": str(root),
                "train": d.train_ids,
                "val": d.test_ids,
            }
        ),
    )
    folders = sorted({p.clean_path.parent for p in d.select(d.train_ids)})
    if d.train_view.exists():
        shutil.rmtree(d.train_view)
    _link_view(d.train_view, folders)
    atomic_write_json(
        ddir / "data.json",
        {
            "root": str(root),
            "simulated": d.simulated,
            "heldout_scenes": held_scenes,
            "train": d.train_ids,
            "test": d.test_ids,
            "calibration": d.calib_ids,
            "calibration_class": d.calib_class,
        },
    )


def prepare_data(
    out: Path, data: str | os.PathLike | None, size: DemoSize, seed: int, progress: bool
) -> DemoData:
    """The run's data (see the module doc): simulated into ``out/data/sim`` when ``data`` is None."""
    from naflow_aug.data.sidd import scan_sidd_medium

    ddir = out / "data"
    finished = (ddir / "data.json").is_file()
    simulated = data is None
    if simulated:
        root = ddir / "sim"
        if not finished:
            _simulate(ddir, root, size, seed, progress)
    else:
        root = Path(data)
        if not root.is_dir():
            raise ValueError(
                f"data must be a SIDD-Medium folder (Data/<instance folders>), got {str(data)!r}"
            )
    pairs = list(scan_sidd_medium(root, progress=progress))
    held_scenes = _heldout_scenes(sorted({p.sidd.scene for p in pairs}), size, simulated, seed)
    train_ids, test_ids, calib_ids, calib_class = split_instances(pairs, held_scenes)
    d = DemoData(
        root,
        ddir / "split.toml",
        ddir / "train",
        pairs,
        train_ids,
        test_ids,
        calib_ids,
        calib_class,
        simulated,
    )
    if not finished:
        ddir.mkdir(parents=True, exist_ok=True)
        _write_split(ddir, root, d, held_scenes)
    log.info(
        "data: %d pairs, %d training / %d test / %d calibration instances (calibration camera %s)",
        len(pairs),
        len(train_ids),
        len(test_ids),
        len(calib_ids),
        calib_class,
    )
    return d


def read_pairs(pairs: list[Pair], crop: int, multiple: int = 8) -> list[Any]:
    """Held-out pairs as :class:`naflow_aug.evaluate.HeldOutPair`, centre-cropped to ``crop`` (0: whole)
    and trimmed to a multiple of ``multiple``."""
    from naflow_aug.data.images import load_image
    from naflow_aug.evaluate import HeldOutPair, trim_to_multiple

    out = []
    for p in pairs:
        clean = trim_to_multiple(load_image(p.clean_path), multiple, crop)
        noisy = trim_to_multiple(load_image(p.noisy_path), multiple, crop)
        out.append(HeldOutPair(p.name, p.cls, clean, noisy))
    return out


def spread(pairs: list[Any], k: int) -> list[Any]:
    """Up to ``k`` pairs taken round-robin over their configurations (each configuration's first, then
    second, ...), so that a small subset covers every configuration."""
    by_class: dict[str, list[Any]] = {}
    for p in pairs:
        by_class.setdefault(p.cls, []).append(p)
    out: list[Any] = []
    for i in range(max((len(v) for v in by_class.values()), default=0)):
        out += [v[i] for _, v in sorted(by_class.items()) if i < len(v)]
    return out[:k]


def training_pairs(d: DemoData, size: DemoSize, seed: int, progress: bool) -> Any:
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
