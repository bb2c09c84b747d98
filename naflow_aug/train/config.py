"""What a training run does: :class:`TrainConfig`, the presets, TOML files, and the file names a run
directory holds."""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from naflow_aug.runtime.configs import config_from_dict, config_to_dict, read_toml

CHECKPOINT_NAME = "checkpoint.pt"
MODEL_NAME = "model.pt"
BEST_MODEL_NAME = "model_best.pt"


@dataclass(frozen=True)
class TrainConfig:
    """What a training run does. Presets: :data:`PRESETS` (``paper``, ``cpu``); files: TOML, unknown keys
    rejected (:func:`load_train_config`).

    Steps are counted from 0; ``lr_milestones`` are absolute steps at which every learning rate is
    multiplied by ``lr_gamma`` (``with_steps`` rescales them with the run length).
    """

    preset: str = "paper"
    data: str = ""  # a SIDD-Medium-layout folder (Data/<inst>_<scene>_<phone>_<ISO>_.../)
    split: str = ""  # a split TOML (train/validation instances); "" = hold out val_fraction of instances
    val_fraction: float = 0.1
    classes: tuple[str, ...] = ()  # () = every class of the training split (or of the `init` model)
    init: str = ""  # fine-tune from this checkpoint (official, project format or bundled name)
    model: dict[str, Any] = field(default_factory=dict)  # NAFlowConfig fields other than `classes`
    steps: int = 100_000
    batch_size: int = 8  # per process
    crop_size: int = 160
    augment: bool = True  # random flips and 90-degree rotations, identical for both images
    class_balanced: bool = True
    lr: float = 1e-4
    latent_lr: float = 0.0  # 0 = lr; the per-configuration means/stds get this rate
    betas: tuple[float, float] = (0.9, 0.99)
    weight_decay: float = 0.0
    lr_milestones: tuple[int, ...] = (50_000, 75_000, 90_000)
    lr_gamma: float = 0.5
    warmup_steps: int = 0
    grad_clip: float = 0.0  # 0 = off (the paper does not clip)
    dequantize: bool = True  # uniform U(-1/512, 1/512) on the noisy image (log-det term in the model)
    cond_noise_std: float = 3.0 / 255.0  # Gaussian noise on the clean condition, then clamped to [0, 1]
    max_nonfinite: int = 100  # stop when more steps than this had a non-finite loss or gradient
    seed: int = 0
    device: str = "auto"  # auto = cuda:<LOCAL_RANK> when CUDA is there, else cpu
    num_workers: int = 0  # DataLoader workers reading images (0: in the main process)
    threads: int = 0  # torch CPU threads during the run (0 = leave as is); 1 is fastest on a busy machine
    preload: bool = False  # decode every training image once into memory (small data sets)
    log_every: int = 50
    checkpoint_every: int = 1000
    val_every: int = 5000  # 0 = only at the end
    val_crop: int = 256  # centre crop of each held-out pair (0 = the whole image, trimmed to a multiple of 8)
    val_samples: int = 2  # NAS samples per held-out pair (metrics averaged)
    val_max_pairs: int = 0  # 0 = all held-out pairs
    # after the last step, set each configuration's Gaussian to the closed-form fit of the training
    # pairs' latents (:func:`refit_prior`); model.pt gets the refit prior, checkpoint.pt keeps the trained one
    refit_prior: bool = False
    refit_max_size: int = 1024  # centre crop of at most this side per training image for the refit (0: whole)

    def __post_init__(self) -> None:
        positive = ("steps", "batch_size", "crop_size", "log_every", "checkpoint_every", "val_samples")
        for name in positive:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"TrainConfig.{name} must be a positive integer, got {value!r}")
        non_negative = ("val_every", "val_crop", "val_max_pairs", "warmup_steps", "max_nonfinite",
                        "num_workers", "threads", "refit_max_size")
        for name in non_negative:
            value = getattr(self, name)
            if not isinstance(value, int) or value < 0:
                raise ValueError(f"TrainConfig.{name} must be a non-negative integer, got {value!r}")
        if self.crop_size % 8:
            raise ValueError(f"TrainConfig.crop_size must be a multiple of 8, got {self.crop_size}")
        if self.val_crop % 8:
            raise ValueError(f"TrainConfig.val_crop must be a multiple of 8 (or 0), got {self.val_crop}")
        if not self.lr > 0 or self.latent_lr < 0:
            raise ValueError(f"lr must be > 0 and latent_lr >= 0, got {self.lr}, {self.latent_lr}")
        if not 0 < self.val_fraction < 1:
            raise ValueError(f"TrainConfig.val_fraction must be in (0, 1), got {self.val_fraction}")
        if list(self.lr_milestones) != sorted(self.lr_milestones):
            raise ValueError(f"TrainConfig.lr_milestones must be increasing, got {self.lr_milestones}")
        if self.cond_noise_std < 0 or self.grad_clip < 0:
            raise ValueError("TrainConfig.cond_noise_std and grad_clip must be >= 0")
        if "classes" in self.model:
            raise ValueError("TrainConfig.model must not set `classes`; use TrainConfig.classes")

    def with_steps(self, steps: int) -> TrainConfig:
        """The same recipe over ``steps`` steps: milestones and warm-up scaled in proportion."""
        scale = steps / self.steps
        return dataclasses.replace(
            self,
            steps=steps,
            lr_milestones=tuple(max(1, round(m * scale)) for m in self.lr_milestones),
            warmup_steps=round(self.warmup_steps * scale),
            val_every=max(1, round(self.val_every * scale)) if self.val_every else 0,
            checkpoint_every=max(1, min(self.checkpoint_every, steps)),
        )

    def replace(self, **changes: Any) -> TrainConfig:
        return dataclasses.replace(self, **changes)


