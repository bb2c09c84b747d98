"""Adaptation: a new camera configuration learned from a handful of its (clean, noisy) pairs.

The bundled model's configurations are SIDD phones. A camera outside SIDD (weaker, JPEG-processed noise)
is none of them, and no mixture of them fits it; a new latent Gaussian fitted to the pairs' latents does
not fit it either, because the flow maps that camera's noise to latents with spatial structure that an
iid Gaussian lacks, and sampled iid latents decode to noise that is too strong. So the adaptation learns
a new configuration *and* changes the flow a little so that the camera's noise maps to an iid Gaussian:

1. the model gets one more class, its Gaussian started at the closed-form fit of the pairs' latents
   (:func:`naflow_aug.train.refit_prior`);
2. a few hundred steps of the training objective (``NAFlow.nll``) on random crops, flips and rotations of
   the pairs (the training pipeline's batches, :class:`naflow_aug.train.StepBatches`), at a low learning
   rate, on the parameters that :data:`TRAINABLE` names, all randomness from ``seed``;
3. the new class's std scaled so that noise sampled on the pairs' clean images has the real noise's power
   (:func:`_match_noise_std`);
4. the camera's response (:class:`CameraFlow`, :func:`camera_response`): every decode's noise is normalised
   over a Gaussian window of 10 pixels and scaled to the camera's noise std per channel and clean intensity
   (8 bins, :func:`fit_level` on the pairs), then rounded to 8 bits as the camera's files are. Trained on
   two images, the flow's noise has the right power on those two but not on others: on the other pairs of
   the nam-cc60 groups it was 1.1-2.1x too strong in their flattest regions, a level that follows image
   content rather than the camera. The flow keeps what it models well (the noise's spatial and cross-channel
   correlation, its shape); the level comes from the pairs' noise-level function.
   The response also adds the camera's offset from the clean image per channel and intensity
   (:func:`fit_level` with ``offset``): a pair's noisy image is not centred on its clean one (SIDD's
   ground truth is processed apart from the noisy image; nam-cc60's clean image is a mean of 500 clipped
   8-bit shots), and the fit matches each bin's mean and variance after clipping and rounding.

How the recipe was chosen, all on two nam-cc60 groups (Nikon_D800_ISO3200 and Canon_EOS_5D_Mark3_ISO3200; 2
calibration pairs each, their other pairs scored; the three other groups' scores were not looked at before
the recipe was fixed): the flow training (whole flow at lr 5e-5, 300 steps, with power matching) first, on
Nikon_D800_ISO3200 alone, among the whole flow at lr 2e-4, ActNorm + 1x1 convolutions at 1e-3 and the
conditional steps at 2e-4. Then the response: a per-intensity gain alone (no normalisation) left KLD / AKLD
where they were (0.063 / 0.478 and 0.119 / 0.534 against 0.061 / 0.477 and 0.120 / 0.549 without it);
normalising each image as a whole, or over windows of 4, 8, 16 pixels with and without removing the local
mean, rounding to 8 bits or not, 8 or 16 intensity bins: the local mean removed, 8 bits, 8 bins and a window
of 10 pixels, the widest that keeps tiled decoding seamless (3 std within the tiles' 32-pixel overlap; 16
scored better still on the Canon), scored best on both groups (0.017 / 0.297 and 0.032 / 0.369). With the
response (window 8), training only the Gaussian (0.015 / 0.292 and 0.039 / 0.425), the whole flow at lr 2e-5
(0.016 / 0.297, 0.035 / 0.396) or the conditional steps only (0.016 / 0.290 on the Nikon) scored about as
the recipe (0.017 / 0.297, 0.035 / 0.386), but their noise was less correlated between neighbouring pixels
than the real noise (Gaussian only: 0.51 against the real 0.74 on Nikon_D800_ISO3200; the recipe 0.68).

The offset was chosen leave-one-group-out on cached decodes of the five nam-cc60 groups' adapted flows
(KLD / AKLD on each group's scored pairs, without and with it): Canon_EOS_5D_Mark3_ISO3200 0.032 / 0.370
and 0.030 / 0.382, Nikon_D600_ISO3200 0.059 / 0.307 and 0.041 / 0.311, Nikon_D800_ISO1600 0.058 / 0.429 and
0.057 / 0.419, Nikon_D800_ISO3200 0.017 / 0.297 and 0.016 / 0.292, Nikon_D800_ISO6400 0.044 / 0.354 and
0.052 / 0.354. For each group the other four decided (mean of the relative KLD and AKLD changes): kept for
four groups, not for Nikon_D600_ISO3200, which ``benchmarks/camera_profiles.py`` therefore runs without it;
all five together keep it (KLD -4 %, AKLD +0.1 %), hence the default.

Not the default, measured: normalising among pixels of about the same clean intensity (``guide_bins``, so
that a dark region's strong noise does not weaken a bright neighbour's) left KLD / AKLD where they were on
the SIDD training pairs outside the calibration pairs (IP_01600, 4 pairs: 0.013 / 0.117 either way;
GP_00800, 1 pair: 0.014 / 0.258 against 0.014 / 0.266) and was mixed on the nam-cc60 groups' scored pairs
(cached decodes, with the offset; window / guided): Canon_EOS_5D_Mark3_ISO3200 0.030 / 0.382 and 0.045 /
0.442, Nikon_D600_ISO3200 0.041 / 0.311 and 0.037 / 0.300, Nikon_D800_ISO1600 0.057 / 0.419 and 0.058 /
0.381, Nikon_D800_ISO3200 0.016 / 0.292 either way, Nikon_D800_ISO6400 0.052 / 0.354 and 0.051 / 0.333;
leave-one-group-out it would be chosen only for the Canon, the group where it does worst.

On SIDD configurations the noise level at one intensity differs between scenes of one configuration by up
to 2x (GP_00800's green channel in dark tones: std 7.3 and 15.0 in two scenes), which two pairs cannot pin
down: without a noisy image the adapted profile is not as close as NAS by AKLD (README). NAS reads each
image's level from its noisy image; given that image as well, the profile (``profile-ref:P``,
``noise_level="reference"``: its noise scaled to the reference's per-channel std, then rounded to 8 bits
again by :meth:`ResponseEngine.after_level`) is closer than NAS by KLD and level with it by AKLD.

The result is stored as the changed tensors only (:func:`adapted_tensors`) and applied to the base model
again with :func:`apply_tensors`.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from naflow_aug.data.pairs import Pair
from naflow_aug.evaluate import trim_to_multiple
from naflow_aug.flow.model import NAFlow
from naflow_aug.images import round_nearest, to_float
from naflow_aug.response import camera_response, fit_level, level_gain, normalise_noise
from naflow_aug.train import StepBatches, TrainConfig, refit_prior

__all__ = ["AdaptConfig", "CameraFlow", "ResponseEngine", "adapt", "adapted_tensors", "apply_tensors",
           "camera_response", "extend_model", "fit_level", "level_gain", "normalise_noise", "with_response"]

log = logging.getLogger(__name__)

#: which parameters the adaptation trains besides the new class's Gaussian
TRAINABLE = ("all", "flow", "conditional", "linear", "none")
CAMERA_CLASS = "camera"
PRIOR_KEYS = ("prior.mean", "prior.std")


@dataclass(frozen=True)
class AdaptConfig:
    """The adaptation recipe (the defaults are the measured one; see the README's camera profile section).

    ``train``: ``all`` (flow and clean-image encoder), ``flow`` (the flow layers), ``conditional`` (the
    flow's clean-conditioned coupling steps), ``linear`` (ActNorm and 1x1 convolutions) or ``none`` (the
    new Gaussian only). ``match_std``: after training, scale the new class's latent std so that noise sampled
    on the pairs' clean images has the pairs' noise standard deviation (:func:`_match_noise_std`).
    The camera's response (:mod:`naflow_aug.response`; ``level_bins=0``: none): ``level_bins`` intensity
    bins of the level and offset tables, ``level_window`` the normalisation window (pixels), ``quantize``
    rounding to 8 bits, ``offset`` fitting the offset table, ``guide_bins`` > 0 normalising among pixels of
    about the same intensity (not the default: see the module doc).
    """

    steps: int = 300
    lr: float = 5e-5
    latent_lr: float = 2e-3
    batch_size: int = 8
    crop_size: int = 64
    train: str = "all"
    cond_noise_std: float = 3.0 / 255.0
    refit_max_size: int = 512
    match_std: bool = True
    level_bins: int = 8
    level_window: float = 10.0
    quantize: bool = True
    offset: bool = True
    guide_bins: int = 0
    seed: int = 0
    camera: str = CAMERA_CLASS

    def __post_init__(self) -> None:
        for name in ("steps", "batch_size", "crop_size", "refit_max_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < (0 if name == "steps" else 1):
                raise ValueError(f"AdaptConfig.{name} must be a positive integer, got {value!r}")
        if self.crop_size % 8:
            raise ValueError(f"AdaptConfig.crop_size must be a multiple of 8, got {self.crop_size}")
        if not (self.lr > 0 and self.latent_lr > 0):
            raise ValueError(f"AdaptConfig.lr and latent_lr must be > 0, got {self.lr}, {self.latent_lr}")
        if self.train not in TRAINABLE:
            raise ValueError(f"AdaptConfig.train must be one of {TRAINABLE}, got {self.train!r}")
        for name in ("level_bins", "guide_bins"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"AdaptConfig.{name} must be an integer >= 0, got {value!r}")
        if not (isinstance(self.level_window, int | float) and 0 <= self.level_window <= 10):
            # the window's reach (3 std) stays inside the tiles' overlap (32): tiled decodes stay seamless
            raise ValueError(f"AdaptConfig.level_window must be in [0, 10] pixels, got {self.level_window!r}")
        if not self.cond_noise_std >= 0:
            raise ValueError(f"AdaptConfig.cond_noise_std must be >= 0, got {self.cond_noise_std}")
        if not isinstance(self.camera, str) or not self.camera:
            raise ValueError(f"AdaptConfig.camera must be a non-empty name, got {self.camera!r}")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def extend_model(base: nn.Module, camera: str) -> nn.Module:
    """A copy of ``base`` (a NAFlow) with one more class named ``camera`` (its Gaussian: zero mean, unit
    std until fitted), on the base model's device and dtype, in eval mode without gradients."""
    if camera in base.classes:
        raise ValueError(f"the new camera class {camera!r} is already one of the model's {base.classes}")
    config = dataclasses.replace(base.config, classes=(*base.classes, camera))
    model = NAFlow(config)
    state = {k: v.detach().clone() for k, v in base.state_dict().items()}
    for key in PRIOR_KEYS:
        old = state[key]
        fresh = torch.eye(old.shape[1], dtype=old.dtype, device=old.device)[None] if old.dim() == 3 else None
        if fresh is None:
            fresh = torch.zeros_like(old[:1]) if key == "prior.mean" else torch.ones_like(old[:1])
        state[key] = torch.cat([old, fresh])
    param = next(base.parameters())
    model = model.to(param.device, param.dtype)
    model.load_state_dict(state, strict=True)
    model.base_sha256 = getattr(base, "checkpoint_sha256", None)
    model.checkpoint_sha256 = None
    return model.freeze()


def _trainable_names(model: nn.Module, which: str) -> list[str]:
    names = [n for n, _ in model.named_parameters() if not n.startswith("prior.")]
    if which == "all":
        return names
    if which == "flow":
        return [n for n in names if n.startswith("flow.")]
    if which == "conditional":
        return [n for n in names if n.startswith("flow.") and (".coupling." in n or ".injector." in n)]
    if which == "linear":
        return [n for n in names if n.startswith("flow.") and (".actnorm." in n or ".conv." in n)]
    return []


def _as_uint8(x: torch.Tensor, name: str) -> torch.Tensor:
    if x.dtype == torch.uint8:
        return x.cpu()
    if not x.is_floating_point() or x.dim() != 3 or x.shape[0] != 3:
        raise ValueError(f"{name} must be a (3, H, W) uint8 or float tensor in [0, 1], got {x.dtype} "
                         f"{tuple(x.shape)}")  # fmt: skip
    lo, hi = float(x.min()), float(x.max())
    if lo < 0 or hi > 1:
        raise ValueError(f"{name} values must lie in [0, 1], got min {lo:.4g} and max {hi:.4g}")
    return round_nearest(x.detach().float().cpu())


def adapt(
    base: nn.Module,
    pairs: Sequence[tuple[torch.Tensor, torch.Tensor]],
    config: AdaptConfig | None = None,
    *,
    progress: bool = False,
) -> tuple[nn.Module, dict[str, Any]]:
    """Learn a new configuration from (clean, noisy) pairs ((3, H, W) float in [0, 1] or uint8; 8-bit
    values: floats are rounded to 1/255) and return ``(adapted model, info)``.

    The adapted model is ``base`` with one more class (``config.camera``, last) and the changed flow; the
    base model is not modified. ``info`` holds the steps, seconds, first and last losses (bits per pixel).
    """
    config = config or AdaptConfig()
    if not isinstance(config, AdaptConfig):
        raise TypeError(f"config must be an AdaptConfig, got {type(config).__name__}")
    images = _checked_pairs(pairs, config)
    start, start_cpu = time.perf_counter(), time.process_time()
    model = extend_model(base, config.camera)
    refit_prior(model, [(n, c, config.camera) for n, c in images], max_size=config.refit_max_size)
    flow_params, losses = _train_camera(model, images, config, progress=progress)
    model.freeze()
    scale = _match_noise_std(model, images, config) if config.match_std else 1.0
    level = offset = None
    if config.level_bins:
        level, offset = _fit_response(model, images, config)
        model = with_response(model, level, config.level_window, config.quantize, offset, config.guide_bins)
    seconds = time.perf_counter() - start
    info = {
        "steps": config.steps,
        "seconds": round(seconds, 1),
        # CPU time of all threads: what the adaptation costs, also on a machine shared with other jobs
        "cpu_seconds": round(time.process_time() - start_cpu, 1),
        "trained_parameters": sum(p.numel() for p in flow_params) + 2 * model.prior.mean.shape[1],
        "nll_first": losses[0] if losses else None,
        "nll_last": float(sum(losses[-20:]) / len(losses[-20:])) if losses else None,
        "std_scale": scale,
        "level_255": None if level is None else _in_8_bit(level),
        "offset_255": None if offset is None else _in_8_bit(offset),
    }
    log.info("adapted to %d pairs in %.1f s: %s", len(images), seconds, info)
    return model, info


def _checked_pairs(
    pairs: Sequence[tuple[torch.Tensor, torch.Tensor]], config: AdaptConfig
) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The pairs as (noisy, clean) uint8 images, each checked: two images of one shape, >= the crop size."""
    images = []
    for i, pair in enumerate(pairs):
        if not (isinstance(pair, tuple | list) and len(pair) == 2):
            raise TypeError(f"pairs must hold (clean, noisy) tuples, item {i} is {type(pair).__name__}")
        clean, noisy = _as_uint8(pair[0], f"clean image {i}"), _as_uint8(pair[1], f"noisy image {i}")
        if clean.shape != noisy.shape:
            raise ValueError(f"pair {i}: clean {tuple(clean.shape)} and noisy {tuple(noisy.shape)} differ")
        if min(clean.shape[1:]) < config.crop_size:
            raise ValueError(
                f"pair {i} is {tuple(clean.shape[1:])}, smaller than crop_size {config.crop_size}"
            )
        images.append((noisy, clean))
    if not images:
        raise ValueError("adapt got no (clean, noisy) pairs")
    return images


def _train_camera(
    model: nn.Module, images: Sequence[tuple[torch.Tensor, torch.Tensor]], config: AdaptConfig,
    *, progress: bool,
) -> tuple[list[nn.Parameter], list[float]]:
    """``config.steps`` steps of the training objective on the pairs' crops (the new class is the last);
    returns the trained flow parameters and the losses."""
    camera_id = model.num_classes - 1
    names = set(_trainable_names(model, config.train))
    flow_params = [p for n, p in model.named_parameters() if n in names]
    latent_params = [model.prior.mean, model.prior.std]
    for p in [*flow_params, *latent_params]:
        p.requires_grad_(True)
    groups = [{"params": latent_params, "lr": config.latent_lr}]
    if flow_params:
        groups.append({"params": flow_params, "lr": config.lr})
    optimizer = torch.optim.Adam(groups, betas=(0.9, 0.99))
    train_config = TrainConfig(
        preset="cpu", steps=max(config.steps, 1), batch_size=config.batch_size, crop_size=config.crop_size,
        augment=True, class_balanced=False, dequantize=True, cond_noise_std=config.cond_noise_std,
        seed=config.seed,
    )  # fmt: skip
    fake_pairs = [Pair(Path(f"pair{i}_clean"), Path(f"pair{i}_noisy"), config.camera, str(i), *n.shape[1:])
                  for i, (n, _) in enumerate(images)]  # fmt: skip
    batches = StepBatches(fake_pairs, [camera_id] * len(images), model.num_classes, train_config, 0, images)
    # ActNorm keeps its fitted statistics: train mode only matters for layers that initialise on first use
    model.eval()
    device = next(model.parameters()).device
    losses: list[float] = []
    bar = tqdm(range(config.steps), desc="adapt", unit="step", disable=not progress, leave=False)
    for step in bar:
        batch = batches[step]
        loss = model.nll(
            batch["noisy"].to(device), batch["clean"].to(device), batch["labels"].to(device)
        ).mean()
        if not math.isfinite(loss.item()):
            raise RuntimeError(f"adaptation step {step}: non-finite loss {loss.item()}")
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
        if step % 10 == 0:
            bar.set_postfix(nll=f"{losses[-1]:.3f}")
    bar.close()
    return flow_params, losses


def _in_8_bit(table: Tensor) -> list[list[float]]:
    return [[round(v * 255, 3) for v in row] for row in table.tolist()]


@torch.no_grad()
def _match_noise_std(model: nn.Module, images: list, config: AdaptConfig, iterations: int = 8) -> float:
    """Multiply the camera class's latent std by the scale (found by bisection in log space over [1/4, 2])
    at which noise decoded on the pairs' clean images (centre crops of at most ``refit_max_size``, seeds
    from ``config.seed``) has the real noise's mean square; returns the scale."""

    device, dtype = model.prior.mean.device, model.prior.mean.dtype
    m = model.size_multiple
    size = config.refit_max_size
    crops = [[trim_to_multiple(to_float(x), m, size)[None].to(device, dtype) for x in p] for p in images]
    real = sum(float((n - c).pow(2).mean()) for n, c in crops) / len(crops)
    feats = [model.condition(c) for _, c in crops]
    g = torch.Generator().manual_seed(config.seed)
    eps = [
        torch.randn((1, model.latent_channels, c.shape[2] // m, c.shape[3] // m), generator=g)
        for _, c in crops
    ]
    mean, std = model.prior.mean[-1].clone(), model.prior.std[-1].clone()

    def power(scale: float) -> float:
        total = 0.0
        for (_, c), f, e in zip(crops, feats, eps, strict=True):
            z = model.prior.reparameterize(mean[None], (std * scale)[None], e.to(device, dtype))
            total += float((model.decode(z, c, f).clamp(0, 1) - c).pow(2).mean())
        return total / len(crops)

    lo, hi = math.log(0.25), math.log(2.0)
    for _ in range(iterations):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if power(math.exp(mid)) < real else (lo, mid)
    scale = math.exp(0.5 * (lo + hi))
    model.prior.std[-1] = std * scale
    return scale


# ------------------------------------------------------------------------------------ the camera's response

class ResponseEngine:
    """The sampling path's engine (:class:`naflow_aug.flow.nas.Engine`) of a :class:`CameraFlow`: ``inner``'s
    (the fast or the layer engine), its decoded images passed through the camera's response. The features
    carry the clean images, so that tiles get the response of their own clean tile."""

    def __init__(self, inner: Any, flow: CameraFlow) -> None:
        self.inner, self.flow = inner, flow

    @property
    def prior(self) -> Any:
        return self.inner.prior

    @property
    def classes(self) -> list[str]:
        return self.inner.classes

    @property
    def size_multiple(self) -> int:
        return self.inner.size_multiple

    def clean_features(self, clean: Tensor) -> tuple[Tensor, Any]:
        return clean, self.inner.clean_features(clean)

    def to_latent(self, noisy: Tensor, features: tuple[Tensor, Any]) -> Tensor:
        return self.inner.to_latent(noisy, features[1])

    def to_image(self, z: Tensor, features: tuple[Tensor, Any]) -> Tensor:
        clean, inner = features
        return self.flow.respond(self.inner.to_image(z, inner), clean)

    def after_level(self, noisy: Tensor) -> Tensor:
        """Images scaled to another noise level (:func:`naflow_aug.flow.nas.at_noise_level`) back on the
        camera's 8-bit grid, if it has one."""
        return (noisy * 255).round() / 255 if self.flow.quantize else noisy


class CameraFlow(NAFlow):
    """An adapted NAFlow whose noise ends with the camera's response (:func:`camera_response`): its noise
    normalised over a window of ``window`` pixels, scaled to the camera's per-channel, per-intensity
    ``level`` (C, K) fitted on the calibration pairs, and rounded to 8 bits if ``quantize``.

    :meth:`decode` and every sampling path (``sample``, the noise sources, tiling: :meth:`sampling_engine`)
    apply it; ``decode`` is therefore not the inverse of ``encode`` here.
    """

    def __init__(
        self, config: Any, level: Tensor, window: float, quantize: bool, offset: Tensor | None = None,
        guide_bins: int = 0,
    ) -> None:
        super().__init__(config)
        if level.dim() != 2 or level.shape[0] != 3 or not bool(torch.isfinite(level).all()):
            raise ValueError(f"camera level must be a finite (3, K) table, got {tuple(level.shape)}")
        self.register_buffer("response_level", level.detach().clone().float(), persistent=False)
        offset = torch.zeros_like(level) if offset is None else offset
        if offset.shape != level.shape or not bool(torch.isfinite(offset).all()):
            raise ValueError(
                f"camera offset must be a finite {tuple(level.shape)} table, got {tuple(offset.shape)}"
            )
        self.register_buffer("response_offset", offset.detach().clone().float(), persistent=False)
        self.response_window = float(window)
        self.guide_bins = int(guide_bins)
        self.quantize = bool(quantize)

    def respond(self, noisy: Tensor, clean: Tensor) -> Tensor:
        """The camera's output for the flow's (B, 3, H, W) ``noisy`` images of ``clean`` (not clamped)."""
        return camera_response(noisy, clean, self.response_level, self.response_window, self.quantize,
                               self.response_offset, self.guide_bins)  # fmt: skip

    def decode(self, z: Tensor, clean: Tensor, features: list[Tensor] | None = None) -> Tensor:
        return self.respond(super().decode(z, clean, features), clean)

    def sampling_engine(self) -> ResponseEngine:
        return ResponseEngine(super().sampling_engine(), self)

    def sample(self, clean: Tensor, *, features: list[Tensor] | None = None, **kwargs: Any) -> Any:
        if features is not None:  # NAFlow.sample runs given features on its bare layers
            raise ValueError("a CameraFlow samples without precomputed features (features=None)")
        return super().sample(clean, **kwargs)


def with_response(
    model: nn.Module, level: Tensor, window: float, quantize: bool, offset: Tensor | None = None,
    guide_bins: int = 0,
) -> CameraFlow:
    """``model`` (an adapted NAFlow) as a :class:`CameraFlow` with the given response, frozen."""
    flow = CameraFlow(model.config, level, window, quantize, offset, guide_bins)
    param = next(model.parameters())
    flow = flow.to(param.device, param.dtype)
    flow.load_state_dict(model.state_dict(), strict=True)
    flow.base_sha256 = getattr(model, "base_sha256", None)
    flow.checkpoint_sha256 = None
    return flow.freeze()


@torch.no_grad()
def _fit_response(model: nn.Module, images: list, config: AdaptConfig) -> tuple[Tensor, Tensor]:
    """The camera's level and offset tables (3, ``config.level_bins``) (:func:`fit_level`): noise decoded
    on the pairs' clean images (centre crops of at most ``refit_max_size``, seeds from ``config.seed``),
    normalised, against the real noise."""

    device, dtype = model.prior.mean.device, model.prior.mean.dtype
    m, size = model.size_multiple, config.refit_max_size
    g = torch.Generator().manual_seed(config.seed + 1)
    clean_px, real_px, unit_px = [], [], []
    for noisy, clean in images:
        c = trim_to_multiple(clean.float() / 255, m, size)[None]
        n = trim_to_multiple(noisy.float() / 255, m, size)[None]
        eps = torch.randn((1, model.latent_channels, c.shape[2] // m, c.shape[3] // m), generator=g)
        z = model.prior.reparameterize(model.prior.mean[-1:], model.prior.std[-1:], eps.to(device, dtype))
        fake = model.decode(z, c.to(device, dtype)).float().cpu()
        clean_px.append(c[0].flatten(1).double())
        real_px.append((n - c)[0].flatten(1).double())
        unit = normalise_noise(fake - c, config.level_window, c, config.guide_bins)
        unit_px.append(unit[0].flatten(1).double())
    clean_all, real_all, unit_all = (torch.cat(xs, dim=1) for xs in (clean_px, real_px, unit_px))
    return fit_level(clean_all, real_all, unit_all, config.level_bins, quantize=config.quantize,
                     offset=config.offset)  # fmt: skip


def adapted_tensors(base: nn.Module, adapted: nn.Module, config: AdaptConfig) -> dict[str, torch.Tensor]:
    """What an adapted model changed relative to ``base``: the new class's mean and std, and every trained
    parameter, by state-dict name (CPU float32 copies)."""
    state = adapted.state_dict()
    out = {"camera.mean": state["prior.mean"][-1].detach().cpu().clone(),
           "camera.std": state["prior.std"][-1].detach().cpu().clone()}  # fmt: skip
    for name in _trainable_names(adapted, config.train):
        out[name] = state[name].detach().cpu().clone()
    if isinstance(adapted, CameraFlow):
        out["camera.level"] = adapted.response_level.detach().float().cpu().clone()
        out["camera.offset"] = adapted.response_offset.detach().float().cpu().clone()
        out["camera.guide_bins"] = torch.tensor(adapted.guide_bins)
        out["camera.level_window"] = torch.tensor(adapted.response_window)
        out["camera.quantize"] = torch.tensor(float(adapted.quantize))
    return out


def apply_tensors(base: nn.Module, tensors: Mapping[str, torch.Tensor], camera: str) -> nn.Module:
    """The adapted model of ``base`` from :func:`adapted_tensors`'s output (a :class:`CameraFlow` when they
    hold the camera's response); ValueError naming a tensor that does not fit the base model."""
    model = extend_model(base, camera)
    state = model.state_dict()
    for key in ("camera.mean", "camera.std"):
        if key not in tensors:
            raise ValueError(f"adapted profile tensors lack {key!r} (got {sorted(tensors)[:5]}...)")
    updates = {}
    for name, value in tensors.items():
        if name.startswith("camera."):
            continue
        if name not in state or name.startswith("prior.") or state[name].shape != value.shape:
            got = tuple(value.shape)
            expected = tuple(state[name].shape) if name in state else "no such tensor"
            raise ValueError(
                f"adapted profile tensor {name!r} {got} does not fit the base model ({expected})"
            )
        updates[name] = value
    with torch.no_grad():
        for name, value in updates.items():
            state[name].copy_(value)
        for key, part in (("prior.mean", "camera.mean"), ("prior.std", "camera.std")):
            if state[key][-1].shape != tensors[part].shape:
                raise ValueError(f"adapted profile tensor {part!r} {tuple(tensors[part].shape)} does not fit "
                                 f"the base model's latent ({tuple(state[key][-1].shape)})")  # fmt: skip
            state[key][-1].copy_(tensors[part])
    if "camera.level" not in tensors:  # made before the response existed: the flow's own noise
        return model
    for key in ("camera.level_window", "camera.quantize"):
        if key not in tensors or tensors[key].numel() != 1:
            raise ValueError(f"adapted profile tensors have 'camera.level' but no one-value {key!r}")
    window, quantize = float(tensors["camera.level_window"]), bool(tensors["camera.quantize"])
    # profiles made before the offset and the guided normalisation existed have neither: 0
    guide = int(tensors["camera.guide_bins"]) if "camera.guide_bins" in tensors else 0
    offset = tensors.get("camera.offset")
    return with_response(model, tensors["camera.level"], window, quantize, offset, guide)
