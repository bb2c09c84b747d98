"""A training step's batch as a pure function of (seed, step, rank): the data stream needs no iterator
state, so a resumed run draws exactly what the uninterrupted run drew."""

from __future__ import annotations

import torch

from naflow_aug.data.images import read_crop
from naflow_aug.data.pairs import Pair
from naflow_aug.images import to_float
from naflow_aug.runtime.seeding import step_generator
from naflow_aug.train.config import TrainConfig


class StepBatches(torch.utils.data.Dataset):
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
        g = step_generator(c.seed, step, self.rank)
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
