"""The files a noise spelling reads (model checkpoint, profile, weights, baselines) and their SHA-256.

A resumable job records them when it starts, so that a resume can tell when one of them changed in between
(its outputs would otherwise mix two noise models and still report success).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from naflow_aug.checkpoints import resolve
from naflow_aug.noise.registry import parse_noise_spec
from naflow_aug.noise.spec import NoiseSpec
from naflow_aug.runs import sha256_file

# what each role is called in messages
_ROLE_NAMES = {"model": "model checkpoint", "profile": "noise profile", "weights": "weights file",
               "baselines": "baselines file"}  # fmt: skip


def noise_input_files(noise: str | NoiseSpec, model: str | os.PathLike | None) -> dict[str, Path]:
    """``{role: resolved path}`` of the files whose content shapes the noise of ``noise`` made with ``model``
    (a bundled name or a checkpoint path; read only by the model sources)."""
    spec = parse_noise_spec(noise)
    files: dict[str, Path] = {}
    if spec.needs_model:
        files["model"] = resolve("sidd-mini" if model is None else model).resolve()
    role = spec.info.input_file
    # weights may be written inline instead of in a file
    if role is not None and spec.arg is not None and (role != "weights" or Path(spec.arg).is_file()):
        files[role] = Path(spec.arg).resolve()
    return files


def hash_inputs(
    files: Mapping[str, Path], known: Mapping[str, str] | None = None
) -> dict[str, dict[str, str]]:
    """``{role: {"path", "sha256"}}`` for ``files``; ``known`` gives digests already computed, by role.
    ValueError naming a file that does not exist."""
    hashes = {}
    for role, path in files.items():
        if not path.is_file():
            raise ValueError(f"{_ROLE_NAMES.get(role, role)} {str(path)!r} does not exist")
        digest = (known or {}).get(role) or sha256_file(path)
        hashes[role] = {"path": str(path), "sha256": digest}
    return hashes


def changed_inputs(
    recorded: Mapping[str, Mapping[str, str]], now: Mapping[str, Mapping[str, str]]
) -> list[str]:
    """One line per input whose content differs between two :func:`hash_inputs` records (the paths may
    differ: a relative path read from another folder is the same input when its content is)."""
    lines = []
    for role in sorted(set(recorded) | set(now)):
        name = _ROLE_NAMES.get(role, role)
        old, new = recorded.get(role), now.get(role)
        if old is None or new is None:
            lines.append(
                f"{name}: {old['path'] if old else 'none'} then, {new['path'] if new else 'none'} now"
            )
        elif old["sha256"] != new["sha256"]:
            where = new["path"] if old["path"] == new["path"] else f"{old['path']} (now {new['path']})"
            lines.append(
                f"the content of {name} {where} changed: SHA-256 {old['sha256']} when the generation "
                f"started, {new['sha256']} now"
            )
    return lines


def record_inputs(
    noise: str | NoiseSpec, model: str | os.PathLike | None, model_sha: str = ""
) -> dict[str, dict[str, str]]:
    """:func:`hash_inputs` of :func:`noise_input_files`; ``model_sha``: the checkpoint's digest if known."""
    return hash_inputs(noise_input_files(noise, model), known={"model": model_sha} if model_sha else None)


def require_unchanged(recorded: Mapping[str, Any] | None, now: Mapping[str, Any], where: os.PathLike) -> None:
    """ValueError naming each input whose content changed since ``recorded`` (None: an old record without
    inputs, nothing to compare); ``where`` is the partial output being resumed."""
    changed = changed_inputs(recorded, now) if recorded is not None else []
    if changed:
        raise ValueError(
            f"cannot resume: an input of the partial output in {where} changed since it started, so it would "
            f"mix two noise models ({'; '.join(changed)}); restore it, or --overwrite to start again"
        )
