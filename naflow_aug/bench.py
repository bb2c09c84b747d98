"""Denoiser benchmark harness: train a denoiser on (synthetic or real) pairs, score it on real noisy images.

The denoiser is any ``nn.Module`` mapping ``(B, 3, H, W)`` noisy float in [0, 1] to clean (DnCNN by
default). Training batches come from a :class:`PatchBatches` sampler over a torch ``Dataset`` of dicts
(``'clean'`` and, for stored pairs such as HDF5 files, ``'noisy'``), optionally with an on-the-fly noise
source ``source(clean, reference=..., labels=..., generator=...) -> (noisy, params)`` (the noise-source
abstraction of :mod:`naflow_aug.sampling`). Scoring: PSNR / SSIM (:mod:`naflow_aug.metrics`) of the
denoised image, clamped to [0, 1] and rounded to 8 bits as the official test script does, on SIDD
validation blocks (per camera and overall) or on any list of pairs.

A run directory holds ``config.toml``, ``metrics.jsonl``, per-source sub-runs (``sources/<name>/`` with
``checkpoint_G3_<epoch>.pth`` files) and at the end ``results.json``, ``results.md``, ``grid.png`` and
``curves.png``. ``resume=True`` continues from the last checkpoint; on a finished run it does nothing.
"""

from __future__ import annotations

import logging
import os
import re
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from tqdm.auto import tqdm

from naflow_aug import metrics
from naflow_aug.data.folders import iter_images
from naflow_aug.data.images import IMAGE_SUFFIXES, read_image
from naflow_aug.data.sidd import looks_like_sidd_medium
from naflow_aug.denoisers.dncnn import (
    DnCNN,
    DnCNNConfig,
    checkpoint_name,
    latest_checkpoint,
    save_dncnn,
)
from naflow_aug.devices import check_device
from naflow_aug.images import round_half_up, round_half_up_exact, to_float
from naflow_aug.runs import (
    RunDir,
    atomic_write_text,
    build_seeded,
    config_from_dict,
    config_to_dict,
    read_toml,
)

log = logging.getLogger(__name__)

Batch = tuple[torch.Tensor, torch.Tensor]  # (noisy, clean), each (B, 3, h, w) float in [0, 1]
# (name, group, noisy, clean): noisy/clean (B, 3, H, W) or (3, H, W), float in [0, 1] or uint8 HWC
Pair = tuple[str, str, Any, Any]


# ------------------------------------------------------------------------------------------------ presets


@dataclass(frozen=True)
class BenchPreset:
    """Training and scoring settings. ``epochs`` x ``steps_per_epoch`` random-patch steps.

    ``lr`` is multiplied by ``lr_gamma`` at each epoch of ``lr_milestones``. Per-epoch validation uses
    the first ``val_images`` validation images (0: all) with ``val_blocks`` blocks each (0: all), or
    centre crops of ``val_crop`` (0: whole) of the first ``val_images`` pairs, and reports PSNR only;
    the final evaluation (PSNR and SSIM) uses everything it is given. ``zero_init_last`` starts the
    DnCNN as the identity (the CPU preset's short runs; the paper preset keeps PyTorch's init).
    """

    preset: Literal["cpu", "paper", "custom"] = "cpu"
    depth: int = 5
    width: int = 16
    patch_size: int = 48
    batch_size: int = 8
    epochs: int = 10
    steps_per_epoch: int = 150
    lr: float = 1e-3
    lr_milestones: tuple[int, ...] = (8,)
    lr_gamma: float = 0.1
    loss: Literal["mse"] = "mse"
    seed: int = 0
    val_every: int = 1
    val_images: int = 8
    val_blocks: int = 2
    val_crop: int = 128
    zero_init_last: bool = True
    eval_batch_size: int = 8
    quantize: bool = True
    keep_checkpoints: int = 2
    grid_crop: int = 96

    def __post_init__(self) -> None:
        for name in (
            "depth",
            "width",
            "patch_size",
            "batch_size",
            "epochs",
            "steps_per_epoch",
            "val_every",
            "eval_batch_size",
            "keep_checkpoints",
            "grid_crop",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"preset {name} must be a positive int, got {value!r}")
        if not self.lr > 0:
            raise ValueError(f"preset lr must be > 0, got {self.lr!r}")

    @property
    def dncnn(self) -> DnCNNConfig:
        return DnCNNConfig(depth=self.depth, width=self.width)

    def lr_at(self, epoch: int) -> float:
        """Learning rate of 1-based ``epoch`` (MultiStepLR stepped once per epoch)."""
        return self.lr * self.lr_gamma ** sum(1 for m in self.lr_milestones if epoch > m)


# The CPU preset: a mid-size DnCNN (depth 8, width 32, 57,635 parameters: not the paper's model),
# 2,500 steps of 8 x 48x48 patches (10 epochs of 250, lr x0.1 for the last two), starting as the
# identity. Chosen so that on 2 CPU cores the sources are told apart by more than the spread between
# seeds (the earlier 7,939-parameter, 1,500-step preset ranked sources differently from seed to seed).
CPU = BenchPreset(depth=8, width=32, epochs=10, steps_per_epoch=250, lr_milestones=(8,))
# The paper's protocol (dncnn.md): DnCNN depth 20 width 64, Adam lr 1e-3, MSE, 96x96 patches, batch 8,
# 300 epochs of 3,100 iterations (the released checkpoint's BatchNorm count). The decay (x0.1 after
# epoch 250) follows NeCA's "late in training" MultiStepLR and is not checked against NAFlow's code.
PAPER = BenchPreset(
    preset="paper",
    depth=20,
    width=64,
    patch_size=96,
    batch_size=8,
    epochs=300,
    steps_per_epoch=3100,
    lr=1e-3,
    lr_milestones=(250,),
    val_every=10,
    val_images=40,
    val_blocks=4,
    val_crop=0,
    zero_init_last=False,
    keep_checkpoints=3,
)
PRESETS = {"cpu": CPU, "paper": PAPER}


