"""Train NAFlow on (clean, noisy) pairs: the paper's protocol, a CPU preset, exact resume, DDP.

``train(config, run_dir)`` is the whole job as a library function; ``naflow-aug train`` calls it.

Exact resume. Every random draw of a training step (which pairs, crops, flips/rotations, the noise on the
clean condition, the dequantization noise) comes from a ``torch.Generator`` seeded from
``(config.seed, step, rank)``, so the data stream needs no iterator state: a run resumed from the
checkpoint of step ``s`` draws exactly what the uninterrupted run drew at step ``s + 1``. The checkpoint
holds the model, the optimiser, the scheduler, the step, the non-finite counter, the running loss window
and torch's global RNG states (restored on resume only, for anything inside the model that draws from
them).

Multi-GPU: start with ``torchrun --nproc_per_node N``; ``WORLD_SIZE``/``LOCAL_RANK`` select DDP (NCCL on
CUDA, gloo on the CPU). ``batch_size`` is per process. Rank 0 validates, logs and writes the run directory.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import time
import warnings
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

from .data.images import load_uint8, read_crop
from .data.pairs import Pair, split_pairs
from .devices import check_device
from .images import to_float
from .runs import RunDir, atomic_torch_save, build_seeded, config_from_dict, config_to_dict, read_toml

logger = logging.getLogger(__name__)

__all__ = [
    "PRESETS",
    "NonFiniteLossError",
    "TrainConfig",
    "config_for_resume",
    "evaluate",
    "load_train_config",
    "preset",
    "refit_prior",
    "train",
]

CHECKPOINT_NAME = "checkpoint.pt"
MODEL_NAME = "model.pt"
BEST_MODEL_NAME = "model_best.pt"


class NonFiniteLossError(RuntimeError):
    """Raised when more training steps than ``TrainConfig.max_nonfinite`` had a non-finite loss."""


# ------------------------------------------------------------------------------------------------ config


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


# ------------------------------------------------------------------------------------------------ data


def _scan_pairs(root: Path) -> list[Pair]:
    """The pairs of a SIDD-Medium folder or of a cache of one (``naflow-aug prepare``), sizes filled in."""
    from .data import sidd

    return list(sidd.scan_sidd_medium(root))


def _split_pairs(pairs: list[Pair], config: TrainConfig) -> tuple[list[Pair], list[Pair], str]:
    """(train, validation, description) split by scene instance."""
    if config.split:
        from .data import sidd

        train_ids, val_ids = sidd.load_split(config.split)
        left_out = sorted({p.instance for p in pairs} - set(val_ids) - set(train_ids))
        if left_out:
            logger.warning("%d instances are in neither part of split %s; left out: %s",
                           len(left_out), config.split, left_out[:10])
        train, val = split_pairs(pairs, (train_ids, val_ids))
        return train, val, f"split {config.split}: validation instances {val_ids}"
    instances = sorted({p.instance for p in pairs})
    rng = np.random.default_rng(config.seed)
    n_val = max(1, round(len(instances) * config.val_fraction)) if len(instances) > 1 else 0
    val_ids = set(rng.choice(instances, size=n_val, replace=False).tolist()) if n_val else set()
    train, val = split_pairs(pairs, (set(instances) - val_ids, val_ids))
    return train, val, f"validation instances {sorted(val_ids)} (held out at random, seed {config.seed})"


def _read_pair(pair: Pair) -> tuple[torch.Tensor, torch.Tensor]:
    noisy, clean = load_uint8(pair.noisy_path), load_uint8(pair.clean_path)
    if noisy.shape != clean.shape:
        raise ValueError(
            f"{pair.noisy_path} is {tuple(noisy.shape)} but {pair.clean_path} is {tuple(clean.shape)}"
        )
    return noisy, clean


def _step_generator(seed: int, step: int, rank: int, stream: int = 0) -> torch.Generator:
    """The generator of one step's random draws: a pure function of (seed, step, rank, stream)."""
    mixed = np.random.SeedSequence([seed & 0xFFFFFFFF, step, rank, stream]).generate_state(2, np.uint64)
    return torch.Generator("cpu").manual_seed(int(mixed[0] >> np.uint64(1)))


