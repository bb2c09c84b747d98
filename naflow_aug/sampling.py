"""Noise sources: the one place that turns clean images into noisy ones, for every front-end.

A noise source is made from its spelling (shared by Python and the CLI's ``--noise``)::

    random                         a random configuration of the model per image (the default)
    config:S6_03200                one configuration of the model
    weights:<file.json | w1,w2,... | NAME=w,NAME=w>   a mixture over the model's configurations
    nas                            noise-aware sampling from a reference (clean, noisy) pair
    profile:<path.json>            a saved noise profile (see naflow_aug.profiles)
    gaussian:<sigma>               white Gaussian noise, sigma in 0-255 units
    gaussian-per-config[:<baselines.json>]   fitted Gaussian of each configuration
    poisson-gaussian[:<baselines.json>]      fitted signal-dependent a*x + b of each configuration
    real                           the reference noisy image itself
    albumentations-gauss           A.GaussNoise as a user would configure it
    albumentations-iso             A.ISONoise as a user would configure it

Every source has one call: ``noisy, params = source(clean, reference=None, labels=None, generator=None)``
with clean (B, 3, H, W) float in [0, 1], and ``source.replay(clean, params, reference=None)`` reproduces
``noisy`` exactly. Randomness contract: one int64 seed per item is drawn from ``generator`` (else torch's
default generator) first; item b's randomness then comes only from ``torch.Generator("cpu")`` seeded with
``seeds[b]`` (first a uniform configuration pick, drawn whether or not the source uses it, then the noise),
so a batch equals its items run one at a time, as in ``NAFlow.sample``.
"""

from __future__ import annotations

import logging
import math
import numbers
import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch

from naflow_aug import tiling
from naflow_aug.baselines import Baselines, sample_gaussian, sample_poisson_gaussian
from naflow_aug.checkpoints import available_models, load
from naflow_aug.flow import nas
from naflow_aug.flow.noise_level import LEVELS, check_level, noise_std
from naflow_aug.flow.seeds import as_seeds, check_seed
from naflow_aug.images import round_nearest, to_float
from naflow_aug.weights import parse_weights

log = logging.getLogger(__name__)

NOISE_SOURCE_FORMS = (
    "random",
    "config:<NAME> (e.g. config:S6_03200)",
    "weights:<file.json | w1,w2,... | NAME=w,NAME=w,...>",
    "nas[:reference|model]",
    "profile:<path.json>",
    "gaussian:<sigma in 0-255 units>",
    "gaussian-per-config[:<baselines.json>]",
    "poisson-gaussian[:<baselines.json>]",
    "real",
    "albumentations-gauss",
    "albumentations-iso",
)
MODEL_KINDS = ("random", "config", "weights", "nas", "profile")
_NO_ARG = ("random", "real", "albumentations-gauss", "albumentations-iso")
_NEEDS_ARG = ("config", "weights", "profile", "gaussian")
_OPTIONAL_ARG = ("gaussian-per-config", "poisson-gaussian", "nas")
_SEED_HIGH = 2**63 - 1


def _valid_forms() -> str:
    return "valid noise sources: " + ", ".join(NOISE_SOURCE_FORMS)


def parse_noise_spec(spec: str) -> tuple[str, str | None]:
    """Split a spelling into (kind, argument); ValueError naming the spelling and the valid forms."""
    if not isinstance(spec, str):
        raise TypeError(f"a noise source spelling must be a str, got {type(spec).__name__}: {spec!r}")
    kind, sep, arg = spec.strip().partition(":")
    kind = kind.strip()
    if kind in _NO_ARG:
        if sep:
            raise ValueError(f"noise source {spec!r}: {kind!r} takes no argument; {_valid_forms()}")
        return kind, None
    if kind in _NEEDS_ARG:
        if not arg.strip():
            raise ValueError(f"noise source {spec!r}: {kind!r} needs an argument after ':'; {_valid_forms()}")
        return kind, arg.strip()
    if kind in _OPTIONAL_ARG:
        if kind == "nas" and arg.strip() not in ("", *LEVELS):
            raise ValueError(
                f"noise source {spec!r}: nas takes the noise level, one of {LEVELS} (default reference); "
                f"{_valid_forms()}"
            )
        return kind, (arg.strip() or None)
    raise ValueError(f"unknown noise source {spec!r}; {_valid_forms()}")