def load_preset(spec: str | os.PathLike | BenchPreset, **overrides: Any) -> BenchPreset:
    """``'cpu'``, ``'paper'`` or a TOML file (its ``preset`` key picks the base, ``custom`` meaning the cpu
    one; other keys override it). ``overrides`` (None values ignored) change fields last."""
    if isinstance(spec, BenchPreset):
        base = spec
    elif str(spec) in PRESETS:
        base = PRESETS[str(spec)]
    elif str(spec).endswith(".toml"):
        data = read_toml(spec)
        name = data.get("preset", "cpu")
        if name not in (*PRESETS, "custom"):
            raise ValueError(f"{spec}: preset must be one of {[*PRESETS, 'custom']}, got {name!r}")
        merged = {**config_to_dict(PRESETS.get(name, CPU)), **data}
        base = config_from_dict(BenchPreset, merged, where=str(spec))
    else:
        raise ValueError(f"preset must be 'cpu', 'paper' or a .toml file, got {spec!r}")
    overrides = {k: v for k, v in overrides.items() if v is not None}
    if overrides:
        base = config_from_dict(BenchPreset, {**config_to_dict(base), **overrides}, where="preset overrides")
    return base


# ------------------------------------------------------------------------------------------------ batches


def _writable(x: np.ndarray) -> np.ndarray:
    # torch.from_numpy warns on read-only arrays (e.g. PIL buffers, HDF5 reads): copy those
    return np.ascontiguousarray(x) if x.flags.writeable else np.array(x, copy=True)


def to_image(x: Any) -> torch.Tensor:
    """One image as (3, H, W) float32 in [0, 1] from a (3, H, W) tensor/array or an (H, W, 3) uint8 array."""
    return _to_float(_to_chw(x))


def _to_float(x: torch.Tensor) -> torch.Tensor:
    if x.dtype == torch.uint8:
        return to_float(x)
    if not x.is_floating_point():
        raise TypeError(f"expected uint8 or float images, got {x.dtype}")
    return x.float()


def _to_chw(x: Any) -> torch.Tensor:
    """(3, H, W) tensor of the input's dtype (a view where possible) from (3, H, W) or (H, W, 3)."""
    if not isinstance(x, torch.Tensor):
        x = torch.from_numpy(_writable(np.asarray(x)))
    if x.ndim != 3:
        raise ValueError(f"expected one image (3, H, W) or (H, W, 3), got shape {tuple(x.shape)}")
    if x.shape[0] != 3 and x.shape[-1] == 3:
        x = x.permute(2, 0, 1)
    if x.shape[0] != 3:
        raise ValueError(f"expected 3 colour channels, got shape {tuple(x.shape)}")
    return x


def _chw_view(x: Any) -> Any:
    """(3, H, W) view of a tensor or array without copying it (an (H, W, 3) array is transposed)."""
    if isinstance(x, np.ndarray) and x.ndim == 3 and x.shape[0] != 3 and x.shape[-1] == 3:
        return x.transpose(2, 0, 1)
    return x if isinstance(x, (np.ndarray, torch.Tensor)) else _to_chw(x)


def to_batch(x: Any, dtype: torch.dtype = torch.float32) -> torch.Tensor:
    """(B, 3, H, W) float from a batch tensor, a single image, or (B, H, W, 3) uint8 arrays."""
    if isinstance(x, np.ndarray) and x.ndim == 4 and x.shape[-1] == 3 and x.dtype == np.uint8:
        x = torch.from_numpy(_writable(x)).permute(0, 3, 1, 2)
    if isinstance(x, torch.Tensor) and x.ndim == 4:
        if x.shape[1] != 3:
            raise ValueError(f"expected (B, 3, H, W), got {tuple(x.shape)}")
        return to_float(x, dtype) if x.dtype == torch.uint8 else x.to(dtype)
    if (isinstance(x, torch.Tensor) and x.dtype == torch.uint8) or (
        isinstance(x, np.ndarray) and x.dtype == np.uint8
    ):
        x = torch.as_tensor(_writable(x) if isinstance(x, np.ndarray) else x)
        if x.ndim == 3 and x.shape[0] != 3 and x.shape[-1] == 3:
            x = x.permute(2, 0, 1)
        return to_batch(x.unsqueeze(0), dtype)
    return to_image(x).to(dtype).unsqueeze(0)


NoiseSource = Callable[..., Any]


