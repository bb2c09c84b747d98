"""NAFlow: a conditional normalizing flow from (noisy | clean) to a latent with one Gaussian per camera
configuration, and noise-aware sampling (NAS) on top of it."""

from __future__ import annotations

import math
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

from .coupling import FlowStep
from .encoder import ConditionEncoder
from .latent import MIX_MODES, ClassGaussians
from .layers import Squeeze
from .noise_level import check_level, match_noise_level
from .noise_level import noise_std as noise_std_of
from .seeds import as_seeds

SIDD_CLASSES: tuple[str, ...] = (
    "G4_00100", "G4_00200", "G4_00400", "G4_00800",
    "GP_00050", "GP_00100", "GP_00200", "GP_00400", "GP_00800", "GP_01600", "GP_03200", "GP_06400",
    "GP_10000",
    "IP_00100", "IP_00200", "IP_00320", "IP_00400", "IP_00500", "IP_00640", "IP_00800", "IP_01000",
    "IP_01600", "IP_02000",
    "N6_00100", "N6_00400", "N6_00800", "N6_01600", "N6_03200",
    "S6_00100", "S6_00200", "S6_00400", "S6_00800", "S6_01600", "S6_03200",
)  # fmt: skip
DEQUANT_LOGDET_PER_PIXEL = -math.log(256.0)
# encode accepts noisy images this far outside [0, 1], room for the training loop's dequantization noise
NOISY_RANGE_SLACK = 1.0 / 256
DRAW_ITEMS_PER_THREAD = 8  # `draw_item_noise`: smaller batches are drawn in the calling thread


@dataclass(frozen=True)
class NAFlowConfig:
    """Architecture of a NAFlow; the defaults are the published SIDD model (1,053,131 parameters)."""

    classes: tuple[str, ...] = SIDD_CLASSES
    levels: int = 3  # squeezes; H and W must be multiples of 2**levels
    transition_steps: int = 2  # ActNorm + 1x1 conv steps at the start of each level (and before level 1)
    conditional_steps: int = 2  # steps with coupling + injector per level
    hidden_channels: int = 64  # width of the coupling sub-networks
    encoder_channels: int = 128  # width of the clean-image features
    covariance: str = "diagonal"  # or "full"
    affine_eps: float = 1e-3

    def __post_init__(self) -> None:
        if isinstance(self.classes, str) or not isinstance(self.classes, Sequence):
            raise TypeError(f"classes must be a sequence of names, got {self.classes!r}")
        object.__setattr__(self, "classes", tuple(self.classes))
        if not self.classes or not all(isinstance(c, str) and c for c in self.classes):
            raise ValueError(f"classes must be non-empty strings, got {self.classes!r}")
        if len(set(self.classes)) != len(self.classes):
            raise ValueError(f"class names must be unique, got {self.classes!r}")
        for name, low in (("levels", 1), ("transition_steps", 0), ("conditional_steps", 0),
                          ("hidden_channels", 1), ("encoder_channels", 4)):  # fmt: skip
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        if self.encoder_channels % 4:
            raise ValueError(f"encoder_channels must be a multiple of 4, got {self.encoder_channels}")
        if self.covariance not in ("diagonal", "full"):
            raise ValueError(f"covariance must be 'diagonal' or 'full', got {self.covariance!r}")
        if not 0 < self.affine_eps < 1:
            raise ValueError(f"affine_eps must be in (0, 1), got {self.affine_eps!r}")

    @property
    def latent_channels(self) -> int:
        return 3 * 4**self.levels

    @property
    def size_multiple(self) -> int:
        return 2**self.levels


@dataclass(frozen=True)
class SampleParams:
    """What a sample was drawn from: mixture weights (B, K), one int64 seed per item (B,) and the
    per-channel noise std (B, 3) the output was scaled to, or None."""

    weights: Tensor
    seeds: Tensor = field(repr=False)
    noise_std: Tensor | None = None


