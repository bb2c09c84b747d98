"""A fast, inference-only view of a frozen NAFlow: the same encode, decode and sample, with less work.

What it saves, compared with running the flow layer by layer (`NAFlow.encode` / `NAFlow.decode`):

- Every run of linear per-pixel layers (ActNorm, invertible 1x1 convolution, squeeze) between two
  conditional layers is folded into one affine map, composed in float64 once; its inverse is computed
  once too (the reference inverts the LU factors on every call). Squeeze commutes with a per-pixel map
  (``kron(A, I4)``), so level 0 costs nothing but the first squeeze; squeezed tensors keep a
  sub-pixel-major channel order (whole-pixel copies), permuted back inside the next affine map.
- Everything that depends only on the clean image is computed once per image and shared by encode and
  decode (NAS runs both): the encoder, the affine injectors' shift and scale, and the coupling
  sub-networks' first layer applied to the condition (the coupling sees concat(x1, h): its first
  convolution splits into a clean-only part and a small part on x1). Where the clean source is narrow
  (level 1: 12 channels) the coupling instead reads concat(x1, source) in one product, rather than
  reading back a 64-channel projection from memory.
- The encoder is linear (1x1 convolutions and pixel-unshuffles): level l's features are an affine map of
  the clean image squeezed l times. Where that image is narrower than the features (12 and 48 channels
  against 128 at levels 1 and 2), the encoder is folded into its users' first layers, which then read
  the squeezed image: those features are never built and the products are 10.7x / 2.7x narrower.
  Level 3's features come from the level-2 image in one 48 -> 32 map.
- ActNorms inside the sub-networks are folded into their convolutions; the output layer's
  ``exp(3 * logs)`` scale, the interleaved shift/scale split and the ``+2`` of the sigmoid are folded
  into its weights; the residual block's bias is folded into the output layer, and so is its 1x1
  layer where the output is narrower than the hidden width (levels 1-2).
- Activations are kept channels-last (B, H, W, C): 1x1 convolutions are matrix products on a
  (B*H*W, C) view, the 3x3 convolutions run on channels-last memory.
- On the CPU in float32 both run as oneDNN kernels (`ONEDNN`): the 3x3 convolution fused with its ReLU,
  the 1x1 products with their bias (and ReLU) fused. MKL's sgemm, what ``@`` runs, is up to 3x
  slower on these narrow products on the AMD development machine.
- The sub-networks run on chunks of the batch (`SUBNET_CHUNK_BYTES`, ~2 crops at level 1): their
  13 MiB-per-step hidden tensors become ~3 MiB blocks that malloc reuses and the caches hold.
- Batches of images; class log-likelihoods are one matrix product (no loop over classes); the
  injectors' log-det is only computed when an encode asks for it.
- NAS through a noise source (encode, then decode, of the same clean tensor) reuses the features.

Measured on a 2-core AMD EPYC (AVX-512), one thread, the other core busy (`benchmarks/bench_nas_speed.py`,
160x160 crops, batch 8): 0.052-0.057 s/crop against 0.158-0.170 s/crop for a plain batch-1
implementation of the published architecture (2.9-3.1x). About 70% of the time is the 3x3
convolutions, which run at ~90% of the machine's float32 matrix-product rate: what is left to gain
without lower precision (or fewer multiplications, e.g. Winograd) is small.
`keep_freed_memory` (opt-in, process-wide) stops glibc from returning freed blocks to the system.

Results equal the reference path to float32 rounding (about 1e-6 relative); the randomness contract is
the model's (`NAFlow.sample`): one seed per item, the item's random configuration pick and then its eps
from ``torch.Generator("cpu").manual_seed(seed)``.

Options. ``compile=True`` wraps the per-step kernels with `torch.compile`; inside them plain aten ops
run and inductor picks the kernels (its CPU backend would otherwise rewrite the oneDNN calls into
fused forms that need constant weights). It works on the CPU (tested) but is not faster there: on the
development machine 0.054-0.059 against 0.052-0.057 s/crop, after a one-off compile of 40-43 s (cold
cache, 1 thread); it is meant for CUDA. GPU options (guarded, not exercised on the CPU-only
development machine): ``autocast=torch.bfloat16`` runs only the conditioner sub-networks in reduced
precision (the affine updates themselves stay float32, so the flow stays invertible:
decode(encode(x)) == x up to rounding, checked by `check_invertibility`); `CudaGraphNAS` captures a
whole NAS (encode, posterior, mix, decode) for fixed shapes in a CUDA graph.
"""

