"""Checkpoints: the project's own format, import of official NAFlow (Lightning) checkpoints, bundled models.

Everything is read with ``torch.load(weights_only=True)``; official Lightning files pickle OmegaConf
objects, which are read as inert stand-in classes (nothing from the file is executed, OmegaConf is not
needed).

Bundled models live in naflow_aug/models/: ``registry.json`` is
``{"format_version": 1, "models": {"<name>": {"file": "<name>.pt", "sha256": "<hex of the file>"}}}``
(more keys per entry are allowed); a name is listed by `available_models()` once its file is present.
"""

from __future__ import annotations

import collections
import hashlib
import json
import logging
import math
import os
import pickle
import re
import reprlib
import struct
import zipfile
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from .devices import check_device
from .flow.model import NAFlow, NAFlowConfig
from .runs import atomic_torch_save, config_from_dict, config_to_dict, sha256_file

log = logging.getLogger(__name__)

FORMAT = "naflow-aug/model"
FORMAT_VERSION = 1
MODELS_DIR = Path(__file__).resolve().parent / "models"
REGISTRY = MODELS_DIR / "registry.json"
_DROPPED_OFFICIAL_KEYS = re.compile(r"^(I|flowUpsamplerNet\.f\..*)$")


# --------------------------------------------------------------------------- project format
def save_checkpoint(model: NAFlow, path: str | os.PathLike, extra: dict[str, Any] | None = None) -> Path:
    """Write weights + config + class names atomically; `extra` must be plain data (numbers, strings,...)."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "config": config_to_dict(model.config),
        "classes": model.classes,
        "state_dict": state,
        "state_sha256": state_sha256(state),
        "extra": extra or {},
    }
    return atomic_torch_save(payload, path)


def state_sha256(state: dict[str, Tensor]) -> str:
    """SHA-256 of a state dict's tensor payload: names, dtypes, shapes and bytes, in name order.

    Recorded by `save_checkpoint` and checked on load, so flipped bytes in the tensor data are refused
    instead of loading as a model that samples wrong noise.
    """
    digest = hashlib.sha256()
    for key in sorted(state):
        value = state[key].detach().cpu().contiguous()
        digest.update(f"{key}\0{value.dtype}\0{tuple(value.shape)}\0".encode())
        digest.update(value.reshape(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _check_finite(state: dict[str, Tensor], source: str) -> None:
    for key, value in state.items():
        if value.is_floating_point() and not bool(torch.isfinite(value).all()):
            bad = int((~torch.isfinite(value)).sum())
            raise ValueError(
                f"{source}: tensor {key!r} holds {bad} NaN/Inf value(s) of {value.numel()}; "
                "the checkpoint is corrupt or comes from a diverged training run"
            )


def _load_state(model: NAFlow, state: dict[str, Tensor], source: str, sha256: str | None = None) -> None:
    """load_state_dict(strict=True) with a readable list of the first mismatches; refuses tensor data that
    differ from their recorded `state_sha256` and NaN/Inf values."""
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k}: {tuple(state[k].shape)} vs {tuple(v.shape)}"
              for k, v in own.items() if k in state and state[k].shape != v.shape]  # fmt: skip
    if missing or unexpected or shapes:
        raise ValueError(
            f"{source} does not fit the model: missing keys {missing[:5]} ({len(missing)}), "
            f"unexpected keys {unexpected[:5]} ({len(unexpected)}), "
            f"shape mismatches (file vs model) {shapes[:5]} ({len(shapes)})"
        )
    wrong_dtype = [f"{k}: {state[k].dtype} vs {v.dtype}" for k, v in own.items()
                   if state[k].is_floating_point() != v.is_floating_point()]  # fmt: skip
    if wrong_dtype:
        raise ValueError(f"{source} does not fit the model: tensor dtypes (file vs model) {wrong_dtype[:5]}")
    if sha256 is not None and sha256 != state_sha256(state):
        raise ValueError(
            f"{source}: the tensor data do not match the SHA-256 recorded when it was saved: the file is "
            "corrupt (or its state_dict was edited outside save_checkpoint; such an edit must drop "
            "'state_sha256')"
        )
    _check_finite(state, source)
    model.load_state_dict(state, strict=True)


def _tensor_dict(state: Any, source: str) -> dict[str, Tensor]:
    if not isinstance(state, dict) or not all(isinstance(k, str) for k in state):
        raise ValueError(f"{source}: 'state_dict' is not a mapping of tensor names to tensors")
    wrong = [k for k, v in state.items() if not isinstance(v, Tensor)]
    if wrong:
        raise ValueError(f"{source}: state_dict entries {wrong[:5]} are not tensors")
    return state


def model_from_project_checkpoint(ckpt: dict[str, Any], source: str = "checkpoint") -> NAFlow:
    version = ckpt.get("format_version")
    if version != FORMAT_VERSION:
        raise ValueError(
            f"{source}: unsupported format_version {reprlib.repr(version)}, expected {FORMAT_VERSION}"
        )
    if not isinstance(ckpt.get("config"), dict):
        raise ValueError(
            f"{source}: no 'config' table (the model's architecture); got {type(ckpt.get('config')).__name__}"
        )
    state = _tensor_dict(ckpt.get("state_dict"), source)
    try:
        config = config_from_dict(NAFlowConfig, ckpt["config"], where=f"{source} config")
    except TypeError as err:
        raise ValueError(str(err)) from err
    _check_size(config, state, source)
    model = NAFlow(config)
    _load_state(model, state, source, ckpt.get("state_sha256"))  # files before the checksum have none
    return model


def _check_size(config: NAFlowConfig, state: dict[str, Tensor], source: str) -> None:
    """Refuse a config whose model would dwarf the file's tensors before building it (a damaged number
    must not allocate gigabytes ahead of `_load_state`'s shape check). Every width the config names is the
    size of some stored tensor's dimension, and every flow step stores at least one tensor."""
    latent = tuple(state["prior.mean"].shape) if "prior.mean" in state else None
    steps = (config.levels + 1) * config.transition_steps + config.levels * config.conditional_steps
    widest = max((max(v.shape, default=1) for v in state.values()), default=0)
    widths = [config.encoder_channels] + ([config.hidden_channels] if config.conditional_steps else [])
    square = config.latent_channels**2 if config.transition_steps else 0  # the last 1x1 conv's LU factors
    if (
        latent != (len(config.classes), config.latent_channels)
        or steps > len(state)
        or max(widths) > widest
        or square > sum(v.numel() for v in state.values())
    ):
        raise ValueError(
            f"{source} does not fit the model its config describes: prior.mean {latent} vs "
            f"({len(config.classes)}, {config.latent_channels}) for {config.levels} levels, {steps} flow "
            f"steps for {len(state)} tensors, widths {widths} for tensors at most {widest} wide"
        )


