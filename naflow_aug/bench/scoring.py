"""Scoring a denoiser: PSNR / SSIM of its output, clamped to [0, 1] and rounded to 8 bits as the official
test script does, on ``(name, group, noisy, clean)`` pairs or SIDD validation blocks (per camera and
overall); and the per-epoch validation subset."""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from naflow_aug import metrics
from naflow_aug.bench.batches import Pair, to_batch
from naflow_aug.bench.presets import BenchPreset
from naflow_aug.data.sidd_blocks import SiddValidation
from naflow_aug.images import round_half_up_exact


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



def score_items(result: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The per-image scores of an evaluation (``name``, ``group``, ``psnr``, ``ssim``), kept so that runs
    with other seeds or sources can be compared image by image."""
    return [{k: it[k] for k in ("name", "group", "psnr", "ssim")} for it in result["items"]]


def validation_subset(pairs: Iterable[Pair], preset: BenchPreset) -> Iterator[Pair]:
    """Per-epoch validation: the first ``val_images`` pairs, centre crops of ``val_crop`` (PSNR only)."""
    for i, (name, group, noisy, clean) in enumerate(pairs):
        if preset.val_images and i >= preset.val_images:
            return
        noisy_b, clean_b = to_batch(noisy), to_batch(clean, torch.float64)
        if preset.val_crop:
            noisy_b = torch.stack([_centre_crop(x, preset.val_crop) for x in noisy_b])
            clean_b = torch.stack([_centre_crop(x, preset.val_crop) for x in clean_b])
        yield name, group, noisy_b, clean_b