PRESETS: dict[str, TrainConfig] = {
    # The paper's protocol (GPU, full SIDD-Medium): 100k steps, 160x160 crops, batch 8, class-balanced.
    "paper": TrainConfig(preset="paper", num_workers=8),
    # Minutes on 2 CPU cores (sidd-medium-mini or a simulated camera): 64x64 crops and
    # the per-configuration means/stds at a 50x larger rate (measured the largest gain on CPU runs).
    "cpu": TrainConfig(
        preset="cpu",
        steps=6000,
        batch_size=8,
        crop_size=64,
        lr=2e-4,
        latent_lr=1e-2,
        lr_milestones=(3000, 4500, 5400),
        preload=True,
        log_every=25,
        checkpoint_every=250,
        val_every=1000,
        val_crop=256,
        val_samples=2,
    ),
}


def preset(name: str) -> TrainConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown training preset {name!r}; expected one of {sorted(PRESETS)}")
    return PRESETS[name]


def load_train_config(
    path: str | os.PathLike | None = None,
    *,
    preset_name: str | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> TrainConfig:
    """A preset, updated by the TOML file at ``path`` (unknown keys rejected), then by ``overrides``.

    The preset is ``preset_name``, else the file's ``preset`` key, else ``paper``. A ``steps`` override
    (in the file or ``overrides``) without explicit ``lr_milestones`` rescales the preset's schedule.
    """
    data: dict[str, Any] = dict(read_toml(path)) if path is not None else {}
    data.update(overrides or {})
    name = preset_name or data.get("preset") or "paper"
    base = preset(name)
    if "steps" in data and "lr_milestones" not in data:
        base = base.with_steps(int(data["steps"]))
    merged = config_to_dict(base)
    merged.update(data)
    merged["preset"] = name
    where = str(path) if path is not None else "training config"
    return config_from_dict(TrainConfig, merged, where=where)


def config_for_resume(run_dir: str | os.PathLike) -> TrainConfig | None:
    """The configuration a run directory was trained with (its ``config.toml``), or None if there is none."""
    path = Path(run_dir) / "config.toml"
    if not (Path(run_dir) / CHECKPOINT_NAME).is_file() or not path.is_file():
        return None
    return config_from_dict(TrainConfig, read_toml(path), where=str(path))