class PatchBatches:
    """Random ``(noisy, clean)`` patch batches from a Dataset of dicts, reproducible from a generator.

    Items: ``'clean'`` (and ``'noisy'`` when ``noise`` is None: stored pairs, e.g. HDF5 rows or real
    pairs), optionally a configuration name (a str) under ``'cls'`` / ``'config'`` / ``'label'``.
    With ``noise``, the noisy patch is ``noise(clean, reference=noisy_or_None, labels=configs_or_None,
    generator=generator)`` (a tensor, or a tuple whose first element is the tensor). ``cache`` keeps
    decoded items in memory (for small folders; leave it off for large HDF5 files).
    """

    def __init__(
        self,
        dataset: Any,
        *,
        patch_size: int,
        batch_size: int,
        noise: NoiseSource | None = None,
        device: str | torch.device | None = None,
        cache: bool = False,
    ):
        if len(dataset) == 0:
            raise ValueError("the training dataset is empty")
        self.dataset = dataset
        self.patch_size = int(patch_size)
        self.batch_size = int(batch_size)
        self.noise = noise
        self.device = torch.device(device or "cpu")
        self._cache: dict[int, dict[str, Any]] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.dataset)

    def _item(self, index: int) -> dict[str, Any]:
        if self._cache is not None and index in self._cache:
            return self._cache[index]
        raw = self.dataset[index]
        if not isinstance(raw, Mapping) or "clean" not in raw:
            raise TypeError(
                f"dataset items must be dicts with 'clean' (and 'noisy'), got {type(raw).__name__}"
            )
        # kept as stored (uint8 stays uint8, a cache's memory-mapped array stays mapped): only the
        # patches are copied and converted to float
        item: dict[str, Any] = {"clean": _chw_view(raw["clean"])}
        if raw.get("noisy") is not None:
            item["noisy"] = _chw_view(raw["noisy"])
            if item["noisy"].shape != item["clean"].shape:
                raise ValueError(
                    f"item {index}: noisy {tuple(item['noisy'].shape)} != clean {tuple(item['clean'].shape)}"
                )
        elif self.noise is None:
            raise ValueError(f"item {index} has no 'noisy' image and no noise source was given")
        for key in ("cls", "config", "label", "class_name"):
            if isinstance(raw.get(key), str):
                item["config"] = raw[key]
                break
        if self._cache is not None:
            self._cache[index] = item
        return item

    def __call__(self, generator: torch.Generator) -> Batch:
        p = self.patch_size
        indices = torch.randint(len(self.dataset), (self.batch_size,), generator=generator).tolist()
        cleans, noisies, configs = [], [], []
        for i in indices:
            item = self._item(i)
            _, h, w = item["clean"].shape
            if h < p or w < p:
                raise ValueError(f"item {i} is {h}x{w}, smaller than the {p}x{p} training patch")
            top = int(torch.randint(h - p + 1, (1,), generator=generator))
            left = int(torch.randint(w - p + 1, (1,), generator=generator))
            cleans.append(_to_float(_to_chw(item["clean"][:, top : top + p, left : left + p])))
            if "noisy" in item:
                noisies.append(_to_float(_to_chw(item["noisy"][:, top : top + p, left : left + p])))
            configs.append(item.get("config"))
        clean = torch.stack(cleans).to(self.device)
        reference = torch.stack(noisies).to(self.device) if len(noisies) == len(cleans) else None
        if self.noise is None:
            assert reference is not None
            return reference, clean
        labels = configs if all(c is not None for c in configs) else None
        out = self.noise(clean, reference=reference, labels=labels, generator=generator)
        noisy = out[0] if isinstance(out, tuple) else out
        return noisy.to(self.device).clamp(0, 1), clean


# ----------------------------------------------------------------------------------------------- training


def _dist() -> tuple[int, int]:
    """(rank, world size) of the torch.distributed group, (0, 1) when not distributed."""
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    return 0, 1


def init_distributed(device: str | torch.device | None = None) -> torch.device:
    """Join the torchrun process group when launched under torchrun (env WORLD_SIZE > 1).

    Returns this process's device (``cuda:LOCAL_RANK`` when CUDA is available).
    """
    checked = check_device(device) if device is not None else None  # a bad device fails before the group
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not torch.distributed.is_initialized():
        use_cuda = torch.cuda.is_available() and (checked is None or checked.type == "cuda")
        torch.distributed.init_process_group("nccl" if use_cuda else "gloo")
        if use_cuda:
            local = int(os.environ.get("LOCAL_RANK", "0"))
            torch.cuda.set_device(local)
            return torch.device("cuda", local)
    if checked is not None:
        return checked
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def _epoch_generator(seed: int, epoch: int, rank: int) -> torch.Generator:
    # One generator per (epoch, rank): a resumed run draws exactly the batches of an uninterrupted one.
    return torch.Generator().manual_seed((seed * 1_000_003 + epoch) * 1_009 + rank)