# --------------------------------------------------------------------------- training checkpoints
TRAINING_FORMAT = "naflow-aug-train/1"  # train's checkpoint.pt: model, optimizer, schedule, RNG, records
TRAINING_KEYS = ("step", "config", "model_config", "model", "optimizer", "scheduler", "rng", "nonfinite",
                 "elapsed", "window", "best")  # fmt: skip


def read_training_checkpoint(path: str | os.PathLike) -> dict[str, Any]:
    """A training checkpoint (what `train` resumes from); ValueError naming the file when it is not one."""
    state = read_checkpoint(path)
    if not isinstance(state, dict) or state.get("format") != TRAINING_FORMAT:
        raise ValueError(f"{path} is not a naflow-aug training checkpoint (format {TRAINING_FORMAT})")
    missing = [k for k in TRAINING_KEYS if k not in state]
    if missing or not isinstance(state["config"], dict) or not isinstance(state["rng"], dict):
        raise ValueError(f"{path} is an incomplete training checkpoint: missing or bad {missing or 'config'}")
    return state


def model_from_training_checkpoint(state: dict[str, Any], source: str = "training checkpoint") -> NAFlow:
    """The model of a training checkpoint, through the one model validator (config, shapes, finite values,
    the tensor checksum where recorded)."""
    return model_from_project_checkpoint(
        {"format_version": FORMAT_VERSION, "config": state.get("model_config"),
         "state_dict": state.get("model"), "state_sha256": state.get("model_sha256")},
        f"{source} (model)",
    )  # fmt: skip


