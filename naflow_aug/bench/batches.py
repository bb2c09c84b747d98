"""Training batches: random ``(noisy, clean)`` patches drawn from a dataset of dicts, the noisy patch
stored or made on the fly by a noise source; and the image/batch conversions the bench reads with."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
import torch

from naflow_aug.images import to_float

Batch = tuple[torch.Tensor, torch.Tensor]  # (noisy, clean), each (B, 3, h, w) float in [0, 1]
# (name, group, noisy, clean): noisy/clean (B, 3, H, W) or (3, H, W), float in [0, 1] or uint8 HWC
Pair = tuple[str, str, Any, Any]


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
