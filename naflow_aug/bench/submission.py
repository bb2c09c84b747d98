"""The SIDD benchmark submission: denoise ``BenchmarkNoisyBlocksSrgb.mat`` into ``SubmitSrgb.csv``."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm

from naflow_aug.bench.batches import to_batch
from naflow_aug.bench.scoring import denoise
from naflow_aug.data.sidd_blocks import BENCHMARK_NOISY_KEY, quantize_uint8, read_blocks_mat, write_submission


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
    blocks = read_blocks_mat(noisy_mat, BENCHMARK_NOISY_KEY, block_size=block_size)
    out = np.empty_like(blocks)
    for i in tqdm(range(blocks.shape[0]), desc="benchmark", disable=not progress, leave=False):
        den = denoise(model, to_batch(blocks[i]), batch_size=batch_size, quantize=False)
        out[i] = quantize_uint8(den.permute(0, 2, 3, 1))
    return write_submission(out_csv, out)