# --------------------------------------------------------------------------- official import
_SUBNET_KEYS = [
    (r"0\.weight", "inp.conv.weight"),
    (r"0\.actnorm\.(bias|logs)", r"inp.actnorm.\1"),
    (r"2\.body\.0\.(weight|bias)", r"res_conv.\1"),
    (r"2\.body\.2\.weight", "res_out.conv.weight"),
    (r"2\.body\.2\.actnorm\.(bias|logs)", r"res_out.actnorm.\1"),
    (r"3\.(weight|bias)", r"out.conv.\1"),
    (r"3\.logs", "out.logs"),
]
_OFFICIAL_KEYS = [
    (r"cond_net\.down1\.(weight|bias)", r"encoder.inp.\1"),
    (
        r"flowUpsamplerNet\.layers\.(\d+)\.(actnorm\.(?:bias|logs)|invconv\.(?:l|u|log_s|p|sign_s))",
        r"flow.\1.\2",
    ),
] + [
    (
        rf"flowUpsamplerNet\.layers\.(\d+)\.affine\.{theirs}\.{pattern}",
        rf"flow.\1.{ours}.net." + repl.replace("\\1", "\\2"),
    )
    for theirs, ours in (("fFeatures", "injector"), ("fAffine", "coupling"))
    for pattern, repl in _SUBNET_KEYS
]


def _official_config(state: dict[str, Tensor], hparams: dict[str, Any] | None) -> NAFlowConfig:
    """The architecture, inferred from the key shapes (class names from the key order)."""
    classes = [k[len("mean_shift_") :] for k in state if k.startswith("mean_shift_")]
    if not classes or "cond_net.down1.weight" not in state:
        raise ValueError(
            "not an official NAFlow state dict: no 'mean_shift_*' or 'cond_net.down1.weight' keys"
        )
    channels = state[f"mean_shift_{classes[0]}"].shape[0]
    levels = round(math.log(channels / 3, 4))
    layer_keys: dict[int, set[str]] = collections.defaultdict(set)
    for k in state:
        m = re.match(r"flowUpsamplerNet\.layers\.(\d+)\.(\w+)", k)
        if m:
            layer_keys[int(m[1])].add(m[2])
    transition = sum(1 for v in layer_keys.values() if "actnorm" in v and "affine" not in v) // (levels + 1)
    conditional = sum(1 for v in layer_keys.values() if "affine" in v) // max(levels, 1)
    hidden = next((v.shape[0] for k, v in state.items() if k.endswith("affine.fAffine.0.weight")), 64)
    eps = 1e-3
    flow_hp = (hparams or {}).get("flow", {}) if isinstance(hparams, dict) else {}
    if isinstance(flow_hp, dict) and isinstance(flow_hp.get("CondFeaAndCondSelf"), dict):
        eps = float(flow_hp["CondFeaAndCondSelf"].get("eps", eps))
    cov = state[f"cov_shift_{classes[0]}"]
    return NAFlowConfig(
        classes=tuple(classes),
        levels=levels,
        transition_steps=transition,
        conditional_steps=conditional,
        hidden_channels=hidden,
        encoder_channels=state["cond_net.down1.weight"].shape[0],
        covariance="full" if cov.dim() == 2 else "diagonal",
        affine_eps=eps,
    )


def model_from_official(ckpt: dict[str, Any], source: str = "official checkpoint") -> NAFlow:
    """A NAFlow from an official checkpoint dict (Lightning: `state_dict` with `model.` prefixes, or a bare
    state dict). The unused tensors `I` and `flowUpsamplerNet.f.*` are dropped."""
    state = ckpt.get("state_dict", ckpt)
    if not isinstance(state, dict):
        raise ValueError(f"{source}: 'state_dict' is a {type(state).__name__}, not a mapping of tensors")
    state = {
        k.removeprefix("model."): v for k, v in state.items() if isinstance(k, str) and isinstance(v, Tensor)
    }
    hparams = ckpt.get("hyper_parameters", {}) if isinstance(ckpt.get("hyper_parameters"), dict) else {}
    try:
        config = _official_config(state, _plain(hparams.get("network_G_config")))
    except (KeyError, IndexError, TypeError, ZeroDivisionError, ArithmeticError) as err:
        raise ValueError(f"{source}: not a complete official NAFlow state dict ({type(err).__name__}: "
                         f"{reprlib.repr(err.args[0]) if err.args else ''})") from err  # fmt: skip
    except ValueError as err:
        raise ValueError(f"{source}: {err}") from err
    ours: dict[str, Tensor] = {}
    for key, value in state.items():
        if _DROPPED_OFFICIAL_KEYS.match(key) or re.match(r"(mean|cov)_shift_", key):
            continue
        if m := re.fullmatch(r"cond_net\.down(\d+)\.(weight|bias)", key):
            if m[1] != "1":
                ours[f"encoder.down.{int(m[1]).bit_length() - 2}.{m[2]}"] = value
                continue
        for pattern, repl in _OFFICIAL_KEYS:
            if re.fullmatch(pattern, key):
                ours[re.sub(pattern, repl, key)] = value
                break
        else:
            ours[key] = value  # reported as unexpected by _load_state
    try:
        ours["prior.mean"] = torch.stack([state[f"mean_shift_{c}"] for c in config.classes])
        ours["prior.std"] = torch.stack([state[f"cov_shift_{c}"] for c in config.classes])
    except (KeyError, RuntimeError) as err:
        raise ValueError(f"{source}: the per-configuration mean_shift_*/cov_shift_* tensors do not match "
                         f"each other ({reprlib.repr(str(err))})") from err  # fmt: skip
    _check_size(config, ours, source)
    model = NAFlow(config)
    for key in model.state_dict():
        if key.endswith("initialized"):
            ours[key] = torch.tensor(True)
    _load_state(model, ours, source)
    return model


