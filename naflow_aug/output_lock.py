"""One job per output: an exclusive lock (``fcntl.flock``) beside the output, held for the job's life.

Two jobs writing one output (even with ``--overwrite``) would delete each other's work and leave a file of
mixed samples. The lock file ``.<name>.lock`` holds the holder's PID, command line, host and start time, so
that a refused job can name it. The kernel drops the lock when its holder dies (``kill -9`` included), so a
stale lock file never blocks anyone; the holder removes the file when it is done.
"""

from __future__ import annotations

import fcntl
import json
import os
import shlex
import socket
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


class OutputInUseError(ValueError):
    """Another process holds the output's lock."""


def lock_path(out: str | os.PathLike) -> Path:
    """The lock file of output ``out``: ``.<name>.lock`` in the same folder."""
    out = Path(out)
    return out.with_name(f".{out.name}.lock")


@contextmanager
def output_lock(out: str | os.PathLike, job: str = "job") -> Iterator[Path]:
    """Hold the exclusive lock on ``out`` (its folder must exist) for the ``with`` block; OutputInUseError
    naming the holder (PID, command) when another process holds it."""
    path = lock_path(out)
    fd = _acquire(path, out, job)
    try:
        holder = {"pid": os.getpid(), "command": shlex.join(sys.argv), "host": socket.gethostname(),
                  "started": time.strftime("%Y-%m-%d %H:%M:%S %z")}  # fmt: skip
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps(holder).encode(), 0)
        yield path
    finally:
        try:
            os.unlink(path)  # while still locked: a process waiting on this file retries on a new one
        except FileNotFoundError:
            pass
        os.close(fd)


def _acquire(path: Path, out: str | os.PathLike, job: str) -> int:
    while True:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise OutputInUseError(
                f"output {out} is in use by another {job}: {_describe(holder)}; wait for it to finish or "
                f"stop it (--overwrite and --resume do not take over a running job; lock file {path})"
            ) from None
        except BaseException:
            os.close(fd)
            raise
        mine = os.fstat(fd)
        try:
            now = os.stat(path)
        except FileNotFoundError:
            now = None
        if now is not None and (now.st_dev, now.st_ino) == (mine.st_dev, mine.st_ino):
            return fd
        os.close(fd)  # its holder removed this file after we opened it: lock the file at the path now


def _read_holder(fd: int) -> dict[str, Any]:
    try:
        data = json.loads(os.pread(fd, 1 << 16, 0).decode("utf-8", "replace") or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _describe(holder: dict[str, Any]) -> str:
    if "pid" not in holder:
        return "a process that is starting (its PID is not written yet)"
    text = f"PID {holder['pid']}"
    if holder.get("host") and holder["host"] != socket.gethostname():
        text += f" on {holder['host']}"
    text += f", started {holder.get('started', '?')}, command: {holder.get('command', '?')}"
    return text
