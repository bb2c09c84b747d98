"""Run directories, atomic writes and TOML configs shared by the long jobs (train, generate, bench, demo).

A job writes one run directory: ``config.toml`` (what it was asked to do), ``metrics.jsonl`` (one JSON
object per logged step), checkpoints, figures and ``results.json``. Every file a crash could tear is
written atomically: to a temporary file in the same directory, flushed, fsynced, then renamed.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import math
import os
import stat
import tempfile
import tomllib
import types
import typing
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import torch

T = TypeVar("T")


# ----------------------------------------------------------------------------------------------- atomic


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
    _fsync_dir(path.parent)
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


def _fsync_dir(directory: Path) -> None:
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
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


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


def _json_default(obj: Any) -> Any:
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


# -------------------------------------------------------------------------------------------------- TOML


def dumps_toml(data: Mapping[str, Any]) -> str:
    """Serialise a mapping of scalars, lists and nested mappings (tables) to TOML."""
    lines: list[str] = []
    _dump_table(data, [], lines)
    return "\n".join(lines).strip() + "\n"


def _dump_table(data: Mapping[str, Any], prefix: list[str], lines: list[str]) -> None:
    tables = []
    for key, value in data.items():
        if value is None:
            continue
        if isinstance(value, Mapping):
            tables.append((key, value))
        else:
            lines.append(f"{_toml_key(key)} = {_toml_value(value)}")
    for key, value in tables:
        lines.append("")
        lines.append("[" + ".".join(_toml_key(k) for k in [*prefix, key]) + "]")
        _dump_table(value, [*prefix, key], lines)


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else json.dumps(key)


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, (str, Path)):
        return json.dumps(str(value))
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} ({value!r}) to TOML")


def read_toml(path: str | os.PathLike) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"config file {path} does not exist")
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as err:
        raise ValueError(f"{path} is not valid TOML: {err}") from err
    except RecursionError as err:
        raise ValueError(f"{path} is nested too deeply to read as TOML") from err


def config_from_dict(cls: type[T], data: Mapping[str, Any], *, where: str = "config") -> T:
    """Build the (frozen) dataclass ``cls`` from ``data``, rejecting unknown keys and wrong types.

    Nested dataclass fields are built from nested tables; tuples are accepted from TOML lists.
    """
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"{cls!r} is not a dataclass")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ValueError(f"{where}: unknown key(s) {unknown}; expected some of {sorted(fields)}")
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _coerce(hints[name], value, f"{where}.{name}")
    return cls(**kwargs)


def _coerce(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        if not isinstance(value, Mapping):
            raise TypeError(f"{where}: expected a table, got {value!r}")
        return config_from_dict(hint, value, where=where)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        errors = []
        for option in options:
            if option is type(None):
                continue
            try:
                return _coerce(option, value, where)
            except (TypeError, ValueError) as err:
                errors.append(str(err))
        raise TypeError(f"{where}: {value!r} does not fit {hint}")
    if origin is tuple:
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{where}: expected a list, got {value!r}")
        args = typing.get_args(hint)
        if len(args) == 2 and args[1] is Ellipsis:
            return tuple(_coerce(args[0], v, f"{where}[{i}]") for i, v in enumerate(value))
        if len(args) != len(value):
            raise ValueError(f"{where}: expected {len(args)} values, got {len(value)}")
        return tuple(_coerce(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value, strict=True)))
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise TypeError(f"{where}: expected a list, got {value!r}")
        (arg,) = typing.get_args(hint) or (Any,)
        return [_coerce(arg, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is typing.Literal:
        if value not in typing.get_args(hint):
            raise ValueError(f"{where}: expected one of {typing.get_args(hint)}, got {value!r}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise TypeError(f"{where}: expected a number, got {value!r}")
        return float(value)
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{where}: expected an integer, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise TypeError(f"{where}: expected true or false, got {value!r}")
        return value
    if hint is str:
        if not isinstance(value, str):
            raise TypeError(f"{where}: expected a string, got {value!r}")
        return value
    return value


def config_to_dict(config: Any) -> dict[str, Any]:
    """A dataclass config as plain TOML-writable data (tuples become lists)."""
    return json.loads(json.dumps(dataclasses.asdict(config), default=_json_default))


# --------------------------------------------------------------------------------------------- run dirs


class RunDir:
    """One job's output folder: ``config.toml``, ``metrics.jsonl``, ``results.json``, checkpoints, figures."""

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.path.mkdir(parents=True, exist_ok=True)

    def file(self, name: str) -> Path:
        return self.path / name

    @property
    def results_path(self) -> Path:
        return self.path / "results.json"

    @property
    def finished(self) -> bool:
        return self.results_path.is_file()

    def write_config(self, config: Mapping[str, Any] | Any) -> Path:
        data = config if isinstance(config, Mapping) else config_to_dict(config)
        return atomic_write_text(self.path / "config.toml", dumps_toml(data))

    def log(self, record: Mapping[str, Any]) -> None:
        """Append one JSON line to ``metrics.jsonl`` (line-buffered; a torn last line is skipped on read)."""
        with open(self.path / "metrics.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps(dict(record), default=_json_default) + "\n")

    def read_log(self) -> list[dict[str, Any]]:
        path = self.path / "metrics.jsonl"
        if not path.is_file():
            return []
        records = []
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                records.append(json.loads(line))
            except json.JSONDecodeError:
                continue
        return records

    def truncate_log(self, keep: Callable[[dict[str, Any]], bool]) -> None:
        """Keep only the records ``keep`` accepts (a resumed job drops what it will log again)."""
        records = [r for r in self.read_log() if keep(r)]
        atomic_write_text(self.path / "metrics.jsonl", "".join(json.dumps(r) + "\n" for r in records))

    def write_results(self, results: Mapping[str, Any]) -> Path:
        return atomic_write_json(self.results_path, results)


def build_seeded(factory: Callable[[], T], seed: int) -> T:
    """``factory()`` with torch's global RNG seeded by ``seed`` inside, and left as it was outside.

    Module constructors (``nn.init``) draw from the global RNG and take no generator, so initial weights
    that depend only on a seed need this; the caller's random state is not touched.
    """
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        return factory()
