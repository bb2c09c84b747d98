"""A fast, inference-only view of a frozen NAFlow: the same encode, decode and sample, with less work.

The weights are folded (`naflow_aug.flow.fold`, from what the layers report about themselves); on top
of that, compared with running the flow layer by layer (`NAFlow.encode` / `NAFlow.decode`):

- Everything that depends only on the clean image is computed once per image and shared by encode and
  decode (NAS runs both; `naflow_aug.flow.nas.CleanBatch` holds it): the encoder, the affine injectors'
  shift and scale, and the coupling sub-networks' first layer applied to the condition (the coupling
  sees concat(x1, h): its first convolution splits into a clean-only part and a small part on x1).
  Where the clean source is narrow the coupling instead reads concat(x1, source) in one product.
- Activations are kept channels-last (B, H, W, C): 1x1 convolutions are matrix products on a
  (B*H*W, C) view, the 3x3 convolutions run on channels-last memory. Squeezed tensors keep a
  sub-pixel-major channel order (whole-pixel copies), which the folded maps expect.
- On the CPU in float32 both run as oneDNN kernels (`ONEDNN`): the 3x3 convolution fused with its ReLU,
  the 1x1 products with their bias (and ReLU) fused; MKL's sgemm, what ``@`` runs, can be much slower on
  these narrow products (AMD CPUs, on which MKL does not pick its AVX-512 code).
- The sub-networks run on chunks of the batch (`SUBNET_CHUNK_BYTES`) whose hidden tensors malloc reuses
  and the caches hold.
- Class log-likelihoods are one matrix product (no loop over classes); the injectors' log-det is only
  computed when an encode asks for it.

`benchmarks/bench_nas_speed.py` measures all of this against a plain reference, on the machine it runs on.
`keep_freed_memory` (opt-in, process-wide) stops glibc from returning freed blocks to the system.

Results equal the layer path to float32 rounding (about 1e-6 relative); sampling is the one path of
`naflow_aug.flow.nas`, with its randomness contract.

Options. ``compile=True`` wraps the per-step kernels with `torch.compile`; inside them plain aten ops
run and inductor picks the kernels (its CPU backend would otherwise rewrite the oneDNN calls into
fused forms that need constant weights). It works on the CPU (tested) but is meant for CUDA.
``autocast=torch.bfloat16`` (for CUDA) runs only the conditioner sub-networks in reduced precision (the
affine updates themselves stay float32, so the flow stays invertible: decode(encode(x)) == x up to
rounding, checked by `check_invertibility`). `CudaGraphNAS` (`naflow_aug.flow.nas`) captures a whole
NAS for fixed shapes in a CUDA graph.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from . import nas
from .fold import Plan, SubNetPlan, build_plan
from .inputs import DEQUANT_LOGDET_PER_PIXEL, check_images, check_latent, check_pair
from .latent import ClassGaussians
from .nas import CudaGraphNAS as CudaGraphNAS  # re-exported: the fast path's CUDA option
from .nas import SampleParams
from .nas import draw_item_noise as draw_item_noise  # re-exported: CudaGraphNAS callers draw eps with it

log = logging.getLogger(__name__)
# the sub-networks run on batch chunks whose hidden activations fit in about this many bytes (`_chunks`)
SUBNET_CHUNK_BYTES = 4 * 2**20


# ----------------------------------------------------------------------------------------- kernels
def _linear(
    x: Tensor, wt: Tensor, b: Tensor | None = None, add: Tensor | None = None, relu: bool = False
) -> Tensor:
    """Per-pixel x @ wt (+ b) (+ add) (then relu) on channels-last (B, H, W, C) tensors; wt is (in, out).

    On the CPU in float32 this is oneDNN's matrix product (`_onednn_linear`); elsewhere MKL / cuBLAS.
    """
    rows = x.reshape(-1, x.shape[-1])
    if _onednn(x, wt):
        out = _onednn_linear(rows, wt, b, add, relu)
    else:
        out = rows @ wt
        if add is not None:
            out.add_(add.reshape(-1, wt.shape[1]))
        if b is not None:
            out.add_(b)
        if relu:
            out.relu_()
    return out.view(*x.shape[:-1], wt.shape[1])


def _onednn_linear(rows: Tensor, wt: Tensor, b: Tensor | None, add: Tensor | None, relu: bool) -> Tensor:
    """oneDNN's x @ wt (+ b) (+ add) (then relu) on (pixels, in) rows, bias and relu fused in.

    The 1x1 maps here are narrow (6 to 384 columns) on many rows: memory-bound products, for which
    oneDNN writes the output once, bias and relu included (MKL's sgemm, what ``@`` runs, does not pick its
    AVX-512 code on AMD CPUs). The weight is passed as the transposed view of the stored (in, out)
    matrix: oneDNN's (out, in) layout with strides (1, out), which it takes without a copy (and runs
    faster than a contiguous (out, in) matrix).
    """
    w = wt.T
    if add is None:
        return _ONEDNN_LINEAR(rows, w, b, "relu" if relu else "none", [], "")
    # a separate add_: oneDNN's fused binary add measured slower here (benchmarks/bench_nas_speed.py)
    out = _ONEDNN_LINEAR(rows, w, b, "none", [], "").add_(add.reshape(-1, wt.shape[1]))
    return out.relu_() if relu else out


def _onednn(x: Tensor, w: Tensor) -> bool:
    """Whether the oneDNN CPU kernels apply: float32 CPU tensors, no autocast, switched on (`ONEDNN`),
    not inside torch.compile (whose CPU backend picks its own kernels and fusions from plain aten ops)."""
    return (
        ONEDNN
        and not torch.compiler.is_compiling()
        and x.device.type == "cpu"
        and x.dtype == w.dtype == torch.float32
        and not torch.is_autocast_enabled("cpu")
    )


# oneDNN's fused CPU kernels (matrix products with bias/add/relu, convolution + relu); set to False to
# run plain aten ops (the benchmark does, to count FLOPs: FlopCounterMode has no formula for these ops)
_ONEDNN_LINEAR = getattr(getattr(torch.ops, "mkldnn", None), "_linear_pointwise", None)
_FUSED_CONV_RELU = getattr(getattr(torch.ops, "mkldnn", None), "_convolution_pointwise", None)
ONEDNN = torch.backends.mkldnn.is_available() and None not in (_ONEDNN_LINEAR, _FUSED_CONV_RELU)


def _conv3x3_relu(h: Tensor, w: Tensor, b: Tensor) -> Tensor:
    """relu(3x3 'same' convolution) of a channels-last (B, H, W, C) tensor, result channels-last too.

    On the CPU in float32, oneDNN's fused convolution + ReLU (the kernel torch.compile's CPU backend
    emits) saves a pass over the output; elsewhere conv2d then relu.
    """
    x = h.permute(0, 3, 1, 2)
    if _onednn(x, w):
        return _FUSED_CONV_RELU(x, w, b, [1, 1], [1, 1], [1, 1], 1, "relu", [], "").permute(0, 2, 3, 1)
    return F.conv2d(x, w, b, padding=1).relu_().permute(0, 2, 3, 1)


def _subnet_tail(h: Tensor, net: SubNetPlan) -> tuple[Tensor, Tensor]:
    """relu'd first layer (B, H, W, hidden) -> (shift, scale) (B, H, W, c) each."""
    r = _conv3x3_relu(h, net.w3, net.b3)
    if net.w_res.shape[0] != net.w_res.shape[1]:  # residual folded into the output layer (see build)
        out = _linear(r, net.w_res, add=_linear(h, net.w_out, net.b_out))
    else:
        if not _onednn(r, net.w_res) and h.dtype == r.dtype == net.w_res.dtype:
            # in place (h is ours); autocast has no in-place addmm, and oneDNN's product is faster
            h.view(-1, h.shape[-1]).addmm_(r.reshape(-1, r.shape[-1]), net.w_res)
        else:
            h = _linear(r, net.w_res, add=h)
        out = _linear(h, net.w_out, net.b_out)
    c = out.shape[-1] // 2
    # sigmoid of a strided half is not vectorised: copying it out first is faster
    return out[..., :c], torch.sigmoid(out[..., c:].contiguous()).add_(net.eps)


