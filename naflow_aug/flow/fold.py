"""The folded form of a NAFlow's weights, for the fast path (`naflow_aug.flow.fast`).

Built from what the layers report about themselves (`ActNorm.affine`, `InvConv1x1.weight`,
`Squeeze.lift`, `AffineInjector.form` / `ConditionalAffineCoupling.form`, `ConditionEncoder.linear_form`),
composed in float64:

- Every run of linear per-pixel layers (ActNorm, invertible 1x1 convolution, squeeze) between two
  conditional steps becomes one affine map with a precomputed inverse. A squeeze commutes with a
  per-pixel map (`Squeeze.lift`); squeezed tensors keep a sub-pixel-major channel order (`_subpixel_major`,
  the order the fast path's squeeze makes by moving whole pixels), permuted back inside the next map.
- Each sub-network's ActNorms are folded into its convolutions, the output layer's scale into its
  weights; its output rows are reordered to [shift, scale logits] with the logit offset in the bias; the
  residual block's bias moves into the output layer, and so does its 1x1 layer where the output is
  narrower than the hidden width.
- The encoder is linear: level l's features are an affine map of the clean image squeezed l times.
  Where that image is narrower than the features, the map is folded into the features' users
  (`_fold_encoder`), which then read the squeezed image itself.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from .coupling import AffineForm, AffineInjector, ConditionalAffineCoupling, FlowStep
from .layers import ActNorm, InvConv1x1, Squeeze

CONCAT_BELOW = 0.5  # `_concat_condition`
_MATRICES = ("w_in", "w_cond", "w_res", "w_out", "w_first")


def _t(w: Tensor, device: torch.device, dtype: torch.dtype) -> Tensor:
    """(out, in) -> (in, out) contiguous: x @ w_t on (pixels, in) rows is the fastest layout."""
    return w.T.to(device, dtype).contiguous()


@dataclass
class SubNetPlan:
    """A sub-network's folded weights; ``w_in`` acts on the non-condition inputs (may have 0 columns).

    Shapes as built; `to` stores the 1x1 matrices transposed, (in, out), for the fast path's products.
    """

    w_in: Tensor  # (hidden, n_x)
    w_cond: Tensor  # (hidden, cond)
    b_in: Tensor  # (hidden,)
    w3: Tensor  # (hidden, hidden, 3, 3), channels-last memory
    b3: Tensor
    w_res: Tensor  # (hidden, hidden), or (2 * c, hidden) folded with w_out when 2 * c < hidden
    w_out: Tensor  # (2 * c, hidden): rows [shift ..., scale logit ...]
    b_out: Tensor  # (2 * c,), logit part includes the logit offset
    eps: float  # scale = sigmoid(logit) + eps
    w_first: Tensor | None = None  # (hidden, n_x + cond) = [w_in, w_cond] where `_concat_condition` says

    @staticmethod
    def build(form: AffineForm) -> SubNetPlan:
        net = form.net
        b_out = net.b_out + net.w_out @ net.b_res  # h + b_res only ever feeds the output layer
        rows = torch.arange(net.w_out.shape[0])
        shift_rows = rows[form.shift_rows]
        order = torch.cat([shift_rows, rows[form.logit_rows]])
        w_out, b_out = net.w_out[order], b_out[order].clone()
        b_out[len(shift_rows) :] += form.logit_offset
        w_res = net.w_res
        if w_out.shape[0] < w_res.shape[0]:
            # h + W_res r only feeds the output layer: with fewer outputs than hidden channels, map r
            # straight to the output, W_out @ W_res (a non-square w_res marks this)
            w_res = w_out @ w_res
        return SubNetPlan(
            w_in=net.w_in[:, : form.split],
            w_cond=net.w_in[:, form.split :],
            b_in=net.b_in,
            w3=net.w3,
            b3=net.b3,
            w_res=w_res,
            w_out=w_out,
            b_out=b_out,
            eps=form.eps,
        )

    def to(self, device: torch.device, dtype: torch.dtype) -> SubNetPlan:
        """Moved, 1x1 weights stored transposed (in, out), 3x3 weights channels-last."""

        def move(name: str, v: Any) -> Any:
            if not isinstance(v, Tensor):
                return v
            return _t(v, device, dtype) if name in _MATRICES else v.to(device, dtype)

        moved = {k: move(k, v) for k, v in self.__dict__.items()}
        moved["w3"] = moved["w3"].contiguous(memory_format=torch.channels_last)
        return SubNetPlan(**moved)


@dataclass
class Affine:
    """Per-pixel y = x @ weight.T + bias on (.., C); ``inv_*`` the inverse map."""

    weight: Tensor
    bias: Tensor
    inv_weight: Tensor
    inv_bias: Tensor

    @staticmethod
    def build(a: Tensor, b: Tensor) -> Affine:
        inv = torch.linalg.inv(a)
        return Affine(a, b, inv, -(inv @ b))

    def to(self, device: torch.device, dtype: torch.dtype) -> Affine:
        """Moved, matrices stored transposed (in, out)."""
        return Affine(**{k: _t(v, device, dtype) if v.dim() == 2 else v.to(device, dtype)
                         for k, v in self.__dict__.items()})  # fmt: skip


@dataclass
class Plan:
    """The folded flow. ``ops`` in the data -> latent order: ("squeeze",), ("affine", i), ("step", j)."""

    ops: list[tuple]
    affines: list[Affine]
    couplings: list[SubNetPlan]  # one per conditional step
    injectors: list[SubNetPlan]
    step_level: list[int]  # flow level of each conditional step
    split: list[int]  # x1 channels of each coupling
    enc_w: list[Tensor]  # per level l: level l-1 image -> pre-squeeze level-l features (`_fold_encoder`)
    enc_b: list[Tensor]
    from_image: list[bool]  # per level: its users read the squeezed clean image (encoder folded in)
    logdet_per_pixel: float  # constant log-det of the folded linear layers, per input pixel
    key: tuple = field(default=())

    def to(self, device: torch.device, dtype: torch.dtype) -> Plan:
        return Plan(
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
            key=self.key,
        )


def _flow_parts(flow: nn.ModuleList, feature_levels: list[int]) -> list[tuple[nn.Module, int]]:
    """Every layer of the flow in the data -> latent order, each step's parts one by one, with its level."""
    parts = []
    for layer, level in zip(flow, feature_levels, strict=True):
        parts += [(p, level) for p in layer.parts()] if isinstance(layer, FlowStep) else [(layer, level)]
    return parts


