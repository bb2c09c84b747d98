"""Clean in, noisy out: the one sampling path of a NAFlow, for `NAFlow.sample`, `FastNAFlow.sample` and
the model noise sources (`naflow_aug.noise.ModelSource`).

The path: one seed per item, each item's randomness from its own generator (`draw_item_noise`); the
mixture weights (B, K), from a reference's latent (NAS: `posterior_weights`), given, or one configuration
per item; then the mixture's latent decoded (`decode_mixture`), and optionally scaled to a noise level
(`at_noise_level`). It runs on an `Engine`: the model's layers one by one (`naflow_aug.flow.model`) or
their folded form (`naflow_aug.flow.fast`). Inputs are checked once, where they enter (`sample` here; a
noise source checks its own); the engines and the tiles take them as they are.

Randomness contract: item b's randomness comes only from ``torch.Generator("cpu").manual_seed(seeds[b])``,
first a uniform configuration pick (drawn whether or not it is used), then its latent noise eps. A batch
therefore equals its items one at a time, and (weights, seeds) replay any sample exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

import torch
from torch import Tensor, nn

from naflow_aug.tiling import crop_to, make_tiles, pad_to_multiple, run_tiled

from .inputs import check_images, check_pair
from .latent import MIX_MODES, ClassGaussians
from .noise_level import check_level, match_noise_level
from .noise_level import noise_std as noise_std_of
from .seeds import as_seeds, draw_seeds

DRAW_ITEMS_PER_THREAD = 8  # `draw_item_noise`: smaller batches are drawn in the calling thread


@dataclass(frozen=True)
class SampleParams:
    """What a sample was drawn from: mixture weights (B, K), one int64 seed per item (B,) and the
    per-channel noise std (B, 3) the output was scaled to, or None."""

    weights: Tensor
    seeds: Tensor = field(repr=False)
    noise_std: Tensor | None = None


class Engine(Protocol):
    """What the sampling path runs on. Images (B, 3, H, W) and latents (B, C, H/m, W/m) in the prior's
    dtype and on its device, H and W multiples of ``size_multiple``; inputs are not checked here."""

    @property
    def prior(self) -> ClassGaussians: ...

    @property
    def classes(self) -> list[str]: ...

    @property
    def size_multiple(self) -> int: ...

    def clean_features(self, clean: Tensor) -> Any:
        """What the flow needs from clean images, for `to_latent` and `to_image` on them."""

    def to_latent(self, noisy: Tensor, features: Any) -> Tensor:
        """Noisy images -> latent z (no log-det)."""

    def to_image(self, z: Tensor, features: Any) -> Tensor:
        """Latent z -> noisy images, not clamped."""


# ------------------------------------------------------------------------------------------- randomness
def draw_item_noise(
    seeds: Tensor, num_classes: int, size: tuple[int, int, int], *, pin_memory: bool = False
) -> tuple[list[int], Tensor]:
    """Each item's random configuration pick, then its eps (B, *size), from manual_seed(seed) generators.

    The randomness contract (module doc): every item draws its pick first, used or not. eps is written
    straight into one (B, *size) tensor of torch's default dtype (what a fresh ``torch.randn(size,
    generator=g)`` gives, without a stack copy). ``pin_memory``: eps in page-locked memory, for an
    asynchronous copy to a GPU (``.to(device, non_blocking=True)``; torch's pinned-memory cache keeps the
    block until the copy is done).

    Items are independent, so large batches are drawn by up to ``torch.get_num_threads()`` threads (torch
    releases the GIL; one thread per `DRAW_ITEMS_PER_THREAD` items): the host draw would otherwise bound
    a GPU's NAS. The result does not depend on the threads.
    """
    eps = torch.empty((len(seeds), *size), pin_memory=pin_memory)
    values = [int(s) for s in seeds.tolist()]
    picks = [0] * len(values)

    def draw(items: range) -> None:
        for i in items:
            g = torch.Generator("cpu").manual_seed(values[i])
            picks[i] = int(torch.randint(num_classes, (1,), generator=g))
            torch.randn(size, generator=g, out=eps[i])

    threads = min(torch.get_num_threads(), len(values) // DRAW_ITEMS_PER_THREAD)
    if threads <= 1:
        draw(range(len(values)))
    else:
        with ThreadPoolExecutor(threads) as pool:
            list(pool.map(draw, [range(t, len(values), threads) for t in range(threads)]))
    return picks, eps


# --------------------------------------------------------------------------------------------- weights
def class_ids(classes: Sequence[str], names: Sequence[str]) -> list[int]:
    """Class ids of configuration names; ValueError on an unknown name."""
    index = {name: i for i, name in enumerate(classes)}
    for name in names:
        if name not in index:
            raise ValueError(f"unknown camera configuration {name!r}; expected one of {list(classes)}")
    return [index[name] for name in names]


def check_weights(prior: ClassGaussians, weights: Tensor, batch: int | None) -> Tensor:
    """Mixture weights (K,) or (B, K) as (B, K) in the prior's dtype and device, each row normalised."""
    w = torch.as_tensor(weights, dtype=prior.mean.dtype, device=prior.mean.device)
    if w.dim() == 1 and batch is not None:
        w = w.expand(batch, -1)
    k = prior.num_classes
    if w.dim() != 2 or w.shape[1] != k or (batch is not None and w.shape[0] != batch):
        raise ValueError(f"weights must have shape ({k},) or ({batch or 'B'}, {k}), got {tuple(w.shape)}")
    finite, negative, empty = torch.stack(  # one read-back (a GPU sync), not three
        [torch.isfinite(w).all(), (w < 0).any(), (w.sum(1) <= 0).any()]
    ).tolist()
    if not finite or negative or empty:
        raise ValueError("weights must be finite, non-negative and sum to a positive value per item")
    return w / w.sum(1, keepdim=True)


