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
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import hashlib
import json
import logging
import os
import queue
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal, Protocol

import h5py
import numpy as np
import torch
from tqdm.auto import tqdm

import naflow_aug
from naflow_aug.data import hdf5
from naflow_aug.data.images import image_size, read_image
from naflow_aug.data.pairs import UNLABELLED, Pair
from naflow_aug.data.sources import scan_source
from naflow_aug.images import samples_to_hwc, to_float
from naflow_aug.noise.registry import NoiseSpec, make_noise_source, parse_noise_spec
from naflow_aug.noise_inputs import record_inputs, require_unchanged
from naflow_aug.output_lock import output_lock
from naflow_aug.runs import atomic_write_json

log = logging.getLogger(__name__)

SourceKind = Literal["auto", "sidd", "paired", "clean"]
# Config fields that do not change what the samples are (everything else must match on --resume).
_RUN_ONLY_FIELDS = ("out", "resume", "overwrite", "progress", "device", "join")


# ---------------------------------------------------------------------------------------------- config


@dataclass(frozen=True)
class GenerateConfig:
    """What to generate. ``model`` is a bundled name or a checkpoint path; ``noise`` one of ``nas`` (needs a
    paired source: each crop's own real noisy counterpart is the reference), ``random``,
    ``config:<phone>_<ISO>``, ``profile:<path.json>``, ``weights:<file or comma list>``."""

    out: str
    source: str
    model: str = "sidd-mini"
    source_kind: SourceKind = "auto"
    noise: str = "nas"
    crop: int = 256
    crops: Literal["grid", "random"] = "grid"
    stride: int | None = None  # grid step in pixels (default: crop, non-overlapping)
    crops_per_image: int = 1  # random crops per image
    samples_per_crop: int = 1
    seed: int = 0
    batch_size: int = 8
    part_size: int = 64
    max_images: int | None = None
    device: str | None = None  # None: the CPU; "auto": CUDA when available; "cuda", "cuda:1", ...
    compression: Literal["none", "lzf", "gzip"] = "none"
    join: Literal["copy", "vds"] = "copy"
    resume: bool = False
    overwrite: bool = False
    progress: bool = True

    def __post_init__(self) -> None:
        for name in ("crop", "crops_per_image", "samples_per_crop", "batch_size", "part_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name} must be a positive integer, got {value!r}")
        if self.stride is not None and (not isinstance(self.stride, int) or self.stride <= 0):
            raise ValueError(f"stride must be a positive integer or None, got {self.stride!r}")
        if self.max_images is not None and (not isinstance(self.max_images, int) or self.max_images <= 0):
            raise ValueError(f"max_images must be a positive integer or None, got {self.max_images!r}")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int) or not 0 <= self.seed < 2**63:
            raise ValueError(f"seed must be an integer in [0, 2**63), got {self.seed!r}")
        checks = {
            "source_kind": ("auto", "sidd", "paired", "clean"),
            "crops": ("grid", "random"),
            "compression": ("none", "lzf", "gzip"),
            "join": ("copy", "vds"),
        }
        for name, allowed in checks.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{name} must be one of {allowed}, got {getattr(self, name)!r}")
        if self.resume and self.overwrite:
            raise ValueError("resume and overwrite exclude each other; choose one")
        if not self.out:
            raise ValueError("out must name the output .h5 file")

    def content(self) -> dict[str, Any]:
        """The fields that decide the samples' bytes (compared on resume)."""
        data = dataclasses.asdict(self)
        for name in _RUN_ONLY_FIELDS:
            data.pop(name)
        data["source"] = str(Path(self.source).resolve())
        return data


# ------------------------------------------------------------------------------------------- randomness


_MASK64 = (1 << 64) - 1


def _splitmix64(x: np.ndarray) -> np.ndarray:
    x = (x + np.uint64(0x9E3779B97F4A7C15)) & np.uint64(_MASK64)
    x = ((x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)) & np.uint64(_MASK64)
    x = ((x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)) & np.uint64(_MASK64)
    return x ^ (x >> np.uint64(31))