def build_plan(flow: nn.ModuleList, feature_levels: list[int], encoder: nn.Module) -> Plan:
    """Fold a NAFlow's layers (`NAFlow.flow`, `NAFlow.feature_levels`, `NAFlow.encoder`) into a `Plan`
    (float64, on the layers' device)."""
    device = next(flow.parameters()).device
    ops: list[tuple] = []
    affines: list[Affine] = []
    couplings: list[SubNetPlan] = []
    injectors: list[SubNetPlan] = []
    step_level: list[int] = []
    split: list[int] = []
    channels, level, logdet = 3, 0, 0.0
    a = torch.eye(3, dtype=torch.float64, device=device)
    b = torch.zeros(3, dtype=torch.float64, device=device)

    def flush() -> None:
        nonlocal a, b
        if not torch.equal(a, torch.eye(channels, dtype=a.dtype, device=device)) or bool(b.any()):
            ops.append(("affine", len(affines)))
            affines.append(Affine.build(a, b))
        a = torch.eye(channels, dtype=torch.float64, device=device)
        b = torch.zeros(channels, dtype=torch.float64, device=device)

    parts = _flow_parts(flow, feature_levels)
    for i, (part, feat_level) in enumerate(parts):
        pixels = 4.0**-level  # this level's positions per input pixel
        if isinstance(part, Squeeze):
            ops.append(("squeeze",))
            # the squeezed tensor is kept in sub-pixel-major channel order (see `_subpixel_major`): the
            # next affine map takes its columns in that order
            a, b = Squeeze.lift(a, b)
            a = a[:, _subpixel_major(channels)]
            channels, level = channels * 4, level + 1
        elif isinstance(part, ActNorm):
            s, off = part.affine()
            a, b = s[:, None] * a, s * b + off
            logdet += pixels * float(part.logdet_per_position())
        elif isinstance(part, InvConv1x1):
            w = part.weight().detach().double()
            a, b = w @ a, w @ b
            logdet += pixels * float(part.logdet_per_position())
        elif isinstance(part, ConditionalAffineCoupling):
            injector = parts[i + 1][0] if i + 1 < len(parts) else None
            if not isinstance(injector, AffineInjector) or feat_level != level:
                raise TypeError("fast path: a coupling must be followed by its injector, at its own level")
            flush()
            ops.append(("step", len(couplings)))
            couplings.append(SubNetPlan.build(part.form()))
            injectors.append(SubNetPlan.build(injector.form()))
            step_level.append(level)
            split.append(part.split)
        elif not isinstance(part, AffineInjector):  # injectors go with their coupling
            raise TypeError(f"fast path: unexpected flow layer {type(part).__name__}")
    flush()

    enc_w, enc_b, from_image = _fold_encoder(encoder, couplings + injectors, step_level * 2)
    for net in couplings:
        if _concat_condition(net):
            net.w_first = torch.cat([net.w_in, net.w_cond], dim=1)
    return Plan(ops, affines, couplings, injectors, step_level, split, enc_w, enc_b, from_image, logdet)


