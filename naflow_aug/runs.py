"""Run directories, atomic writes and TOML configs: moved to :mod:`naflow_aug.runtime`.

This module re-exports their names so that ``from naflow_aug.runs import ...`` keeps working; new code
imports from ``naflow_aug.runtime`` (or its modules ``files``, ``configs``, ``rundir``, ``seeding``).
"""

from __future__ import annotations

from naflow_aug.runtime.configs import config_from_dict, config_to_dict, dumps_toml, read_toml
from naflow_aug.runtime.files import (
    atomic_torch_save,
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    check_writable,
    current_umask,
    fsync_dir,
    read_json,
    sha256_file,
)
from naflow_aug.runtime.rundir import RunDir
from naflow_aug.runtime.seeding import build_seeded

__all__ = [
    "RunDir",
    "fsync_dir",
    "atomic_torch_save",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "build_seeded",
    "check_writable",
    "config_from_dict",
    "config_to_dict",
    "current_umask",
    "dumps_toml",
    "read_json",
    "read_toml",
    "sha256_file",
]