from __future__ import annotations

import logging
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .coupling import ConditionalAffineCoupling, FlowStep, SubNet
from .layers import Squeeze
from .model import DEQUANT_LOGDET_PER_PIXEL, NAFlow, SampleParams
from .model import draw_item_noise as draw_item_noise  # re-exported: CudaGraphNAS callers draw eps with it

log = logging.getLogger(__name__)
# encode then decode of one clean batch reuse its features up to this many pixels (B*H*W; memory bound)
FEATURE_CACHE_PIXELS = 2**20
# the sub-networks run on batch chunks whose hidden activations fit in about this many bytes (`_chunks`)
SUBNET_CHUNK_BYTES = 4 * 2**20
CONCAT_BELOW = 0.5  # `_concat_condition`


# ----------------------------------------------------------------------------------------- folding
def _actnorm_affine(an) -> tuple[Tensor, Tensor]:
    """ActNorm y = (x + bias) * exp(logs) as (scale (C,), offset (C,)) in float64: y = scale * x + offset."""
    s = torch.exp(an.logs.detach().double()).reshape(-1)
    return s, s * an.bias.detach().double().reshape(-1)


def _conv_actnorm(cna) -> tuple[Tensor, Tensor]:
    """ConvActNorm (bias-free 1x1 conv then ActNorm) as one affine (W (out, in), b (out,)) in float64."""
    w = cna.conv.weight.detach().double()
    s, off = _actnorm_affine(cna.actnorm)
    return s[:, None] * w.reshape(w.shape[0], -1), off


_MATRICES = ("w_in", "w_cond", "w_res", "w_out", "w_first")


def _t(w: Tensor, device: torch.device, dtype: torch.dtype) -> Tensor:
    """(out, in) -> (in, out) contiguous: x @ w_t on (pixels, in) rows is MKL's fastest layout."""
    return w.T.to(device, dtype).contiguous()


