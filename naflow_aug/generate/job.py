"""The generate job: checks, the plan every rank agrees on, this rank's parts, rank 0's join."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from naflow_aug._version import __version__
from naflow_aug.data import hdf5
from naflow_aug.generate.config import GenerateConfig
from naflow_aug.generate.noise import NoiseFunction, load_noise
from naflow_aug.generate.parts import run_parts
from naflow_aug.generate.plan import Plan, make_plan
from naflow_aug.generate.resume import agree_on_plan, finished_output, parts_to_make
from naflow_aug.noise.registry import parse_noise_spec
from naflow_aug.noise_inputs import record_inputs
from naflow_aug.output_lock import output_lock
from naflow_aug.runtime.distributed import DistContext, rank_device, setup_distributed

log = logging.getLogger(__name__)

# The ranks only meet at barriers (no tensors: gloo whatever the device), and the other ranks wait at
# the last one while rank 0 joins every part into the output, which can take hours.
_BARRIER_TIMEOUT = timedelta(hours=12)


def join_process_group(device: str | None = None) -> DistContext:
    """Join torchrun's group (gloo) when WORLD_SIZE > 1; the device is checked first."""
    return setup_distributed(device, backend="gloo", timeout=_BARRIER_TIMEOUT)


@dataclass(frozen=True)
class GenerateResult:
    out: Path
    num_samples: int
    parts_total: int
    parts_made: int  # by this process in this run
    samples_made: int
    seconds: float
    already_complete: bool = False

    @property
    def samples_per_s(self) -> float:
        return self.samples_made / self.seconds if self.seconds > 0 else 0.0


def _check_writable(folder: Path, out: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", dir=folder)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        if err.errno == errno.ENOSPC:
            raise hdf5.DiskFullError(errno.ENOSPC, f"disk full: cannot write beside {out}") from err
        raise PermissionError(
            err.errno or errno.EACCES,
            f"cannot write the output {out}: {folder} is not writable ({err.strerror or err})",
        ) from err


def generate(
    config: GenerateConfig,
    *,
    noise_fn: NoiseFunction | None = None,
    model_sha: str | None = None,
    command: Sequence[str] | None = None,
) -> GenerateResult:
    """Generate ``config.out`` (see the package doc). ``noise_fn`` replaces the model (tests, custom noise);
    ``command`` (the CLI's argument list) is recorded in the file. Under torchrun every rank calls this."""
    t0 = time.perf_counter()
    ctx = join_process_group(config.device)
    try:
        return _generate(config, ctx, noise_fn, model_sha, command, t0)
    finally:
        ctx.teardown()


def _generate(config: GenerateConfig, ctx: DistContext, noise_fn: NoiseFunction | None, model_sha: str | None,
              command: Sequence[str] | None, t0: float) -> GenerateResult:
    out = Path(config.out)
    parts = hdf5.parts_dir(out)
    _check_writable(out.parent, out)
    with contextlib.ExitStack() as held:
        if ctx.main:  # the output is this job's for its life: a second job on it is refused
            held.enter_context(output_lock(out, "generate"))
        done = finished_output(out, parts, config, ctx)
        if done is not None:
            return GenerateResult(out, done, 0, 0, 0, time.perf_counter() - t0, already_complete=True)

        inputs: dict[str, Any] = {}  # a given noise_fn: its maker vouches for it (and passes model_sha)
        if noise_fn is None:
            noise = parse_noise_spec(config.noise)
            noise_fn, sha = load_noise(config.model, noise, rank_device(config.device, ctx))
            model_sha = sha if model_sha is None else model_sha
            inputs = record_inputs(noise, config.model, sha)
        plan = make_plan(config)
        if noise_fn.needs_reference and any(rec.noisy_path is None for rec in plan.images):
            raise ValueError(
                f"noise {config.noise!r} needs each crop's real noisy counterpart, but {config.source} is a "
                "clean-only source; use random, config:<name> or profile:<file>"
            )
        plan_doc = {
            "config": config.content(),
            "num_samples": plan.num_samples,
            "num_parts": plan.num_parts,
            "work_digest": plan.digest(),
            "classes": list(noise_fn.classes),
            "model_sha256": model_sha or "",
            "inputs": inputs,
            "library_version": __version__,
        }
        agree_on_plan(out, parts, plan_doc, config, ctx)
        mine, todo = parts_to_make(plan.num_parts, parts, ctx)
        log.info("rank %d/%d: %d samples in %d parts; %d of my %d parts to make",
                 ctx.rank, ctx.world, plan.num_samples, plan.num_parts, len(todo), len(mine))  # fmt: skip
        desc = "generate" if ctx.world == 1 else f"generate [rank {ctx.rank}]"
        made = run_parts(plan, todo, noise_fn, parts, config, desc) if todo else 0
        ctx.barrier()
        if ctx.main:
            _join(out, parts, plan, config, noise_fn, model_sha, inputs, command)
        ctx.barrier()
        seconds = time.perf_counter() - t0
        return GenerateResult(out, plan.num_samples, plan.num_parts, len(todo), made, seconds)


def _join(out: Path, parts: Path, plan: Plan, config: GenerateConfig, noise_fn: NoiseFunction,
          model_sha: str | None, inputs: dict[str, Any], command: Sequence[str] | None) -> None:
    """Rank 0: every part into ``out`` with the file's attributes; the parts go once copied."""
    attrs = {
        "layout_version": hdf5.LAYOUT_VERSION,
        "library_version": __version__,
        "model": config.model,
        "model_sha256": model_sha or "",
        "inputs": json.dumps(inputs),
        "classes": list(noise_fn.classes),
        "seed": config.seed,
        "crop": config.crop,
        "noise": noise_fn.mode,
        "source_root": str(plan.root),
        "config": json.dumps(dataclasses.asdict(config)),
        "command": json.dumps(list(command) if command is not None else None),
    }
    files = [hdf5.part_path(parts, p) for p in range(plan.num_parts)]
    hdf5.join_parts(out, files, attrs, mode=config.join)
    if config.join == "copy":
        shutil.rmtree(parts, ignore_errors=True)
    log.info("wrote %s: %d samples", out, plan.num_samples)
