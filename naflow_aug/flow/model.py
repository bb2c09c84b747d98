"""NAFlow: a conditional normalizing flow from (noisy | clean) to a latent with one Gaussian per camera
configuration, and noise-aware sampling (NAS) on top of it (the sampling path: `naflow_aug.flow.nas`)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from . import nas
from .coupling import FlowStep
from .encoder import ConditionEncoder
from .fast import FastNAFlow
from .inputs import (
    DEQUANT_LOGDET_PER_PIXEL,
    NOISY_RANGE_SLACK,
    check_finite_latent,
    check_images,
    check_latent,
    check_pair,
)
from .latent import ClassGaussians
from .layers import Squeeze
from .nas import SampleParams
from .nas import draw_item_noise as draw_item_noise  # re-exported: its home before the sampling path

__all__ = ["DEQUANT_LOGDET_PER_PIXEL", "NOISY_RANGE_SLACK", "SIDD_CLASSES", "LayerEngine", "NAFlow",
           "NAFlowConfig", "SampleParams", "draw_item_noise"]  # fmt: skip

SIDD_CLASSES: tuple[str, ...] = (
    "G4_00100", "G4_00200", "G4_00400", "G4_00800",
    "GP_00050", "GP_00100", "GP_00200", "GP_00400", "GP_00800", "GP_01600", "GP_03200", "GP_06400",
    "GP_10000",
    "IP_00100", "IP_00200", "IP_00320", "IP_00400", "IP_00500", "IP_00640", "IP_00800", "IP_01000",
    "IP_01600", "IP_02000",
    "N6_00100", "N6_00400", "N6_00800", "N6_01600", "N6_03200",
    "S6_00100", "S6_00200", "S6_00400", "S6_00800", "S6_01600", "S6_03200",
)  # fmt: skip


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


class NAFlow(nn.Module):
    """Images are (B, 3, H, W) float in [0, 1] with H, W multiples of `size_multiple`.

    `flow` holds the data -> latent layers in order (index i = the official `flowUpsamplerNet.layers.i`),
    `feature_levels` the level of the clean-image features each of them reads; `encoder` the clean-image
    features; `prior` the per-configuration Gaussians.
    """

    def __init__(self, config: NAFlowConfig | None = None):
        super().__init__()
        config = config or NAFlowConfig()
        if not isinstance(config, NAFlowConfig):
            raise TypeError(f"config must be a NAFlowConfig, got {type(config).__name__}")
        self.config = config
        self.encoder = ConditionEncoder(config.levels, config.encoder_channels)
        self.flow = nn.ModuleList([FlowStep(3, actnorm=False)])
        self.feature_levels = [0]
        channels = 3
        for level in range(config.levels + 1):
            if level > 0:
                channels *= 4
                self.flow.append(Squeeze())
                self.feature_levels.append(level)
            for _ in range(config.transition_steps):
                self.flow.append(FlowStep(channels))
                self.feature_levels.append(level)
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
                self.feature_levels.append(level)
        self.prior = ClassGaussians(len(config.classes), channels, config.covariance)
        self.validate_inputs = True  # value checks (finite, range) cost a device sync; speed paths may skip
        self.fast_sampling = True  # frozen + eval: sample() runs flow/fast.py (same results, less work)
        self.checkpoint_sha256: str | None = None
        self._fast: FastNAFlow | None = None  # `sampling_engine`'s, made on first use

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
        ids = nas.class_ids(self.classes, [names] if isinstance(names, str) else names)
        return torch.tensor(ids, dtype=torch.int64)

    def freeze(self) -> NAFlow:
        """Eval mode, no gradients: the state `naflow_aug.load` returns."""
        self.eval()
        self.requires_grad_(False)
        return self

    # ------------------------------------------------------------------ checks
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
        check_images(clean, "clean", self.size_multiple, values=self.validate_inputs)
        return self.encoder(clean)

    def encode(
        self, noisy: Tensor, clean: Tensor, features: list[Tensor] | None = None
    ) -> tuple[Tensor, Tensor]:
        """(noisy, clean) (B, 3, H, W) -> z (B, C, H/m, W/m), logdet (B,).

        No dequantization noise is added; logdet includes its constant -log(256)*H*W as the official code.
        """
        check_pair(noisy, clean, self.size_multiple, values=self.validate_inputs)
        dtype, noisy, clean = noisy.dtype, self._as_own_dtype(noisy), self._as_own_dtype(clean)
        feats = self._features(clean, features)
        h, w = noisy.shape[2:]
        logdet = noisy.new_full((noisy.shape[0],), DEQUANT_LOGDET_PER_PIXEL * h * w)
        z, logdet = self._forward(noisy, feats, logdet)
        return z.to(dtype), logdet.to(dtype)

    def decode(self, z: Tensor, clean: Tensor, features: list[Tensor] | None = None) -> Tensor:
        """Latent z (B, C, H/m, W/m) and clean (B, 3, H, W) -> noisy (B, 3, H, W), not clamped."""
        check_latent(z, clean, self.size_multiple, self.latent_channels, values=self.validate_inputs)
        dtype, z, clean = clean.dtype, self._as_own_dtype(z), self._as_own_dtype(clean)
        return self._inverse(z, self._features(clean, features)).to(dtype)

    def _forward(self, x: Tensor, feats: list[Tensor], logdet: Tensor | None) -> tuple[Tensor, Tensor | None]:
        """The layers data -> latent; their log-dets added to ``logdet`` in order (None: not summed)."""
        for layer, level in zip(self.flow, self.feature_levels, strict=True):
            x, ld = layer(x, feats[level])
            if logdet is not None:
                logdet = logdet + ld
        return x, logdet

    def _inverse(self, z: Tensor, feats: list[Tensor]) -> Tensor:
        """The layers latent -> data."""
        for layer, level in zip(reversed(self.flow), reversed(self.feature_levels), strict=True):
            z = layer.inverse(z, feats[level])
        return z

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
        check_finite_latent(z, values=self.validate_inputs)
        if z.dim() != 4 or z.shape[1] != self.latent_channels:
            raise ValueError(f"z must have shape (B, {self.latent_channels}, h, w), got {tuple(z.shape)}")
        if top_k is not None and (isinstance(top_k, bool) or not isinstance(top_k, int)):
            raise TypeError(f"top_k must be None or an int, got {top_k!r}")
        return self.prior.posterior(z, temperature, top_k)

    def mix(self, weights: Tensor, mix_mode: str = "std") -> tuple[Tensor, Tensor]:
        """Mixed latent mean and std (B, C) for weights (B, K) or (K,); mix_mode "std" mixes standard
        deviations (official code), "covariance" mixes variances (the paper's Alg. 1)."""
        w = torch.as_tensor(weights)
        return self.prior.mix(nas.check_weights(self.prior, w[None] if w.dim() == 1 else w, None), mix_mode)

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
    def sampling_engine(self) -> FastNAFlow | LayerEngine:
        """What `sample` and the noise sources run on: the folded fast path (flow/fast.py: same results,
        less work) when the model is frozen, in eval mode and `fast_sampling` is on; else its layers."""
        if self.fast_sampling and not self.training and not any(p.requires_grad for p in self.parameters()):
            if self._fast is None:
                self._fast = FastNAFlow(self)
            return self._fast
        return LayerEngine(self)

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

        Runs `naflow_aug.flow.nas.sample` on `sampling_engine` (on the layers when ``features`` from
        `condition` are given). Computed in the model's dtype, returned in the input's.
        """
        engine = self.sampling_engine() if features is None else LayerEngine(self)
        if features is not None:
            self._features(clean, features)  # the right number of maps
        noisy, params = nas.sample(
            engine, clean, reference=reference, config=config, weights=weights, generator=generator,
            seeds=seeds, temperature=temperature, top_k=top_k, mix_mode=mix_mode, noise_level=noise_level,
            noise_std=noise_std, features=features, check_values=self.validate_inputs,
        )  # fmt: skip
        return (noisy, params) if return_params else noisy


class LayerEngine:
    """The sampling path's engine (`naflow_aug.flow.nas.Engine`) on a NAFlow's own layers, one by one."""

    def __init__(self, model: NAFlow):
        self.model = model

    @property
    def prior(self) -> ClassGaussians:
        return self.model.prior

    @property
    def classes(self) -> list[str]:
        return self.model.classes

    @property
    def size_multiple(self) -> int:
        return self.model.size_multiple

    def clean_features(self, clean: Tensor) -> list[Tensor]:
        return self.model.encoder(clean)

    def to_latent(self, noisy: Tensor, features: list[Tensor]) -> Tensor:
        return self.model._forward(noisy, features, None)[0]

    def to_image(self, z: Tensor, features: list[Tensor]) -> Tensor:
        return self.model._inverse(z, features)