def train_denoiser(
    model: nn.Module,
    batches: Callable[[torch.Generator], Batch],
    preset: BenchPreset,
    run: RunDir | str | os.PathLike,
    *,
    validate: Callable[[nn.Module], Mapping[str, float]] | None = None,
    device: str | torch.device | None = None,
    progress: bool = True,
    desc: str = "train",
) -> nn.Module:
    """Train ``model`` (noisy -> clean) with Adam + MSE for ``preset.epochs`` x ``preset.steps_per_epoch``.

    ``batches(generator) -> (noisy, clean)``. Each epoch ends with ``validate(model)`` (every
    ``val_every`` epochs and at the last one; logged to ``metrics.jsonl``) and a checkpoint
    ``checkpoint_G3_<epoch>.pth`` (``epoch``, ``model_state_dict``, ``optimizer_state_dict``) in ``run``;
    a later call resumes from the last one. Under torch.distributed (torchrun) the model is wrapped in
    DDP, every rank draws its own batches and rank 0 validates and writes. Returns the trained model.
    """
    run = run if isinstance(run, RunDir) else RunDir(run)
    rank, world = _dist()
    device = torch.device(device) if device is not None else next(model.parameters()).device
    model.to(device)
    optimizer = torch.optim.Adam(model.parameters(), lr=preset.lr)
    start = 0
    found = latest_checkpoint(run.path)
    if found is not None:
        path, start = found
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state["model_state_dict"], strict=True)
        if "optimizer_state_dict" in state:
            optimizer.load_state_dict(state["optimizer_state_dict"])
        log.info("resuming %s from %s (epoch %d)", run.path, path.name, start)
        if rank == 0:
            run.truncate_log(lambda r: r.get("epoch", 0) <= start)
    if start >= preset.epochs:
        return model.eval()
    net: nn.Module = model
    if world > 1:
        net = nn.parallel.DistributedDataParallel(
            model, device_ids=[device] if device.type == "cuda" else None
        )
    for epoch in range(start + 1, preset.epochs + 1):
        for group in optimizer.param_groups:
            group["lr"] = preset.lr_at(epoch)
        generator = _epoch_generator(preset.seed, epoch, rank)
        net.train()
        t0 = time.perf_counter()
        total, count = torch.zeros((), dtype=torch.float64, device=device), 0  # summed on the device
        bar = tqdm(
            range(preset.steps_per_epoch),
            desc=f"{desc} {epoch}/{preset.epochs}",
            disable=not progress or rank != 0,
            leave=False,
        )
        for _ in bar:
            noisy, clean = batches(generator)
            noisy, clean = noisy.to(device, non_blocking=True), clean.to(device, non_blocking=True)
            loss = F.mse_loss(net(noisy), clean)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            total, count = total + loss.detach(), count + 1  # the loss stays on the device
            if not bar.disable and count % 50 == 1:  # a read-back stalls a GPU: not on every step
                bar.set_postfix(loss=f"{float(total) / count:.2e}")
        record: dict[str, Any] = {
            "epoch": epoch,
            "step": epoch * preset.steps_per_epoch,
            "loss": float(total) / max(count, 1),
            "lr": preset.lr_at(epoch),
            "epoch_seconds": round(time.perf_counter() - t0, 3),
        }
        if rank == 0:
            if validate is not None and (epoch % preset.val_every == 0 or epoch == preset.epochs):
                record.update({f"val_{k}": v for k, v in validate(model).items()})
            run.log(record)
            state = {
                "epoch": epoch,
                "model_state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                "optimizer_state_dict": optimizer.state_dict(),
            }
            from naflow_aug.runs import atomic_torch_save

            atomic_torch_save(state, run.path / checkpoint_name(epoch))
            _prune_checkpoints(run.path, preset.keep_checkpoints)
            log.info("%s epoch %d: %s", desc, epoch, record)
        if world > 1:
            torch.distributed.barrier()
    return model.eval()


def _barrier() -> None:
    if _dist()[1] > 1:
        torch.distributed.barrier()


def _prune_checkpoints(directory: Path, keep: int) -> None:
    found = sorted(p for p in directory.glob("checkpoint_G3_*.pth") if re.search(r"_\d{8}\.pth$", p.name))
    for p in found[:-keep]:
        p.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------------- scoring


@torch.no_grad()
def denoise(
    model: nn.Module, noisy: torch.Tensor, *, batch_size: int = 8, quantize: bool = True
) -> torch.Tensor:
    """Denoise (B, 3, H, W) float in [0, 1] in chunks on the model's device -> clamped to [0, 1], on the CPU.

    ``quantize``: round to 8 bits (round half up of x*255) as the official test script does; the result
    is then float64 so that k/255 is exact enough for the metrics' float64 arithmetic.
    """
    was_training = model.training
    model.eval()
    try:
        device = next(model.parameters()).device
    except StopIteration:  # parameter-free "denoisers" (identity)
        device = noisy.device
    outs = []
    for chunk in noisy.split(batch_size):
        out = model(chunk.to(device, torch.float32)).float().clamp_(0, 1).cpu()
        if quantize:
            out = quantize_float(out)
        outs.append(out)
    model.train(was_training)
    return torch.cat(outs)


def quantize_float(x: torch.Tensor) -> torch.Tensor:
    """[0, 1] float -> float64 multiples of 1/255: clamp, then round half up of x*255."""
    return round_half_up_exact(x).div(255.0)


def _summary(values: Sequence[float]) -> float:
    return float(np.mean(values)) if values else float("nan")


def evaluate_pairs(
    model: nn.Module,
    pairs: Iterable[Pair],
    *,
    batch_size: int = 8,
    quantize: bool = True,
    progress: bool = False,
    total: int | None = None,
    example_crop: int = 0,
    with_ssim: bool = True,
) -> dict[str, Any]:
    """PSNR / SSIM of ``model`` on ``(name, group, noisy, clean)`` pairs (one image or a batch of blocks).

    Returns ``{'overall': {'psnr', 'ssim', 'n'}, 'groups': {group: {...}}, 'items': [...]}``: means over
    all images (blocks), and over the images of each group (camera). With ``example_crop`` > 0 the
    result also holds ``'example'``: (noisy, denoised, clean) centre crops of the first image.
    ``with_ssim=False`` skips SSIM (NaN): it costs far more than PSNR on a CPU.
    """
    items: list[dict[str, Any]] = []
    example = None
    for name, group, noisy, clean in tqdm(
        pairs, total=total, desc="evaluate", disable=not progress, leave=False
    ):
        noisy_b, clean_b = to_batch(noisy), to_batch(clean, torch.float64)
        if noisy_b.shape != clean_b.shape:
            raise ValueError(f"{name}: noisy {tuple(noisy_b.shape)} != clean {tuple(clean_b.shape)}")
        out = denoise(model, noisy_b, batch_size=batch_size, quantize=quantize)
        p = metrics.psnr(out.double(), clean_b).tolist()
        s = metrics.ssim(out.double(), clean_b).tolist() if with_ssim else [float("nan")] * len(p)
        for j in range(len(p)):
            items.append(
                {"name": name if len(p) == 1 else f"{name}/{j}", "group": group, "psnr": p[j], "ssim": s[j]}
            )
        if example_crop and example is None:
            example = tuple(_centre_crop(x[0], example_crop) for x in (noisy_b, out, clean_b))
    groups: dict[str, dict[str, Any]] = {}
    for g in sorted({it["group"] for it in items}):
        sel = [it for it in items if it["group"] == g]
        groups[g] = {
            "psnr": _summary([it["psnr"] for it in sel]),
            "ssim": _summary([it["ssim"] for it in sel]),
            "n": len(sel),
        }
    result: dict[str, Any] = {
        "overall": {
            "psnr": _summary([it["psnr"] for it in items]),
            "ssim": _summary([it["ssim"] for it in items]),
            "n": len(items),
        },
        "groups": groups,
        "items": items,
    }
    if example is not None:
        result["example"] = example
    return result