@dataclass
class _SubNetPlan:
    """A sub-network's folded weights; ``w_in`` acts on the non-condition inputs (may have 0 columns).

    Shapes as built; `to` stores the 1x1 matrices transposed, (in, out), for `_linear`.
    """

    w_in: Tensor  # (hidden, n_x)
    w_cond: Tensor  # (hidden, cond)
    b_in: Tensor  # (hidden,)
    w3: Tensor  # (hidden, hidden, 3, 3), channels-last memory
    b3: Tensor
    w_res: Tensor  # (hidden, hidden), or (2 * c, hidden) folded with w_out when 2 * c < hidden
    w_out: Tensor  # (2 * c, hidden): rows [shift ..., raw ...]
    b_out: Tensor  # (2 * c,), raw part includes the +2 of the sigmoid
    w_first: Tensor | None = None  # (hidden, n_x + cond) = [w_in, w_cond] where `_concat_condition` says

    @staticmethod
    def build(net: SubNet, n_x: int) -> _SubNetPlan:
        w_in, b_in = _conv_actnorm(net.inp)
        w_res, b_res = _conv_actnorm(net.res_out)
        out = net.out
        scale = torch.exp(3.0 * out.logs.detach().double()).reshape(-1)
        w_out = out.conv.weight.detach().double().reshape(scale.numel(), -1) * scale[:, None]
        b_out = out.conv.bias.detach().double() * scale
        b_out = b_out + w_out @ b_res  # h + b_res only ever feeds the output layer
        order = torch.cat([torch.arange(0, scale.numel(), 2), torch.arange(1, scale.numel(), 2)])
        w_out, b_out = w_out[order], b_out[order].clone()
        b_out[scale.numel() // 2 :] += 2.0
        if w_out.shape[0] < w_res.shape[0]:
            # h + W_res r only feeds the output layer: with fewer outputs than hidden channels, map r
            # straight to the output, W_out @ W_res (a non-square w_res marks this)
            w_res = w_out @ w_res
        return _SubNetPlan(
            w_in=w_in[:, :n_x],
            w_cond=w_in[:, n_x:],
            b_in=b_in,
            w3=net.res_conv.weight.detach().double(),
            b3=net.res_conv.bias.detach().double(),
            w_res=w_res,
            w_out=w_out,
            b_out=b_out,
        )

    def to(self, device: torch.device, dtype: torch.dtype) -> _SubNetPlan:
        """Moved, 1x1 weights stored transposed (in, out) for `_linear`, 3x3 weights channels-last."""
        moved = {
            k: None if v is None else _t(v, device, dtype) if k in _MATRICES else v.to(device, dtype)
            for k, v in self.__dict__.items()
        }
        moved["w3"] = moved["w3"].contiguous(memory_format=torch.channels_last)
        return _SubNetPlan(**moved)


@dataclass
class _Affine:
    """Per-pixel y = x @ weight.T + bias on (.., C); ``inv_*`` the inverse map."""

    weight: Tensor
    bias: Tensor
    inv_weight: Tensor
    inv_bias: Tensor

    @staticmethod
    def build(a: Tensor, b: Tensor) -> _Affine:
        inv = torch.linalg.inv(a)
        return _Affine(a, b, inv, -(inv @ b))

    def to(self, device: torch.device, dtype: torch.dtype) -> _Affine:
        """Moved, matrices stored transposed (in, out) for `_linear`."""
        return _Affine(**{k: _t(v, device, dtype) if v.dim() == 2 else v.to(device, dtype)
                          for k, v in self.__dict__.items()})  # fmt: skip


@dataclass
class _Plan:
    """The folded flow. ``ops`` in the data -> latent order: ("squeeze",), ("affine", i), ("step", j)."""

    ops: list[tuple]
    affines: list[_Affine]
    couplings: list[_SubNetPlan]  # one per conditional step
    injectors: list[_SubNetPlan]
    step_level: list[int]  # flow level of each conditional step
    split: list[int]  # x1 channels of each coupling
    enc_w: list[Tensor]  # per level l: level l-1 image -> pre-squeeze level-l features (`_fold_encoder`)
    enc_b: list[Tensor]
    from_image: list[bool]  # per level: its users read the squeezed clean image (encoder folded in)
    logdet_per_pixel: float  # constant log-det of the folded linear layers, per input pixel
    eps: float
    key: tuple = field(default=())

    def to(self, device: torch.device, dtype: torch.dtype) -> _Plan:
        return _Plan(
            ops=self.ops,
            affines=[a.to(device, dtype) for a in self.affines],
            couplings=[c.to(device, dtype) for c in self.couplings],
            injectors=[c.to(device, dtype) for c in self.injectors],
            step_level=self.step_level,
            split=self.split,
            enc_w=[_t(w, device, dtype) for w in self.enc_w],
            enc_b=[b.to(device, dtype) for b in self.enc_b],
            from_image=self.from_image,
            logdet_per_pixel=self.logdet_per_pixel,
            eps=self.eps,
            key=self.key,
        )


def build_plan(model: NAFlow) -> _Plan:
    """Fold a NAFlow's weights (float64 arithmetic) into a `_Plan` (still float64, on the model's device)."""
    device = next(model.parameters()).device
    ops: list[tuple] = []
    affines: list[_Affine] = []
    couplings: list[_SubNetPlan] = []
    injectors: list[_SubNetPlan] = []
    step_level: list[int] = []
    split: list[int] = []
    eps = model.config.affine_eps
    channels, level, logdet = 3, 0, 0.0
    a = torch.eye(3, dtype=torch.float64, device=device)
    b = torch.zeros(3, dtype=torch.float64, device=device)

    def flush() -> None:
        nonlocal a, b
        if not torch.equal(a, torch.eye(channels, dtype=a.dtype, device=device)) or bool(b.any()):
            ops.append(("affine", len(affines)))
            affines.append(_Affine.build(a, b))
        a = torch.eye(channels, dtype=torch.float64, device=device)
        b = torch.zeros(channels, dtype=torch.float64, device=device)

    for layer, feat_level in zip(model.flow, model._feature_level, strict=True):
        if isinstance(layer, Squeeze):
            # a per-pixel map before a squeeze is the same map on each of the 4 sub-pixels after it
            ops.append(("squeeze",))
            # the squeezed tensor is kept in sub-pixel-major channel order (see `_squeeze`): the next
            # affine map takes its columns in that order
            a = torch.kron(a, torch.eye(4, dtype=a.dtype, device=device))[:, _subpixel_major(channels)]
            b = b.repeat_interleave(4)
            channels, level = channels * 4, level + 1
            continue
        if not isinstance(layer, FlowStep):
            raise TypeError(f"fast path: unexpected flow layer {type(layer).__name__}")
        pixels = 4.0**-level  # this level's positions per input pixel
        if layer.actnorm is not None:
            s, off = _actnorm_affine(layer.actnorm)
            a, b = s[:, None] * a, s * b + off
            logdet += pixels * float(layer.actnorm.logs.detach().double().sum())
        w = layer.invconv.weight().detach().double()
        a, b = w @ a, w @ b
        logdet += pixels * float(layer.invconv.log_s.detach().double().sum())
        if layer.coupling is not None:
            if not isinstance(layer.coupling, ConditionalAffineCoupling) or feat_level != level:
                raise TypeError("fast path: unexpected conditional layer layout")
            flush()
            ops.append(("step", len(couplings)))
            couplings.append(_SubNetPlan.build(layer.coupling.net, layer.coupling.split))
            injectors.append(_SubNetPlan.build(layer.injector.net, 0))
            step_level.append(level)
            split.append(layer.coupling.split)
    flush()

    enc_w, enc_b, from_image = _fold_encoder(model, couplings + injectors, step_level)
    for net in couplings:
        if _concat_condition(net):
            net.w_first = torch.cat([net.w_in, net.w_cond], dim=1)
    return _Plan(ops, affines, couplings, injectors, step_level, split, enc_w, enc_b, from_image, logdet, eps)


def _concat_condition(net: _SubNetPlan) -> bool:
    """Whether a coupling's first layer reads concat(x1, clean source) rather than x1 plus a precomputed
    clean projection: where the source (the squeezed image, or the features) is narrower than
    `CONCAT_BELOW` x hidden channels. The projection is a hidden-width tensor computed with the clean
    features and read back (from memory: it is long out of the caches) by every encode and decode;
    the source is a few channels: level 1 of the published model reads 12 image channels instead of
    64 projected ones, in one product with its bias and ReLU fused (no separate add pass)."""
    return net.w_cond.shape[1] < CONCAT_BELOW * net.w_cond.shape[0]


def _fold_encoder(
    model: NAFlow, consumers: list[_SubNetPlan], consumer_level: list[int]
) -> tuple[list[Tensor], list[Tensor], list[bool]]:
    """The (linear) encoder as per-level maps from the squeezed clean image; folds it into its users.

    The encoder has no nonlinearity, so its level-l features are an affine map of the clean image
    squeezed l times (3 * 4**l channels): F_l = A_l x_l + c_l with A_l = kron(I4, G_l), where G_l (width/4,
    3 * 4**(l-1)) is the composed map from the level l-1 image to the level-l pre-squeeze features. Where
    the squeezed image has fewer channels than the features (levels 1 and 2 of the published model: 12
    and 48 against 128), each user's condition weights are composed with A_l in place and it reads the
    squeezed image itself: the features are never built and the users' matrix products are 128/12 and
    128/48 times narrower. Elsewhere (level 3: 192 > 128) the features are built from the level l-1
    image, one (3 * 4**(l-1)) -> width/4 map instead of the chain of width -> width/4 maps.

    Returns (G_l as (out, in), g_l, from_image) per level l = 1..levels; ``from_image[l - 1]`` says
    that level's users were folded. Feature and image channels are in sub-pixel-major order
    (`_squeeze`); the users' columns (model order) are permuted to it.
    """
    device = next(model.parameters()).device
    enc = model.encoder
    width = enc.inp.weight.shape[0]
    order = _subpixel_major(enc.down[0].weight.shape[0])
    a = enc.inp.weight.detach().double().flatten(1)  # level 0 (width, 3) on the image itself
    c = enc.inp.bias.detach().double()
    enc_w, enc_b, from_image = [], [], []
    for level, conv in enumerate(enc.down, start=1):
        w = conv.weight.detach().double().flatten(1)
        if level > 1:
            w = w[:, order]  # the level-(l-1) features are in sub-pixel-major order
        g, bias = w @ a, w @ c + conv.bias.detach().double()
        enc_w.append(g)
        enc_b.append(bias)
        a = torch.kron(torch.eye(4, dtype=g.dtype, device=device), g)  # A_l: the squeeze of a per-pixel map
        c = bias.repeat(4)
        fold = a.shape[1] < width
        from_image.append(fold)
        for net, net_level in zip(consumers, consumer_level * 2, strict=True):
            if net_level != level:
                continue
            w_cond = net.w_cond[:, order]
            if fold:
                net.b_in = net.b_in + w_cond @ c
                w_cond = w_cond @ a
            net.w_cond = w_cond
    return enc_w, enc_b, from_image


def _subpixel_major(channels: int) -> Tensor:
    """Index i = k*C + c (sub-pixel-major, what `_squeeze` makes) -> c*4 + k (the model's `squeeze2x2`)."""
    return torch.arange(4 * channels).view(channels, 4).T.reshape(-1)


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

    The 1x1 maps here are narrow (6 to 384 columns) on many rows: MKL's sgemm (what ``@`` runs) does
    them up to 3x slower than oneDNN on the development machine (an AMD CPU, on which MKL does not
    pick its AVX-512 code; narrow products are memory-bound and oneDNN writes the output once, bias and
    relu included). The weight is passed as the transposed view of the stored (in, out) matrix:
    oneDNN's (out, in) layout with strides (1, out), which it takes without a copy (and runs faster
    than a contiguous (out, in) matrix here).
    """
    w = wt.T
    if add is None:
        return _ONEDNN_LINEAR(rows, w, b, "relu" if relu else "none", [], "")
    # a separate add_: oneDNN's fused binary add is slower here (0.054 -> 0.051 s/crop without it)
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


def _subnet_tail(h: Tensor, net: _SubNetPlan, eps: float) -> tuple[Tensor, Tensor]:
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
    # sigmoid of a strided half is not vectorised: copying it out first is 2.5x faster
    return out[..., :c], torch.sigmoid(out[..., c:].contiguous()).add_(eps)


def _squeeze(x: Tensor) -> Tensor:
    """Channels-last (B, H, W, C) -> (B, H/2, W/2, 4C), channel (dy*2 + dx)*C + c: the model's squeeze2x2
    up to a channel permutation that the plan folds into the next linear map. This order moves whole
    C-channel pixels (the model's c*4 + k order would gather single floats: several times slower)."""
    x = x.contiguous()  # a permuted NCHW image: transposing first, then moving pixels, is 1.7x faster
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
    included), or, where the coupling concatenates its clean source (`_concat_condition`), that source
    (the squeezed clean image or the features); ``shift[j]``/``scale[j]`` the affine injector's
    parameters; all channels-last (B, h, w, .). `inj_logdet` (B,): the injectors' total log-det,
    computed on first use (sampling never needs it: a log of every scale saved, ~2% of a NAS).
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
    """Inference-only NAFlow with the same `encode` / `decode` / `sample` results as the model's own.

    Built from a (frozen or not) `NAFlow`; the folded weights follow the model: they are rebuilt when
    its parameters change (in-place updates, `load_state_dict`, `.to()`), so the view never goes stale.
    It offers the attributes that `naflow_aug.tiling` and the noise sources use (``size_multiple``,
    ``classes``, ``encode``, ``decode``, ``posterior``, ``mix``, ``parameters``).

    ``autocast``: a reduced dtype (torch.bfloat16 / torch.float16) for the sub-networks only, on CUDA
    (also accepted on the CPU with bfloat16, slow there: for tests). ``compile``: `torch.compile` the
    per-step kernels (CUDA: worth it; on the CPU it needs a C++ compiler and minutes of warm-up).
    """

    def __init__(self, model: NAFlow, *, autocast: torch.dtype | None = None, compile: bool = False):
        if not isinstance(model, NAFlow):
            raise TypeError(f"model must be a NAFlow, got {type(model).__name__}")
        if autocast not in (None, torch.bfloat16, torch.float16):
            raise ValueError(f"autocast must be None, torch.bfloat16 or torch.float16, got {autocast!r}")
        self.model = model
        self.autocast = autocast
        self.compile = compile
        self._plan: _Plan | None = None
        # the last clean batch's features, found again by tensor identity (NAS through a noise source
        # calls encode, then decode, with the same clean tensor): (weakref, version, plan, features)
        self._last_features: tuple | None = None
        self._step = _step_encode
        self._step_inv = _step_decode
        if compile:
            self._step = torch.compile(_step_encode, dynamic=False)
            self._step_inv = torch.compile(_step_decode, dynamic=False)

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_plan"] = state["_last_features"] = None  # rebuilt on use
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

    def parameters(self):
        return self.model.parameters()

    def class_log_likelihood(self, z: Tensor) -> Tensor:
        return self.model.class_log_likelihood(z)

    def posterior(self, z: Tensor, temperature: float = 1.0, top_k: int | None = None) -> Tensor:
        return self.model.posterior(z, temperature, top_k)

    def mix(self, weights: Tensor, mix_mode: str = "std") -> tuple[Tensor, Tensor]:
        return self.model.mix(weights, mix_mode)

    # ---------------------------------------------------------------- plan
    def _key(self) -> tuple:
        tensors = [*self.model.parameters(), *self.model.buffers()]
        p = tensors[0]
        # inference tensors (a model built under torch.inference_mode) cannot change: no version counter
        versions = tuple((t.data_ptr(), 0 if t.is_inference() else t._version) for t in tensors)
        return (p.device, p.dtype, versions)

    @property
    def plan(self) -> _Plan:
        """The folded weights for the model's current parameters, device and dtype."""
        key = self._key()
        if self._plan is None or self._plan.key != key:
            with torch.no_grad():
                plan = build_plan(self.model)
            plan.key = key
            self._plan = plan.to(key[0], key[1])
            log.debug("fast path: folded %d affine maps, %d conditional steps",
                      len(plan.affines), len(plan.couplings))  # fmt: skip
        return self._plan

    def _autocast(self, device: torch.device):
        if self.autocast is None:
            return torch.autocast(device.type, enabled=False)
        return torch.autocast(device.type, dtype=self.autocast)

    # ---------------------------------------------------------------- clean features
    @torch.no_grad()
    def condition(self, clean: Tensor) -> CleanFeatures:
        """Clean-image features for `encode`/`decode` (``features=``): (B, 3, H, W) in [0, 1]."""
        self.model._check_images(clean, "clean")
        return self._condition(clean)

    def _condition(self, clean: Tensor) -> CleanFeatures:
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
                parts = [_subnet_tail(_linear(h[part], inj.w_cond, inj.b_in, relu=True), inj, plan.eps)
                         for part in _chunks(h, inj)]  # fmt: skip
                shift.append(torch.cat([sh for sh, _ in parts]).to(x.dtype))
                scale.append(torch.cat([sc for _, sc in parts]).to(x.dtype))
        none = x.new_zeros(x.shape[0]) if not scale else None  # no conditional steps: no log-det
        return CleanFeatures(tuple(clean.shape), proj, shift, scale, none)

    def _features(self, clean: Tensor, features: CleanFeatures | None, keep: bool = False) -> CleanFeatures:
        """Given features (checked), or the clean batch's features; ``keep`` (encode) remembers them for
        the next call with the very same clean tensor (decode), which takes them and forgets them."""
        if features is None:
            plan, last = self.plan, self._last_features
            self._last_features = None
            cacheable = not clean.is_inference() and clean[:, 0].numel() <= FEATURE_CACHE_PIXELS
            if (
                cacheable
                and last is not None
                and last[0]() is clean
                and last[1] == clean._version
                and last[2] is plan
            ):
                feats = last[3]
            else:
                feats = self._condition(clean)
            if keep and cacheable:
                self._last_features = (weakref.ref(clean), clean._version, plan, feats)
            return feats
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
                    x, ld = self._step(
                        x, plan.couplings[j], feats.proj[j], plan.split[j], plan.eps, with_logdet
                    )
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
                    x = self._step_inv(x, plan.couplings[j], feats.proj[j], plan.split[j], plan.eps)
        return x

    @torch.no_grad()
    def encode(
        self, noisy: Tensor, clean: Tensor, features: CleanFeatures | None = None
    ) -> tuple[Tensor, Tensor]:
        """As `NAFlow.encode`: (noisy, clean) (B, 3, H, W) -> z (B, C, H/m, W/m), logdet (B,)."""
        self.model._check_pair(noisy, clean)
        feats = self._features(clean, features, keep=True)
        dtype = self.plan.enc_w[0].dtype
        z, ld = self._encode(noisy.to(dtype).permute(0, 2, 3, 1), feats, True)
        h, w = noisy.shape[2:]
        const = (DEQUANT_LOGDET_PER_PIXEL + self.plan.logdet_per_pixel) * h * w
        return z.permute(0, 3, 1, 2).contiguous(), ld + feats.inj_logdet + const

    @torch.no_grad()
    def decode(self, z: Tensor, clean: Tensor, features: CleanFeatures | None = None) -> Tensor:
        """As `NAFlow.decode`: z (B, C, H/m, W/m), clean (B, 3, H, W) -> noisy (B, 3, H, W), not clamped."""
        self.model._check_latent(z, clean)
        feats = self._features(clean, features)
        x = self._decode(z.to(self.plan.enc_w[0].dtype).permute(0, 2, 3, 1), feats)
        return x.permute(0, 3, 1, 2).contiguous()

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
        """As `NAFlow.sample` (same arguments, same randomness contract, same results to rounding)."""
        model = self.model
        seeds, picks, eps = model._sample_noise(clean, reference, config, weights, generator, seeds, mix_mode)
        feats = self._condition(clean)
        dtype = self.plan.enc_w[0].dtype
        reference_z = None
        if reference is not None:
            z, _ = self._encode(reference.to(dtype).permute(0, 2, 3, 1), feats, False)
            reference_z = z.permute(0, 3, 1, 2)
        w, z = model._sample_latent(reference_z, config, weights, picks, eps, temperature, top_k, mix_mode)
        noisy = self._decode(z.to(dtype).permute(0, 2, 3, 1), feats)
        noisy = noisy.permute(0, 3, 1, 2).contiguous().clamp_(0.0, 1.0)
        if return_params:
            return noisy, SampleParams(weights=w, seeds=seeds)
        return noisy

    @torch.no_grad()
    def check_invertibility(self, clean: Tensor, noisy: Tensor) -> float:
        """Relative max error of decode(encode(noisy)) vs noisy: how far reduced precision bends the flow."""
        feats = self._features(clean, None)
        dtype = self.plan.enc_w[0].dtype
        z, _ = self._encode(noisy.to(dtype).permute(0, 2, 3, 1), feats, False)
        back = self._decode(z, feats).permute(0, 3, 1, 2)
        return float((back - noisy).abs().max() / noisy.abs().max().clamp_min(1e-12))