class _StepBatches(torch.utils.data.Dataset):
    """Index = step -> that step's batch: class-balanced pair choice, crops, flips/rotations, noise.

    A pure function of (seed, step, rank), so DataLoader workers and resumes see the same stream.
    """

    def __init__(self, pairs: list[Pair], class_ids: list[int], num_classes: int, config: TrainConfig,
                 rank: int, images: list[tuple[torch.Tensor, torch.Tensor]] | None):
        self.pairs = pairs
        self.class_ids = class_ids
        self.config = config
        self.rank = rank
        self.images = images
        self.by_class = [[i for i, c in enumerate(class_ids) if c == k] for k in range(num_classes)]
        self.present = [k for k in range(num_classes) if self.by_class[k]]

    def __len__(self) -> int:
        return self.config.steps

    def __getitem__(self, step: int) -> dict[str, torch.Tensor]:
        c = self.config
        g = _step_generator(c.seed, step, self.rank)
        b, s = c.batch_size, c.crop_size
        if c.class_balanced:
            ks = torch.randint(len(self.present), (b,), generator=g).tolist()
            picks = torch.rand(b, generator=g).tolist()
            index = []
            for k, u in zip(ks, picks, strict=True):
                members = self.by_class[self.present[k]]
                index.append(members[min(int(u * len(members)), len(members) - 1)])
        else:
            index = torch.randint(len(self.pairs), (b,), generator=g).tolist()
        noisy, clean = [], []
        for i in index:
            pair = self.pairs[i]
            h, w = pair.height, pair.width
            if h < s or w < s:
                raise ValueError(f"{pair.noisy_path} is {h}x{w}, smaller than crop_size {s}")
            y = int(torch.randint(h - s + 1, (1,), generator=g))
            x = int(torch.randint(w - s + 1, (1,), generator=g))
            if self.images is not None:
                n_img, c_img = self.images[i]
                n_crop, c_crop = n_img[:, y : y + s, x : x + s], c_img[:, y : y + s, x : x + s]
            else:  # only the window is read from a cache's arrays (a PNG is decoded whole)
                n_crop, c_crop = (torch.from_numpy(read_crop(p, y, x, s, s)).permute(2, 0, 1)
                                  for p in (pair.noisy_path, pair.clean_path))
            if c.augment:
                t = int(torch.randint(8, (1,), generator=g))
                n_crop, c_crop = _dihedral(n_crop, t), _dihedral(c_crop, t)
            noisy.append(n_crop)
            clean.append(c_crop)
        noisy_t = to_float(torch.stack(noisy))
        clean_t = to_float(torch.stack(clean))
        if c.dequantize:
            noisy_t = noisy_t + (torch.rand(noisy_t.shape, generator=g) - 0.5) / 256.0
        cond = clean_t
        if c.cond_noise_std > 0:
            cond = (clean_t + c.cond_noise_std * torch.randn(clean_t.shape, generator=g)).clamp(0.0, 1.0)
        labels = torch.tensor([self.class_ids[i] for i in index], dtype=torch.int64)
        return {"noisy": noisy_t, "clean": cond, "labels": labels}


def _dihedral(x: torch.Tensor, t: int) -> torch.Tensor:
    """One of the 8 flips/rotations of a (C, H, W) tensor."""
    if t & 4:
        x = x.flip(-1)
    return torch.rot90(x, t & 3, dims=(-2, -1)) if t & 3 else x


# ----------------------------------------------------------------------------------------------- model


def _build_model(config: TrainConfig, data_classes: Sequence[str]) -> nn.Module:
    """A fresh trainable NAFlow over the data's classes, or the `init` checkpoint made trainable."""
    from .flow.model import NAFlow, NAFlowConfig

    if config.init:
        from .checkpoints import load

        model = load(config.init, device="cpu")
        model.requires_grad_(True)
        model.train()
        if config.model:
            logger.warning("TrainConfig.model is ignored when fine-tuning from %s", config.init)
        return model
    classes = tuple(config.classes) if config.classes else tuple(data_classes)
    try:
        model_config = NAFlowConfig(classes=classes, **config.model)
    except TypeError as err:
        raise ValueError(f"TrainConfig.model {config.model!r} does not fit NAFlowConfig: {err}") from err
    return NAFlow(model_config)


