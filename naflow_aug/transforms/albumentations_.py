"""NAFlow noise as an albumentations 2.x transform (HWC numpy images, DataLoader workers)."""

from __future__ import annotations

import logging
import os
import random
from typing import Any

import albumentations as A
import numpy as np
import torch

from naflow_aug import tiling
from naflow_aug.noise.profiles import profile_source
from naflow_aug.noise.registry import make_noise_source, parse_noise_spec
from naflow_aug.noise.source import NoiseSource
from naflow_aug.noise.spec import NoiseSpec
from naflow_aug.transforms._images import float_batch_to_hwc, hwc_to_float_batch
from naflow_aug.transforms._workers import WorkerSeeding, mix_seeds

log = logging.getLogger(__name__)
_SEED_HIGH = 2**63 - 1
_UNSEEDED = 2**64 - 1  # stands for "no seed" in the per-worker mix


class NAFlowNoiseAlb(A.ImageOnlyTransform):
    """Turn ``image`` into its noisy version; every other image target (e.g. ``clean``) stays untouched.

    Typical use, yielding (noisy, clean) pairs::

        pipe = A.Compose([A.RandomCrop(128, 128), NAFlowNoiseAlb("sidd-mini")],
                         additional_targets={"clean": "image"})
        out = pipe(image=img, clean=img)      # out["image"] noisy, out["clean"] the same crop, clean

    When no ``clean`` target is given, the output gets one (``clean_key``) holding the input image. Images
    are (H, W, 3) uint8 or float32 in [0, 1]; the output has the input's dtype. ``nas`` and ``real`` read
    the real noisy image from the ``reference_key`` target (add it as an additional target of type "image"
    so spatial transforms crop it too). The parameters of the last call (seed, mixture weights) are in
    ``get_applied_params()["noise_params"]``.

    Serialisable (``A.to_dict`` / ``A.from_dict``) when ``model``, ``profile`` and ``baselines`` are names or
    paths. In DataLoader workers the model is loaded lazily, once per worker, and torch is limited to one
    thread there. Seeds: from the transform's albumentations random state when the pipeline is seeded
    (``A.Compose(..., seed=N)``; in a DataLoader worker that state is re-seeded from ``N`` and the worker's
    torch seed, so it differs per worker and per epoch), else from torch's default generator (which
    DataLoader seeds per worker).
    """

    def __init__(
        self,
        model: Any = None,
        noise: str | NoiseSpec = "random",
        profile: str | os.PathLike | None = None,
        baselines: str | os.PathLike | None = None,
        temperature: float = 1.0,
        top_k: int | None = None,
        tile_size: int | None = tiling.DEFAULT_TILE_SIZE,
        overlap: int = tiling.DEFAULT_OVERLAP,
        clean_key: str = "clean",
        reference_key: str = "reference",
        p: float = 1.0,
    ) -> None:
        super().__init__(p=p)
        if isinstance(noise, NoiseSource):
            raise TypeError(
                "NAFlowNoiseAlb takes a noise spelling (str); use NAFlowNoise for NoiseSource objects"
            )
        self._spec = parse_noise_spec(noise)  # fails early on a bad spelling; the source is built from it
        if profile is not None and self._spec.text != "random":
            raise ValueError(f"give noise= or profile=, not both (got noise={self._spec.text!r})")
        self.model = str(model) if isinstance(model, os.PathLike) else model
        self.noise = self._spec.text  # the spelling (what A.to_dict writes)
        self.profile = str(profile) if isinstance(profile, os.PathLike) else profile
        self.baselines = str(baselines) if isinstance(baselines, os.PathLike) else baselines
        self.temperature = temperature
        self.top_k = top_k
        self.tile_size = tile_size
        self.overlap = overlap
        self.clean_key = clean_key
        self.reference_key = reference_key
        self._source: NoiseSource | None = None
        self._source_pid: int | None = None
        self._worker = WorkerSeeding()
        if not isinstance(self.model, str | None):
            self._build_source()  # a model object: check everything now

    # --------------------------------------------------------------------------------- the source
    def _build_source(self) -> NoiseSource:
        common = dict(
            temperature=self.temperature, top_k=self.top_k, tile_size=self.tile_size, overlap=self.overlap
        )
        if self.profile is not None:
            return profile_source(self.model, self.profile, **common)
        return make_noise_source(self._spec, self.model, baselines=self.baselines, **common)

    @property
    def source(self) -> NoiseSource:
        """The noise source, built on first use in each process (DataLoader workers load the model once)."""
        if self._source is None or self._source_pid != os.getpid():
            self._enter_worker()
            self._source = self._build_source()
            self._source_pid = os.getpid()
        return self._source

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        if isinstance(
            self.model, str | None
        ):  # workers reload by name or path rather than unpickling weights
            state["_source"] = None
        return state

    def _enter_worker(self) -> None:
        """In a new DataLoader worker: re-seed the transform's albumentations random state (its ``p`` draws;
        its noise seeds when the pipeline is seeded) from its seed and the worker's torch seed, else every
        worker, and every epoch's fresh workers, would repeat the same draws."""
        worker_seed = self._worker.enter()
        if worker_seed is not None:
            mixed = mix_seeds(_UNSEEDED if self.seed is None else self.seed, worker_seed)
            self.random_generator = np.random.default_rng(mixed)
            self.py_random = random.Random(mixed)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self._enter_worker()  # before albumentations draws anything (the p check comes first)
        return super().__call__(*args, **kwargs)

    # -------------------------------------------------------------------------- albumentations API
    @property
    def targets_as_params(self) -> list[str]:
        return [self.reference_key] if self._spec.needs_reference else []

    def add_targets(self, additional_targets: dict[str, str]) -> None:
        # additional image targets (the clean copy, the reference) must stay untouched: do not map them
        pass

    @property
    def targets(self) -> dict[str, Any]:
        return {"image": self.apply, "images": self.apply_to_images}

    def get_params_dependent_on_data(self, params: dict[str, Any], data: dict[str, Any]) -> dict[str, Any]:
        images = data.get("images")
        n = len(images) if images is not None and "image" not in data else 1
        if self.seed is not None:  # a seeded pipeline: albumentations' own random state
            seeds = [int(v) for v in self.random_generator.integers(0, _SEED_HIGH, size=n)]
        else:
            seeds = [int(v) for v in torch.randint(0, _SEED_HIGH, (n,), dtype=torch.int64)]
        reference = data.get(self.reference_key)
        if self.source.needs_reference and reference is None:
            raise ValueError(
                f"noise {self.noise!r} needs the real noisy image as the {self.reference_key!r} target"
            )
        return {"noise_seeds": seeds, "reference": reference}

    def apply(
        self, img: np.ndarray, noise_seeds: Any = (0,), reference: Any = None, **params: Any
    ) -> np.ndarray:
        clean, dtype = hwc_to_float_batch(img, "image")
        ref = None if reference is None else hwc_to_float_batch(reference, self.reference_key)[0]
        # the seed fixes everything else (configuration pick, noise; NAS weights follow from the reference),
        # so albumentations' ReplayCompose, which records noise_seeds, replays the noise exactly
        noisy, noise_params = self.source(clean, reference=ref, seeds=list(noise_seeds)[:1])
        self.params["noise_params"] = noise_params.to_dict()
        return float_batch_to_hwc(noisy, dtype)

    def apply_to_images(self, images: np.ndarray, noise_seeds: Any = (0,), **params: Any) -> np.ndarray:
        """A stack (N, H, W, 3): each image gets its own seed, in one batched call."""
        if len(images) != len(noise_seeds):
            raise ValueError(f"got {len(images)} images and {len(noise_seeds)} seeds")
        converted = [hwc_to_float_batch(np.asarray(im), "images") for im in images]
        clean = torch.cat([batch for batch, _ in converted])
        noisy, noise_params = self.source(clean, seeds=list(noise_seeds))
        self.params["noise_params"] = noise_params.to_dict()
        dtype = converted[0][1]
        return np.stack([float_batch_to_hwc(noisy[i : i + 1], dtype) for i in range(len(images))])

    def apply_with_params(self, params: dict[str, Any], *args: Any, **kwargs: Any) -> dict[str, Any]:
        image = kwargs.get("image", kwargs.get("images"))
        result = super().apply_with_params(params, *args, **kwargs)
        if self.clean_key not in kwargs and image is not None:
            result[self.clean_key] = image
        return result

    def get_transform_init_args_names(self) -> tuple[str, ...]:
        return (
            "model", "noise", "profile", "baselines", "temperature", "top_k", "tile_size", "overlap",
            "clean_key", "reference_key",
        )  # fmt: skip

    def get_transform_init_args(self) -> dict[str, Any]:
        if not isinstance(self.model, str | None):
            raise TypeError(
                "NAFlowNoiseAlb is serialisable only when model is a bundled name or a checkpoint path, "
                f"got a {type(self.model).__name__} object"
            )
        return {name: getattr(self, name) for name in self.get_transform_init_args_names()}
