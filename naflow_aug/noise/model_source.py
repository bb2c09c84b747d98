"""Noise from a frozen NAFlow: :class:`ModelSource` (``random``, ``config:``, ``weights:``, ``nas``,
``profile:``) and :func:`resolve_model`, which turns a name or a path into the model."""

from __future__ import annotations

import os
from typing import Any

import torch

from naflow_aug import tiling
from naflow_aug.checkpoints import available_models, load
from naflow_aug.flow import nas
from naflow_aug.flow.noise_level import check_level, noise_std
from naflow_aug.noise.params import NoiseParams
from naflow_aug.noise.source import NoiseSource, check_images, check_reference, fill_labels, pick_configs

MODEL_KINDS = ("random", "config", "weights", "nas", "profile")


class ModelSource(NoiseSource):
    """Noise from a frozen NAFlow: ``random``, ``config:``, ``weights:``, ``nas`` and ``profile:``.

    ``noise_level`` (:mod:`naflow_aug.flow.noise_level`): ``"reference"`` scales each item's noise to its
    reference noisy image's per-channel std, ``"model"`` keeps the model's own level; None takes the kind's
    default: ``reference`` for ``nas``, ``model`` for the others. A profile at ``"reference"`` needs a
    reference (the ``profile-ref:`` spelling); the other kinds have no reference to take it from.
    """

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
        noise_level: str | None = None,
    ) -> None:
        super().__init__(spec)
        if kind not in MODEL_KINDS:
            raise ValueError(f"model source kind must be one of {MODEL_KINDS}, got {kind!r}")
        self.model = model
        self.kind = kind
        self.classes = tuple(model.classes)
        default = "reference" if kind == "nas" else "model"
        level = default if noise_level is None else check_level(noise_level)
        if level == "reference" and kind not in ("nas", "profile"):
            raise ValueError(f"noise_level='reference' applies to nas and profile sources, not {kind!r}")
        self.noise_level = level
        self.needs_reference = kind == "nas" or level == "reference"
        if kind in ("config", "weights", "profile"):
            if weights is None or weights.shape != (len(self.classes),):
                raise ValueError(f"{spec!r} needs weights of shape ({len(self.classes)},)")
        self.fixed_weights = None if weights is None else weights.detach().to(torch.float32).cpu()
        tiling.check_tiling(tile_size, overlap, model.size_multiple)
        self.temperature = temperature
        self.top_k = top_k
        self.tile_size = tile_size
        self.overlap = overlap

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
            configs = tuple(fill_labels(labels, pick_configs(seeds, self.classes)))
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
            if self.noise_level == "reference":  # a profile at its reference's level
                level = noise_std(reference.to(clean.device), clean).cpu()
        return NoiseParams(
            source=self.spec, seeds=seeds, weights=weights, classes=self.classes, configs=configs,
            noise_std=level,
        )  # fmt: skip

    def nas_weights(self, clean: torch.Tensor, reference: torch.Tensor) -> torch.Tensor:
        """(B, K) NAS posterior of each (clean, reference) pair, computed once per image (tiled if large)."""
        clean = check_images(clean)
        reference = check_reference(reference, clean, self.spec)
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
            noisy = nas.at_noise_level(noisy, batch.clean, params.noise_std, batch.engine)[0]
        return noisy.to(clean.device, clean.dtype)



def resolve_model(model: Any, device: str | torch.device | None = None) -> Any:
    """A NAFlow from a model object, a bundled name or a checkpoint path; None means the default bundled
    model ('sidd-mini'). Names and paths go through :func:`naflow_aug.checkpoints.load`."""
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
