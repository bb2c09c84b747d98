"""How big a demo run is: :class:`DemoSize` and the named sizes in :data:`SIZES`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

__all__ = ["SIZES", "DemoSize", "get_size"]


@dataclass(frozen=True)
class DemoSize:
    """How big a demo run is. ``default``: the full run (its time: README); ``tiny``: a smoke test of every
    stage."""

    name: str
    # simulated camera
    scenes_per_config: int
    size_range: tuple[int, int]
    shots: int
    heldout_scenes: int  # scenes whose instances are held out (never trained on)
    # real data (--data): fraction of scenes held out, centre crop of held-out images (0: whole)
    heldout_fraction: float = 0.15
    eval_crop: int = 0
    # NAFlow training (overrides of the cpu preset)
    naflow_steps: int = 1500
    naflow_model: dict[str, Any] = field(default_factory=dict)  # NAFlowConfig fields (empty: published)
    naflow_crop: int = 64
    naflow_batch: int = 8
    naflow_val_every: int = 500
    naflow_val_pairs: int = 12
    # noise quality: samples per pair and seed
    eval_samples: int = 1
    figure_pairs: int = 6
    # HDF5 generation (NAS from each training crop's own real noisy image)
    gen_crop: int = 96
    gen_stride: int = 64
    gen_crops_per_image: int = 2  # real data: random crops per image
    # real data: the training pairs of the baselines and denoisers are random crops, decoded once
    train_crop: int = 256
    train_crops_per_image: int = 4
    # denoiser bench (overrides of bench's cpu preset)
    bench: dict[str, Any] = field(default_factory=dict)
    bench_val_pairs: int = 12  # held-out pairs scored after every epoch (the curves), all configurations
    # every denoiser and the noise-quality samples are repeated with this many seeds (seed, seed + 1, ...)
    seeds: int = 3

    def __post_init__(self) -> None:
        if isinstance(self.seeds, bool) or not isinstance(self.seeds, int) or self.seeds < 1:
            raise ValueError(f"DemoSize {self.name!r}: seeds must be an int >= 1, got {self.seeds!r}")


SIZES: dict[str, DemoSize] = {
    "default": DemoSize(
        name="default",
        scenes_per_config=10,
        size_range=(128, 192),
        shots=2,
        heldout_scenes=3,
        eval_crop=512,
        # 3000 steps: NAS-trained DnCNN 30.47 dB vs 29.08 dB at 1200 steps
        naflow_steps=3000,
        naflow_model={"hidden_channels": 32, "encoder_channels": 64},
        # the bench cpu preset's DnCNN (depth 8, width 32, identity start, lr x0.1 for the last 20%),
        # repeated over 3 seeds, with 1,600 steps of 8 x 24x24 patches: the pixels of 400 steps of 48x48
        # patches (about the CPU time of the same), four times the steps. How it was chosen (on a second
        # simulated draw, not the test pairs): README, "The main job"
        bench={
            "depth": 8,
            "width": 32,
            "patch_size": 24,
            "epochs": 10,
            "steps_per_epoch": 160,
            "lr_milestones": (8,),
            "val_every": 2,
        },
    ),
    "tiny": DemoSize(
        name="tiny",
        scenes_per_config=4,
        size_range=(64, 64),
        shots=1,
        heldout_scenes=2,
        eval_crop=128,
        naflow_steps=20,
        naflow_model={"hidden_channels": 8, "encoder_channels": 8, "conditional_steps": 1},
        naflow_crop=32,
        naflow_batch=4,
        naflow_val_every=0,
        naflow_val_pairs=3,
        figure_pairs=2,
        gen_crop=32,
        gen_stride=32,
        gen_crops_per_image=2,
        bench={
            "depth": 3,
            "width": 8,
            "patch_size": 32,
            "batch_size": 4,
            "epochs": 2,
            "steps_per_epoch": 3,
            "lr_milestones": (),
            "grid_crop": 48,
        },
        bench_val_pairs=3,
        seeds=2,
    ),
}


def get_size(size: str | DemoSize) -> DemoSize:
    """A :class:`DemoSize` or the name of one in :data:`SIZES`."""
    if isinstance(size, DemoSize):
        return size
    if size not in SIZES:
        raise ValueError(f"size must be one of {sorted(SIZES)}, got {size!r}")
    return SIZES[size]