class NAFlow(nn.Module):
    """Images are (B, 3, H, W) float in [0, 1] with H, W multiples of `size_multiple`.

    `flow` holds the data -> latent layers in order (index i = the official `flowUpsamplerNet.layers.i`);
    `encoder` the clean-image features; `prior` the per-configuration Gaussians.
    """

    def __init__(self, config: NAFlowConfig | None = None):
        super().__init__()
        config = config or NAFlowConfig()
        if not isinstance(config, NAFlowConfig):
            raise TypeError(f"config must be a NAFlowConfig, got {type(config).__name__}")
        self.config = config
        self.encoder = ConditionEncoder(config.levels, config.encoder_channels)
        self.flow = nn.ModuleList([FlowStep(3, actnorm=False)])
        self._feature_level = [0]
        channels = 3
        for level in range(config.levels + 1):
            if level > 0:
                channels *= 4
                self.flow.append(Squeeze())
                self._feature_level.append(level)
            for _ in range(config.transition_steps):
                self.flow.append(FlowStep(channels))
                self._feature_level.append(level)
            for _ in range(config.conditional_steps if level > 0 else 0):
                self.flow.append(
                    FlowStep(
                        channels,
                        conditional=True,
                        cond_channels=config.encoder_channels,
                        hidden_channels=config.hidden_channels,
                        eps=config.affine_eps,
                    )
                )
                self._feature_level.append(level)
        self.prior = ClassGaussians(len(config.classes), channels, config.covariance)
        self._class_ids = {name: i for i, name in enumerate(config.classes)}
        self.validate_inputs = True  # value checks (finite, range) cost a device sync; speed paths may skip
        self.fast_sampling = True  # frozen + eval: sample() runs flow/fast.py (same results, less work)
        self.checkpoint_sha256: str | None = None

    # ------------------------------------------------------------------ metadata
    @property
    def classes(self) -> list[str]:
        return list(self.config.classes)

    @property
    def num_classes(self) -> int:
        return len(self.config.classes)

    @property
    def size_multiple(self) -> int:
        return self.config.size_multiple

    @property
    def latent_channels(self) -> int:
        return self.config.latent_channels

    def class_index(self, names: str | Sequence[str]) -> Tensor:
        """Class ids (B,) int64 for configuration names; ValueError on an unknown name."""
        single = isinstance(names, str)
        out = []
        for name in [names] if single else names:
            if name not in self._class_ids:
                raise ValueError(f"unknown camera configuration {name!r}; expected one of {self.classes}")
            out.append(self._class_ids[name])
        return torch.tensor(out, dtype=torch.int64)

    def freeze(self) -> NAFlow:
        """Eval mode, no gradients: the state `naflow_aug.load` returns."""
        self.eval()
        self.requires_grad_(False)
        return self

    # ------------------------------------------------------------------ checks
    def _check_images(self, x: Tensor, name: str, slack: float = 0.0) -> None:
        if not isinstance(x, Tensor):
            raise TypeError(f"{name} must be a torch.Tensor (B, 3, H, W), got {type(x).__name__}")
        if not x.is_floating_point():
            raise TypeError(f"{name} must be a float tensor in [0, 1], got dtype {x.dtype}")
        if x.dim() != 4 or x.shape[1] != 3:
            raise ValueError(f"{name} must have shape (B, 3, H, W), got {tuple(x.shape)}")
        m = self.size_multiple
        for dim, size in (("height", x.shape[2]), ("width", x.shape[3])):
            if size % m:
                nearest = max(m, round(size / m) * m)
                raise ValueError(
                    f"{name} {dim} {size} is not a multiple of {m} (2**levels); nearest valid size: {nearest}"
                )
        if self.validate_inputs and x.numel():
            lo, hi = torch.aminmax(x.detach())
            lo, hi = torch.stack([lo, hi]).tolist()  # one read-back (a GPU sync), not two
            if not (math.isfinite(lo) and math.isfinite(hi)):
                raise ValueError(f"{name} contains NaN or Inf values")
            if lo < -slack or hi > 1 + slack:
                raise ValueError(f"{name} values must be in [0, 1], got range [{lo:.4g}, {hi:.4g}]")

    def _check_pair(self, noisy: Tensor, clean: Tensor) -> None:
        self._check_images(clean, "clean")
        self._check_images(noisy, "noisy", slack=NOISY_RANGE_SLACK)
        if noisy.shape != clean.shape:
            raise ValueError(f"noisy and clean shapes differ: {tuple(noisy.shape)} vs {tuple(clean.shape)}")

    def _check_latent(self, z: Tensor, clean: Tensor) -> None:
        """Checks the clean images, then that z is (B, C, H/m, W/m) for them."""
        self._check_images(clean, "clean")
        m = self.size_multiple
        expected = (clean.shape[0], self.latent_channels, clean.shape[2] // m, clean.shape[3] // m)
        if not isinstance(z, Tensor) or tuple(z.shape) != expected:
            got = tuple(z.shape) if isinstance(z, Tensor) else type(z).__name__
            raise ValueError(f"z must have shape {expected} for this clean image, got {got}")
        self._check_finite_latent(z)

    def _check_finite_latent(self, z: Tensor) -> None:
        if not isinstance(z, Tensor) or not z.is_floating_point():
            raise TypeError(f"z must be a float tensor, got {getattr(z, 'dtype', type(z).__name__)}")
        if self.validate_inputs and z.numel() and not bool(torch.isfinite(z).all()):
            raise ValueError("z contains NaN or Inf values")

    def _features(self, clean: Tensor, features: list[Tensor] | None) -> list[Tensor]:
        if features is None:
            return self.encoder(clean)
        if len(features) != self.config.levels + 1:
            raise ValueError(
                f"features must come from model.condition(clean): expected "
                f"{self.config.levels + 1} maps, got {len(features)}"
            )
        return features

    # ------------------------------------------------------------------ flow
    def condition(self, clean: Tensor) -> list[Tensor]:
        """Clean-image features, one map per level; compute once and pass as `features=` to reuse."""
        self._check_images(clean, "clean")
        return self.encoder(clean)

    def encode(
        self, noisy: Tensor, clean: Tensor, features: list[Tensor] | None = None
    ) -> tuple[Tensor, Tensor]:
        """(noisy, clean) (B, 3, H, W) -> z (B, C, H/m, W/m), logdet (B,).

        No dequantization noise is added; logdet includes its constant -log(256)*H*W as the official code.
        """
        self._check_pair(noisy, clean)
        dtype, noisy, clean = noisy.dtype, self._as_own_dtype(noisy), self._as_own_dtype(clean)
        feats = self._features(clean, features)
        h, w = noisy.shape[2:]
        x = noisy
        logdet = noisy.new_full((noisy.shape[0],), DEQUANT_LOGDET_PER_PIXEL * h * w)
        for layer, level in zip(self.flow, self._feature_level, strict=True):
            x, ld = layer(x, feats[level])
            logdet = logdet + ld
        return x.to(dtype), logdet.to(dtype)

    def decode(self, z: Tensor, clean: Tensor, features: list[Tensor] | None = None) -> Tensor:
        """Latent z (B, C, H/m, W/m) and clean (B, 3, H, W) -> noisy (B, 3, H, W), not clamped."""
        self._check_latent(z, clean)
        dtype, z, clean = clean.dtype, self._as_own_dtype(z), self._as_own_dtype(clean)
        feats = self._features(clean, features)
        x = z
        for layer, level in zip(reversed(self.flow), reversed(self._feature_level), strict=True):
            x = layer.inverse(x, feats[level])
        return x.to(dtype)

    def _as_own_dtype(self, x: Tensor) -> Tensor:
        """Images and latents of another float dtype are computed in the model's own (results are cast
        back to the caller's dtype): float16 inputs to a float32 model must not crash inside a conv."""
        return x.to(self.prior.mean.dtype)

    # ------------------------------------------------------------------ likelihoods
    def class_log_likelihood(self, z: Tensor) -> Tensor:
        """log p(z | class) for every class, (B, K) in the order of `classes`."""
        return self.prior.log_prob_all(z)

    def posterior(self, z: Tensor, temperature: float = 1.0, top_k: int | None = None) -> Tensor:
        """NAS class weights (B, K): softmax(log p(z|k) / (h*w*temperature)), optionally top-k only."""
        self._check_finite_latent(z)
        if z.dim() != 4 or z.shape[1] != self.latent_channels:
            raise ValueError(f"z must have shape (B, {self.latent_channels}, h, w), got {tuple(z.shape)}")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int)):
            raise TypeError(f"top_k must be None or an int, got {top_k!r}")
        return self.prior.posterior(z, temperature, top_k)

    def mix(self, weights: Tensor, mix_mode: str = "std") -> tuple[Tensor, Tensor]:
        """Mixed latent mean and std (B, C) for weights (B, K) or (K,); mix_mode "std" mixes standard
        deviations (official code), "covariance" mixes variances (the paper's Alg. 1)."""
        w = torch.as_tensor(weights)
        return self.prior.mix(self._check_weights(w[None] if w.dim() == 1 else w, None), mix_mode)

    def nll(
        self, noisy: Tensor, clean: Tensor, labels: Tensor, features: list[Tensor] | None = None
    ) -> Tensor:
        """Training objective (B,): -(log p(z|label) + logdet) / (log(2) * H * W), the official units
        (bits per H*W pixel, the 3 channels summed). `labels` are class ids (B,) int64."""
        if not isinstance(labels, Tensor) or labels.dtype != torch.int64 or labels.shape != noisy.shape[:1]:
            raise TypeError(f"labels must be an int64 tensor of shape ({noisy.shape[0]},), got {labels!r}")
        lo, hi = torch.stack(torch.aminmax(labels)).tolist() if labels.numel() else (0, 0)  # one read-back
        if lo < 0 or hi >= self.num_classes:
            raise ValueError(f"labels must be class ids in [0, {self.num_classes}), got {labels.tolist()}")
        z, logdet = self.encode(noisy, clean, features)
        ll = self.prior.log_prob(z, labels.to(z.device))
        return -(ll + logdet) / (math.log(2.0) * noisy.shape[2] * noisy.shape[3])

    # ------------------------------------------------------------------ sampling
    def _check_weights(self, weights: Tensor, batch: int | None) -> Tensor:
        w = torch.as_tensor(weights, dtype=self.prior.mean.dtype, device=self.prior.mean.device)
        if w.dim() == 1 and batch is not None:
            w = w.expand(batch, -1)
        if w.dim() != 2 or w.shape[1] != self.num_classes or (batch is not None and w.shape[0] != batch):
            raise ValueError(
                f"weights must have shape ({self.num_classes},) or "
                f"({batch or 'B'}, {self.num_classes}), got {tuple(w.shape)}"
            )
        finite, negative, empty = torch.stack(  # one read-back (a GPU sync), not three
            [torch.isfinite(w).all(), (w < 0).any(), (w.sum(1) <= 0).any()]
        ).tolist()
        if not finite or negative or empty:
            raise ValueError("weights must be finite, non-negative and sum to a positive value per item")
        return w / w.sum(1, keepdim=True)

    def _config_weights(self, config: str | Sequence[str], picks: list[int]) -> Tensor:
        names = [config] * len(picks) if isinstance(config, str) else list(config)
        if len(names) != len(picks):
            raise ValueError(f"config must be one name or one per item ({len(picks)}), got {len(names)}")
        pairs = zip(names, picks, strict=True)
        ids = [pick if name == "random" else int(self.class_index(name)) for name, pick in pairs]
        return nn.functional.one_hot(torch.tensor(ids), self.num_classes).to(self.prior.mean)

    @staticmethod
    def _seeds(batch: int, generator: torch.Generator | None, seeds: Tensor | Sequence[int] | None) -> Tensor:
        if seeds is None:
            device = generator.device if generator is not None else "cpu"
            return torch.randint(0, 2**63 - 1, (batch,), generator=generator, device=device).cpu()
        return as_seeds(seeds, batch)

    def _sample_noise(
        self,
        clean: Tensor,
        reference: Tensor | None,
        config: str | Sequence[str] | None,
        weights: Tensor | None,
        generator: torch.Generator | None,
        seeds: Tensor | Sequence[int] | None,
        mix_mode: str,
    ) -> tuple[Tensor, list[int], Tensor]:
        """`sample`'s argument checks, then its seeds (B,), each item's random pick and eps (B, C, h, w)."""
        if sum(x is not None for x in (reference, config, weights)) > 1:
            raise ValueError("give at most one of reference=, config= and weights=")
        if mix_mode not in MIX_MODES:
            raise ValueError(f"mix_mode must be one of {MIX_MODES}, got {mix_mode!r}")
        self._check_images(clean, "clean")
        if reference is not None:
            self._check_pair(reference, clean)
        seeds = self._seeds(clean.shape[0], generator, seeds)
        m = self.size_multiple
        size = (self.latent_channels, clean.shape[2] // m, clean.shape[3] // m)
        picks, eps = draw_item_noise(seeds, self.num_classes, size, pin_memory=clean.device.type == "cuda")
        return seeds, picks, eps

    def _sample_latent(
        self,
        reference_z: Tensor | None,
        config: str | Sequence[str] | None,
        weights: Tensor | None,
        picks: list[int],
        eps: Tensor,
        temperature: float,
        top_k: int | None,
        mix_mode: str,
    ) -> tuple[Tensor, Tensor]:
        """The noise source's mixture weights (B, K) and the latent (B, C, h, w) to decode.

        reference_z: the encoded reference (NAS), else None for ``weights`` or ``config`` (default "random").
        """
        if reference_z is not None:
            w = self.posterior(reference_z, temperature, top_k)
        elif weights is not None:
            w = self._check_weights(weights, len(picks))
        else:
            w = self._config_weights("random" if config is None else config, picks)
        mean, std = self.prior.mix(w, mix_mode)
        eps = eps.to(mean.device, mean.dtype, non_blocking=True)  # pinned host memory on a GPU: no stall
        return w, self.prior.reparameterize(mean, std, eps)

    @torch.no_grad()
    def sample(
        self,
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
        features: list[Tensor] | None = None,
        return_params: bool = False,
    ) -> Tensor | tuple[Tensor, SampleParams]:
        """Synthetic noisy images (B, 3, H, W) in [0, 1] for clean images (B, 3, H, W).

        Noise source (at most one; default config="random"): ``reference`` noisy images -> NAS
        (temperature, top_k); ``config`` a name, one name per item, or "random" (a uniformly random
        configuration per item); ``weights`` (K,) or (B, K) -> that mixture. One seed per item is drawn
        from `generator` (torch's default one if None) unless `seeds` are given; each item's randomness
        (random class, then eps) comes from torch.Generator("cpu").manual_seed(seed), so a batch equals
        its items one at a time and `seeds` replay a sample. With p the returned SampleParams,
        ``sample(clean, weights=p.weights, seeds=p.seeds, noise_std=p.noise_std)`` reproduces a sample,
        whatever its source.

        Noise level (:mod:`naflow_aug.flow.noise_level`): with a ``reference`` and
        ``noise_level="reference"`` (the default) each channel's noise is scaled to the reference's std;
        ``noise_level="model"`` keeps the mixture's own level (the official NAS). ``noise_std`` (B, 3) or
        (3,), in [0, 1] units, sets the level explicitly for any source.
        """
        dtype = clean.dtype if isinstance(clean, Tensor) and clean.is_floating_point() else None
        if dtype is not None and dtype != self.prior.mean.dtype:  # computed in the model's dtype, returned in
            self._check_images(clean, "clean")  # the input's dtype; range and NaN checks before a lossy cast
            clean = self._as_own_dtype(clean)
            if isinstance(reference, Tensor) and reference.is_floating_point():
                reference = self._as_own_dtype(reference)
            result = self.sample(
                clean, reference=reference, config=config, weights=weights, generator=generator, seeds=seeds,
                temperature=temperature, top_k=top_k, mix_mode=mix_mode, noise_level=noise_level,
                noise_std=noise_std, features=features, return_params=return_params,
            )  # fmt: skip
            if return_params:
                return result[0].to(dtype), result[1]
            return result.to(dtype)
        check_level(noise_level)
        noisy, params = self._sample(
            clean, reference=reference, config=config, weights=weights, generator=generator, seeds=seeds,
            temperature=temperature, top_k=top_k, mix_mode=mix_mode, features=features,
        )  # fmt: skip
        if noise_std is None and reference is not None and noise_level == "reference":
            noise_std = noise_std_of(reference, clean)  # reference was checked by _sample
        if noise_std is not None:
            noise_std = torch.as_tensor(noise_std, dtype=torch.float32, device=clean.device)
            noise_std = noise_std.expand(clean.shape[0], -1) if noise_std.dim() == 1 else noise_std
            noisy = match_noise_level(noisy, clean, noise_std)
        if return_params:
            return noisy, SampleParams(weights=params.weights, seeds=params.seeds, noise_std=noise_std)
        return noisy

    def _sample(
        self,
        clean: Tensor,
        *,
        reference: Tensor | None,
        config: str | Sequence[str] | None,
        weights: Tensor | None,
        generator: torch.Generator | None,
        seeds: Tensor | Sequence[int] | None,
        temperature: float,
        top_k: int | None,
        mix_mode: str,
        features: list[Tensor] | None,
    ) -> tuple[Tensor, SampleParams]:
        """The mixture's sample at its own level, through the fast path where it applies."""
        if (
            self.fast_sampling
            and features is None
            and not self.training
            and not any(p.requires_grad for p in self.parameters())
        ):
            from .fast import fast_sampler

            return fast_sampler(self).sample(
                clean, reference=reference, config=config, weights=weights, generator=generator, seeds=seeds,
                temperature=temperature, top_k=top_k, mix_mode=mix_mode, return_params=True,
            )  # fmt: skip
        seeds, picks, eps = self._sample_noise(clean, reference, config, weights, generator, seeds, mix_mode)
        feats = self._features(clean, features)
        reference_z = None if reference is None else self.encode(reference, clean, feats)[0]
        w, z = self._sample_latent(reference_z, config, weights, picks, eps, temperature, top_k, mix_mode)
        noisy = self.decode(z, clean, feats).clamp_(0.0, 1.0)
        return noisy, SampleParams(weights=w, seeds=seeds)


def draw_item_noise(
    seeds: Tensor, num_classes: int, size: tuple[int, int, int], *, pin_memory: bool = False
) -> tuple[list[int], Tensor]:
    """Each item's random configuration pick, then its eps (B, *size), from manual_seed(seed) generators.

    The randomness contract of `NAFlow.sample`: every item draws its pick first, used or not, so that
    replaying (weights, seeds) with weights= reproduces any sample exactly. eps is written straight into
    one (B, *size) tensor of torch's default dtype (what a fresh ``torch.randn(size, generator=g)`` gives,
    without a stack copy). ``pin_memory``: eps in page-locked memory, for an asynchronous copy to a GPU
    (``.to(device, non_blocking=True)``; torch's pinned-memory cache keeps the block until the copy is done).

    Items are independent, so large batches are drawn by up to ``torch.get_num_threads()`` threads (torch
    releases the GIL; one thread per `DRAW_ITEMS_PER_THREAD` items): the host draw would otherwise bound
    a GPU's NAS (a 160x160 crop's eps is 76,800 normals). The result does not depend on the threads.
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
