"""Held-out metrics during and after training: NLL, KLD/AKLD of NAS and true-configuration samples,
top-1/3 configuration accuracy."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import nn

from naflow_aug import metrics
from naflow_aug.data.pairs import Pair
from naflow_aug.images import to_float
from naflow_aug.train.config import TrainConfig
from naflow_aug.train.pairs import read_pair


@dataclass
class ValSet:
    noisy: list[torch.Tensor]  # each (1, 3, H, W) float in [0, 1]
    clean: list[torch.Tensor]
    labels: list[int]  # class ids, -1 where the model does not know the class
    names: list[str]


def make_val_set(pairs: list[Pair], classes: Sequence[str], config: TrainConfig) -> ValSet:
    index = {c: i for i, c in enumerate(classes)}
    chosen = pairs[: config.val_max_pairs] if config.val_max_pairs else pairs
    out = ValSet([], [], [], [])
    for pair in chosen:
        noisy, clean = read_pair(pair)
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
def evaluate(model: nn.Module, val: ValSet, *, samples: int = 2, cond_noise_std: float = 3.0 / 255.0,
             seed: int = 0, device: torch.device | None = None) -> dict[str, float]:
    """Held-out metrics: NLL (true class), KLD/AKLD of NAS and true-configuration samples, top-1/3 accuracy.

    Metrics are averaged over pairs and ``samples`` draws; every draw comes from a generator seeded by
    ``seed``, so two evaluations of one model give the same numbers.
    """
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