def _coupling_params(x1: Tensor, net: _SubNetPlan, cond: Tensor, eps: float) -> tuple[Tensor, Tensor]:
    """A coupling sub-network on x1 and its clean-image part ``cond`` (see `CleanFeatures.proj`)."""
    if net.w_first is not None:
        first = _linear(torch.cat([x1, cond], dim=-1), net.w_first, net.b_in, relu=True)
    else:
        first = _linear(x1, net.w_in, add=cond, relu=True)
    return _subnet_tail(first, net, eps)


def _chunks(x: Tensor, net: _SubNetPlan) -> list[slice]:
    """Slices of the batch on which a sub-network runs: as many items as keep its hidden activations
    (B, H, W, hidden) within `SUBNET_CHUNK_BYTES` (two 160x160 crops at level 1, all 8 at levels 2-3).

    A sub-network is a chain of products over the same positions (first layer, 3x3 convolution,
    output layers) whose every step writes a hidden-width tensor: 13 MiB for a batch of 8 crops at
    level 1, which glibc's malloc serves with fresh pages each time (page faults, zeroing) and which
    the next step reads back from memory. On chunks of ~3 MiB the blocks are reused and stay in the
    caches: 0.056 -> 0.052 s/crop (1 thread, batch 8, glibc defaults; no change with
    `keep_freed_memory`, which removes the page faults too). CPU only: a GPU wants whole batches.
    """
    if x.device.type != "cpu":
        return [slice(None)]
    per_item = x.shape[1] * x.shape[2] * net.w3.shape[0] * x.element_size()
    step = max(1, SUBNET_CHUNK_BYTES // per_item)
    return [slice(i, i + step) for i in range(0, x.shape[0], step)]


def _step_encode(
    x: Tensor, net: _SubNetPlan, proj: Tensor, split: int, eps: float, with_logdet: bool
) -> tuple[Tensor, Tensor | None]:
    """Coupling, data -> latent, on channels-last x (a fresh tensor: updated in place), by chunks."""
    logdets = []
    for part in _chunks(x, net):
        shift, scale = _coupling_params(x[part, ..., :split], net, proj[part], eps)
        x2 = x[part, ..., split:]
        x2.div_(scale.to(x.dtype)).sub_(shift.to(x.dtype))
        if with_logdet:
            logdets.append(scale.to(x.dtype).log().sum(dim=(1, 2, 3)))
    return x, torch.cat(logdets) if with_logdet else None


def _step_decode(x: Tensor, net: _SubNetPlan, proj: Tensor, split: int, eps: float) -> Tensor:
    """Coupling, latent -> data, on channels-last x (a fresh tensor: updated in place), by chunks."""
    for part in _chunks(x, net):
        shift, scale = _coupling_params(x[part, ..., :split], net, proj[part], eps)
        x2 = x[part, ..., split:]
        x2.add_(shift.to(x.dtype)).mul_(scale.to(x.dtype))
    return x


def inference_view(model: Any) -> Any:
    """The model's cached `FastNAFlow` when it is a frozen NAFlow in eval mode (what `NAFlow.sample` uses),
    else the model itself: for callers of encode/decode (tiling, noise sources) that want the same path."""
    if (
        isinstance(model, NAFlow)
        and model.fast_sampling
        and not model.training
        and not any(p.requires_grad for p in model.parameters())
    ):
        return fast_sampler(model)
    return model


def fast_sampler(model: NAFlow) -> FastNAFlow:
    """The model's cached `FastNAFlow` (created on first use; rebuilt weights follow the model)."""
    fast = model.__dict__.get("_fast_sampler")
    if fast is None:
        fast = FastNAFlow(model)
        model.__dict__["_fast_sampler"] = fast
    return fast


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
    reused: 0.058 -> 0.051 s/crop for the fast NAS on the development machine (1 thread). The cost is a
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


# ----------------------------------------------------------------------------------------- CUDA graphs
class CudaGraphNAS:
    """NAS (encode reference, posterior, mix, decode) for fixed shapes, replayed from one CUDA graph.

    CUDA only (ValueError elsewhere). ``__call__(clean, reference, eps)`` takes eps (B, C, h, w) drawn
    by the caller (e.g. with `draw_item_noise`, which keeps the randomness contract) and returns the
    clamped noisy images; outputs are cloned out of the graph's static buffers.
    Untested on the CPU-only development machine.
    """

    def __init__(self, fast: FastNAFlow, shape: tuple[int, int, int, int], temperature: float = 1.0,
                 top_k: int | None = None, warmup: int = 3):  # fmt: skip
        device = next(fast.parameters()).device
        if device.type != "cuda":
            raise ValueError(f"CudaGraphNAS needs a model on a CUDA device, got {device}")
        self.fast, self.temperature, self.top_k = fast, temperature, top_k
        dtype = fast.plan.enc_w[0].dtype
        m = fast.size_multiple
        b, _, h, w = shape
        self.clean = torch.zeros(shape, device=device, dtype=dtype)
        self.reference = torch.zeros(shape, device=device, dtype=dtype)
        self.eps = torch.zeros((b, fast.latent_channels, h // m, w // m), device=device, dtype=dtype)
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
        fast = self.fast
        feats = fast._condition(self.clean)
        z, _ = fast._encode(self.reference.permute(0, 2, 3, 1), feats, False)
        w = fast.model.prior.posterior(z.permute(0, 3, 1, 2), self.temperature, self.top_k)
        mean, std = fast.model.prior.mix(w)
        z = fast.model.prior.reparameterize(mean, std, self.eps)
        return fast._decode(z.permute(0, 2, 3, 1), feats).permute(0, 3, 1, 2).clamp(0.0, 1.0)

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