def sample_seeds(seed: int, indices: Sequence[int] | np.ndarray) -> np.ndarray:
    """Sample ``i``'s noise seed (int64 >= 0): a pure function of the global seed and ``i``."""
    idx = np.asarray(indices, dtype=np.uint64)
    with np.errstate(over="ignore"):
        base = _splitmix64(np.array([seed], dtype=np.uint64))[0]
        mixed = _splitmix64(idx ^ base)
    return (mixed >> np.uint64(1)).astype(np.int64)


# ---------------------------------------------------------------------------------------------- sources


def _relative(path: Path, root: Path) -> str:
    return os.path.relpath(path, root)


# --------------------------------------------------------------------------------------------- the plan


@dataclass(frozen=True)
class Plan:
    """The deterministic work list: sample ``i`` is crop (``top[i]``, ``left[i]``) of image ``image[i]``."""

    root: Path
    images: list[Pair]
    image: np.ndarray  # (N,) int32 index into images
    top: np.ndarray  # (N,) int32
    left: np.ndarray  # (N,) int32
    crop: int
    part_size: int
    seed: int

    @property
    def num_samples(self) -> int:
        return int(self.image.shape[0])

    @property
    def num_parts(self) -> int:
        return -(-self.num_samples // self.part_size)

    def part_range(self, part: int) -> tuple[int, int]:
        start = part * self.part_size
        return start, min(start + self.part_size, self.num_samples)

    def digest(self) -> str:
        h = hashlib.sha256()
        for rec in self.images:
            noisy = _relative(rec.noisy_path, self.root) if rec.noisy_path else ""
            h.update(f"{_relative(rec.clean_path, self.root)}|{noisy}\n".encode())
        for arr in (self.image, self.top, self.left):
            h.update(np.ascontiguousarray(arr).tobytes())
        return h.hexdigest()


def make_plan(config: GenerateConfig) -> Plan:
    """Scan the source and lay out every sample (image, crop box) in a fixed order (reads headers only)."""
    source = Path(config.source).resolve()
    images = scan_source(source, config.source_kind)
    root = source.parent if source.is_file() else source  # a manifest's paths are relative to its folder
    if config.max_images is not None:
        images = images[: config.max_images]
    c, stride = config.crop, config.stride or config.crop
    image_ids, tops, lefts = [], [], []
    for j, rec in enumerate(images):
        h, w = image_size(rec.clean_path)
        if rec.noisy_path is not None and image_size(rec.noisy_path) != (h, w):
            raise ValueError(
                f"{rec.noisy_path} is {image_size(rec.noisy_path)} but its clean image {rec.clean_path} is "
                f"{(h, w)}"
            )
        if c > h or c > w:
            raise ValueError(
                f"crop {c} is larger than image {rec.clean_path} ({h}x{w}); choose crop <= {min(h, w)}"
            )
        if config.crops == "grid":
            boxes = [(t, left) for t in range(0, h - c + 1, stride) for left in range(0, w - c + 1, stride)]
        else:
            rng = np.random.Generator(np.random.PCG64(np.random.SeedSequence([config.seed, j, 0x5EED])))
            boxes = list(
                zip(
                    rng.integers(0, h - c + 1, config.crops_per_image).tolist(),
                    rng.integers(0, w - c + 1, config.crops_per_image).tolist(),
                    strict=True,
                )
            )
        for t, left in boxes:
            for _ in range(config.samples_per_crop):
                image_ids.append(j)
                tops.append(t)
                lefts.append(left)
    return Plan(
        root=root,
        images=images,
        image=np.asarray(image_ids, dtype=np.int32),
        top=np.asarray(tops, dtype=np.int32),
        left=np.asarray(lefts, dtype=np.int32),
        crop=c,
        part_size=config.part_size,
        seed=config.seed,
    )


# --------------------------------------------------------------------------------------- noise functions


class NoiseFunction(Protocol):
    """Makes noise for a batch: ``(clean (B,3,H,W) in [0,1], reference (B,3,H,W) or None, seeds (B,) int64,
    labels (B names) or None) -> (noisy (B,3,H,W) in [0,1], weights (B,K) float)``; item ``b`` depends only
    on its own inputs and ``seeds[b]``. ``classes`` names the K weights; ``mode`` is recorded per sample."""

    mode: str
    classes: Sequence[str]
    needs_reference: bool
    device: torch.device

    def __call__(
        self,
        clean: torch.Tensor,
        reference: torch.Tensor | None,
        seeds: torch.Tensor,
        labels: Sequence[str] | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


class SourceNoise:
    """A noise source of ``naflow_aug.noise`` (any ``--noise`` spelling) as a noise function.

    Model sources record their mixture weights over the model's classes; baselines that pick a
    configuration record it one-hot; sources without classes (``gaussian:<sigma>``, ``real``, the
    albumentations ones) record one pseudo-class named after the source, with weight 1.
    """

    def __init__(self, source: Any):
        from naflow_aug.noise.baseline_sources import BaselineSource

        self.source = source
        self.mode = source.spec
        self.needs_reference = bool(source.needs_reference)
        model = getattr(source, "model", None)
        self.device = next(model.parameters()).device if model is not None else torch.device("cpu")
        self.classes = list(source.classes) if source.classes else [source.spec]
        self._use_labels = isinstance(source, BaselineSource)

    def __call__(self, clean, reference, seeds, labels=None):
        if self._use_labels and labels is not None and any(label is None for label in labels):
            labels = None
        noisy, params = self.source(
            clean, reference=reference, configs=labels if self._use_labels else None, seeds=seeds
        )
        if params.weights is not None:
            weights = params.weights
        elif params.configs is not None:
            weights = torch.zeros(len(seeds), len(self.classes))
            weights[torch.arange(len(seeds)), [self.classes.index(c) for c in params.configs]] = 1.0
        else:
            weights = torch.ones(len(seeds), 1)
        return noisy, weights


def load_noise(
    model: str, noise: str | NoiseSpec, device: str | torch.device | None
) -> tuple[SourceNoise, str]:
    """The noise function for ``noise`` (loading ``model``, a bundled name or a checkpoint path, when the
    source needs one) and the model checkpoint's SHA-256 ("" for sources without a model)."""
    spec = parse_noise_spec(noise)
    if not spec.needs_model:
        return SourceNoise(make_noise_source(spec, device=device)), ""
    loaded = naflow_aug.load(model, device=device)
    source = make_noise_source(spec, loaded, device=device)
    return SourceNoise(source), str(getattr(loaded, "checkpoint_sha256", ""))


# ------------------------------------------------------------------------------------------ the pipeline


@dataclass
class _Batch:
    part: int
    offset: int  # row in the part
    indices: np.ndarray  # global sample indices
    clean: np.ndarray  # (b, c, c, 3) uint8
    reference: np.ndarray | None
    meta: dict[str, Any]


def _crop(image: np.ndarray, top: int, left: int, c: int) -> np.ndarray:
    return image[top : top + c, left : left + c]


_DECODE_THREADS = max(1, min(4, (os.cpu_count() or 1) // 2))


def _load_pair(rec: Pair, with_reference: bool) -> tuple[np.ndarray, np.ndarray | None]:
    return read_image(rec.clean_path), (read_image(rec.noisy_path) if with_reference else None)


def _read_rows(
    plan: Plan,
    indices: np.ndarray,
    with_reference: bool,
    cache: dict[str, Any],
    pool: ThreadPoolExecutor | None = None,
) -> tuple[np.ndarray, np.ndarray | None]:
    """Crops of samples ``indices``. Images are decoded a few at a time (in ``pool``'s threads; PNG decoding
    releases the GIL) and dropped once cropped, except the last one, kept in ``cache`` for the next batch:
    at most ``pool threads + 1`` images are held, whatever their size."""
    c = plan.crop
    clean = np.empty((len(indices), c, c, 3), dtype=np.uint8)
    reference = np.empty_like(clean) if with_reference else None
    rows_of: dict[int, list[int]] = {}
    for row, i in enumerate(indices):
        rows_of.setdefault(int(plan.image[i]), []).append(row)
    order = list(rows_of)  # images in order of first use; the last one is kept for the next batch
    step = _DECODE_THREADS if pool is not None else 1
    for k in range(0, len(order), step):
        chunk = order[k : k + step]
        todo = [j for j in chunk if cache.get("j") != j]
        if pool is not None and len(todo) > 1:
            loaded = dict(
                zip(todo, pool.map(lambda j: _load_pair(plan.images[j], with_reference), todo), strict=True)
            )
        else:
            loaded = {j: _load_pair(plan.images[j], with_reference) for j in todo}
        for j in chunk:
            image, noisy = (cache["clean"], cache["noisy"]) if cache.get("j") == j else loaded[j]
            for row in rows_of[j]:
                i = indices[row]
                t, left = int(plan.top[i]), int(plan.left[i])
                clean[row] = _crop(image, t, left, c)
                if reference is not None:
                    reference[row] = _crop(noisy, t, left, c)
        last = chunk[-1]
        if cache.get("j") != last:
            cache.clear()
            cache.update(j=last, clean=loaded[last][0], noisy=loaded[last][1])
        del loaded
    return clean, reference


def _batches(
    plan: Plan, parts: Sequence[int], batch_size: int, with_reference: bool, mode: str
) -> Iterator[_Batch]:
    cache: dict[str, Any] = {}
    with ThreadPoolExecutor(_DECODE_THREADS, thread_name_prefix="naflow-aug-decode") as pool:
        yield from _batches_with(plan, parts, batch_size, with_reference, mode, cache, pool)


def _batches_with(
    plan: Plan,
    parts: Sequence[int],
    batch_size: int,
    with_reference: bool,
    mode: str,
    cache: dict[str, Any],
    pool: ThreadPoolExecutor,
) -> Iterator[_Batch]:
    for p in parts:
        start, stop = plan.part_range(p)
        for b0 in range(start, stop, batch_size):
            idx = np.arange(b0, min(b0 + batch_size, stop))
            clean, reference = _read_rows(plan, idx, with_reference, cache, pool)
            recs = [plan.images[int(plan.image[i])] for i in idx]
            meta = {
                "index": idx.astype(np.int64),
                "seed": sample_seeds(plan.seed, idx),
                "crop": np.stack(
                    [
                        plan.top[idx],
                        plan.left[idx],
                        np.full(len(idx), plan.crop),
                        np.full(len(idx), plan.crop),
                    ],
                    axis=1,
                ).astype(np.int32),
                "source": [_relative(r.clean_path, plan.root) for r in recs],
                "reference": [_relative(r.noisy_path, plan.root) if with_reference else "" for r in recs],
                "noise": [mode] * len(idx),
                "label": ["" if r.cls == UNLABELLED else r.cls for r in recs],
            }
            yield _Batch(p, b0 - start, idx, clean, reference, meta)


def _prefetch(iterator: Iterator[Any], maxsize: int) -> Iterator[Any]:
    """Run ``iterator`` in a thread, ``maxsize`` items ahead (image decoding overlaps compute)."""
    q: queue.Queue = queue.Queue(maxsize=maxsize)
    stop = threading.Event()
    done = object()

    def work() -> None:
        try:
            for item in iterator:
                while not stop.is_set():
                    try:
                        q.put(item, timeout=0.1)
                        break
                    except queue.Full:
                        continue
                if stop.is_set():
                    return
            q.put(done)
        except BaseException as err:  # handed to the consumer, raised there
            q.put(err)

    thread = threading.Thread(target=work, name="naflow-aug-reader", daemon=True)
    thread.start()
    try:
        while True:
            item = q.get()
            if item is done:
                return
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        thread.join(timeout=5)


class _Writer(threading.Thread):
    """Writes batches into parts from a bounded queue (writing overlaps compute); commits each full part."""

    def __init__(self, plan: Plan, parts: Path, num_classes: int, compression: str, maxsize: int = 4):
        super().__init__(name="naflow-aug-writer", daemon=True)
        self.plan, self.parts, self.num_classes = plan, parts, num_classes
        self.compression = None if compression == "none" else compression
        self.queue: queue.Queue = queue.Queue(maxsize=maxsize)
        self.error: BaseException | None = None
        self.stop = threading.Event()
        self.committed: list[int] = []
        self._current: hdf5.PartWriter | None = None
        self._current_part = -1

    def put(self, item: Any) -> None:
        while True:
            if self.error is not None:
                raise self._wrapped_error()
            try:
                self.queue.put(item, timeout=0.1)
                return
            except queue.Full:
                if not self.is_alive():
                    if self.error is not None:
                        raise self._wrapped_error() from None
                    raise RuntimeError("the writer thread stopped unexpectedly") from None
                continue

    def _wrapped_error(self) -> BaseException:
        err = self.error
        assert err is not None
        if isinstance(err, hdf5.DiskFullError):
            return err
        if hdf5._is_enospc(err):
            e = hdf5.DiskFullError(
                errno.ENOSPC,
                f"disk full while writing {self.parts}; completed parts are kept: free some space and "
                "run again with --resume",
            )
            e.__cause__ = err
            return e
        return err

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                try:
                    item = self.queue.get(timeout=0.1)
                except queue.Empty:
                    continue
                if item is None:
                    return
                batch, noisy = item
                if batch.part != self._current_part:
                    start, stop = self.plan.part_range(batch.part)
                    c = self.plan.crop
                    path = hdf5.part_path(self.parts, batch.part)
                    self._current = hdf5.PartWriter(
                        path, start, stop - start, c, c, self.num_classes, self.compression
                    )
                    self._current_part = batch.part
                assert self._current is not None
                self._current.write(batch.offset, batch.clean, noisy, batch.meta)
                if self._current.written == self._current.n:
                    self._current.commit()
                    self.committed.append(batch.part)
                    self._current, self._current_part = None, -1
        except BaseException as err:
            self.error = err
        finally:
            if self._current is not None:  # an unfinished part is never left behind
                self._current.abort()
                self._current, self._current_part = None, -1

    def finish(self) -> None:
        self.put(None)
        self.join()
        if self.error is not None:
            raise self._wrapped_error()


def _to_float_bchw(x: np.ndarray, device: torch.device) -> torch.Tensor:
    return to_float(torch.from_numpy(x).to(device, non_blocking=True).permute(0, 3, 1, 2))


def _run_parts(
    plan: Plan, todo: Sequence[int], noise_fn: NoiseFunction, parts: Path, config: GenerateConfig, desc: str
) -> int:
    writer = _Writer(plan, parts, len(noise_fn.classes), config.compression)
    writer.start()
    total = sum(plan.part_range(p)[1] - plan.part_range(p)[0] for p in todo)
    done = 0
    bar = tqdm(total=total, unit="sample", desc=desc, disable=not config.progress, dynamic_ncols=True)
    try:
        batches = _batches(plan, todo, config.batch_size, noise_fn.needs_reference, noise_fn.mode)
        for batch in _prefetch(batches, maxsize=2):
            clean = _to_float_bchw(batch.clean, noise_fn.device)
            reference = None if batch.reference is None else _to_float_bchw(batch.reference, noise_fn.device)
            seeds = torch.from_numpy(batch.meta["seed"])
            labels = [label or None for label in batch.meta["label"]]
            noisy, weights = noise_fn(clean, reference, seeds, labels)
            if not bool(torch.isfinite(noisy).all()):  # would be written as black images
                raise ValueError(f"the noise model made NaN/Inf samples (batch at sample {batch.indices[0]})")
            batch.meta["weights"] = weights.detach().float().cpu().numpy()
            writer.put((batch, samples_to_hwc(noisy)))
            done += len(batch.indices)
            bar.update(len(batch.indices))
        writer.finish()
    except BaseException:
        writer.stop.set()
        writer.join()
        raise
    finally:
        bar.close()
    return done


# ------------------------------------------------------------------------------------------ distributed


def _dist_setup() -> tuple[int, int, bool]:
    """(rank, world_size, created): joins the torchrun process group (gloo) when WORLD_SIZE > 1."""
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size(), False
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return 0, 1, False
    dist.init_process_group("gloo", timeout=timedelta(hours=12))
    return dist.get_rank(), dist.get_world_size(), True


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


def _resolve_device(device: str | None, world: int) -> str | None:
    """``auto``: CUDA when available, else the CPU; under torchrun plain ``cuda`` is ``cuda:LOCAL_RANK``."""
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "cpu"
    if device is not None and device.startswith("cuda") and ":" not in device and world > 1:
        return f"cuda:{int(os.environ.get('LOCAL_RANK', '0'))}"
    return device


# --------------------------------------------------------------------------------------------- generate


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
    """Generate ``config.out`` (see the module doc). ``noise_fn`` replaces the model (tests, custom noise);
    ``command`` (the CLI's argument list) is recorded in the file. Under torchrun every rank calls this."""
    t0 = time.perf_counter()
    out = Path(config.out)
    parts = hdf5.parts_dir(out)
    rank, world, created = _dist_setup()
    held = contextlib.ExitStack()
    try:
        _check_writable(out.parent, out)
        if rank == 0:  # the output is this job's for its life: a second job on it is refused
            held.enter_context(output_lock(out, "generate"))
        if out.exists():
            if not out.is_file():
                raise ValueError(f"output {out} exists and is not a file")
            if config.resume and hdf5.is_complete(out):
                done = hdf5.read_attrs(out)
                if _same_content(done.get("config"), config):
                    if rank == 0 and done.get("join") == "copy" and parts.exists():
                        shutil.rmtree(parts, ignore_errors=True)  # killed between the join and the clean-up
                    log.info("%s is already complete; nothing to do", out)
                    n = int(done.get("num_samples", 0))
                    return GenerateResult(out, n, 0, 0, 0, time.perf_counter() - t0, already_complete=True)
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

        inputs: dict[str, Any] = {}  # a given noise_fn: its maker vouches for it (and passes model_sha)
        if noise_fn is None:
            noise = parse_noise_spec(config.noise)
            noise_fn, sha = load_noise(config.model, noise, _resolve_device(config.device, world))
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
            "library_version": naflow_aug.__version__,
        }
        if rank == 0:
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
        _barrier(world)
        if rank != 0:
            _compare_plans(json.loads((parts / "plan.json").read_text(encoding="utf-8")), plan_doc, parts)

        mine = [p for p in range(plan.num_parts) if p % world == rank]
        todo = [p for p in mine if hdf5.read_part_info(hdf5.part_path(parts, p)) is None]
        hdf5.remove_stale_temporaries(parts, todo)
        for p in todo:  # a part file that exists but does not read as complete is redone, kept aside
            bad = hdf5.part_path(parts, p)
            if bad.exists():
                log.warning("part %s is unreadable; moving it aside and making it again", bad)
                os.replace(bad, bad.with_suffix(".h5.bad"))
        log.info(
            "rank %d/%d: %d samples in %d parts; %d of my %d parts to make",
            rank,
            world,
            plan.num_samples,
            plan.num_parts,
            len(todo),
            len(mine),
        )
        desc = "generate" if world == 1 else f"generate [rank {rank}]"
        made = _run_parts(plan, todo, noise_fn, parts, config, desc) if todo else 0
        _barrier(world)

        if rank == 0:
            attrs = {
                "layout_version": hdf5.LAYOUT_VERSION,
                "library_version": naflow_aug.__version__,
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
        _barrier(world)
        seconds = time.perf_counter() - t0
        return GenerateResult(out, plan.num_samples, plan.num_parts, len(todo), made, seconds)
    finally:
        held.close()
        if created:
            import torch.distributed as dist

            dist.destroy_process_group()


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


# ----------------------------------------------------------------------------------------------- verify


@dataclass
class VerifyReport:
    path: Path
    summary: dict[str, Any]
    problems: list[str]
    regenerated: int = 0
    max_abs_diff: int = 0
    exact: int = 0

    @property
    def ok(self) -> bool:
        return not self.problems


def verify(
    path: str | os.PathLike,
    *,
    regenerate: int = 0,
    seed: int = 0,
    noise_fn: NoiseFunction | None = None,
    device: str | None = None,
    tolerance: int = 1,
    batch_size: int = 8,
) -> VerifyReport:
    """Check a generated file: counts, completion marker, metadata consistency (indices, seeds derived from
    the recorded global seed, weights, crop boxes, noise mode, model hash) and, with ``regenerate=k``,
    re-make ``k`` random samples (chosen with ``seed``) from their recorded source crop and seed and compare:
    ``clean`` must be equal, ``noisy`` within ``tolerance`` grey levels (0 = byte-exact)."""
    for name, value in (("regenerate", regenerate), ("tolerance", tolerance)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise ValueError(f"{name} must be an integer >= 0, got {value!r}")
    path = Path(path)
    summary, problems = hdf5.check_structure(path)
    report = VerifyReport(path, summary, problems)
    if problems:
        return report
    attrs = hdf5.read_attrs(path)
    summary["attrs"] = {k: v for k, v in attrs.items() if k not in ("config", "command")}
    with h5py.File(path, "r") as f:
        n = f["clean"].shape[0]
        seeds = f["meta/seed"][...]
        if not np.array_equal(seeds, sample_seeds(int(attrs["seed"]), np.arange(n))):
            problems.append("meta/seed does not follow from the recorded global seed: samples are misplaced")
        modes = set(f["meta/noise"].asstr()[...].tolist())
        if modes - {attrs.get("noise")}:
            problems.append(
                f"meta/noise holds {sorted(modes)} but the file's noise mode is {attrs.get('noise')!r}"
            )
    flat = sorted(set(hdf5.flat_samples(path, "noisy")) - set(hdf5.flat_samples(path, "clean")))
    if flat:
        problems.append(f"{len(flat)} noisy samples are one flat colour (no noise: a model with NaN or "
                        f"broken weights?), e.g. sample(s) {flat[:5]}")  # fmt: skip
    if regenerate <= 0 or problems:
        return report
    if noise_fn is None:
        try:
            noise_fn, sha = load_noise(attrs["model"], attrs["noise"], _resolve_device(device, 1))
        except (ValueError, FileNotFoundError, OSError) as err:
            problems.append(f"cannot load the recorded model {attrs['model']!r} to regenerate: {err}")
            return report
        if attrs.get("model_sha256") and sha and sha != attrs["model_sha256"]:
            problems.append(
                f"model {attrs['model']!r} has SHA-256 {sha}, the file was made with {attrs['model_sha256']}"
            )
            return report
    if list(noise_fn.classes) != list(attrs.get("classes", [])):
        problems.append(
            f"noise function classes {list(noise_fn.classes)} differ from the file's {attrs.get('classes')}"
        )
        return report
    rng = np.random.default_rng(seed)
    picks = np.sort(rng.choice(n, size=min(regenerate, n), replace=False))
    root = Path(attrs["source_root"])
    max_diff, exact = 0, 0
    with h5py.File(path, "r") as f:
        for b0 in range(0, len(picks), batch_size):
            idx = picks[b0 : b0 + batch_size]
            crops = f["meta/crop"][idx]
            sources = f["meta/source"].asstr()[idx]
            references = f["meta/reference"].asstr()[idx]
            labels = [label or None for label in f["meta/label"].asstr()[idx]]
            clean_rows, ref_rows = [], []
            for (t, left, h, w), src, ref in zip(crops, sources, references, strict=True):
                if not (root / src).is_file():
                    problems.append(f"source image {root / src} of the file is missing; cannot regenerate")
                    return report
                clean_rows.append(read_image(root / src)[t : t + h, left : left + w])
                if noise_fn.needs_reference:
                    ref_rows.append(read_image(root / ref)[t : t + h, left : left + w])
            clean = np.stack(clean_rows)
            stored_clean, stored_noisy = f["clean"][idx], f["noisy"][idx]
            for i, a, b in zip(idx, clean, stored_clean, strict=True):
                if not np.array_equal(a, b):
                    problems.append(f"sample {i}: stored clean crop differs from its source crop")
            reference = _to_float_bchw(np.stack(ref_rows), noise_fn.device) if ref_rows else None
            seeds = torch.from_numpy(f["meta/seed"][idx])
            noisy, _ = noise_fn(_to_float_bchw(clean, noise_fn.device), reference, seeds, labels)
            if not bool(torch.isfinite(noisy).all()):
                problems.append(f"the regenerated noisy samples {idx.tolist()} hold NaN or Inf values")
                return report
            made = samples_to_hwc(noisy).astype(np.int16)
            for i, a, b in zip(idx, made, stored_noisy, strict=True):
                d = int(np.abs(a - b.astype(np.int16)).max())
                max_diff = max(max_diff, d)
                exact += int(d == 0)
                if d > tolerance:
                    problems.append(
                        f"sample {i}: regenerated noisy differs by up to {d} levels (tolerance {tolerance})"
                    )
    report.regenerated, report.max_abs_diff, report.exact = len(picks), max_diff, exact
    return report
