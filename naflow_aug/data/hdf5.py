"""Synthetic (clean, noisy) datasets in HDF5: crash-safe part writer, join, structural checks, and a reader.

Layout of a finished file (see README "HDF5 layout"), N samples of H x W pixels, K model classes:

- ``clean``, ``noisy``: uint8 (N, H, W, 3), chunked one sample per chunk, optionally lzf-compressed.
- ``meta/index`` int64 (N,) global sample index (0..N-1), ``meta/seed`` int64 (N,) the sample's noise
  seed, ``meta/crop`` int32 (N, 4) crop box (top, left, height, width) in the source image,
  ``meta/weights`` float32 (N, K) mixture weights over the model's classes, ``meta/source`` and
  ``meta/reference`` (N,) UTF-8 strings (source image path relative to the ``source_root`` attribute,
  and the real noisy counterpart used as the NAS reference, empty when none), ``meta/noise`` (N,) the
  noise mode (e.g. ``nas``, ``config:S6_03200``), ``meta/label`` (N,) the source's camera configuration
  where known (SIDD), else empty.
- attributes: ``layout_version``, ``library_version``, ``model``, ``model_sha256``, ``classes``,
  ``seed``, ``num_samples``, ``crop``, ``noise``, ``source_root``, ``config`` (JSON), ``command``
  (JSON), ``join`` (``copy`` or ``vds``) and, written last, ``complete`` = 1.

Files are written in parts (``<out>.parts/part-00012.h5``): each part is written under a temporary
name, flushed, fsynced, closed and renamed, so a part is visible only when complete and a ``kill -9``
never leaves a torn part behind. ``join_parts`` joins the parts into the output, again under a
temporary name that is renamed when the completion marker has been written.
"""

from __future__ import annotations

import errno
import glob
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import h5py
import numpy as np
import torch
from torch.utils.data import Dataset

from naflow_aug.images import to_float
from naflow_aug.runs import fsync_dir

log = logging.getLogger(__name__)

LAYOUT_VERSION = 1
COMPLETE_ATTR = "complete"
IMAGE_KEYS = ("clean", "noisy")
META_KEYS = ("index", "seed", "crop", "weights", "source", "reference", "noise", "label")
# HDF5 1.10 (Debian's hdf5-tools, h5py wheels of the last years) must read what we write.
LIBVER = ("earliest", "v110")
_STR = h5py.string_dtype("utf-8")
_STR_KEYS = ("source", "reference", "noise", "label")
_PART_RE = re.compile(r"^part-(\d{5,})\.h5$")


class DiskFullError(OSError):
    """The disk filled up while writing; completed parts are kept and the run can be resumed."""


def parts_dir(out: str | os.PathLike) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".parts")


def part_path(parts: Path, index: int) -> Path:
    return parts / f"part-{index:05d}.h5"


def _is_enospc(err: BaseException) -> bool:
    if isinstance(err, OSError) and err.errno == errno.ENOSPC:
        return True
    text = str(err)
    return "No space left" in text or "errno = 28" in text