def _latent_parameter_names(model: nn.Module) -> set[str]:
    """Names of the per-configuration Gaussians' parameters (means and stds)."""
    prior = getattr(model, "prior", None)
    if not isinstance(prior, nn.Module):
        raise TypeError(f"expected a NAFlow with a `prior` (class Gaussians), got {type(model).__name__}")
    return {f"prior.{n}" for n, _ in prior.named_parameters()}


def _param_groups(model: nn.Module, config: TrainConfig) -> list[dict[str, Any]]:
    latent_names = _latent_parameter_names(model)
    latent = [p for n, p in model.named_parameters() if n in latent_names and p.requires_grad]
    rest = [p for n, p in model.named_parameters() if n not in latent_names and p.requires_grad]
    if not latent:
        raise ValueError("found no per-configuration latent parameters in the model (expected `prior.*`)")
    return [
        {"params": rest, "lr": config.lr, "name": "flow"},
        {"params": latent, "lr": config.latent_lr or config.lr, "name": "latent"},
    ]


class _Schedule:
    """lr factor at a step: linear warm-up, then multiplied by gamma at each milestone."""

    def __init__(self, milestones: Sequence[int], gamma: float, warmup: int):
        self.milestones = list(milestones)
        self.gamma = gamma
        self.warmup = warmup

    def __call__(self, step: int) -> float:
        factor = self.gamma ** sum(step >= m for m in self.milestones)
        if self.warmup and step < self.warmup:
            factor *= (step + 1) / self.warmup
        return factor


class _Objective(nn.Module):
    """The training loss as a module's forward, so DDP synchronises its gradients."""

    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, noisy: torch.Tensor, clean: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return self.model.nll(noisy, clean, labels)


