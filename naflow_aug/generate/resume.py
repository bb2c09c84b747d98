"""Resuming a generation: what an existing output or partial run means for this one, the plan that
every rank and every resumed run must agree on (``<out>.parts/plan.json``), and which parts are left."""

from __future__ import annotations

import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any

from naflow_aug.data import hdf5
from naflow_aug.generate.config import GenerateConfig
from naflow_aug.noise_inputs import require_unchanged
from naflow_aug.runtime.distributed import DistContext
from naflow_aug.runtime.files import atomic_write_json

log = logging.getLogger(__name__)


def finished_output(out: Path, parts: Path, config: GenerateConfig, ctx: DistContext) -> int | None:
    """The sample count of ``out`` when it is complete and was made with this config under ``resume``
    (None: there is work to do). ValueError when an existing output or partial run may not be touched."""
    if out.exists():
        if not out.is_file():
            raise ValueError(f"output {out} exists and is not a file")
        if config.resume and hdf5.is_complete(out):
            done = hdf5.read_attrs(out)
            if _same_content(done.get("config"), config):
                if ctx.main and done.get("join") == "copy" and parts.exists():
                    shutil.rmtree(parts, ignore_errors=True)  # killed between the join and the clean-up
                log.info("%s is already complete; nothing to do", out)
                return int(done.get("num_samples", 0))
            if not (parts / "plan.json").is_file():
                raise ValueError(
                    f"output {out} is complete but was made with other settings; use the same arguments "
                    "to check it, or --overwrite to replace it"
                )
            # else: an interrupted --overwrite run; its plan (compared below) decides
        elif not config.overwrite:
            raise ValueError(
                f"output {out} already exists; pass --overwrite to replace it"
                + ("" if config.resume else " or --resume to finish it")
            )
    if parts.exists() and not (config.resume or config.overwrite):
        raise ValueError(
            f"a partial generation of {out} exists in {parts}; pass --resume to finish it "
            "or --overwrite to start again"
        )
    return None


def agree_on_plan(out: Path, parts: Path, plan_doc: dict[str, Any], config: GenerateConfig,
                  ctx: DistContext) -> None:
    """Rank 0 clears what an interrupted run left, then writes ``plan.json`` or checks this run against
    it; the other ranks check theirs against it once it is there."""
    if ctx.main:
        if hdf5.remove_stale_join_temporaries(out):
            log.info("removed the temporary output of an interrupted join")
        if config.overwrite and parts.exists():
            shutil.rmtree(parts)
        parts.mkdir(parents=True, exist_ok=True)
        plan_file = parts / "plan.json"
        if plan_file.is_file():
            _compare_plans(json.loads(plan_file.read_text(encoding="utf-8")), plan_doc, parts)
        else:
            atomic_write_json(plan_file, plan_doc)
    ctx.barrier()
    if not ctx.main:
        _compare_plans(json.loads((parts / "plan.json").read_text(encoding="utf-8")), plan_doc, parts)


def parts_to_make(num_parts: int, parts: Path, ctx: DistContext) -> tuple[list[int], list[int]]:
    """(this rank's parts, those of them not complete on disk): rank ``r`` makes parts ``p % world == r``.
    Temporaries of the parts to make are removed; an unreadable part file is moved aside to be redone."""
    mine = [p for p in range(num_parts) if p % ctx.world == ctx.rank]
    todo = [p for p in mine if hdf5.read_part_info(hdf5.part_path(parts, p)) is None]
    hdf5.remove_stale_temporaries(parts, todo)
    for p in todo:  # a part file that exists but does not read as complete is redone, kept aside
        bad = hdf5.part_path(parts, p)
        if bad.exists():
            log.warning("part %s is unreadable; moving it aside and making it again", bad)
            os.replace(bad, bad.with_suffix(".h5.bad"))
    return mine, todo


def _same_content(recorded: Any, config: GenerateConfig) -> bool:
    if not isinstance(recorded, dict):
        return False
    try:
        return GenerateConfig(**recorded).content() == config.content()
    except (TypeError, ValueError):
        return False


def _compare_plans(old: dict[str, Any], new: dict[str, Any], parts: Path) -> None:
    require_unchanged(old.get("inputs"), new["inputs"], parts)  # first: it names the changed file
    keys = ["config", "num_samples", "num_parts", "work_digest", "classes", "model_sha256"]
    differ = [k for k in keys if old.get(k) != new.get(k)]
    if differ:
        detail = []
        if "config" in differ:
            a, b = old.get("config", {}), new.get("config", {})
            detail = [
                f"{k}: {a.get(k)!r} -> {b.get(k)!r}" for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)
            ]
        raise ValueError(
            f"cannot resume: the partial generation in {parts} was made with other settings "
            f"({', '.join(differ)}"
            + (f"; {'; '.join(detail)}" if detail else "")
            + "); use the same arguments, or --overwrite to start again"
        )