def _centre_crop(x: torch.Tensor, size: int) -> torch.Tensor:
    _, h, w = x.shape
    s = min(size, h, w)
    top, left = (h - s) // 2, (w - s) // 2
    return x[:, top : top + s, left : left + s]


def sidd_validation_pairs(validation: Any) -> Iterator[Pair]:
    """``(name, camera, noisy (n, S, S, 3) uint8, clean)`` per image of a :class:`SiddValidation`."""
    for item in validation:
        yield f"{item.index:04d}", item.camera, item.noisy, item.clean


def evaluate_sidd_validation(
    model: nn.Module,
    source: str | os.PathLike | Any,
    *,
    images: Sequence[int] | None = None,
    blocks: Sequence[int] | None = None,
    batch_size: int = 8,
    quantize: bool = True,
    progress: bool = False,
    example_crop: int = 0,
    with_ssim: bool = True,
) -> dict[str, Any]:
    """PSNR / SSIM per camera and overall (mean over blocks) on SIDD validation (.mat or PNG folder)."""
    from naflow_aug.data.sidd_blocks import SiddValidation

    val = (
        source if isinstance(source, SiddValidation) else SiddValidation(source, images=images, blocks=blocks)
    )
    return evaluate_pairs(
        model,
        sidd_validation_pairs(val),
        batch_size=batch_size,
        quantize=quantize,
        progress=progress,
        total=len(val),
        example_crop=example_crop,
        with_ssim=with_ssim,
    )


def paired_folder_pairs(folder: str | os.PathLike) -> list[tuple[str, str, Path, Path]]:
    """Pairs of a user's paired folder -> ``(name, group, noisy_path, clean_path)``.

    ``folder``: a folder with ``noisy/`` (or ``input/``) and ``clean/`` (or ``groundtruth/``) subfolders
    of the same names, or a CSV manifest ``noisy,clean[,class]`` (see :mod:`naflow_aug.data.folders`).
    The group is the pair's class (``'unlabelled'`` without one).
    """
    from naflow_aug.data.folders import scan_paired_folders

    folder = Path(folder)
    if folder.suffix.lower() == ".csv":
        records = scan_paired_folders(manifest=folder)
    else:
        records = scan_paired_folders(folder)
    return [(r.name, r.cls, Path(r.noisy_path), Path(r.clean_path)) for r in records]


def load_pairs(pairs: Iterable[tuple[str, str, Any, Any]]) -> Iterator[Pair]:
    """Read paths in ``(name, group, noisy, clean)`` pairs lazily (arrays and tensors pass through)."""
    for name, group, noisy, clean in pairs:
        noisy = read_image(noisy) if isinstance(noisy, (str, Path)) else noisy
        clean = read_image(clean) if isinstance(clean, (str, Path)) else clean
        yield name, group, noisy, clean


@torch.no_grad()
def denoise_sidd_benchmark(
    model: nn.Module,
    noisy_mat: str | os.PathLike,
    out_csv: str | os.PathLike,
    *,
    batch_size: int = 8,
    progress: bool = False,
    block_size: int | None = 256,
) -> Path:
    """Denoise ``BenchmarkNoisyBlocksSrgb.mat`` and write ``SubmitSrgb.csv`` (round half up of x*255)."""
    from naflow_aug.data.sidd_blocks import (
        BENCHMARK_NOISY_KEY,
        quantize_uint8,
        read_blocks_mat,
        write_submission,
    )

    blocks = read_blocks_mat(noisy_mat, BENCHMARK_NOISY_KEY, block_size=block_size)
    out = np.empty_like(blocks)
    for i in tqdm(range(blocks.shape[0]), desc="benchmark", disable=not progress, leave=False):
        den = denoise(model, to_batch(blocks[i]), batch_size=batch_size, quantize=False)
        out[i] = quantize_uint8(den.permute(0, 2, 3, 1))
    return write_submission(out_csv, out)


# ------------------------------------------------------------------------------------------ train sources


def hdf5_batches(
    paths: str | os.PathLike | Sequence[str | os.PathLike], preset: BenchPreset, *, device: Any = None
) -> PatchBatches:
    """Batches of stored (clean, noisy) pairs from generated HDF5 files (``naflow-aug generate``)."""
    from naflow_aug.data.hdf5 import HDF5PairDataset

    return PatchBatches(
        HDF5PairDataset(paths), patch_size=preset.patch_size, batch_size=preset.batch_size, device=device
    )