# ------------------------------------------------------------------------------------------- randomness


def draw_seeds(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(n,) int64 non-negative seeds from ``generator`` (None: torch's default generator)."""
    device = generator.device if generator is not None else "cpu"
    return torch.randint(0, _SEED_HIGH, (n,), generator=generator, dtype=torch.int64, device=device).cpu()


def item_generator(seed: int | torch.Tensor) -> torch.Generator:
    """The CPU generator that all of one item's randomness comes from."""
    return torch.Generator("cpu").manual_seed(check_seed(seed))


# --------------------------------------------------------------------------------------------- checking


def check_images(x: Any, name: str = "clean") -> torch.Tensor:
    """Validate (B, 3, H, W) float images in [0, 1] with B >= 1; raise TypeError/ValueError otherwise."""
    if not isinstance(x, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor (B, 3, H, W) float in [0, 1], got {type(x).__name__}")
    if not x.is_floating_point():
        raise TypeError(
            f"{name} must be a float tensor in [0, 1] (convert uint8 with /255), got dtype {x.dtype}"
        )
    if x.dim() != 4 or x.shape[1] != 3:
        raise ValueError(f"{name} must have shape (B, 3, H, W) (RGB), got {tuple(x.shape)}")
    if x.shape[0] == 0:
        raise ValueError(f"{name} is an empty batch (shape {tuple(x.shape)}); need at least one image")
    if x.shape[2] == 0 or x.shape[3] == 0:
        raise ValueError(f"{name} has an empty side: shape {tuple(x.shape)}")
    lo, hi = torch.stack(torch.aminmax(x.detach())).tolist()  # one read-back (GPU sync); NaN propagates
    if math.isnan(lo) or math.isnan(hi):
        raise ValueError(f"{name} contains NaN")
    if lo < 0.0 or hi > 1.0:
        raise ValueError(f"{name} values must lie in [0, 1], got min {lo:.4g} and max {hi:.4g}")
    return x


def _check_reference(reference: Any, clean: torch.Tensor, spec: str) -> torch.Tensor:
    if reference is None:
        raise ValueError(f"noise source {spec!r} needs a reference noisy image (reference=...), got None")
    reference = check_images(reference, "reference")
    if reference.shape != clean.shape:
        raise ValueError(
            f"reference shape {tuple(reference.shape)} does not match clean shape {tuple(clean.shape)}"
        )
    return reference


# ----------------------------------------------------------------------------------------------- params


@dataclass(frozen=True)
class NoiseParams:
    """What one call drew, enough to replay it.

    ``seeds`` (B,) int64; ``weights`` (B, K) mixture over ``classes`` (the model's configurations) for
    model sources; ``configs`` the configuration name of each item where the source picks one (``random``,
    per-configuration baselines).
    """

    source: str
    seeds: torch.Tensor
    weights: torch.Tensor | None = None
    classes: tuple[str, ...] | None = None
    configs: tuple[str, ...] | None = None
    #: (B, 3) per-channel noise std the output was scaled to (``nas`` with level ``reference``), or None
    noise_std: torch.Tensor | None = None

    def __len__(self) -> int:
        return int(self.seeds.shape[0])

    def select(self, index: int | slice | Sequence[int]) -> NoiseParams:
        """The params of some items (a batch's items can be replayed one at a time)."""
        idx = (
            [index]
            if isinstance(index, int)
            else (list(range(len(self)))[index] if isinstance(index, slice) else list(index))
        )
        return NoiseParams(
            source=self.source,
            seeds=self.seeds[idx],
            weights=None if self.weights is None else self.weights[idx],
            classes=self.classes,
            configs=None if self.configs is None else tuple(self.configs[i] for i in idx),
            noise_std=None if self.noise_std is None else self.noise_std[idx],
        )

    @staticmethod
    def cat(parts: Sequence[NoiseParams]) -> NoiseParams:
        if not parts:
            raise ValueError("NoiseParams.cat needs at least one part")
        first = parts[0]
        if any(p.source != first.source or p.classes != first.classes for p in parts):
            raise ValueError("NoiseParams.cat: parts come from different sources or class lists")
        return NoiseParams(
            source=first.source,
            seeds=torch.cat([p.seeds for p in parts]),
            weights=None if first.weights is None else torch.cat([p.weights for p in parts]),
            classes=first.classes,
            configs=None if first.configs is None else tuple(c for p in parts for c in p.configs),
            noise_std=None if first.noise_std is None else torch.cat([p.noise_std for p in parts]),
        )

    def to_dict(self) -> dict:
        """JSON-ready (seeds as ints, weights as nested lists)."""
        return {
            "source": self.source,
            "seeds": [int(s) for s in self.seeds],
            "weights": None if self.weights is None else self.weights.tolist(),
            "classes": None if self.classes is None else list(self.classes),
            "configs": None if self.configs is None else list(self.configs),
            "noise_std": None if self.noise_std is None else self.noise_std.tolist(),
        }

    @classmethod
    def from_dict(cls, data: dict) -> NoiseParams:
        return cls(
            source=data["source"],
            seeds=torch.tensor(data["seeds"], dtype=torch.int64),
            weights=None
            if data.get("weights") is None
            else torch.tensor(data["weights"], dtype=torch.float32),
            classes=None if data.get("classes") is None else tuple(data["classes"]),
            configs=None if data.get("configs") is None else tuple(data["configs"]),
            noise_std=None
            if data.get("noise_std") is None
            else torch.tensor(data["noise_std"], dtype=torch.float32),
        )


# ------------------------------------------------------------------------------------------------ sources


class NoiseSource:
    """Base class: subclasses implement ``_draw`` (parameters) and ``_apply`` (deterministic noise)."""

    needs_reference = False
    #: names an item's configuration pick refers to (labels index into these), or None
    classes: tuple[str, ...] | None = None

    def __init__(self, spec: str) -> None:
        self.spec = spec

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.spec!r})"

    def __call__(
        self,
        clean: torch.Tensor,
        *,
        reference: torch.Tensor | None = None,
        labels: Sequence[str] | Sequence[int] | torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        seeds: torch.Tensor | Sequence[int] | None = None,
    ) -> tuple[torch.Tensor, NoiseParams]:
        """Noisy images for clean (B, 3, H, W) float in [0, 1], and the params that replay them.

        ``reference``: the real noisy images (``nas``, ``real``). ``labels``: each item's configuration
        (names, or ids into ``source.classes``) for the per-configuration baselines; without labels they
        pick a random configuration per item. ``seeds`` (B,) replaces the draw from ``generator``.
        """
        clean = check_images(clean)
        ref = _check_reference(reference, clean, self.spec) if self.needs_reference else None
        n = clean.shape[0]
        if seeds is None:
            seeds = draw_seeds(n, generator)
        else:
            seeds = as_seeds(seeds, n)
        return self._draw_and_apply(clean, ref, self._label_names(labels, n), seeds)

    def _draw_and_apply(self, clean, reference, labels, seeds) -> tuple[torch.Tensor, NoiseParams]:
        """``_draw``, then ``_apply`` what it drew; a source whose two halves share work overrides it."""
        params = self._draw(clean, reference, labels, seeds)
        return self._apply(clean, params, reference), params

    def replay(
        self, clean: torch.Tensor, params: NoiseParams, *, reference: torch.Tensor | None = None
    ) -> torch.Tensor:
        """Reproduce the noisy images of a previous call from its params."""
        clean = check_images(clean)
        if not isinstance(params, NoiseParams):
            raise TypeError(f"params must be NoiseParams, got {type(params).__name__}")
        if len(params) != clean.shape[0]:
            raise ValueError(f"params hold {len(params)} items, clean holds {clean.shape[0]}")
        if params.source != self.spec:
            raise ValueError(f"params come from noise source {params.source!r}, not {self.spec!r}")
        ref = _check_reference(reference, clean, self.spec) if isinstance(self, RealSource) else None
        return self._apply(clean, params, ref)

    def _label_names(self, labels: Any, n: int) -> list[str | None] | None:
        """Each item's configuration name; None (for the whole batch or an item): the item's random pick."""
        if labels is None:
            return None
        if isinstance(labels, str):
            labels = [labels] * n
        if isinstance(labels, torch.Tensor):
            if labels.dtype == torch.bool or labels.is_floating_point():
                raise TypeError(f"labels must be configuration names or integer ids, not {labels.dtype}")
            labels = labels.reshape(-1).tolist()
        labels = list(labels)
        if len(labels) != n:
            raise ValueError(f"got {len(labels)} labels for a batch of {n} images")
        names = []
        for label in labels:
            if label is None or isinstance(label, str):
                names.append(label)
            elif self.classes is not None and _is_class_id(label, len(self.classes)):
                names.append(self.classes[int(label)])
            else:
                raise ValueError(
                    f"label {label!r} is neither a configuration name nor an id into "
                    f"{list(self.classes or [])}"
                )
        return names

    def _draw(
        self,
        clean: torch.Tensor,
        reference: torch.Tensor | None,
        labels: list[str] | None,
        seeds: torch.Tensor,
    ) -> NoiseParams:
        return NoiseParams(source=self.spec, seeds=seeds)

    def _apply(
        self, clean: torch.Tensor, params: NoiseParams, reference: torch.Tensor | None
    ) -> torch.Tensor:
        raise NotImplementedError


def _pick_configs(seeds: torch.Tensor, classes: Sequence[str]) -> list[str]:
    """Each item's uniformly random configuration: the first draw of its generator."""
    return [classes[int(torch.randint(len(classes), (1,), generator=item_generator(s)))] for s in seeds]


def _fill_labels(labels: list[str | None] | None, picked: list[str]) -> list[str]:
    """Given labels where there are any, else the random picks."""
    if labels is None:
        return picked
    return [pick if label is None else label for label, pick in zip(labels, picked, strict=True)]


def _generators_after_pick(seeds: torch.Tensor, num_classes: int) -> list[torch.Generator]:
    """Item generators advanced past the configuration pick of :func:`_pick_configs`."""
    gens = []
    for s in seeds:
        g = item_generator(s)
        torch.randint(num_classes, (1,), generator=g)
        gens.append(g)
    return gens


class ModelSource(NoiseSource):
    """Noise from a frozen NAFlow: ``random``, ``config:``, ``weights:``, ``nas`` and ``profile:``."""

    def __init__(
        self,
        spec: str,
        model: Any,
        *,
        kind: str,
        weights: torch.Tensor | None = None,
        temperature: float = 1.0,
        top_k: int | None = None,
        tile_size: int | None = tiling.DEFAULT_TILE_SIZE,
        overlap: int = tiling.DEFAULT_OVERLAP,
        noise_level: str = "reference",
    ) -> None:
        super().__init__(spec)
        if kind not in MODEL_KINDS:
            raise ValueError(f"model source kind must be one of {MODEL_KINDS}, got {kind!r}")
        self.model = model
        self.kind = kind
        self.classes = tuple(model.classes)
        self.needs_reference = kind == "nas"
        if kind in ("config", "weights", "profile"):
            if weights is None or weights.shape != (len(self.classes),):
                raise ValueError(f"{spec!r} needs weights of shape ({len(self.classes)},)")
        self.fixed_weights = None if weights is None else weights.detach().to(torch.float32).cpu()
        tiling.check_tiling(tile_size, overlap, model.size_multiple)
        self.temperature = temperature
        self.top_k = top_k
        self.tile_size = tile_size
        self.overlap = overlap
        # NAS only: scale the sample's noise to the reference's level (naflow_aug.flow.noise_level)
        self.noise_level = check_level(noise_level)

    def _batch(self, clean: torch.Tensor) -> nas.CleanBatch:
        """``clean`` on the model's device and dtype, padded and tiled for its sampling engine (a frozen
        NAFlow's fast path, as NAFlow.sample uses)."""
        param = next(self.model.parameters())
        return nas.CleanBatch(self.model.sampling_engine(), clean.to(param.device, param.dtype),
                              tile_size=self.tile_size, overlap=self.overlap)  # fmt: skip

    def _draw_and_apply(self, clean, reference, labels, seeds) -> tuple[torch.Tensor, NoiseParams]:
        # NAS encodes the reference and decodes the sample with one computation of the clean features
        batch = self._batch(clean)
        params = self._draw(clean, reference, labels, seeds, batch)
        return self._apply(clean, params, reference, batch), params

    def _draw(self, clean, reference, labels, seeds, batch: nas.CleanBatch | None = None) -> NoiseParams:
        k = len(self.classes)
        configs = None
        if self.kind == "random":
            # labels name each item's configuration; the pick is drawn anyway so the noise stream is the same
            configs = tuple(_fill_labels(labels, _pick_configs(seeds, self.classes)))
            unknown = sorted(set(configs) - set(self.classes))
            if unknown:
                raise ValueError(
                    f"labels {unknown} are not configurations of the model: {list(self.classes)}"
                )
            weights = torch.zeros(len(seeds), k)
            weights[torch.arange(len(seeds)), [self.classes.index(c) for c in configs]] = 1.0
        level = None
        if self.kind == "nas":
            weights = self._nas_weights(clean, reference, batch)
            if self.noise_level == "reference":
                # the level travels with the weights: one device -> host copy per batch
                dev = weights.device
                both = torch.cat([weights, noise_std(reference.to(dev), clean.to(dev))], dim=1)
                weights, level = both.cpu().split([k, both.shape[1] - k], dim=1)
            else:
                weights = weights.cpu()
            weights = weights.clone()  # inference tensors cannot enter autograd later
        elif self.kind != "random":
            weights = self.fixed_weights.expand(len(seeds), k).clone()
        return NoiseParams(
            source=self.spec, seeds=seeds, weights=weights, classes=self.classes, configs=configs,
            noise_std=level,
        )  # fmt: skip

    def nas_weights(self, clean: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """(B, K) NAS posterior of each (clean, reference) pair, computed once per image (tiled if large)."""
        clean = check_images(clean)
        reference = _check_reference(reference, clean, self.spec)
        # inference tensors cannot enter autograd later: clone outside inference mode
        return self._nas_weights(clean, reference).cpu().clone()

    @torch.inference_mode()
    def _nas_weights(self, clean, reference, batch: nas.CleanBatch | None = None) -> torch.Tensor:
        """(B, K) float32 on the model's device; inputs checked by the caller."""
        batch = self._batch(clean) if batch is None else batch
        reference = reference.to(batch.padded.device, batch.padded.dtype)
        return nas.posterior_weights(batch, reference, self.temperature, self.top_k).float()

    def _apply(self, clean, params, reference, batch: nas.CleanBatch | None = None) -> torch.Tensor:
        # the output may feed a denoiser under training: make it a normal tensor, not an inference one
        return self._decode_noise(clean, params, batch).clone()

    @torch.inference_mode()
    def _decode_noise(self, clean, params: NoiseParams, batch: nas.CleanBatch | None = None) -> torch.Tensor:
        if params.classes != self.classes:
            raise ValueError(
                f"params were drawn for classes {list(params.classes or [])}, "
                f"this model has {list(self.classes)}"
            )
        batch = self._batch(clean) if batch is None else batch
        weights = nas.check_weights(batch.engine.prior, params.weights, clean.shape[0])
        # each item's pick, used or not, then its eps (the randomness contract); pinned on a GPU: async copy
        cuda = batch.padded.device.type == "cuda"
        eps = nas.draw_item_noise(params.seeds, len(self.classes), batch.latent_shape, pin_memory=cuda)[1]
        noisy = nas.decode_mixture(batch, weights, eps)
        if params.noise_std is not None:
            noisy = nas.at_noise_level(noisy, batch.clean, params.noise_std)[0]
        return noisy.to(clean.device, clean.dtype)


class GaussianSource(NoiseSource):
    """``gaussian:<sigma>``: white Gaussian noise, sigma in 0-255 units."""

    def __init__(self, spec: str, sigma: float) -> None:
        super().__init__(spec)
        if not (math.isfinite(sigma) and sigma >= 0):
            raise ValueError(f"noise source {spec!r}: sigma must be a finite number >= 0 (0-255 units)")
        self.sigma = float(sigma)

    def _apply(self, clean, params, reference) -> torch.Tensor:
        gens = [item_generator(s) for s in params.seeds]
        return sample_gaussian(clean, torch.full((clean.shape[0],), self.sigma / 255.0), gens)


class BaselineSource(NoiseSource):
    """``gaussian-per-config`` and ``poisson-gaussian``: fitted noise of each item's configuration."""

    def __init__(self, spec: str, baselines: Baselines, *, kind: str) -> None:
        super().__init__(spec)
        if kind not in ("gaussian-per-config", "poisson-gaussian"):
            raise ValueError(f"unknown baseline kind {kind!r}")
        self.baselines = baselines
        self.kind = kind
        self.classes = tuple(baselines.classes)

    def _draw(self, clean, reference, labels, seeds) -> NoiseParams:
        configs = _fill_labels(labels, _pick_configs(seeds, self.classes))
        for name in configs:
            self.baselines[name]  # noqa: B018 -- raises a clear error for an unfitted configuration
        return NoiseParams(source=self.spec, seeds=seeds, configs=tuple(configs))

    def _apply(self, clean, params, reference) -> torch.Tensor:
        if params.configs is None:
            raise ValueError(f"params for {self.spec!r} must record each item's configuration")
        gens = _generators_after_pick(params.seeds, len(self.classes))
        if self.kind == "gaussian-per-config":
            return sample_gaussian(clean, self.baselines.gaussian_std(params.configs), gens)
        a, b = self.baselines.poisson_gaussian(params.configs)
        return sample_poisson_gaussian(clean, a, b, gens)


class RealSource(NoiseSource):
    """``real``: the reference noisy image itself."""

    needs_reference = True

    def _apply(self, clean, params, reference) -> torch.Tensor:
        return reference.to(clean.device, clean.dtype).clone()


class AlbumentationsSource(NoiseSource):
    """``albumentations-gauss`` / ``albumentations-iso``: the library's noise, configured as a user would
    (probability 1, the documented ranges), seeded per item."""

    def __init__(self, spec: str, kind: str) -> None:
        super().__init__(spec)
        if kind not in ("albumentations-gauss", "albumentations-iso"):
            raise ValueError(f"unknown albumentations noise {kind!r}")
        self.kind = kind

    def _make(self):
        import albumentations as A

        if self.kind == "albumentations-gauss":
            # std as a fraction of the maximum value: about 5 to 25 in 0-255 units
            return A.GaussNoise(std_range=(0.02, 0.1), mean_range=(0.0, 0.0), per_channel=True, p=1.0)
        return A.ISONoise(color_shift=(0.01, 0.05), intensity=(0.1, 0.5), p=1.0)

    def _apply(self, clean, params, reference) -> torch.Tensor:
        # users feed albumentations uint8 HWC images (ISONoise's strength assumes the 0-255 scale)
        out = []
        hwc = round_nearest(clean.detach().to("cpu", torch.float32)).permute(0, 2, 3, 1).numpy()
        for b, seed in enumerate(params.seeds):
            t = self._make()
            t.set_random_seed(int(seed))
            out.append(torch.from_numpy(t(image=hwc[b].copy())["image"]).permute(2, 0, 1))
        return to_float(torch.stack(out).to(clean.device), clean.dtype).clamp_(0.0, 1.0)


# ---------------------------------------------------------------------------------------------- building


def resolve_model(model: Any, device: str | torch.device | None = None) -> Any:
    """A NAFlow from a model object, a bundled name or a checkpoint path; None means the default bundled
    model ('sidd-mini'). Names and paths go through ``naflow_aug.load``."""
    if model is not None and not isinstance(model, str | os.PathLike):
        for attr in ("classes", "size_multiple", "decode", "mix"):
            if not hasattr(model, attr):
                raise TypeError(f"model must be a NAFlow, a bundled name or a checkpoint path, got {model!r}")
        return model
    if model is None:
        names = available_models()
        if "sidd-mini" not in names:
            raise ValueError(
                "no model given and the bundled 'sidd-mini' is not available; pass a NAFlow, a bundled name "
                f"({names}) or a checkpoint path"
            )
        model = "sidd-mini"
    return load(str(model) if isinstance(model, os.PathLike) else model, device=device)


def _is_class_id(label: Any, num_classes: int) -> bool:
    """An integer id in [0, num_classes); a bool is not one (True would silently be class 1)."""
    return isinstance(label, numbers.Integral) and not isinstance(label, bool) and 0 <= label < num_classes


def _load_baselines(arg: str | None, baselines: Baselines | str | os.PathLike | None, spec: str) -> Baselines:
    if arg is not None:
        return Baselines.load(arg)
    if isinstance(baselines, Baselines):
        return baselines
    if baselines is not None:
        return Baselines.load(baselines)
    raise ValueError(
        f"noise source {spec!r} needs fitted baselines: write {spec}:<baselines.json> or pass baselines=... "
        "(fit them with `naflow-aug fit-baselines`)"
    )


def make_noise_source(
    spec: str | NoiseSource = "random",
    model: Any = None,
    *,
    baselines: Baselines | str | os.PathLike | None = None,
    temperature: float = 1.0,
    top_k: int | None = None,
    tile_size: int | None = tiling.DEFAULT_TILE_SIZE,
    overlap: int = tiling.DEFAULT_OVERLAP,
    device: str | torch.device | None = None,
) -> NoiseSource:
    """Build the noise source a spelling names (see the module doc). ``model``: a NAFlow, a bundled name
    or a checkpoint path, needed by the model sources only (None: the bundled default)."""
    if isinstance(spec, NoiseSource):
        return spec
    kind, arg = parse_noise_spec(spec)
    spec = spec.strip()
    if kind in MODEL_KINDS:
        net = resolve_model(model, device)
        common = dict(temperature=temperature, top_k=top_k, tile_size=tile_size, overlap=overlap)
        if kind == "nas":
            common["noise_level"] = arg or "reference"
        classes = list(net.classes)
        weights = None
        if kind == "config":
            if arg not in classes:
                raise ValueError(
                    f"noise source {spec!r}: configuration {arg!r} is not one of the model's {classes}"
                )
            weights = torch.zeros(len(classes))
            weights[classes.index(arg)] = 1.0
        elif kind == "weights":
            weights = parse_weights(arg, classes)
        elif kind == "profile":  # a mixture over net's classes, or an adapted copy of net and its camera
            from naflow_aug.profiles import NoiseProfile

            net, weights = NoiseProfile.load(arg).model_for(net)
        return ModelSource(spec, net, kind=kind, weights=weights, **common)
    if kind == "gaussian":
        try:
            sigma = float(arg)
        except ValueError:
            raise ValueError(
                f"noise source {spec!r}: sigma {arg!r} is not a number; {_valid_forms()}"
            ) from None
        return GaussianSource(spec, sigma)
    if kind in _OPTIONAL_ARG:
        return BaselineSource(spec, _load_baselines(arg, baselines, spec), kind=kind)
    if kind == "real":
        return RealSource(spec)
    return AlbumentationsSource(spec, kind)
