"""NAFlow noise as a ``torchvision.transforms.v2`` transform (batched, on the input's device)."""

from __future__ import annotations

import threading
from typing import Any

import PIL.Image
import torch
from torchvision import tv_tensors
from torchvision.transforms import v2
from torchvision.transforms.v2.functional import pil_to_tensor, to_pil_image
from torchvision.transforms.v2.functional._utils import is_pure_tensor

from naflow_aug import tiling
from naflow_aug.flow.seeds import check_seed
from naflow_aug.noise.params import NoiseParams
from naflow_aug.noise.profiles import profile_source
from naflow_aug.noise.registry import make_noise_source
from naflow_aug.noise.source import NoiseSource, draw_seeds
from naflow_aug.transforms._images import from_float_batch, to_float_batch
from naflow_aug.transforms._workers import WorkerSeeding, mix_seeds


class NAFlowNoise(v2.Transform):
    """Replace clean images by synthetic noisy ones from a frozen NAFlow (or any noise source).

    ``add_noise = NAFlowNoise(model, noise="random")`` then ``noisy = add_noise(clean)``. Images:
    ``tv_tensors.Image``, plain tensors (the first one in a sample, as torchvision does) and RGB PIL images;
    (3, H, W) or batched (B, 3, H, W); uint8 (0-255) or float (0-1) in, the same kind out, on the input's
    device (put the model on that device: ``model.to("cuda")``). Each image of a batch gets its own seed.

    Args:
        model: a NAFlow, a bundled model name or a checkpoint path (None: the bundled default).
        noise: a noise-source spelling (``random``, ``config:S6_03200``, ``weights:...``, ``nas``,
            ``profile:<path>``, the baselines, ...; see :mod:`naflow_aug.noise.registry`), its parsed
            :class:`~naflow_aug.noise.spec.NoiseSpec` or a NoiseSource.
        profile: a :class:`~naflow_aug.noise.profiles.NoiseProfile` or a profile JSON path (instead of
            ``noise``).
        generator / seed: where the per-image seeds come from (default: torch's default generator).
        return_params: return ``(output, params)``; ``params`` (a NoiseParams per image input) replay the
            call exactly with ``transform(sample, params=params)``.

    ``nas`` and ``real`` need the real noisy image: ``add_noise(clean, reference=noisy)``. ``random`` and the
    per-configuration baselines take ``configs=`` (configuration names; ``labels=`` is its old name).
    """

    _transformed_types = (tv_tensors.Image, is_pure_tensor, PIL.Image.Image)

    def __init__(
        self,
        model: Any = None,
        noise: str | NoiseSource = "random",
        *,
        profile: Any = None,
        baselines: Any = None,
        generator: torch.Generator | None = None,
        seed: int | None = None,
        temperature: float = 1.0,
        top_k: int | None = None,
        tile_size: int | None = tiling.DEFAULT_TILE_SIZE,
        overlap: int = tiling.DEFAULT_OVERLAP,
        return_params: bool = False,
    ) -> None:
        super().__init__()
        if generator is not None and seed is not None:
            raise ValueError("give generator= or seed=, not both")
        if generator is not None and not isinstance(generator, torch.Generator):
            raise TypeError(f"generator must be a torch.Generator, got {type(generator).__name__}")
        common = dict(temperature=temperature, top_k=top_k, tile_size=tile_size, overlap=overlap)
        if profile is not None:
            if noise not in ("random", "profile"):
                raise ValueError(f"give noise= or profile=, not both (got noise={noise!r})")
            self.source = profile_source(model, profile, **common)
        else:
            self.source = make_noise_source(noise, model, baselines=baselines, **common)
        self.noise = self.source.spec
        self.generator = torch.Generator().manual_seed(check_seed(seed)) if seed is not None else generator
        self.return_params = bool(return_params)
        self._call = threading.local()
        self._worker = WorkerSeeding()

    def __getstate__(self) -> dict[str, Any]:  # DataLoader workers get a pickled copy
        state = super().__getstate__() if hasattr(super(), "__getstate__") else self.__dict__.copy()
        state = dict(state)
        state.pop("_call", None)
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        self._call = threading.local()

    def _seed_generator(self) -> torch.Generator | None:
        """The seed generator; in a new DataLoader worker a given generator is re-seeded from its initial
        seed and the worker's torch seed (else every worker, and every epoch's fresh workers, would draw the
        same seeds), and torch is limited to one thread there."""
        worker_seed = self._worker.enter()
        if worker_seed is not None and self.generator is not None:
            mixed = mix_seeds(self.generator.initial_seed(), worker_seed)
            self.generator = torch.Generator().manual_seed(mixed)
        return self.generator

    # -------------------------------------------------------------------------------- v2 protocol
    def forward(
        self,
        *inputs: Any,
        reference: Any = None,
        configs: Any = None,
        params: NoiseParams | list[NoiseParams] | None = None,
        labels: Any = None,
    ) -> Any:
        """``transform(sample, reference=None, configs=None, params=None)``; see the class doc."""
        if labels is not None:
            if configs is not None:
                raise TypeError("give configs= or labels= (its old name), not both")
            configs = labels
        state = self._call
        state.reference, state.configs, state.replay, state.recorded = reference, configs, params, []
        try:
            out = super().forward(*inputs)
            recorded = state.recorded
        finally:
            state.reference = state.configs = state.replay = state.recorded = None
        if not recorded:
            raise ValueError(
                "NAFlowNoise found no image in its input; give a tv_tensors.Image, a tensor or a PIL image"
            )
        if self.return_params:
            return out, (recorded[0] if len(recorded) == 1 else recorded)
        return out

    def make_params(self, flat_inputs: list[Any]) -> dict[str, Any]:
        state = self._call
        if state.replay is not None:
            replay = [state.replay] if isinstance(state.replay, NoiseParams) else list(state.replay)
            if len(replay) != len(flat_inputs):
                raise ValueError(
                    f"params hold {len(replay)} image entries, the sample has {len(flat_inputs)} images"
                )
            return {"replay": replay, "next": iter(range(len(flat_inputs)))}
        if state.reference is not None and len(flat_inputs) != 1:
            raise ValueError(f"reference= needs a sample with exactly one image, got {len(flat_inputs)}")
        counts = [_batch_size(x) for x in flat_inputs]
        seeds = draw_seeds(sum(counts), self._seed_generator())
        return {"seeds": list(torch.split(seeds, counts)), "next": iter(range(len(flat_inputs)))}

    def transform(self, inpt: Any, params: dict[str, Any]) -> Any:
        i = next(params["next"])
        state = self._call
        clean, restore = _to_batch(inpt, "image")
        reference = None
        if state.reference is not None:
            reference, _ = _to_batch(state.reference, "reference")
            if reference.shape != clean.shape:
                raise ValueError(
                    f"reference shape {tuple(reference.shape)} differs from the image's {tuple(clean.shape)}"
                )
            reference = reference.to(clean.device)
        if "replay" in params:
            noise_params = params["replay"][i]
            noisy = self.source.replay(clean, noise_params, reference=reference)
        else:
            noisy, noise_params = self.source(
                clean, reference=reference, configs=state.configs, seeds=params["seeds"][i]
            )
        state.recorded.append(noise_params)
        return restore(noisy)

    def extra_repr(self) -> str:
        return f"noise={self.noise!r}, return_params={self.return_params}"


def _batch_size(inpt: Any) -> int:
    if isinstance(inpt, PIL.Image.Image):
        return 1
    return int(inpt.shape[0]) if inpt.dim() == 4 else 1


def _to_batch(inpt: Any, name: str) -> tuple[torch.Tensor, Any]:
    """A float (B, 3, H, W) batch and the function that turns a result back into the input's kind."""
    if isinstance(inpt, PIL.Image.Image):
        if inpt.mode != "RGB":
            raise ValueError(
                f"{name} must be an RGB PIL image, got mode {inpt.mode!r} (convert('RGB') first)"
            )
        batch, kind = to_float_batch(pil_to_tensor(inpt), name)
        return batch, lambda out: to_pil_image(from_float_batch(out, kind))
    batch, kind = to_float_batch(
        inpt.as_subclass(torch.Tensor) if isinstance(inpt, torch.Tensor) else inpt, name
    )
    if isinstance(inpt, tv_tensors.Image):
        return batch, lambda out: tv_tensors.wrap(from_float_batch(out, kind), like=inpt)
    return batch, lambda out: from_float_batch(out, kind)
