"""Offline synthetic datasets: clean crops + model noise into HDF5, reproducible, resumable, sharded.

``generate(GenerateConfig(...))`` crops the images of a source folder (SIDD-Medium, a paired folder or a
clean-only folder) on a grid or at random, makes ``samples_per_crop`` noisy versions of each crop with a
noise function (the model's NAS from the crop's own real noisy counterpart, a configuration, random
configurations or a profile) and writes them to an HDF5 file (layout: ``naflow_aug.data.hdf5``).

Reproducibility: the work list (which crop is sample ``i``) is a pure function of the source folder and the
config, and sample ``i``'s noise seed is ``sample_seeds(seed, i)``, independent of batch size, number of
processes and interruptions. Samples are written in parts of ``part_size`` samples; batches never span
parts, so a part's bytes do not depend on which run or process made it. A killed run continues with
``resume=True``; under ``torchrun`` rank ``r`` makes parts ``p % world_size == r`` and rank 0 joins.

=================  ==========================================================================
module             what it holds
=================  ==========================================================================
``config``         :class:`GenerateConfig`
``plan``           :class:`Plan`, :func:`make_plan`: the deterministic work list
``noise``          :class:`NoiseFunction`, :class:`SourceNoise`, :func:`load_noise`
``batches``        crops read in threads, per-sample metadata
``parts``          the compute loop and the writer thread that commits part files
``resume``         existing outputs, ``plan.json`` agreement between ranks and runs, parts left
``job``            :func:`generate`, :class:`GenerateResult`
``verification``   :func:`verify`, :class:`VerifyReport`
=================  ==========================================================================

Seeds come from :mod:`naflow_aug.runtime.seeding`, the process group from
:mod:`naflow_aug.runtime.distributed`.
"""

from __future__ import annotations

from naflow_aug.data.sources import scan_source
from naflow_aug.generate.batches import read_rows
from naflow_aug.generate.config import GenerateConfig, SourceKind
from naflow_aug.generate.job import GenerateResult, generate, join_process_group
from naflow_aug.generate.noise import NoiseFunction, SourceNoise, load_noise
from naflow_aug.generate.plan import Plan, make_plan
from naflow_aug.generate.verification import VerifyReport, verify
from naflow_aug.runtime.seeding import sample_seeds

__all__ = [
    "GenerateConfig",
    "GenerateResult",
    "NoiseFunction",
    "Plan",
    "SourceKind",
    "SourceNoise",
    "VerifyReport",
    "generate",
    "join_process_group",
    "load_noise",
    "make_plan",
    "read_rows",
    "sample_seeds",
    "scan_source",
    "verify",
]
