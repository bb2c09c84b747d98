"""Mixture weights over a model's configurations as users spell them (``weights:`` noise sources, the
CLI): ``w1,w2,...``, ``NAME=w,...`` or a JSON file; one parser, every value checked."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from naflow_aug.runs import read_json

__all__ = ["parse_weights"]


def parse_weights(arg: str, classes: Sequence[str]) -> torch.Tensor:
    """(K,) normalised weights from ``w1,w2,...``, ``NAME=w,...``, or a JSON file (list, {name: w}, or a
    file with a "weights" entry such as a profile)."""
    classes = list(classes)
    data: Any
    if arg.endswith(".json") or Path(arg).is_file():
        data = read_json(arg, "weights file")
        if isinstance(data, dict) and "weights" in data:
            recorded = data.get("classes")
            if recorded is not None and (not isinstance(recorded, list) or recorded != classes):
                raise ValueError(
                    f"weights file {arg!r} was made for classes {recorded}, the model has {classes}"
                )
            data = data["weights"]
    else:
        parts = [p.strip() for p in arg.split(",") if p.strip()]
        if parts and all("=" in p for p in parts):
            data = {}
            for p in parts:
                name, _, value = p.partition("=")
                if name.strip() in data:
                    raise ValueError(f"weights {arg!r} name configuration {name.strip()!r} twice")
                data[name.strip()] = _float(value, arg)
        else:
            data = [_float(p, arg) for p in parts]
    if isinstance(data, dict):
        unknown = [n for n in data if n not in classes]
        if unknown:
            raise ValueError(
                f"weights name configurations {unknown} that the model lacks; model classes: {classes}"
            )
        w = torch.tensor([_number(data.get(n, 0.0), arg) for n in classes], dtype=torch.float64)
    elif isinstance(data, list):
        if len(data) != len(classes):
            raise ValueError(
                f"weights {arg!r} give {len(data)} values; the model has {len(classes)} classes {classes}"
            )
        w = torch.tensor([_number(v, arg) for v in data], dtype=torch.float64)
    else:
        raise ValueError(
            f"weights {arg!r}: expected a list or a {{name: weight}} mapping, got {type(data).__name__}"
        )
    if not torch.isfinite(w).all() or (w < 0).any() or float(w.sum()) <= 0:
        raise ValueError(f"weights {arg!r} must be finite, >= 0 and not all zero, got {w.tolist()}")
    return (w / w.sum()).to(torch.float32)


def _number(value: Any, arg: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ValueError(f"weights {arg!r}: {value!r} is not a number")
    return float(value)


def _float(text: str, arg: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"weights {arg!r}: {text.strip()!r} is not a number") from None
