"""Noise quality on held-out real pairs: KLD / AKLD of any noise source, NAFlow's posterior accuracy.

``noise_quality(pairs, sources, model=...)`` is the evaluation the demo report (and the noise-quality
benchmark) shows: every noise source of :mod:`naflow_aug.noise` makes synthetic noisy versions of each
held-out clean image, and KLD / AKLD (:mod:`naflow_aug.metrics`) compare them with the real noisy image,
overall and per camera configuration. With a model, the posterior top-1 / top-3 accuracy says how often
the pair's true configuration is (among) the most likely of the model's configurations.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from tqdm.auto import tqdm

from naflow_aug import metrics

log = logging.getLogger(__name__)

__all__ = ["HeldOutPair", "TRUE_CONFIG", "noise_quality", "posterior_accuracy", "trim_to_multiple"]

#: the pseudo-spelling of "the model's Gaussian of each pair's own configuration" (needs the label)
TRUE_CONFIG = "true-config"


@dataclass(frozen=True)
class HeldOutPair:
    """One held-out real pair: ``clean`` and ``noisy`` (3, H, W) float in [0, 1], its configuration."""

    name: str
    cls: str
    clean: torch.Tensor
    noisy: torch.Tensor


def trim_to_multiple(x: torch.Tensor, multiple: int, max_size: int = 0) -> torch.Tensor:
    """Centre crop of (..., H, W) to sides that are multiples of ``multiple`` (and at most ``max_size``)."""
    h, w = x.shape[-2:]
    th, tw = h - h % multiple, w - w % multiple
    if max_size:
        cap = max_size - max_size % multiple
        th, tw = min(th, cap), min(tw, cap)
    if th < multiple or tw < multiple:
        raise ValueError(f"image of {h}x{w} is smaller than one {multiple}x{multiple} block")
    top, left = (h - th) // 2, (w - tw) // 2
    return x[..., top : top + th, left : left + tw]


def _mean(values: Sequence[float]) -> float:
    return float(sum(values) / len(values)) if values else math.nan


@torch.no_grad()
def posterior_accuracy(model: Any, pairs: Iterable[HeldOutPair]) -> dict[str, Any]:
    """Top-1 / top-3 accuracy of the model's posterior over configurations, per true configuration.

    Pairs whose configuration the model does not have are counted under ``unknown``. Returns
    ``{'classes': {cls: {'top1', 'top3', 'n'}}, 'overall': {...}, 'unknown': n}``.
    """
    device = next(model.parameters()).device
    classes = list(model.classes)
    hits: dict[str, list[tuple[float, float]]] = {}
    unknown = 0
    for pair in pairs:
        if pair.cls not in classes:
            unknown += 1
            continue
        noisy = trim_to_multiple(pair.noisy, model.size_multiple)[None].to(device)
        clean = trim_to_multiple(pair.clean, model.size_multiple)[None].to(device)
        z, _ = model.encode(noisy, clean)
        ll = model.class_log_likelihood(z)[0]
        top = torch.topk(ll, min(3, ll.numel())).indices.tolist()
        label = classes.index(pair.cls)
        hits.setdefault(pair.cls, []).append((float(top[0] == label), float(label in top)))
    per_class = {
        c: {"top1": _mean([a for a, _ in v]), "top3": _mean([b for _, b in v]), "n": len(v)}
        for c, v in sorted(hits.items())
    }
    everything = [h for v in hits.values() for h in v]
    overall = {
        "top1": _mean([a for a, _ in everything]),
        "top3": _mean([b for _, b in everything]),
        "n": len(everything),
    }
    return {"classes": per_class, "overall": overall, "unknown": unknown}


def noise_quality(
    pairs: Sequence[HeldOutPair],
    sources: Mapping[str, Any],
    *,
    model: Any = None,
    samples: int = 1,
    generator: torch.Generator | None = None,
    only_classes: Mapping[str, Sequence[str]] | None = None,
    progress: bool = False,
) -> dict[str, Any]:
    """KLD / AKLD of each noise source against the real noise of ``pairs``, overall and per configuration.

    ``sources``: display name -> a noise source (:func:`naflow_aug.noise.make_noise_source`) or the
    string :data:`TRUE_CONFIG` (the model's Gaussian of each pair's own configuration; pairs whose
    configuration the model lacks are skipped). Each source gets each pair's real noisy image as its
    reference and the pair's configuration as its ``configs``. ``only_classes`` limits a source to pairs of
    some configurations (e.g. a profile calibrated on one camera). ``samples`` draws per pair, all from
    ``generator``. With ``model`` the result also holds the posterior accuracy (``'posterior'``).

    Returns ``{'sources': [{'source', 'kld', 'akld', 'n', 'classes': {cls: {'kld', 'akld', 'n'}}}],
    'posterior': {...} or None, 'pairs': len(pairs), 'samples': samples}``.
    """
    if samples < 1:
        raise ValueError(f"samples must be >= 1, got {samples}")
    if not pairs:
        raise ValueError("noise_quality got no held-out pairs")
    if any(s == TRUE_CONFIG for s in sources.values()) and model is None:
        raise ValueError(f"the {TRUE_CONFIG!r} source needs the model")
    g = generator if generator is not None else torch.Generator().manual_seed(0)
    multiple = model.size_multiple if model is not None else 1
    rows = []
    total = len(sources) * len(pairs) * samples
    bar = tqdm(total=total, desc="noise quality", unit="sample", disable=not progress, leave=False)
    for name, source in sources.items():
        allowed = None if only_classes is None or name not in only_classes else set(only_classes[name])
        per: dict[str, list[tuple[float, float]]] = {}
        for pair in pairs:
            if (allowed is not None and pair.cls not in allowed) or (
                source == TRUE_CONFIG and pair.cls not in list(model.classes)
            ):
                bar.update(samples)
                continue
            clean = trim_to_multiple(pair.clean, multiple)[None]
            noisy = trim_to_multiple(pair.noisy, multiple)[None]
            for _ in range(samples):
                fake = _synthetic_noisy(source, model, pair.cls, clean, noisy, g)
                per.setdefault(pair.cls, []).append(
                    (float(metrics.kld(noisy, fake, clean)), float(metrics.akld(noisy, fake, clean)))
                )
                bar.update(1)
        rows.append(_quality_row(name, source, per))
    bar.close()
    posterior = posterior_accuracy(model, pairs) if model is not None else None
    return {"sources": rows, "posterior": posterior, "pairs": len(pairs), "samples": samples}


def _synthetic_noisy(
    source: Any, model: Any, config: str, clean: torch.Tensor, noisy: torch.Tensor, generator: torch.Generator
) -> torch.Tensor:
    """One synthetic noisy image of ``clean`` (1, 3, H, W) from ``source``, on the CPU in float."""
    if source == TRUE_CONFIG:
        device = next(model.parameters()).device
        seed = int(torch.randint(0, 2**62, (), generator=generator))
        fake = model.sample(clean.to(device), config=config, seeds=[seed]).cpu()
    else:
        configs = [config] if config in (getattr(source, "classes", None) or ()) else None
        fake, _ = source(clean, reference=noisy, configs=configs, generator=generator)
    return fake.float().cpu()


def _quality_row(name: str, source: Any, per: Mapping[str, Sequence[tuple[float, float]]]) -> dict[str, Any]:
    """One source's row: KLD / AKLD over every sample, and per configuration."""
    everything = [v for vs in per.values() for v in vs]
    row = {
        "source": name,
        "spec": source if isinstance(source, str) else getattr(source, "spec", repr(source)),
        "kld": _mean([k for k, _ in everything]),
        "akld": _mean([a for _, a in everything]),
        "n": len(everything),
        "classes": {
            c: {"kld": _mean([k for k, _ in v]), "akld": _mean([a for _, a in v]), "n": len(v)}
            for c, v in sorted(per.items())
        },
    }
    log.info("noise quality %s: KLD %.4f AKLD %.4f (%d samples)", name, row["kld"], row["akld"], row["n"])
    return row