class _StandIn:
    """Inert placeholder for a pickled class (OmegaConf containers): records its state, runs nothing."""

    def __init__(self, *args: Any, **kwargs: Any):
        self.args, self.state = args, None

    def __setstate__(self, state: Any) -> None:
        self.state = state


class _AttributeDict(dict):
    pass


class _AnyType:
    pass


def _stand_in(name: str) -> type:
    return type(name.rsplit(".", 1)[1], (_StandIn,), {"qualname": name})


_OMEGACONF = [f"omegaconf.{n}" for n in (
    "dictconfig.DictConfig", "listconfig.ListConfig", "base.ContainerMetadata", "base.Metadata",
    "nodes.AnyNode", "nodes.StringNode", "nodes.IntegerNode", "nodes.FloatNode", "nodes.BooleanNode",
    "nodes.BytesNode", "nodes.PathNode", "nodes.EnumNode",
)]  # fmt: skip
_SAFE_GLOBALS: list[Any] = [(_stand_in(n), n) for n in _OMEGACONF] + [
    (_AnyType, "typing.Any"),
    *[(t, f"__builtin__.{t.__name__}") for t in (int, float, str, dict, list, tuple, set)],
    (int, "__builtin__.long"),
    dict, list, tuple, set, int, float, str, bool,
    collections.Counter, collections.defaultdict, collections.OrderedDict,
    (_AttributeDict, "lightning_fabric.utilities.data.AttributeDict"),
    (_AttributeDict, "pytorch_lightning.utilities.parsing.AttributeDict"),
    (_AttributeDict, "lightning.fabric.utilities.data.AttributeDict"),
]  # fmt: skip


# Bounds of the inert hyper-parameter reader: a few kilobytes of pickle can describe a list graph whose
# shared references unfold exponentially, or nesting deep enough to overflow the stack.
HPARAM_MAX_NODES = 100_000
HPARAM_MAX_DEPTH = 200


def _plain(obj: Any, max_nodes: int = HPARAM_MAX_NODES, max_depth: int = HPARAM_MAX_DEPTH) -> Any:
    """Stand-in OmegaConf containers/nodes -> plain dicts, lists and values.

    Each object is converted once (shared references share the result, so the work is linear in the
    pickle's objects), at most `max_nodes` of them and `max_depth` deep; past that, ValueError.
    """
    done: dict[int, Any] = {}

    def convert(o: Any, depth: int) -> Any:
        if depth > max_depth:
            raise ValueError(f"checkpoint hyper-parameters are nested deeper than {max_depth} levels")
        if not isinstance(o, (_StandIn, dict, list, tuple)):
            return o
        if id(o) in done:
            return done[id(o)]
        if len(done) >= max_nodes:
            raise ValueError(f"checkpoint hyper-parameters hold more than {max_nodes} containers")
        done[id(o)] = None  # a container reached again while being converted (a cycle) reads as None
        if isinstance(o, _StandIn):
            state = o.state if isinstance(o.state, dict) else {}
            key = "_content" if type(o).qualname.endswith(("DictConfig", "ListConfig")) else "_val"
            out = convert(state.get(key), depth + 1)
        elif isinstance(o, dict):
            out = {k: convert(v, depth + 1) for k, v in o.items()}
        else:
            out = [convert(v, depth + 1) for v in o]
        done[id(o)] = out
        return out

    return convert(obj, 0)


