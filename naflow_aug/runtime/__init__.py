"""The small runtime every long job (generate, train, bench, demo) stands on.

============================  =====================================================================
module                        what it holds
============================  =====================================================================
``runtime.distributed``       torchrun set-up/teardown: :class:`DistContext` (rank, world, local rank,
                              ``main``, ``barrier()``, ``all_min_()``, ``teardown()``),
                              :func:`setup_distributed`, :func:`process_group`, :func:`rank_device`,
                              :func:`current_context`, :func:`init_distributed`,
                              :func:`backend_for`
``runtime.seeding``           job-level seed derivations: :func:`sample_seeds`, :func:`derive_seed`,
                              :func:`numpy_generator`, :func:`step_generator`, :func:`epoch_generator`,
                              :func:`build_seeded`
``runtime.rundir``            :class:`RunDir`: ``config.toml``, ``metrics.jsonl``, ``results.json``
``runtime.files``             atomic writes, JSON reads that name the file, writability checks, hashes
``runtime.configs``           frozen dataclass configs to and from TOML (unknown keys refused)
============================  =====================================================================

The modules import nothing of the package but :mod:`naflow_aug.devices` (and each other), so any job
or library module can use them without an import circle. ``naflow_aug.runs`` re-exports the file,
config and run-directory names for code written before this package.
"""

from __future__ import annotations

from naflow_aug.runtime.configs import config_from_dict, config_to_dict, dumps_toml, read_toml
from naflow_aug.runtime.distributed import (
    DistContext,
    backend_for,
    current_context,
    init_distributed,
    process_group,
    rank_device,
    setup_distributed,
)
from naflow_aug.runtime.files import (
    atomic_torch_save,
    atomic_write,
    atomic_write_bytes,
    atomic_write_json,
    atomic_write_text,
    check_writable,
    read_json,
    sha256_file,
)
from naflow_aug.runtime.rundir import RunDir
from naflow_aug.runtime.seeding import (
    build_seeded,
    derive_seed,
    epoch_generator,
    numpy_generator,
    sample_seeds,
    step_generator,
)

__all__ = [
    "DistContext",
    "RunDir",
    "atomic_torch_save",
    "atomic_write",
    "atomic_write_bytes",
    "atomic_write_json",
    "atomic_write_text",
    "backend_for",
    "build_seeded",
    "check_writable",
    "config_from_dict",
    "config_to_dict",
    "current_context",
    "derive_seed",
    "dumps_toml",
    "epoch_generator",
    "init_distributed",
    "numpy_generator",
    "process_group",
    "rank_device",
    "read_json",
    "read_toml",
    "sample_seeds",
    "setup_distributed",
    "sha256_file",
    "step_generator",
]