def _fsync_path(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _dataset_options(height: int, width: int, compression: str | None) -> dict[str, Any]:
    if compression not in (None, "none", "lzf", "gzip"):
        raise ValueError(f"compression must be None, 'none', 'lzf' or 'gzip', got {compression!r}")
    options: dict[str, Any] = {"chunks": (1, height, width, 3)}
    if compression in ("lzf", "gzip"):
        options["compression"] = compression
    if compression == "gzip":
        options["compression_opts"] = 4
    return options


# ------------------------------------------------------------------------------------------ part writer


@dataclass
class PartWriter:
    """Writes one part: ``write`` rows in any order, then ``commit`` (atomic rename) or ``abort``.

    ``start`` is the global index of the part's first sample; ``n`` its number of samples.
    """

    path: Path
    start: int
    n: int
    height: int
    width: int
    num_classes: int
    compression: str | None = None
    written: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        self.file = h5py.File(self.tmp, "w", libver=LIBVER)
        opts = _dataset_options(self.height, self.width, self.compression)
        for key in IMAGE_KEYS:
            self.file.create_dataset(key, (self.n, self.height, self.width, 3), dtype=np.uint8, **opts)
        meta = self.file.create_group("meta")
        meta.create_dataset("index", (self.n,), dtype=np.int64)
        meta.create_dataset("seed", (self.n,), dtype=np.int64)
        meta.create_dataset("crop", (self.n, 4), dtype=np.int32)
        meta.create_dataset("weights", (self.n, self.num_classes), dtype=np.float32)
        for key in _STR_KEYS:
            meta.create_dataset(key, (self.n,), dtype=_STR)

    def write(self, offset: int, clean: np.ndarray, noisy: np.ndarray, meta: Mapping[str, Any]) -> None:
        """Rows ``offset .. offset + b``: images uint8 (b, H, W, 3), ``meta`` as in the layout."""
        b = len(clean)
        if offset < 0 or offset + b > self.n:
            raise ValueError(f"rows {offset}..{offset + b} outside part of {self.n} samples")
        self.file["clean"][offset : offset + b] = clean
        self.file["noisy"][offset : offset + b] = noisy
        for key in META_KEYS:
            self.file["meta"][key][offset : offset + b] = meta[key]
        self.written += b

    def commit(self) -> Path:
        if self.written != self.n:
            raise RuntimeError(f"part {self.path.name}: {self.written} of {self.n} rows written")
        self.file.attrs["start"] = self.start
        self.file.attrs["num_samples"] = self.n
        self.file.attrs[COMPLETE_ATTR] = 1
        self.file.flush()
        self.file.close()
        _fsync_path(self.tmp)
        os.replace(self.tmp, self.path)
        fsync_dir(self.path.parent)
        return self.path

    def abort(self) -> None:
        try:
            if self.file.id.valid:
                self.file.close()
        finally:
            self.tmp.unlink(missing_ok=True)


def read_part_info(path: Path) -> tuple[int, int] | None:
    """(start, num_samples) of a complete part, or None when the file is not a readable complete part."""
    try:
        with h5py.File(path, "r") as f:
            if int(f.attrs.get(COMPLETE_ATTR, 0)) != 1:
                return None
            n = int(f.attrs["num_samples"])
            if any(f[k].shape[0] != n for k in IMAGE_KEYS) or any(
                f["meta"][k].shape[0] != n for k in META_KEYS
            ):
                return None
            return int(f.attrs["start"]), n
    except (OSError, KeyError, ValueError):
        return None


def remove_stale_temporaries(parts: Path, indices: Sequence[int] | None = None) -> int:
    """Delete temporary part files left by a killed run (only of ``indices`` when given)."""
    removed = 0
    if not parts.is_dir():
        return 0
    wanted = None if indices is None else {f"part-{i:05d}.h5" for i in indices}
    for tmp in parts.glob(".part-*.tmp"):
        name = tmp.name[1:].rsplit(".", 2)[0]
        if wanted is None or name in wanted:
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


def remove_stale_join_temporaries(out: str | os.PathLike) -> int:
    """Delete the temporary outputs ``.<out name>.<pid>.tmp`` of joins that a killed run left behind."""
    out = Path(out)
    removed = 0
    for tmp in out.parent.glob(f".{glob.escape(out.name)}.*.tmp"):
        if tmp.name[len(out.name) + 2 : -4].isdigit():
            tmp.unlink(missing_ok=True)
            removed += 1
    return removed


# ------------------------------------------------------------------------------------------------- join


def join_parts(
    out: str | os.PathLike,
    part_files: Sequence[Path],
    attrs: Mapping[str, Any],
    *,
    mode: Literal["copy", "vds"] = "copy",
) -> Path:
    """Join complete parts (in order) into ``out``; the completion marker is written last, then renamed.

    ``copy`` copies every chunk into one self-contained file (chunks are copied as stored, no
    recompression). ``vds`` makes ``clean``/``noisy`` HDF5 virtual datasets referring to the parts by a
    path relative to ``out``'s folder (so ``<out>.parts/`` must stay beside the file); metadata is copied.
    """
    if mode not in ("copy", "vds"):
        raise ValueError(f"join mode must be 'copy' or 'vds', got {mode!r}")
    out = Path(out)
    infos = _check_part_sequence(part_files)
    total = sum(n for _start, n in infos)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.tmp")
    try:
        with h5py.File(tmp, "w", libver=LIBVER) as f:
            _write_joined(f, out, part_files, infos, total, mode)
            for key, value in attrs.items():
                f.attrs[key] = value
            f.attrs["join"] = mode
            f.attrs["num_samples"] = total
            f.flush()
            f.attrs[COMPLETE_ATTR] = 1  # last: a file with the marker is whole
        _fsync_path(tmp)
        os.replace(tmp, out)
        fsync_dir(out.parent)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if _is_enospc(err):
            raise DiskFullError(
                errno.ENOSPC,
                f"disk full while joining {len(part_files)} parts into {out}; the parts are kept: "
                "free some space and run again with --resume",
            ) from err
        raise
    return out


def _check_part_sequence(part_files: Sequence[Path]) -> list[tuple[int, int]]:
    """Each part's (first sample, samples); refused unless every part is complete and they follow on."""
    if not part_files:
        raise ValueError("no parts to join")
    infos = []
    for p in part_files:
        info = read_part_info(p)
        if info is None:
            raise ValueError(f"{p} is not a complete part")
        infos.append(info)
    expected = 0
    for p, (start, n) in zip(part_files, infos, strict=True):
        if start != expected:
            raise ValueError(
                f"{p} starts at sample {start}, expected {expected}: parts missing or out of order"
            )
        expected += n
    return infos


def _write_joined(
    f: h5py.File,
    out: Path,
    part_files: Sequence[Path],
    infos: Sequence[tuple[int, int]],
    total: int,
    mode: Literal["copy", "vds"],
) -> None:
    """The joined file's images (copied chunks, or virtual datasets over the parts) and metadata."""
    with h5py.File(part_files[0], "r") as f0:
        _, height, width, _ = f0["clean"].shape
        num_classes = f0["meta"]["weights"].shape[1]
        compression = f0["clean"].compression
    if mode == "copy":
        opts = _dataset_options(height, width, compression)
        shape = (total, height, width, 3)
        dsets = {k: f.create_dataset(k, shape, dtype=np.uint8, **opts) for k in IMAGE_KEYS}
    else:
        for key in IMAGE_KEYS:
            layout = h5py.VirtualLayout(shape=(total, height, width, 3), dtype=np.uint8)
            for p, (start, n) in zip(part_files, infos, strict=True):
                rel = os.path.relpath(p, out.parent)
                layout[start : start + n] = h5py.VirtualSource(rel, key, shape=(n, height, width, 3))
            f.create_virtual_dataset(key, layout, fillvalue=0)
    meta = f.create_group("meta")
    meta.create_dataset("index", (total,), dtype=np.int64)
    meta.create_dataset("seed", (total,), dtype=np.int64)
    meta.create_dataset("crop", (total, 4), dtype=np.int32)
    meta.create_dataset("weights", (total, num_classes), dtype=np.float32)
    for key in _STR_KEYS:
        meta.create_dataset(key, (total,), dtype=_STR)
    for p, (start, n) in zip(part_files, infos, strict=True):
        with h5py.File(p, "r") as src:
            for key in META_KEYS:
                meta[key][start : start + n] = src["meta"][key][...]
            if mode == "copy":
                for key in IMAGE_KEYS:
                    s_id, d_id = src[key].id, dsets[key].id
                    for i in range(n):
                        filter_mask, chunk = s_id.read_direct_chunk((i, 0, 0, 0))
                        d_id.write_direct_chunk((start + i, 0, 0, 0), chunk, filter_mask)


# ------------------------------------------------------------------------------------------ inspection


def is_complete(path: str | os.PathLike) -> bool:
    try:
        with h5py.File(path, "r") as f:
            return int(f.attrs.get(COMPLETE_ATTR, 0)) == 1
    except (OSError, ValueError):
        return False


def read_attrs(path: str | os.PathLike) -> dict[str, Any]:
    """File attributes as Python values (JSON attributes ``config``, ``command`` and ``inputs`` decoded)."""
    with h5py.File(path, "r") as f:
        attrs = {k: _plain(v) for k, v in f.attrs.items()}
    for key in ("config", "command", "inputs"):
        if isinstance(attrs.get(key), str):
            attrs[key] = json.loads(attrs[key])
    return attrs


def _plain(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.ndarray):
        return [_plain(v) for v in value.tolist()]
    if isinstance(value, np.generic):
        return value.item()
    return value


def missing_virtual_sources(dataset: h5py.Dataset, path: str | os.PathLike) -> list[tuple[str, Path]]:
    """(recorded name, resolved path) of each source file of a virtual dataset (of file ``path``) that does
    not exist: HDF5 would read zeros (the fill value) in its place. Relative names are resolved against the
    file's folder, as ``join_parts`` writes them. Empty for an ordinary dataset."""
    if not dataset.is_virtual:
        return []
    missing, seen = [], set()
    for vmap in dataset.virtual_sources():
        src = Path(vmap.file_name)
        src = src if src.is_absolute() else Path(path).parent / src
        if vmap.file_name not in seen and not src.is_file():
            missing.append((vmap.file_name, src))
        seen.add(vmap.file_name)
    return missing


def check_structure(path: str | os.PathLike) -> tuple[dict[str, Any], list[str]]:
    """Counts, completion marker, layout and metadata consistency; returns (summary, problems)."""
    path = Path(path)
    problems: list[str] = []
    summary: dict[str, Any] = {"path": str(path)}
    if not path.is_file():
        return summary, [f"{path} does not exist"]
    try:
        f = h5py.File(path, "r")
    except OSError as err:
        return summary, [f"{path} is not a readable HDF5 file: {err}"]
    with f:
        summary["complete"] = int(f.attrs.get(COMPLETE_ATTR, 0)) == 1
        if not summary["complete"]:
            problems.append("completion marker attribute 'complete' is missing: the file is unfinished")
        missing = [k for k in IMAGE_KEYS if k not in f] + [
            f"meta/{k}" for k in META_KEYS if f"meta/{k}" not in f
        ]
        if missing:
            return summary, [*problems, f"missing datasets {missing}"]
        clean, noisy = f["clean"], f["noisy"]
        n = clean.shape[0]
        summary["num_samples"] = n
        summary["shape"] = list(clean.shape[1:])
        summary["virtual"] = bool(clean.is_virtual)
        for key, d in (("clean", clean), ("noisy", noisy)):
            if d.dtype != np.uint8 or d.ndim != 4 or d.shape[3] != 3:
                problems.append(f"{key}: expected uint8 (N, H, W, 3), got {d.dtype} {d.shape}")
        if noisy.shape != clean.shape:
            problems.append(f"noisy shape {noisy.shape} differs from clean shape {clean.shape}")
        if int(f.attrs.get("num_samples", -1)) != n:
            problems.append(f"attribute num_samples={f.attrs.get('num_samples')} but {n} samples stored")
        for key in META_KEYS:
            if f["meta"][key].shape[0] != n:
                problems.append(f"meta/{key} has {f['meta'][key].shape[0]} rows, expected {n}")
        for d in (clean, noisy):
            for name, _ in missing_virtual_sources(d, path):
                problems.append(f"virtual source {name} of {d.name} is missing")
        if len(problems) > (0 if summary["complete"] else 1):  # layout broken: the rest cannot be read
            return summary, problems
        index = f["meta/index"][...]
        if not np.array_equal(index, np.arange(n)):
            problems.append("meta/index is not 0..N-1: duplicated or missing samples")
        classes = _plain(f.attrs.get("classes", []))
        weights = f["meta/weights"][...]
        if weights.shape[1] != len(classes):
            problems.append(f"meta/weights has {weights.shape[1]} columns but {len(classes)} class names")
        if n and not np.allclose(weights.sum(axis=1), 1.0, atol=1e-3):
            bad = int(np.argmax(np.abs(weights.sum(axis=1) - 1.0)))
            problems.append(f"mixture weights of sample {bad} sum to {weights[bad].sum():.4f}, not 1")
        if n and (weights < 0).any():
            problems.append("negative mixture weights")
        crop = f["meta/crop"][...]
        if n and not ((crop[:, 2] == clean.shape[1]).all() and (crop[:, 3] == clean.shape[2]).all()):
            problems.append("meta/crop sizes differ from the stored image size")
        if n and (crop[:, :2] < 0).any():
            problems.append("negative crop offsets")
        summary["classes"] = classes
    return summary, problems


# ----------------------------------------------------------------------------------------------- reader


def _check_pairs_file(path: Path, require_complete: bool) -> tuple[int, tuple[int, int]]:
    """(samples, (H, W)) of a file of pairs; ValueError for a missing, unfinished or foreign file and for a
    virtual file whose part files are missing (HDF5 would silently read zeros there)."""
    if not path.is_file():
        raise ValueError(f"HDF5 file {path} does not exist")
    with h5py.File(path, "r") as f:
        if require_complete and int(f.attrs.get(COMPLETE_ATTR, 0)) != 1:
            raise ValueError(f"{path} has no completion marker (unfinished generation); resume it first")
        if "clean" not in f or "noisy" not in f:
            raise ValueError(f"{path} lacks 'clean'/'noisy' datasets: not a naflow-aug HDF5 file")
        missing = sorted({str(src) for k in IMAGE_KEYS for _, src in missing_virtual_sources(f[k], path)})
        if missing:
            raise ValueError(
                f"{path} is a virtual (--join vds) file whose part files are missing: {', '.join(missing)}; "
                "keep its .parts folder beside it, or make a self-contained file with --join copy"
            )
        return int(f["clean"].shape[0]), tuple(f["clean"].shape[1:3])


def flat_samples(path: str | os.PathLike, key: str = "noisy", chunk: int = 64) -> list[int]:
    """Indices of the samples of ``key`` whose every value is the same (a black or grey image: what a
    model with NaN weights writes); reads the dataset in chunks of ``chunk`` samples."""
    flat: list[int] = []
    with h5py.File(path, "r") as f:
        data = f[key]
        for start in range(0, data.shape[0], chunk):
            rows = data[start : start + chunk].reshape(min(chunk, data.shape[0] - start), -1)
            same = (rows == rows[:, :1]).all(axis=1)
            flat.extend(start + int(i) for i in np.flatnonzero(same))
    return flat


class HDF5PairDataset(Dataset):
    """(clean, noisy) pairs from one or many generated HDF5 files, as ``dict(clean, noisy)`` float (3, h, w).

    Files are opened lazily in the process that reads (each DataLoader worker opens its own handles), so
    the dataset works with worker processes and ``DistributedSampler``. ``crop`` takes a random crop of
    that size and ``flips`` random horizontal/vertical flips, identical on both images; randomness comes
    from ``generator`` or torch's default generator (which DataLoader seeds per worker; a ``generator``
    given here is copied into every worker, so leave it None with ``num_workers > 0``).
    """

    def __init__(
        self,
        paths: str | os.PathLike | Sequence[str | os.PathLike],
        *,
        crop: int | None = None,
        flips: bool = False,
        require_complete: bool = True,
        generator: torch.Generator | None = None,
    ):
        if isinstance(paths, (str, os.PathLike)):
            paths = [paths]
        self.paths = [Path(p) for p in paths]
        if not self.paths:
            raise ValueError("HDF5PairDataset needs at least one file, got none")
        if crop is not None and (not isinstance(crop, int) or crop <= 0):
            raise ValueError(f"crop must be a positive int or None, got {crop!r}")
        self.crop, self.flips, self.generator = crop, flips, generator
        lengths, shapes = [], []
        for p in self.paths:
            n, shape = _check_pairs_file(p, require_complete)
            lengths.append(n)
            shapes.append(shape)
        if crop is not None:
            for p, (h, w) in zip(self.paths, shapes, strict=True):
                if crop > h or crop > w:
                    raise ValueError(f"crop {crop} is larger than the {h}x{w} samples of {p}")
        self.offsets = np.concatenate([[0], np.cumsum(lengths)]).astype(np.int64)
        self._files: list[h5py.File] | None = None
        self._pid: int | None = None

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def _open(self) -> list[h5py.File]:
        if self._files is None or self._pid != os.getpid():
            self._files = [h5py.File(p, "r") for p in self.paths]
            self._pid = os.getpid()
        return self._files

    def __getstate__(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["_files"], state["_pid"] = None, None
        return state

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        if index < 0:
            index += len(self)
        if not 0 <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} samples")
        k = int(np.searchsorted(self.offsets, index, side="right") - 1)
        f = self._open()[k]
        row = index - int(self.offsets[k])
        h, w = f["clean"].shape[1:3]
        if self.crop is None:
            window = (slice(0, h), slice(0, w))
        else:
            top = int(torch.randint(0, h - self.crop + 1, (1,), generator=self.generator))
            left = int(torch.randint(0, w - self.crop + 1, (1,), generator=self.generator))
            window = (slice(top, top + self.crop), slice(left, left + self.crop))
        clean = torch.from_numpy(f["clean"][(row, *window)])
        noisy = torch.from_numpy(f["noisy"][(row, *window)])
        pair = to_float(torch.stack([clean, noisy]).permute(0, 3, 1, 2))  # (2, 3, h, w)
        if self.flips:
            flip_h, flip_v = torch.rand(2, generator=self.generator) < 0.5
            if flip_h:
                pair = pair.flip(-1)
            if flip_v:
                pair = pair.flip(-2)
        return {"clean": pair[0].contiguous(), "noisy": pair[1].contiguous()}

    def close(self) -> None:
        if self._files is not None:
            for f in self._files:
                f.close()
        self._files = None