def fit_dataset_baselines(dataset: Any, *, progress: bool = False) -> Any:
    """Fit the per-configuration Gaussian / Poisson-Gaussian baselines on a paired dataset's items
    (``'clean'``, ``'noisy'``, ``'cls'``): the baselines see the training pairs only."""
    from naflow_aug.baselines import fit_baselines

    def pairs() -> Iterator[tuple[torch.Tensor, torch.Tensor, str]]:
        for i in tqdm(range(len(dataset)), desc="fit baselines", disable=not progress, leave=False):
            item = dataset[i]
            name = next((item[k] for k in ("cls", "config", "label") if isinstance(item.get(k), str)), None)
            if name is None or item.get("noisy") is None:
                raise ValueError("fitting baselines needs items with 'clean', 'noisy' and a 'cls' name")
            yield to_image(item["clean"]), to_image(item["noisy"]), name

    return fit_baselines(pairs())


def noise_sources(
    specs: Sequence[str],
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
    from naflow_aug.sampling import make_noise_source, parse_noise_spec

    out = []
    for spec in specs:
        kind, arg = parse_noise_spec(spec)
        if kind in ("gaussian-per-config", "poisson-gaussian") and arg is None and baselines is None:
            baselines = fit_dataset_baselines(dataset, progress=progress)
        source = make_noise_source(spec, model, baselines=baselines, device=device)
        batches = PatchBatches(
            dataset, patch_size=preset.patch_size, batch_size=preset.batch_size, noise=source, device=device
        )
        out.append(TrainSource(spec, batches, describe=repr(source)))
    return out


# --------------------------------------------------------------------------------------------- the bench


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
            import json

            return json.loads(run.results_path.read_text(encoding="utf-8"))
        raise ValueError(f"{run.path} already holds a finished run; pass resume=True or another folder")
    if not resume and any(run.path.iterdir()):
        existing = [p.name for p in run.path.iterdir()]
        if "sources" in existing or "metrics.jsonl" in existing:
            raise ValueError(f"{run.path} holds an unfinished run; pass resume=True to continue it")
    if not sources:
        raise ValueError("no training sources given")
    names = [s.name for s in sources]
    if len(set(map(slug, names))) != len(names):
        raise ValueError(f"source names must be distinct, got {names}")
    if sidd_val is None and evaluation is None:
        raise ValueError("nothing to score on: give sidd_val and/or evaluation pairs")
    rank, _ = _dist()
    _barrier()  # every rank has checked the folder before rank 0 writes into it
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

    from naflow_aug.data.sidd_blocks import SiddValidation

    val_subset = full_val = None
    if sidd_val is not None:
        full_val = SiddValidation(sidd_val, block_size=None)  # any square block size (tests use tiny ones)
        n_img = preset.val_images or len(full_val.images)
        n_blk = preset.val_blocks or len(full_val.blocks)
        val_subset = full_val.subset(images=full_val.images[:n_img], blocks=full_val.blocks[:n_blk])

    def validate(model: nn.Module) -> dict[str, float]:
        res: dict[str, float] = {}
        if val_subset is not None:
            r = evaluate_sidd_validation(
                model,
                val_subset,
                batch_size=preset.eval_batch_size,
                quantize=preset.quantize,
                with_ssim=False,
            )
            res["sidd_psnr"] = r["overall"]["psnr"]
        if validation is not None or evaluation is not None:
            pairs = validation() if validation is not None else _validation_subset(evaluation(), preset)
            r = evaluate_pairs(
                model, pairs, batch_size=preset.eval_batch_size, quantize=preset.quantize, with_ssim=False
            )
            res["pairs_psnr"] = r["overall"]["psnr"]
        res["psnr"] = res.get("sidd_psnr", res.get("pairs_psnr"))
        return res

    rows = []
    for source in sources:
        sub = RunDir(run.path / "sources" / slug(source.name))
        if sub.finished:
            import json

            rows.append(json.loads(sub.results_path.read_text(encoding="utf-8")))
            continue
        if rank == 0:
            sub.write_config(
                {"source": source.name, "describe": source.describe, "preset": config_to_dict(preset)}
            )
        t0 = time.perf_counter()
        if source.model is not None:
            model = source.model.to(device).eval()
        elif source.batches is None:
            raise ValueError(f"source {source.name!r} has neither batches nor a model")
        else:
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
        train_seconds = time.perf_counter() - t0
        if rank != 0:
            _barrier()  # wait while rank 0 scores, so that every rank starts the next source together
            continue
        row: dict[str, Any] = {
            "source": source.name,
            "describe": source.describe,
            "train_seconds": round(train_seconds, 1),
            "steps": 0 if source.model is not None else preset.epochs * preset.steps_per_epoch,
        }
        example = None
        t0 = time.perf_counter()
        if full_val is not None:
            r = evaluate_sidd_validation(
                model,
                full_val,
                batch_size=preset.eval_batch_size,
                quantize=preset.quantize,
                progress=progress,
                example_crop=preset.grid_crop,
            )
            row["sidd_val"] = {"overall": r["overall"], "cameras": r["groups"], "items": _items(r)}
            example = r.get("example")
        if evaluation is not None:
            r = evaluate_pairs(
                model,
                evaluation(),
                batch_size=preset.eval_batch_size,
                quantize=preset.quantize,
                progress=progress,
                example_crop=preset.grid_crop,
            )
            row["pairs"] = {"overall": r["overall"], "groups": r["groups"], "items": _items(r)}
            example = example or r.get("example")
        row["eval_seconds"] = round(time.perf_counter() - t0, 1)
        if sidd_bench is not None:
            csv_path = denoise_sidd_benchmark(
                model,
                sidd_bench,
                sub.path / "SubmitSrgb.csv",
                batch_size=preset.eval_batch_size,
                progress=progress,
                block_size=None,
            )
            row["submission"] = str(csv_path)
        if example is not None:
            _save_strip(example, sub.path / "example.png")
        if source.model is None:
            save_dncnn(model, sub.path / "denoiser.pth")  # bare state dict of the final weights
        sub.write_results(row)
        rows.append(row)
        _barrier()
    if rank != 0:
        return {}
    results = {"preset": preset.preset, "rows": rows}
    atomic_write_text(run.path / "results.md", results_markdown(rows))
    grid = write_grid(run.path, [r["source"] for r in rows])
    if grid is not None:
        results["grid"] = str(grid)
    try:
        results["curves"] = str(plot_curves(run.path, [r["source"] for r in rows]))
    except ImportError as err:  # matplotlib is optional at run time
        log.warning("no curves plot: %s", err)
    run.write_results(results)
    return results


def _items(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    # per-image scores, kept so that runs with other seeds or sources can be compared image by image
    return [{k: it[k] for k in ("name", "group", "psnr", "ssim")} for it in result["items"]]


def _validation_subset(pairs: Iterable[Pair], preset: BenchPreset) -> Iterator[Pair]:
    # per-epoch validation: the first val_images pairs, centre crops of val_crop (PSNR only)
    for i, (name, group, noisy, clean) in enumerate(pairs):
        if preset.val_images and i >= preset.val_images:
            return
        noisy_b, clean_b = to_batch(noisy), to_batch(clean, torch.float64)
        if preset.val_crop:
            noisy_b = torch.stack([_centre_crop(x, preset.val_crop) for x in noisy_b])
            clean_b = torch.stack([_centre_crop(x, preset.val_crop) for x in clean_b])
        yield name, group, noisy_b, clean_b


def make_dncnn(preset: BenchPreset) -> DnCNN:
    """The preset's DnCNN; with ``zero_init_last`` the last conv starts at zero (the network starts as
    the identity, so a short CPU run learns to remove noise instead of first undoing a random init)."""
    model = DnCNN(preset.dncnn)
    if preset.zero_init_last:
        last = model.model[-1]
        nn.init.zeros_(last.weight)
        nn.init.zeros_(last.bias)
    return model


# ----------------------------------------------------------------------------------- from files (the CLI)


class CleanFolder:
    """Clean images of a folder (recursive, as `iter_images`) as items ``{'clean': (H, W, 3) uint8}``."""

    def __init__(self, root: str | os.PathLike, *, cache: bool = True):
        self.root = Path(root)
        if not self.root.is_dir():
            raise ValueError(f"clean image folder {self.root} does not exist")
        self.paths = sorted(iter_images(self.root))
        if not self.paths:
            raise ValueError(f"{self.root} holds no images ({sorted(IMAGE_SUFFIXES)})")
        self._cache: dict[int, np.ndarray] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, index: int) -> dict[str, Any]:
        if self._cache is not None and index in self._cache:
            return {"clean": self._cache[index]}
        image = read_image(self.paths[index])
        if self._cache is not None:
            self._cache[index] = image
        return {"clean": image}


class SiddPairsInMemory:
    """SIDD pairs decoded once into memory as items ``{'clean', 'noisy'}`` (H, W, 3) uint8 + ``'cls'``."""

    def __init__(self, pairs: Sequence[Any], *, progress: bool = False):
        if not pairs:
            raise ValueError("no SIDD pairs selected")
        self.pairs = list(pairs)
        self.images = [
            (read_image(p.clean_path), read_image(p.noisy_path))
            for p in tqdm(self.pairs, desc="read pairs", disable=not progress, leave=False)
        ]
        for p, (c, n) in zip(self.pairs, self.images, strict=True):
            if c.shape != n.shape:
                raise ValueError(f"{p.noisy_path}: size {n.shape} differs from its clean image {c.shape}")

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> dict[str, Any]:
        clean, noisy = self.images[index]
        return {"clean": clean, "noisy": noisy, "cls": self.pairs[index].cls}


def sidd_split_data(
    root: str | os.PathLike, split: str | os.PathLike | None = None, *, progress: bool = False
) -> tuple[Any, Callable[[], Iterator[Pair]] | None]:
    """A SIDD-Medium-layout folder -> (training dataset of whole pairs with ``cls``, held-out pairs).

    With ``split`` (``'sidd-mini'`` or a split TOML) training uses the split's training instances and
    the held-out pairs are the real (noisy, clean) images of its validation instances, grouped by phone.
    """
    from naflow_aug.data.pairs import load_split, split_pairs
    from naflow_aug.data.sidd import scan_sidd_medium

    pairs = list(scan_sidd_medium(root, progress=progress))
    if split is None:
        return SiddPairsInMemory(pairs, progress=progress), None
    train_ids, val_ids = load_split(split)
    missing = sorted(set(train_ids) - {p.instance for p in pairs})
    if missing:
        raise ValueError(f"split {split}: training instances {missing} are not in {root}")
    train_pairs, held = split_pairs(pairs, (train_ids, val_ids))
    train = SiddPairsInMemory(train_pairs, progress=progress)
    if not held:
        raise ValueError(f"none of the split's validation instances {val_ids} is in {root}")

    def held_out() -> Iterator[Pair]:
        return load_pairs((p.name, p.sidd.phone, p.noisy_path, p.clean_path) for p in held)

    return train, held_out


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
        if not noise:
            raise ValueError("--clean needs at least one --noise source (e.g. --noise nas --noise real)")
        root = Path(clean)
        if not root.is_dir():
            raise ValueError(f"clean folder {root} does not exist")
        if looks_like_sidd_medium(root):
            dataset, evaluation = sidd_split_data(root, split, progress=progress)
        elif split is not None:
            raise ValueError(f"--split needs a SIDD-Medium-layout folder; {root} is a plain image folder")
        else:
            dataset = CleanFolder(root)
        from naflow_aug.baselines import Baselines

        fitted = Baselines.load(baselines) if baselines is not None else None
        if fitted is None and any(
            n.split(":")[0] in ("gaussian-per-config", "poisson-gaussian") for n in noise
        ):
            fitted = fit_dataset_baselines(dataset, progress=progress)
            fitted.save(run.path / "baselines.json")
        sources += noise_sources(list(noise), dataset, preset, model=model, baselines=fitted, device=device)
    elif noise:
        raise ValueError("--noise needs --clean DIR (the clean images the noise is added to)")
    for ckpt in denoisers:
        from naflow_aug.denoisers.dncnn import load_dncnn

        if str(ckpt) == "identity":  # the noisy input itself: the table's reference row
            sources.append(TrainSource("noisy input", None, describe="no denoising", model=nn.Identity()))
            continue
        sources.append(
            TrainSource(
                f"checkpoint:{Path(ckpt).name}", None, describe=str(ckpt), model=load_dncnn(ckpt, device)
            )
        )
    if not sources:
        raise ValueError("nothing to benchmark: give --train FILE.h5, --clean DIR --noise SRC, or --denoiser")
    if pairs is not None:
        listed = paired_folder_pairs(pairs)
        if evaluation is not None:
            held = evaluation

            def evaluation() -> Iterator[Pair]:
                yield from held()
                yield from load_pairs(listed)
        else:

            def evaluation() -> Iterator[Pair]:
                return load_pairs(listed)

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


# ---------------------------------------------------------------------------------------------- reports


def results_markdown(rows: Sequence[Mapping[str, Any]]) -> str:
    """One row per source: overall PSNR / SSIM, then PSNR per camera (group)."""
    key = "sidd_val" if any("sidd_val" in r for r in rows) else "pairs"
    groups_key = "cameras" if key == "sidd_val" else "groups"
    groups = sorted({g for r in rows for g in r.get(key, {}).get(groups_key, {})})
    head = ["source", "PSNR", "SSIM", *[f"{g} PSNR" for g in groups], "train s"]
    lines = [
        f"Scored on: {'SIDD validation blocks' if key == 'sidd_val' else 'held-out pairs'} "
        "(mean over images/blocks; denoised output clamped and rounded to 8 bits)",
        "",
        "| " + " | ".join(head) + " |",
        "|" + "---|" * len(head),
    ]
    for r in rows:
        res = r.get(key, {})
        ov = res.get("overall", {})
        cells = [
            str(r["source"]),
            f"{ov.get('psnr', float('nan')):.2f}",
            f"{ov.get('ssim', float('nan')):.4f}",
        ]
        cells += [f"{res.get(groups_key, {}).get(g, {}).get('psnr', float('nan')):.2f}" for g in groups]
        cells.append(f"{r.get('train_seconds', 0):.0f}")
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def _save_strip(example: Sequence[torch.Tensor], path: Path) -> None:
    from PIL import Image

    strip = np.concatenate(
        [round_half_up(x).to(torch.uint8).permute(1, 2, 0).cpu().numpy() for x in example], axis=1
    )
    Image.fromarray(strip).save(path)


def write_grid(out: Path, sources: Sequence[str]) -> Path | None:
    """Stack each source's ``example.png`` strip (noisy | denoised | clean) into ``grid.png``."""
    from PIL import Image, ImageDraw

    strips = []
    for name in sources:
        p = out / "sources" / slug(name) / "example.png"
        if p.is_file():
            with Image.open(p) as im:
                strips.append((name, np.asarray(im.convert("RGB"))))
    if not strips:
        return None
    label_w = 160
    h = max(s.shape[0] for _, s in strips)
    w = max(s.shape[1] for _, s in strips)
    canvas = Image.new("RGB", (label_w + w, h * len(strips) + 16), "white")
    draw = ImageDraw.Draw(canvas)
    third = w // 3
    for j, title in enumerate(("noisy", "denoised", "clean")):
        draw.text((label_w + j * third + 4, 2), title, fill="black")
    for i, (name, s) in enumerate(strips):
        canvas.paste(Image.fromarray(s), (label_w, 16 + i * h))
        draw.text((4, 16 + i * h + h // 2), name[:26], fill="black")
    path = out / "grid.png"
    canvas.save(path)
    return path


def plot_curves(out: Path, sources: Sequence[str]) -> Path:
    """Validation PSNR per epoch of every source in one figure: ``curves.png``."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for name in sources:
        records = RunDir(out / "sources" / slug(name)).read_log()
        pts = [(r["epoch"], r["val_psnr"]) for r in records if r.get("val_psnr") is not None]
        if pts:
            ax.plot(*zip(*pts, strict=True), marker="o", label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation PSNR (dB)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path = out / "curves.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


__all__ = [
    "CPU",
    "PAPER",
    "BenchPreset",
    "PatchBatches",
    "TrainSource",
    "denoise",
    "denoise_sidd_benchmark",
    "evaluate_pairs",
    "evaluate_sidd_validation",
    "init_distributed",
    "load_pairs",
    "load_preset",
    "paired_folder_pairs",
    "results_markdown",
    "run_benchmark",
    "train_denoiser",
]