def config_weights(engine: Engine, config: str | Sequence[str], picks: list[int]) -> Tensor:
    """One-hot weights (B, K): a configuration name, one per item, or "random" (the item's pick)."""
    names = [config] * len(picks) if isinstance(config, str) else list(config)
    if len(names) != len(picks):
        raise ValueError(f"config must be one name or one per item ({len(picks)}), got {len(names)}")
    named = iter(class_ids(engine.classes, [name for name in names if name != "random"]))
    ids = [pick if name == "random" else next(named) for name, pick in zip(names, picks, strict=True)]
    return nn.functional.one_hot(torch.tensor(ids), engine.prior.num_classes).to(engine.prior.mean)


# ------------------------------------------------------------------------------------------------- flow
class CleanBatch:
    """Clean images (B, 3, H, W), already in the engine's dtype and device, as the engine runs them:
    padded to its size multiple and cut into tiles (`naflow_aug.tiling`). An untiled batch's features
    are computed once, on first use, for both the encode of a reference and the decode of a sample;
    tiles compute their own each time (keeping them all would cost the memory tiling saves)."""

    def __init__(self, engine: Engine, clean: Tensor, *, tile_size: int | None = None, overlap: int = 0,
                 features: Any = None):  # fmt: skip
        self.engine = engine
        self.padded, self.size = pad_to_multiple(clean, engine.size_multiple)
        self.tiles = make_tiles(*self.padded.shape[-2:], engine.size_multiple, tile_size, overlap)
        self._features = features

    @property
    def clean(self) -> Tensor:
        return crop_to(self.padded, self.size)

    @property
    def latent_shape(self) -> tuple[int, int, int]:
        m = self.engine.size_multiple
        return self.engine.prior.mean.shape[1], self.padded.shape[-2] // m, self.padded.shape[-1] // m

    def features(self) -> Any:
        if self._features is None:
            self._features = self.engine.clean_features(self.padded)
        return self._features

    def latent(self, noisy: Tensor) -> Tensor:
        """Latent z (B, C, h, w) of noisy images of the batch's shape (padded here), stitched from tiles."""
        engine, m = self.engine, self.engine.size_multiple
        noisy, _ = pad_to_multiple(noisy, m)
        if len(self.tiles) == 1:
            return engine.to_latent(noisy, self.features())

        def encode_box(box: tuple[int, int, int, int]) -> Tensor:
            y0, y1, x0, x1 = box
            features = engine.clean_features(self.padded[..., y0:y1, x0:x1])
            return engine.to_latent(noisy[..., y0:y1, x0:x1], features)

        h, w = self.padded.shape[-2:]
        return run_tiled(encode_box, self.tiles, (h // m, w // m), m)

    def image(self, z: Tensor) -> Tensor:
        """Noisy images (B, 3, H, W) decoded from z (B, C, h, w), tile by tile, cropped; not clamped."""
        engine, m = self.engine, self.engine.size_multiple
        if len(self.tiles) == 1:
            return crop_to(engine.to_image(z, self.features()), self.size)

        def decode_box(box: tuple[int, int, int, int]) -> Tensor:
            y0, y1, x0, x1 = box
            z_box = z[..., y0 // m : y1 // m, x0 // m : x1 // m]
            return engine.to_image(z_box, engine.clean_features(self.padded[..., y0:y1, x0:x1]))

        return crop_to(run_tiled(decode_box, self.tiles, tuple(self.padded.shape[-2:]), 1), self.size)


def posterior_weights(batch: CleanBatch, reference: Tensor, temperature: float, top_k: int | None) -> Tensor:
    """NAS weights (B, K): the posterior of the reference's latent, computed once per image."""
    if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int)):
        raise TypeError(f"top_k must be None or an int, got {top_k!r}")
    return batch.engine.prior.posterior(batch.latent(reference), temperature, top_k)


def decode_mixture(batch: CleanBatch, weights: Tensor, eps: Tensor, mix_mode: str = "std") -> Tensor:
    """Noisy images in [0, 1]: the mixture's latent mean + std * eps (eps (B, C, h, w)), decoded."""
    prior = batch.engine.prior
    mean, std = prior.mix(weights, mix_mode)
    eps = eps.to(mean.device, mean.dtype, non_blocking=True)  # pinned host memory on a GPU: no stall
    return batch.image(prior.reparameterize(mean, std, eps)).clamp_(0.0, 1.0)


def at_noise_level(
    noisy: Tensor, clean: Tensor, noise_std: Tensor, engine: Engine | None = None
) -> tuple[Tensor, Tensor]:
    """`match_noise_level` to a per-channel std (B, 3) or (3,); returns the images and the std (B, 3).

    An engine whose images end in a fixed output step (an adapted camera's 8-bit rounding) has it applied
    again after the scaling, through its optional ``after_level(noisy)``."""
    noise_std = torch.as_tensor(noise_std, dtype=torch.float32, device=clean.device)
    noise_std = noise_std.expand(clean.shape[0], -1) if noise_std.dim() == 1 else noise_std
    noisy = match_noise_level(noisy, clean, noise_std)
    after = getattr(engine, "after_level", None)
    return (noisy if after is None else after(noisy)), noise_std


# ----------------------------------------------------------------------------------------------- sample
@torch.no_grad()
def sample(
    engine: Engine,
    clean: Tensor,
    *,
    reference: Tensor | None = None,
    config: str | Sequence[str] | None = None,
    weights: Tensor | None = None,
    generator: torch.Generator | None = None,
    seeds: Tensor | Sequence[int] | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    mix_mode: str = "std",
    noise_level: str = "reference",
    noise_std: Tensor | None = None,
    features: Any = None,
    check_values: bool = True,
) -> tuple[Tensor, SampleParams]:
    """`NAFlow.sample` on an engine (see there for the arguments): the inputs' one check, then the path.

    Computed in the prior's dtype, returned in the input's. ``features``: the engine's features of
    ``clean``, if the caller has them. ``check_values``: check finiteness and range (a host read-back).
    """
    if sum(x is not None for x in (reference, config, weights)) > 1:
        raise ValueError("give at most one of reference=, config= and weights=")
    if mix_mode not in MIX_MODES:
        raise ValueError(f"mix_mode must be one of {MIX_MODES}, got {mix_mode!r}")
    check_level(noise_level)
    if reference is None:
        check_images(clean, "clean", engine.size_multiple, values=check_values)
    else:
        check_pair(reference, clean, engine.size_multiple, values=check_values)
    dtype, own = clean.dtype, engine.prior.mean.dtype
    batch = CleanBatch(engine, clean.to(own), features=features)
    reference = None if reference is None else reference.to(own)
    n = clean.shape[0]
    seeds = draw_seeds(n, generator) if seeds is None else as_seeds(seeds, n)
    cuda = clean.device.type == "cuda"
    picks, eps = draw_item_noise(seeds, engine.prior.num_classes, batch.latent_shape, pin_memory=cuda)
    if reference is not None:
        w = posterior_weights(batch, reference, temperature, top_k)
    elif weights is not None:
        w = check_weights(engine.prior, weights, n)
    else:
        w = config_weights(engine, "random" if config is None else config, picks)
    noisy = decode_mixture(batch, w, eps, mix_mode)
    if noise_std is None and reference is not None and noise_level == "reference":
        noise_std = noise_std_of(reference, batch.clean)
    if noise_std is not None:
        noisy, noise_std = at_noise_level(noisy, batch.clean, noise_std, engine)
    return noisy.to(dtype), SampleParams(weights=w, seeds=seeds, noise_std=noise_std)


# ------------------------------------------------------------------------------------------ CUDA graphs
class CudaGraphNAS:
    """NAS (`posterior_weights` of the reference, then `decode_mixture`) for fixed shapes, replayed from
    one CUDA graph.

    CUDA only (ValueError elsewhere). ``__call__(clean, reference, eps)`` takes eps (B, C, h, w) drawn
    by the caller (e.g. with `draw_item_noise`, which keeps the randomness contract) and returns the
    clamped noisy images, as `sample` with ``noise_level="model"`` and those eps; outputs are cloned out
    of the graph's static buffers. Inputs are not checked (the graph cannot read values back).
    """

    def __init__(self, engine: Engine, shape: tuple[int, int, int, int], temperature: float = 1.0,
                 top_k: int | None = None, warmup: int = 3):  # fmt: skip
        mean = engine.prior.mean
        if mean.device.type != "cuda":
            raise ValueError(f"CudaGraphNAS needs a model on a CUDA device, got {mean.device}")
        self.engine, self.temperature, self.top_k = engine, temperature, top_k
        m = engine.size_multiple
        b, _, h, w = shape
        self.clean = torch.zeros(shape, device=mean.device, dtype=mean.dtype)
        self.reference = torch.zeros(shape, device=mean.device, dtype=mean.dtype)
        self.eps = torch.zeros((b, mean.shape[1], h // m, w // m), device=mean.device, dtype=mean.dtype)
        stream = torch.cuda.Stream()
        stream.wait_stream(torch.cuda.current_stream())
        with torch.cuda.stream(stream), torch.no_grad():
            for _ in range(warmup):
                self._run()
        torch.cuda.current_stream().wait_stream(stream)
        self.graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(self.graph), torch.no_grad():
            self.out = self._run()

    def _run(self) -> Tensor:
        batch = CleanBatch(self.engine, self.clean)
        w = posterior_weights(batch, self.reference, self.temperature, self.top_k)
        return decode_mixture(batch, w, self.eps)

    @torch.no_grad()
    def __call__(self, clean: Tensor, reference: Tensor, eps: Tensor) -> Tensor:
        if clean.shape != self.clean.shape or reference.shape != self.reference.shape:
            raise ValueError(
                f"CudaGraphNAS was captured for {tuple(self.clean.shape)}, got {tuple(clean.shape)}"
            )
        self.clean.copy_(clean)
        self.reference.copy_(reference)
        self.eps.copy_(eps)
        self.graph.replay()
        return self.out.clone()