def read_checkpoint(path: str | os.PathLike) -> Any:
    """torch.load(weights_only=True) with the stand-ins; ValueError naming the file if it cannot be read."""
    path = Path(path)
    try:
        with torch.serialization.safe_globals(_SAFE_GLOBALS):
            return torch.load(path, map_location="cpu", weights_only=True)
    except (
        pickle.UnpicklingError,
        RuntimeError,  # RecursionError included
        EOFError,
        zipfile.BadZipFile,
        AttributeError,
        KeyError,
        IndexError,  # e.g. a text file: the unpickler's stack underflows
        TypeError,
        ValueError,
        OverflowError,
        UnicodeDecodeError,
        struct.error,
    ) as err:
        raise ValueError(
            f"{path} is not a readable checkpoint (torch.load weights_only=True failed: "
            f"{str(err).splitlines()[-1] if str(err) else type(err).__name__})"
        ) from err


def model_from_checkpoint(ckpt: Any, source: str = "checkpoint") -> NAFlow:
    """A NAFlow (trainable, train mode) from a loaded checkpoint object of either format."""
    try:
        return _model_from_checkpoint(ckpt, source)
    except RecursionError as err:  # any value nested deeper than Python can print or compare
        raise ValueError(f"{source} holds values nested too deeply to be a NAFlow checkpoint") from err


def _model_from_checkpoint(ckpt: Any, source: str) -> NAFlow:
    if not isinstance(ckpt, dict):
        raise ValueError(f"{source} is not a NAFlow checkpoint: it holds a {type(ckpt).__name__}, not a dict")
    if ckpt.get("format") == FORMAT:
        return model_from_project_checkpoint(ckpt, source)
    state = ckpt.get("state_dict", ckpt)
    if isinstance(state, dict) and any(
        str(k).removeprefix("model.") == "cond_net.down1.weight" for k in state
    ):
        return model_from_official(ckpt, source)
    raise ValueError(
        f"{source} is not a NAFlow checkpoint (neither format {FORMAT!r} nor an official "
        f"NAFlow state dict); top-level keys: {sorted(map(str, ckpt))[:10]}"
    )


# --------------------------------------------------------------------------- bundled models
def _registry() -> dict[str, dict[str, Any]]:
    if not REGISTRY.is_file():
        return {}
    return json.loads(REGISTRY.read_text())["models"]


def available_models() -> list[str]:
    """Names of the models shipped in naflow_aug/models/ (those whose weight file is present)."""
    return sorted(n for n, e in _registry().items() if (MODELS_DIR / e["file"]).is_file())


def resolve(name_or_path: str | os.PathLike) -> Path:
    """A bundled model name or a checkpoint path -> the file's path."""
    entry = _registry().get(str(name_or_path))
    if entry is not None and (MODELS_DIR / entry["file"]).is_file():
        return MODELS_DIR / entry["file"]
    path = Path(name_or_path).expanduser()
    if not path.is_file():
        raise ValueError(
            f"{str(name_or_path)!r} is neither a bundled model {available_models()} "
            f"nor an existing checkpoint file"
        )
    return path


def load(name_or_path: str | os.PathLike, device: str | torch.device | None = None) -> NAFlow:
    """A frozen NAFlow in eval mode (no gradients) from a bundled name or a checkpoint path (either format).

    Sets `model.checkpoint_sha256` to the file's SHA-256.
    """
    device = check_device(device)
    path = resolve(name_or_path)
    entry = _registry().get(str(name_or_path))
    digest = sha256_file(path)
    if entry is not None and entry.get("sha256") and entry["sha256"] != digest:
        raise ValueError(
            f"bundled model {name_or_path!r} has SHA-256 {digest}, registry says {entry['sha256']}"
        )
    model = model_from_checkpoint(read_checkpoint(path), str(path))
    if device is not None:
        model = model.to(device)
    model.checkpoint_sha256 = digest
    log.info("loaded NAFlow from %s (%d classes, sha256 %s)", path, model.num_classes, digest[:12])
    return model.freeze()


__all__ = [
    "available_models",
    "load",
    "model_from_checkpoint",
    "model_from_official",
    "resolve",
    "save_checkpoint",
]