def _concat_condition(net: SubNetPlan) -> bool:
    """Whether a coupling's first layer reads concat(x1, clean source) rather than x1 plus a precomputed
    clean projection: where the source (the squeezed image, or the features) is narrower than
    `CONCAT_BELOW` x hidden channels. The projection is a hidden-width tensor computed with the clean
    features and read back (from memory: it is long out of the caches) by every encode and decode;
    the source is a few channels: level 1 of the published model reads 12 image channels instead of
    64 projected ones, in one product with its bias and ReLU fused (no separate add pass)."""
    return net.w_cond.shape[1] < CONCAT_BELOW * net.w_cond.shape[0]


def _fold_encoder(
    encoder: nn.Module, consumers: list[SubNetPlan], consumer_level: list[int]
) -> tuple[list[Tensor], list[Tensor], list[bool]]:
    """The encoder (`ConditionEncoder.linear_form`) as per-level maps from the squeezed clean image; folds
    it into its users.

    Level l's features are F_l = A_l x_l + c_l on the clean image squeezed l times (3 * 4**l channels),
    A_l the squeeze's lift of G_l (width/4, 3 * 4**(l-1)), the composed map from the level l-1 image to
    the level-l pre-squeeze features. Where the squeezed image has fewer channels than the features
    (levels 1 and 2 of the published model: 12 and 48 against 128), each user's condition weights are
    composed with A_l in place and it reads the squeezed image itself: the features are never built
    and the users' matrix products are 128/12 and 128/48 times narrower. Elsewhere (level 3: 192 > 128)
    the features are built from the level l-1 image, one (3 * 4**(l-1)) -> width/4 map instead of the
    chain of width -> width/4 maps.

    Returns (G_l as (out, in), g_l, from_image) per level l = 1..levels; ``from_image[l - 1]`` says
    that level's users were folded. Feature and image channels are in sub-pixel-major order
    (`_subpixel_major`); the users' columns (model order) are permuted to it.
    """
    maps = encoder.linear_form()
    a, c = maps[0]  # level 0 (width, 3) on the image itself
    width = a.shape[0]
    order = _subpixel_major(width // 4)
    enc_w, enc_b, from_image = [], [], []
    for level, (w, w_bias) in enumerate(maps[1:], start=1):
        if level > 1:
            w = w[:, order]  # the level-(l-1) features are in sub-pixel-major order
        g, bias = w @ a, w @ c + w_bias
        enc_w.append(g)
        enc_b.append(bias)
        lifted, lifted_bias = Squeeze.lift(g, bias)  # A_l, c_l in the model's order: permuted
        a, c = lifted[order][:, _subpixel_major(g.shape[1])], lifted_bias[order]
        fold = a.shape[1] < width
        from_image.append(fold)
        for net, net_level in zip(consumers, consumer_level, strict=True):
            if net_level != level:
                continue
            w_cond = net.w_cond[:, order]
            if fold:
                net.b_in = net.b_in + w_cond @ c
                w_cond = w_cond @ a
            net.w_cond = w_cond
    return enc_w, enc_b, from_image


def _subpixel_major(channels: int) -> Tensor:
    """Index i = k*C + c (sub-pixel-major, what the fast path's squeeze makes) -> c*4 + k (`squeeze2x2`)."""
    return torch.arange(4 * channels).view(channels, 4).T.reshape(-1)