def _squeeze(x: Tensor) -> Tensor:
    """Channels-last (B, H, W, C) -> (B, H/2, W/2, 4C), channel (dy*2 + dx)*C + c: the model's squeeze2x2
    up to a channel permutation that the plan folds into the next linear map (`fold._subpixel_major`).
    This order moves whole C-channel pixels (the model's c*4 + k order would gather single floats)."""
    x = x.contiguous()  # a permuted NCHW image: transposing first, then moving pixels, is faster
    b, h, w, c = x.shape
    return x.reshape(b, h // 2, 2, w // 2, 2, c).transpose(2, 3).reshape(b, h // 2, w // 2, 4 * c)


def _unsqueeze(x: Tensor) -> Tensor:
    """Inverse of `_squeeze`."""
    b, h, w, c4 = x.shape
    return x.view(b, h, w, 2, 2, c4 // 4).transpose(2, 3).reshape(b, 2 * h, 2 * w, c4 // 4)


@dataclass
class CleanFeatures:
    """What the flow needs from the clean images, computed once and shared by encode and decode.

    Per conditional step j: ``proj[j]`` the coupling's first layer applied to the condition (bias
    included), or, where the coupling concatenates its clean source (`fold._concat_condition`), that
    source (the squeezed clean image or the features); ``shift[j]``/``scale[j]`` the affine injector's
    parameters; all channels-last (B, h, w, .). `inj_logdet` (B,): the injectors' total log-det,
    computed on first use (sampling never needs it: a log of every scale saved).
    """

    shape: tuple[int, ...]
    proj: list[Tensor]
    shift: list[Tensor]
    scale: list[Tensor]
    _inj_logdet: Tensor | None = None

    @property
    def inj_logdet(self) -> Tensor:
        if self._inj_logdet is None:  # (a model without conditional steps sets it to zeros)
            self._inj_logdet = -sum(scale.log().sum(dim=(1, 2, 3)) for scale in self.scale)
        return self._inj_logdet


# ----------------------------------------------------------------------------------------- the view
class FastNAFlow:
    """Inference-only NAFlow with the same `encode` / `decode` / `sample` results as the model's own, and
    an engine of the sampling path (`naflow_aug.flow.nas.Engine`).

    Built from a (frozen or not) `NAFlow`, of which it reads the public parts only; the folded weights
    follow the model: they are rebuilt when its parameters change (in-place updates, `load_state_dict`,
    `.to()`), so the view never goes stale. It offers the attributes that the noise sources use
    (``size_multiple``, ``classes``, ``encode``, ``decode``, ``posterior``, ``mix``, ``parameters``).

    ``autocast``: a reduced dtype (torch.bfloat16 / torch.float16) for the sub-networks only, on CUDA
    (also accepted on the CPU with bfloat16, slow there: for tests). ``compile``: `torch.compile` the
    per-step kernels (CUDA: worth it; on the CPU it needs a C++ compiler and minutes of warm-up).
    """

    def __init__(self, model: Any, *, autocast: torch.dtype | None = None, compile: bool = False):
        if not all(hasattr(model, a) for a in ("flow", "feature_levels", "encoder", "prior", "classes")):
            raise TypeError(f"model must be a NAFlow, got {type(model).__name__}")
        if autocast not in (None, torch.bfloat16, torch.float16):
            raise ValueError(f"autocast must be None, torch.bfloat16 or torch.float16, got {autocast!r}")
        self.model = model
        self.autocast = autocast
        self.compile = compile
        self._plan: Plan | None = None
        self._step = _step_encode
        self._step_inv = _step_decode
        if compile:
            self._step = torch.compile(_step_encode, dynamic=False)
            self._step_inv = torch.compile(_step_decode, dynamic=False)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_plan"] = None  # rebuilt on use
        # compiled callables cannot be pickled
        state["_step"], state["_step_inv"] = _step_encode, _step_decode
        state["compile"] = False
        return state

    # ---------------------------------------------------------------- the model's metadata
    @property
    def classes(self) -> list[str]:
        return self.model.classes

    @property
    def num_classes(self) -> int:
        return self.model.num_classes

    @property
    def config(self):
        return self.model.config

    @property
    def size_multiple(self) -> int:
        return self.model.size_multiple

    @property
    def latent_channels(self) -> int:
        return self.model.latent_channels

    @property
    def prior(self) -> ClassGaussians:
        return self.model.prior

    def parameters(self):
        return self.model.parameters()

    def class_log_likelihood(self, z: Tensor) -> Tensor:
        return self.model.class_log_likelihood(z)

    def posterior(self, z: Tensor, temperature: float = 1.0, top_k: int | None = None) -> Tensor:
        return self.model.posterior(z, temperature, top_k)

    def mix(self, weights: Tensor, mix_mode: str = "std") -> tuple[Tensor, Tensor]:
        return self.model.mix(weights, mix_mode)

    def sampling_engine(self) -> FastNAFlow:
        """What the sampling path runs on: this view itself."""
        return self

    # ---------------------------------------------------------------- plan
    def _key(self) -> tuple:
        tensors = [*self.model.parameters(), *self.model.buffers()]
        p = tensors[0]
        # inference tensors (a model built under torch.inference_mode) cannot change: no version counter
        versions = tuple((t.data_ptr(), 0 if t.is_inference() else t._version) for t in tensors)
        return (p.device, p.dtype, versions)

    @property
    def plan(self) -> Plan:
        """The folded weights for the model's current parameters, device and dtype."""
        key = self._key()
        if self._plan is None or self._plan.key != key:
            with torch.no_grad():
                plan = build_plan(self.model.flow, self.model.feature_levels, self.model.encoder)
            plan.key = key
            self._plan = plan.to(key[0], key[1])
            log.debug("fast path: folded %d affine maps, %d conditional steps",
                      len(plan.affines), len(plan.couplings))  # fmt: skip
        return self._plan

    @property
    def _dtype(self) -> torch.dtype:
        return self.plan.key[1]

    def _autocast(self, device: torch.device):
        if self.autocast is None:
            return torch.autocast(device.type, enabled=False)
        return torch.autocast(device.type, dtype=self.autocast)

    # ---------------------------------------------------------------- clean features
    @torch.no_grad()
    def condition(self, clean: Tensor) -> CleanFeatures:
        """Clean-image features for `encode`/`decode` (``features=``): (B, 3, H, W) in [0, 1]."""
        check_images(clean, "clean", self.size_multiple, values=self.model.validate_inputs)
        return self.clean_features(clean)

    def clean_features(self, clean: Tensor) -> CleanFeatures:
        """`condition` without its input check (the sampling path's engine)."""
        plan = self.plan
        x = clean.to(plan.enc_w[0].dtype).permute(0, 2, 3, 1)
        images = [x]  # the clean image squeezed 0, 1, .. times (channels-last, sub-pixel-major)
        for _ in range(max(plan.step_level, default=0)):
            images.append(_squeeze(images[-1]))
        source = {}  # per level: what its users read, the squeezed image (encoder folded in) or features
        for level in sorted(set(plan.step_level)):
            if plan.from_image[level - 1]:
                source[level] = images[level]
            else:
                w, b = plan.enc_w[level - 1], plan.enc_b[level - 1]
                source[level] = _squeeze(_linear(images[level - 1], w, b))
        proj, shift, scale = [], [], []
        with self._autocast(x.device):
            for j, level in enumerate(plan.step_level):
                h = source[level]
                net = plan.couplings[j]
                proj.append(h if net.w_first is not None else _linear(h, net.w_cond, net.b_in))
                inj = plan.injectors[j]
                parts = [_subnet_tail(_linear(h[part], inj.w_cond, inj.b_in, relu=True), inj)
                         for part in _chunks(h, inj)]  # fmt: skip
                shift.append(torch.cat([sh for sh, _ in parts]).to(x.dtype))
                scale.append(torch.cat([sc for _, sc in parts]).to(x.dtype))
        none = x.new_zeros(x.shape[0]) if not scale else None  # no conditional steps: no log-det
        return CleanFeatures(tuple(clean.shape), proj, shift, scale, none)

    def _features(self, clean: Tensor, features: CleanFeatures | None) -> CleanFeatures:
        """Given features (checked against the clean batch), or the clean batch's own."""
        if features is None:
            return self.clean_features(clean)
        if not isinstance(features, CleanFeatures) or features.shape != tuple(clean.shape):
            raise ValueError(
                "features must come from this FastNAFlow's condition(clean) for the same clean images, "
                f"got {type(features).__name__}"
            )
        return features

    # ---------------------------------------------------------------- flow
    def _encode(self, x: Tensor, feats: CleanFeatures, with_logdet: bool) -> tuple[Tensor, Tensor | None]:
        """Channels-last noisy (B, H, W, 3) -> channels-last latent (B, h, w, C) [, coupling log-det]."""
        plan = self.plan
        logdet = x.new_zeros(x.shape[0]) if with_logdet else None
        owned = False  # the steps update x in place: never the caller's tensor
        for op in plan.ops:
            if op[0] == "squeeze":
                x, owned = _squeeze(x), False
            elif op[0] == "affine":
                a = plan.affines[op[1]]
                x, owned = _linear(x, a.weight, a.bias), True
            else:
                j = op[1]
                if not owned:
                    x, owned = x.clone(), True
                with self._autocast(x.device):
                    x, ld = self._step(x, plan.couplings[j], feats.proj[j], plan.split[j], with_logdet)
                x = x.div_(feats.scale[j]).sub_(feats.shift[j])
                if with_logdet:
                    logdet -= ld
        return x, logdet

    def _decode(self, z: Tensor, feats: CleanFeatures) -> Tensor:
        """Channels-last latent (B, h, w, C) -> channels-last image (B, H, W, 3)."""
        plan = self.plan
        x = z
        for op in reversed(plan.ops):
            if op[0] == "squeeze":
                x = _unsqueeze(x)
            elif op[0] == "affine":
                a = plan.affines[op[1]]
                x = _linear(x, a.inv_weight, a.inv_bias)
            else:
                j = op[1]
                x = (x + feats.shift[j]).mul_(feats.scale[j])
                with self._autocast(x.device):
                    x = self._step_inv(x, plan.couplings[j], feats.proj[j], plan.split[j])
        return x

    def to_latent(self, noisy: Tensor, features: CleanFeatures) -> Tensor:
        """Noisy (B, 3, H, W) -> latent z (B, C, H/m, W/m), a channels-last view (the engine's encode)."""
        return self._encode(noisy.to(self._dtype).permute(0, 2, 3, 1), features, False)[0].permute(0, 3, 1, 2)

    def to_image(self, z: Tensor, features: CleanFeatures) -> Tensor:
        """Latent z (B, C, H/m, W/m) -> noisy (B, 3, H, W), not clamped (the engine's decode)."""
        return self._decode(z.to(self._dtype).permute(0, 2, 3, 1), features).permute(0, 3, 1, 2).contiguous()

    @torch.no_grad()
    def encode(
        self, noisy: Tensor, clean: Tensor, features: CleanFeatures | None = None
    ) -> tuple[Tensor, Tensor]:
        """As `NAFlow.encode`: (noisy, clean) (B, 3, H, W) -> z (B, C, H/m, W/m), logdet (B,)."""
        check_pair(noisy, clean, self.size_multiple, values=self.model.validate_inputs)
        feats = self._features(clean, features)
        z, ld = self._encode(noisy.to(self._dtype).permute(0, 2, 3, 1), feats, True)
        h, w = noisy.shape[2:]
        const = (DEQUANT_LOGDET_PER_PIXEL + self.plan.logdet_per_pixel) * h * w
        return z.permute(0, 3, 1, 2).contiguous(), ld + feats.inj_logdet + const

    @torch.no_grad()
    def decode(self, z: Tensor, clean: Tensor, features: CleanFeatures | None = None) -> Tensor:
        """As `NAFlow.decode`: z (B, C, H/m, W/m), clean (B, 3, H, W) -> noisy (B, 3, H, W), not clamped."""
        m, values = self.size_multiple, self.model.validate_inputs
        check_latent(z, clean, m, self.latent_channels, values=values)
        return self.to_image(z, self._features(clean, features))

    # ---------------------------------------------------------------- sampling
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
        return_params: bool = False,
    ) -> Tensor | tuple[Tensor, SampleParams]:
        """As `NAFlow.sample` with ``noise_level="model"``: the mixture's sample at its own level (same
        arguments otherwise, same randomness contract, same results to rounding)."""
        noisy, params = nas.sample(
            self, clean, reference=reference, config=config, weights=weights, generator=generator,
            seeds=seeds, temperature=temperature, top_k=top_k, mix_mode=mix_mode, noise_level="model",
            check_values=self.model.validate_inputs,
        )  # fmt: skip
        return (noisy, params) if return_params else noisy

    @torch.no_grad()
    def check_invertibility(self, clean: Tensor, noisy: Tensor) -> float:
        """Relative max error of decode(encode(noisy)) vs noisy: how far reduced precision bends the flow."""
        feats = self.clean_features(clean)
        z, _ = self._encode(noisy.to(self._dtype).permute(0, 2, 3, 1), feats, False)
        back = self._decode(z, feats).permute(0, 3, 1, 2)
        return float((back - noisy).abs().max() / noisy.abs().max().clamp_min(1e-12))


def _coupling_params(x1: Tensor, net: SubNetPlan, cond: Tensor) -> tuple[Tensor, Tensor]:
    """A coupling sub-network on x1 and its clean-image part ``cond`` (see `CleanFeatures.proj`)."""
    if net.w_first is not None:
        first = _linear(torch.cat([x1, cond], dim=-1), net.w_first, net.b_in, relu=True)
    else:
        first = _linear(x1, net.w_in, add=cond, relu=True)
    return _subnet_tail(first, net)


def _chunks(x: Tensor, net: SubNetPlan) -> list[slice]:
    """Slices of the batch on which a sub-network runs: as many items as keep its hidden activations
    (B, H, W, hidden) within `SUBNET_CHUNK_BYTES` (two 160x160 crops at level 1, all 8 at levels 2-3).

    A sub-network is a chain of products over the same positions (first layer, 3x3 convolution,
    output layers) whose every step writes a hidden-width tensor: 13 MiB for a batch of 8 crops at
    level 1, which glibc's malloc serves with fresh pages each time (page faults, zeroing) and which
    the next step reads back from memory. On chunks of ~3 MiB the blocks are reused and stay in the
    caches. CPU only: a GPU wants whole batches.
    """
    if x.device.type != "cpu":
        return [slice(None)]
    per_item = x.shape[1] * x.shape[2] * net.w3.shape[0] * x.element_size()
    step = max(1, SUBNET_CHUNK_BYTES // per_item)
    return [slice(i, i + step) for i in range(0, x.shape[0], step)]


def _step_encode(
    x: Tensor, net: SubNetPlan, proj: Tensor, split: int, with_logdet: bool
) -> tuple[Tensor, Tensor | None]:
    """Coupling, data -> latent, on channels-last x (a fresh tensor: updated in place), by chunks."""
    logdets = []
    for part in _chunks(x, net):
        shift, scale = _coupling_params(x[part, ..., :split], net, proj[part])
        x2 = x[part, ..., split:]
        x2.div_(scale.to(x.dtype)).sub_(shift.to(x.dtype))
        if with_logdet:
            logdets.append(scale.to(x.dtype).log().sum(dim=(1, 2, 3)))
    return x, torch.cat(logdets) if with_logdet else None


def _step_decode(x: Tensor, net: SubNetPlan, proj: Tensor, split: int) -> Tensor:
    """Coupling, latent -> data, on channels-last x (a fresh tensor: updated in place), by chunks."""
    for part in _chunks(x, net):
        shift, scale = _coupling_params(x[part, ..., :split], net, proj[part])
        x2 = x[part, ..., split:]
        x2.add_(shift.to(x.dtype)).mul_(scale.to(x.dtype))
    return x


# ----------------------------------------------------------------------------------------- allocator
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # glibc mallopt parameters (malloc.h)
_MMAP_THRESHOLD_MAX = 32 * 2**20  # glibc refuses larger values on 64-bit


def keep_freed_memory(trim_threshold: int = 2**30) -> bool:
    """Have glibc's malloc keep freed memory for reuse (process-wide, opt-in); True if it took effect.

    A NAS batch allocates and frees ~100 MiB of activations (tensors of 1-13 MiB for 160x160 crops,
    batch 8). By default glibc gives the top of its heap back to the system as soon as more than a few
    tens of MiB are free there, and serves blocks above its mmap threshold with fresh mappings: the next
    batch page-faults all of it back in (zeroed pages; the system time of a run). This raises the trim
    threshold to ``trim_threshold`` bytes and fixes the mmap threshold at its maximum (32 MiB; setting
    one switches off glibc's dynamic adjustment of the other, so both are set), so that freed blocks are
    reused (`benchmarks/bench_nas_speed.py --malloc both` measures the difference). The cost is a
    resident size that stays at the process's peak. Linux/glibc only (False elsewhere, nothing done);
    a DataLoader worker can call it in its ``worker_init_fn``; the environment variables
    ``MALLOC_TRIM_THRESHOLD_`` / ``MALLOC_MMAP_THRESHOLD_`` do the same for a whole program.
    """
    import ctypes
    import ctypes.util

    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        libc = ctypes.CDLL(name)
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    mmap_set = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD_MAX))
    return mmap_set and bool(mallopt(_M_TRIM_THRESHOLD, trim_threshold))

