"""Files a crash cannot tear: atomic writes (temporary file, flush, fsync, rename), JSON reads that name
the file, early writability checks, and file hashes. Shared by every job and by the data and noise code.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import os
import stat
import tempfile
import typing
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch


def atomic_write(path: str | os.PathLike, write: Callable[[typing.BinaryIO], None]) -> Path:
    """Write ``path`` through ``write(fileobj)`` so that readers see the old file or the whole new one."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    mode = _new_file_mode(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, mode)  # mkstemp makes 0600: a plain open() would honour the umask
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def _new_file_mode(path: Path) -> int:
    """The mode the written file gets: an existing file's own, else what ``open(path, "w")`` would give."""
    try:
        return stat.S_IMODE(os.stat(path).st_mode)
    except FileNotFoundError:
        return 0o666 & ~current_umask()


def current_umask() -> int:
    """The process umask, read without changing it where Linux tells it (os.umask can only swap)."""
    try:
        with open("/proc/self/status", encoding="ascii") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError, IndexError):
        pass
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def fsync_dir(directory: Path) -> None:
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:  # not every platform can open a directory
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    return atomic_write(path, lambda f: f.write(data))


def atomic_write_text(path: str | os.PathLike, text: str) -> Path:
    return atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | os.PathLike, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=json_default) + "\n")


def atomic_torch_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save`` that never leaves a torn checkpoint behind."""
    buffer = io.BytesIO()
    torch.save(obj, buffer)
    return atomic_write_bytes(path, buffer.getvalue())


def read_json(path: str | os.PathLike, what: str = "JSON file") -> Any:
    """The JSON document in ``path``; ValueError naming the file when it is missing, not UTF-8 JSON or
    nested too deeply for the parser (which would otherwise escape as RecursionError)."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError as err:
        raise ValueError(f"{what} {str(path)!r} does not exist") from err
    except IsADirectoryError as err:
        raise ValueError(f"{what} {str(path)!r} is a directory, not a file") from err
    except UnicodeDecodeError as err:
        raise ValueError(f"{what} {str(path)!r} is not UTF-8 text: {err}") from err
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        raise ValueError(f"{what} {str(path)!r} is not valid JSON: {err}") from err
    except RecursionError as err:
        raise ValueError(f"{what} {str(path)!r} is nested too deeply to read") from err


def check_writable(path: str | os.PathLike, kind: typing.Literal["file", "dir"] = "file") -> Path:
    """Fail early, before any work, when ``path`` (a file or a folder to be made) cannot be written.

    Nothing is created: the nearest existing folder on the way is probed with a temporary file (an
    access() check would say yes to root on a read-only file system). ValueError names the path and why.
    """
    path = Path(path)
    if path.exists():
        if kind == "dir" and not path.is_dir():
            raise ValueError(f"output folder {str(path)!r} exists and is not a folder")
        if kind == "file" and path.is_dir():
            raise ValueError(f"output file {str(path)!r} is a folder")
    probe_in = path if kind == "dir" and path.is_dir() else path.parent
    while not probe_in.exists():
        probe_in = probe_in.parent
    if not probe_in.is_dir():
        raise ValueError(f"cannot write {str(path)!r}: {str(probe_in)!r} is not a folder")
    try:
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", dir=probe_in)
        os.close(fd)
        os.unlink(probe)
    except OSError as err:
        raise ValueError(
            f"cannot write {str(path)!r}: {str(probe_in)!r} is not writable ({err.strerror or err})"
        ) from err
    return path


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def json_default(obj: Any) -> Any:
    """``json.dumps(default=...)`` for paths, tensors, dataclasses and numpy values."""
    if isinstance(obj, Path):
        return str(obj)
    if isinstance(obj, torch.Tensor):
        return obj.tolist()
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return dataclasses.asdict(obj)
    if hasattr(obj, "item"):  # numpy scalars
        return obj.item()
    if hasattr(obj, "tolist"):  # numpy arrays
        return obj.tolist()
    raise TypeError(f"cannot serialise {type(obj).__name__} to JSON")