def _batch_loss(objective: nn.Module, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """Mean NLL of a batch (bits per H*W pixel). A seam for tests."""
    return objective(batch["noisy"], batch["clean"], batch["labels"]).mean()


# ---------------------------------------------------------------------------------------------- helpers


@dataclass
class _Dist:
    world: int = 1
    rank: int = 0
    local_rank: int = 0
    owns_group: bool = False

    @property
    def main(self) -> bool:
        return self.rank == 0


def _setup_distributed(device_name: str) -> _Dist:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return _Dist()
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    owns = False
    if not dist.is_initialized():
        use_cuda = torch.cuda.is_available() and not device_name.startswith("cpu")
        dist.init_process_group("nccl" if use_cuda else "gloo")
        owns = True
    return _Dist(world=dist.get_world_size(), rank=dist.get_rank(), local_rank=local_rank, owns_group=owns)


def _select_device(name: str, local_rank: int) -> torch.device:
    if name == "auto":
        return torch.device(f"cuda:{local_rank}") if torch.cuda.is_available() else torch.device("cpu")
    device = check_device(name)
    if device.type == "cuda" and device.index is None:
        device = torch.device(f"cuda:{local_rank}")
    return device


def _rng_state(device: torch.device) -> dict[str, Any]:
    state: dict[str, Any] = {"torch": torch.get_rng_state()}
    if device.type == "cuda":
        state["cuda"] = torch.cuda.get_rng_state(device)
    return state


def _set_rng_state(state: Mapping[str, Any], device: torch.device) -> None:
    torch.set_rng_state(state["torch"])
    if device.type == "cuda" and "cuda" in state:
        torch.cuda.set_rng_state(state["cuda"], device)


def _config_differences(a: TrainConfig, b: TrainConfig, ignore: Sequence[str] = ()) -> list[str]:
    da, db = config_to_dict(a), config_to_dict(b)
    return [f"{k}: {da.get(k)!r} -> {db.get(k)!r}" for k in da if k not in ignore and da.get(k) != db.get(k)]


# ------------------------------------------------------------------------------------------- validation


@dataclass
class _ValSet:
    noisy: list[torch.Tensor]  # each (1, 3, H, W) float in [0, 1]
    clean: list[torch.Tensor]
    labels: list[int]  # class ids, -1 where the model does not know the class
    names: list[str]


def _make_val_set(pairs: list[Pair], classes: Sequence[str], config: TrainConfig) -> _ValSet:
    index = {c: i for i, c in enumerate(classes)}
    chosen = pairs[: config.val_max_pairs] if config.val_max_pairs else pairs
    out = _ValSet([], [], [], [])
    for pair in chosen:
        noisy, clean = _read_pair(pair)
        h, w = noisy.shape[-2:]
        if config.val_crop and h >= config.val_crop and w >= config.val_crop:
            th = tw = config.val_crop
        else:
            th, tw = h - h % 8, w - w % 8
        y, x = (h - th) // 2, (w - tw) // 2
        out.noisy.append(to_float(noisy[None, :, y : y + th, x : x + tw]))
        out.clean.append(to_float(clean[None, :, y : y + th, x : x + tw]))
        out.labels.append(index.get(pair.cls, -1))
        out.names.append(f"{pair.instance}:{pair.noisy_path.name}")
    return out


@torch.no_grad()
def evaluate(model: nn.Module, val: _ValSet, *, samples: int = 2, cond_noise_std: float = 3.0 / 255.0,
             seed: int = 0, device: torch.device | None = None) -> dict[str, float]:
    """Held-out metrics: NLL (true class), KLD/AKLD of NAS and true-configuration samples, top-1/3 accuracy.

    Metrics are averaged over pairs and ``samples`` draws; every draw comes from a generator seeded by
    ``seed``, so two evaluations of one model give the same numbers.
    """
    from . import metrics

    if not val.noisy:
        return {}
    device = device or next(model.parameters()).device
    was_training = model.training
    model.eval()
    g = torch.Generator("cpu").manual_seed(seed)
    sums: dict[str, float] = {}
    counts: dict[str, int] = {}

    def add(key: str, value: float) -> None:
        sums[key] = sums.get(key, 0.0) + value
        counts[key] = counts.get(key, 0) + 1

    def noised(clean: torch.Tensor) -> torch.Tensor:
        # The official validation and inference paths put the training's condition noise on the clean
        # image for encode and decode alike; the metrics compare against the un-noised clean image.
        if cond_noise_std <= 0:
            return clean
        eps = torch.randn(clean.shape, generator=g).to(clean.device)
        return (clean + cond_noise_std * eps).clamp(0.0, 1.0)

    try:
        for noisy, clean, label in zip(val.noisy, val.clean, val.labels, strict=True):
            noisy, clean = noisy.to(device), clean.to(device)
            cond = noised(clean)
            if label >= 0:
                labels = torch.tensor([label], device=device)
                add("nll", float(model.nll(noisy, cond, labels).mean()))
                z, _ = model.encode(noisy, cond)
                ll = model.class_log_likelihood(z)[0]
                top = torch.topk(ll, min(3, ll.numel())).indices.tolist()
                add("top1", float(top[0] == label))
                add("top3", float(label in top))
            for _ in range(samples):
                fake = model.sample(noised(clean), reference=noisy, generator=g)
                add("nas_kld", float(metrics.kld(noisy, fake, clean).mean()))
                add("nas_akld", float(metrics.akld(noisy, fake, clean).mean()))
                if label >= 0:
                    fake = model.sample(noised(clean), config=model.classes[label], generator=g)
                    add("cfg_kld", float(metrics.kld(noisy, fake, clean).mean()))
                    add("cfg_akld", float(metrics.akld(noisy, fake, clean).mean()))
    finally:
        model.train(was_training)
    return {k: sums[k] / counts[k] for k in sums}


# ------------------------------------------------------------------------------------------ prior refit


@torch.no_grad()
def refit_prior(model: nn.Module, pairs: Iterable[tuple[torch.Tensor, torch.Tensor, str]], *,
                max_size: int = 1024, progress: bool = False) -> dict[str, Any]:
    """Set each configuration's latent Gaussian to the maximum-likelihood fit of its pairs' latents.

    With the flow fixed, the training objective's optimum over the per-configuration means and
    covariances is closed form: the mean and (diagonal or full) covariance of the latent vectors of that
    configuration's pairs, every latent position one sample. Stochastic training approaches it slowly
    (a configuration's Gaussian gets a gradient from about one crop in K, at a rate tuned for the flow),
    and the noise-aware posterior ranks configurations by exactly these Gaussians. On the SIDD-mini split
    the refit raised the held-out top-3 accuracy of the published-size model (see the model card).

    ``pairs``: ``(noisy, clean, configuration)`` with images (3, H, W), uint8 or float in [0, 1]; each is
    centre-cropped to a multiple of ``model.size_multiple`` (at most ``max_size`` a side; 0: no cap).
    Pairs of configurations the model does not have are skipped; configurations without pairs keep
    their Gaussians. Returns ``{'pairs', 'skipped', 'classes': {cls: {'pairs', 'positions'}},
    'unchanged': [cls, ...]}``.
    """
    from tqdm.auto import tqdm

    from .evaluate import trim_to_multiple

    prior = model.prior
    index = {c: i for i, c in enumerate(model.classes)}
    k, c = prior.mean.shape
    full = prior.covariance == "full"
    count = torch.zeros(k, dtype=torch.float64)
    s1 = torch.zeros(k, c, dtype=torch.float64)
    s2 = torch.zeros((k, c, c) if full else (k, c), dtype=torch.float64)
    used: dict[str, int] = {}
    skipped = 0
    device, dtype = prior.mean.device, prior.mean.dtype
    was_training = model.training
    model.eval()
    try:
        for noisy, clean, cls in tqdm(pairs, desc="refit prior", disable=not progress, leave=False):
            if cls not in index:
                skipped += 1
                continue
            images = []
            for x in (noisy, clean):
                x = to_float(x) if x.dtype == torch.uint8 else x
                images.append(trim_to_multiple(x, model.size_multiple, max_size)[None].to(device, dtype))
            z, _ = model.encode(*images)
            flat = z[0].flatten(1).double().cpu()  # (C, positions)
            i = index[cls]
            count[i] += flat.shape[1]
            s1[i] += flat.sum(1)
            s2[i] += flat @ flat.T if full else flat.pow(2).sum(1)
            used[cls] = used.get(cls, 0) + 1
    finally:
        model.train(was_training)
    fitted = count > 0
    if not bool(fitted.any()):
        raise ValueError(f"refit_prior got no pairs of the model's configurations {list(model.classes)}")
    n = count[fitted]
    mean = s1[fitted] / n[:, None]
    if full:
        few = [cls for cls, i in index.items() if 0 < count[i] <= c]
        if few:
            raise ValueError(f"a full-covariance refit needs more latent positions than the {c} channels; "
                             f"configurations {few} have only {[int(count[index[x]]) for x in few]}")
        cov = s2[fitted] / n[:, None, None] - mean[:, :, None] * mean[:, None, :]
        std = torch.linalg.cholesky(cov)
    else:
        std = (s2[fitted] / n[:, None] - mean.pow(2)).clamp_min(1e-12).sqrt()
    prior.mean[fitted] = mean.to(dtype).to(device)
    prior.std[fitted] = std.to(dtype).to(device)
    classes = list(model.classes)
    return {
        "pairs": sum(used.values()),
        "skipped": skipped,
        "classes": {cls: {"pairs": used[cls], "positions": int(count[index[cls]])} for cls in sorted(used)},
        "unchanged": [cls for i, cls in enumerate(classes) if not fitted[i]],
    }


# ------------------------------------------------------------------------------------------------ train


def train(config: TrainConfig, run_dir: str | os.PathLike, *, resume: bool = False,
          progress: bool = True) -> dict[str, Any]:
    """Train NAFlow as ``config`` says, writing ``run_dir``; returns the results (also ``results.json``).

    ``resume=True`` continues from ``run_dir/checkpoint.pt`` (starts fresh when there is none; returns
    the stored results when the run has finished). A resumed run may extend ``steps``; any other change
    of the configuration is refused. Raises :class:`NonFiniteLossError` when more than
    ``config.max_nonfinite`` steps had a non-finite loss.
    """
    if not isinstance(config, TrainConfig):
        raise TypeError(f"config must be a TrainConfig, got {type(config).__name__}")
    if not config.data:
        raise ValueError("TrainConfig.data is empty: give the folder of (clean, noisy) pairs")
    if not Path(config.data).is_dir():
        raise ValueError(f"TrainConfig.data {config.data!r} is not a folder of (clean, noisy) pairs")
    check_device(config.device)
    run_path = Path(run_dir)
    ckpt_path = run_path / CHECKPOINT_NAME
    if not resume and ckpt_path.exists():
        raise ValueError(f"{run_path} already holds a training run; pass resume=True or another run_dir")
    ddp = _setup_distributed(config.device)
    threads_before = torch.get_num_threads()
    if config.threads:
        torch.set_num_threads(config.threads)
    try:
        return _train(config, run_path, resume=resume, progress=progress, ddp=ddp)
    finally:
        torch.set_num_threads(threads_before)
        if ddp.owns_group:
            dist.destroy_process_group()


def _train(config: TrainConfig, run_path: Path, *, resume: bool, progress: bool,
           ddp: _Dist) -> dict[str, Any]:
    from tqdm.auto import tqdm

    from .checkpoints import (
        TRAINING_FORMAT,
        model_from_training_checkpoint,
        read_training_checkpoint,
        save_checkpoint,
        state_sha256,
    )

    run = RunDir(run_path) if ddp.main else None
    ckpt_path = run_path / CHECKPOINT_NAME
    state: dict[str, Any] | None = None
    if resume and ckpt_path.exists():
        state = read_training_checkpoint(ckpt_path)
        saved = config_from_dict(TrainConfig, state["config"], where=f"{ckpt_path} config")
        diffs = _config_differences(saved, config, ignore=("steps", "device", "num_workers", "threads"))
        if diffs:
            raise ValueError(f"cannot resume {run_path} with a different configuration: {'; '.join(diffs)}")
        if (run_path / "results.json").is_file() and saved.steps == config.steps:
            logger.info("%s has finished; nothing to do", run_path)
            import json

            return json.loads((run_path / "results.json").read_text())

    device = _select_device(config.device, ddp.local_rank)
    if device.type == "cuda":
        torch.cuda.set_device(device)

    pairs = _scan_pairs(Path(config.data))
    train_pairs, val_pairs, split_desc = _split_pairs(pairs, config)
    if not train_pairs:
        raise ValueError(f"no training pairs in {config.data} ({split_desc})")

    if state is not None:
        model = model_from_training_checkpoint(state, str(ckpt_path))
    else:
        # The initial weights are a function of the seed; torch's global RNG is left as it was.
        labels = sorted({p.cls for p in train_pairs})
        model = build_seeded(lambda: _build_model(config, labels), config.seed)
    classes = list(model.classes)
    known = set(classes)
    dropped = sorted({p.cls for p in train_pairs} - known)
    if dropped:
        logger.warning("training pairs of classes the model does not have are left out: %s", dropped)
        train_pairs = [p for p in train_pairs if p.cls in known]
    if not train_pairs:
        raise ValueError(f"none of the training pairs' classes is one of the model's {classes}")
    class_index = {c: i for i, c in enumerate(classes)}
    model.to(device)
    model.train()

    groups = _param_groups(model, config)
    optimizer = torch.optim.Adam(groups, betas=config.betas, weight_decay=config.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(
        optimizer, _Schedule(config.lr_milestones, config.lr_gamma, config.warmup_steps)
    )
    start_step = 0
    nonfinite = 0
    elapsed = 0.0
    window = {"sum": 0.0, "n": 0}
    best = {"val_nll": math.inf, "step": -1}
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        start_step = int(state["step"])
        nonfinite = int(state["nonfinite"])
        elapsed = float(state["elapsed"])
        window = dict(state["window"])
        best = dict(state["best"])
        _set_rng_state(state["rng"], device)
        if run is not None:
            run.truncate_log(lambda r: int(r.get("step", 0)) <= start_step)
        logger.info("resumed %s at step %d", run_path, start_step)
    if run is not None:
        run.write_config(config)

    images = [_read_pair(p) for p in train_pairs] if config.preload else None
    batches = _StepBatches(train_pairs, [class_index[p.cls] for p in train_pairs], len(classes), config,
                           ddp.rank, images)
    loader = torch.utils.data.DataLoader(
        batches,
        batch_size=None,
        sampler=range(start_step, config.steps),
        num_workers=config.num_workers,
        pin_memory=device.type == "cuda",
        persistent_workers=False,
    )
    val = _make_val_set(val_pairs, classes, config) if ddp.main else None

    objective: nn.Module = _Objective(model)
    if ddp.world > 1:
        if start_step == 0 and state is None:
            # ActNorm's data-dependent init on this rank's first batch; DDP then broadcasts rank 0's.
            first = batches[0]
            with torch.no_grad():
                objective(*(first[k].to(device) for k in ("noisy", "clean", "labels")))
        objective = nn.parallel.DistributedDataParallel(
            objective, device_ids=[device.index] if device.type == "cuda" else None
        )

    if run is not None:
        logger.info("training %s: %d train pairs, %d held-out pairs (%s), %d classes, %d parameters",
                    run_path, len(train_pairs), len(val_pairs), split_desc, len(classes),
                    sum(p.numel() for p in model.parameters()))

    def save(step: int, elapsed_s: float) -> None:
        if run is None:
            return
        atomic_torch_save(
            {
                "format": TRAINING_FORMAT,
                "step": step,
                "config": config_to_dict(config),
                "model_config": config_to_dict(model.config),
                "model": (model_state := model.state_dict()),
                "model_sha256": state_sha256(model_state),
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict(),
                "rng": _rng_state(device),
                "nonfinite": nonfinite,
                "elapsed": elapsed_s,
                "window": dict(window),
                "best": dict(best),
            },
            ckpt_path,
        )
        save_checkpoint(model, run_path / MODEL_NAME, extra=_model_extra(config, step))

    def validate(step: int) -> dict[str, float]:
        if run is None or val is None or not val.noisy:
            return {}
        t = time.perf_counter()
        result = evaluate(model, val, samples=config.val_samples, cond_noise_std=config.cond_noise_std,
                          seed=config.seed, device=device)
        result = {f"val_{k}": v for k, v in result.items()}
        run.log({"step": step, "kind": "val", **result, "val_seconds": time.perf_counter() - t})
        logger.info("step %d validation: %s", step, ", ".join(f"{k} {v:.4f}" for k, v in result.items()))
        if result.get("val_nll", math.inf) < best["val_nll"]:
            best.update(val_nll=result["val_nll"], step=step)
            save_checkpoint(model, run_path / BEST_MODEL_NAME, extra=_model_extra(config, step))
        return result

    bar = tqdm(total=config.steps, initial=start_step, disable=not (progress and ddp.main), desc="train",
               dynamic_ncols=True)
    last = {}
    step = start_step
    t0 = time.perf_counter()
    t_window = t0
    try:
        for step, batch in zip(range(start_step, config.steps), loader, strict=False):
            batch = {k: v.to(device, non_blocking=True) for k, v in batch.items()}
            loss = _batch_loss(objective, batch)
            finite = torch.isfinite(loss.detach()).to(torch.float32)
            if ddp.world > 1:
                dist.all_reduce(finite, op=dist.ReduceOp.MIN)
            optimizer.zero_grad(set_to_none=True)
            flag, loss_value = torch.stack([finite.to(loss.dtype), loss.detach()]).tolist()  # one GPU sync
            ok = flag > 0
            if ok:
                loss.backward()
                grads = [p.grad for p in model.parameters() if p.grad is not None]
                norm = torch.nn.utils.clip_grad_norm_(
                    model.parameters(), config.grad_clip if config.grad_clip > 0 else math.inf
                ) if grads else torch.zeros(())
                ok = bool(torch.isfinite(norm))
                if ok:
                    optimizer.step()
            if ok:
                window["sum"], window["n"] = window["sum"] + loss_value, window["n"] + 1
            else:
                nonfinite += 1
                optimizer.zero_grad(set_to_none=True)
                logger.warning("step %d: non-finite loss or gradient, skipped (%d so far)", step, nonfinite)
                if nonfinite > config.max_nonfinite:
                    raise NonFiniteLossError(
                        f"training stopped at step {step}: {nonfinite} steps had a non-finite loss or "
                        f"gradient (max_nonfinite={config.max_nonfinite}); lower the learning rate or "
                        f"check the data. The last good checkpoint is {ckpt_path}"
                    )
            with warnings.catch_warnings():
                # a skipped first step leaves optimizer.step() uncalled; the schedule still counts it
                warnings.filterwarnings("ignore", message=r"Detected call of `lr_scheduler\.step\(\)`")
                scheduler.step()
            done = step + 1
            bar.update(1)
            if done % config.log_every == 0 or done == config.steps:
                now = time.perf_counter()
                rate = (done - max(start_step, done - config.log_every)) / max(now - t_window, 1e-9)
                t_window = now
                mean = window["sum"] / window["n"] if window["n"] else float("nan")
                last = {"loss": mean, "lr": optimizer.param_groups[0]["lr"],
                        "latent_lr": optimizer.param_groups[1]["lr"], "nonfinite": nonfinite, "it_s": rate}
                bar.set_postfix(loss=f"{mean:.3f}", it_s=f"{rate:.2f}")
                if run is not None:
                    run.log({"step": done, "kind": "train", **last,
                             "elapsed_s": elapsed + now - t0})
                window = {"sum": 0.0, "n": 0}
            is_val = config.val_every and done % config.val_every == 0 and done != config.steps
            if is_val:
                validate(done)
            if done % config.checkpoint_every == 0 and done != config.steps:
                save(done, elapsed + time.perf_counter() - t0)
            if ddp.world > 1 and (is_val or done % config.checkpoint_every == 0):
                dist.barrier()
    finally:
        bar.close()
    elapsed += time.perf_counter() - t0
    refit = None
    if config.refit_prior and ddp.main:
        if run is not None:
            save(config.steps, elapsed)  # the trained state, before the refit: a longer resume continues it
        t = time.perf_counter()
        refit = refit_prior(model, ((*_read_pair(p), p.cls) for p in train_pairs),
                            max_size=config.refit_max_size, progress=progress)
        refit["seconds"] = time.perf_counter() - t
        logger.info("refit the Gaussians of %d configurations on %d training pairs (%.0f s)",
                    len(refit["classes"]), refit["pairs"], refit["seconds"])
    final = validate(config.steps) if ddp.main else {}
    results = {
        "steps": config.steps,
        "train_seconds": elapsed,
        "nonfinite_steps": nonfinite,
        "last_train": last,
        "final_val": final,
        "best_val_nll": best,
        "split": split_desc,
        "train_pairs": len(train_pairs),
        "val_pairs": len(val_pairs),
        "classes": classes,
        "model": str(run_path / MODEL_NAME),
        "world_size": ddp.world,
        "device": str(device),
    }
    if refit is not None:
        results["prior_refit"] = refit
        if run is not None:
            extra = _model_extra(config, config.steps)
            extra["train"]["prior_refit"] = {"pairs": refit["pairs"], "max_size": config.refit_max_size}
            save_checkpoint(model, run_path / MODEL_NAME, extra=extra)
    elif run is not None:
        save(config.steps, elapsed)
    if run is not None:
        run.write_results(results)
    if ddp.world > 1:
        dist.barrier()
    return results


def _model_extra(config: TrainConfig, step: int) -> dict[str, Any]:
    return {"train": {"step": step, "preset": config.preset, "seed": config.seed, "data": config.data,
                      "split": config.split, "init": config.init}}
