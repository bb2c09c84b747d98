"""naflow_aug.output_lock: one job per output, the holder named, stale lock files harmless."""

from __future__ import annotations

import os
import re

import pytest

from naflow_aug.output_lock import OutputInUseError, lock_path, output_lock


def test_second_holder_is_refused_and_named(tmp_path) -> None:
    out = tmp_path / "o.h5"
    with output_lock(out, "generate") as path:
        assert path == lock_path(out) == tmp_path / ".o.h5.lock" and path.is_file()
        # flock locks belong to an open file: a second open in this process is refused like another process
        busy = rf"in use by another generate: PID {os.getpid()}, started"
        with pytest.raises(OutputInUseError, match=busy):
            with output_lock(out, "generate"):
                pass
        with pytest.raises(ValueError, match=re.escape(str(path))):
            with output_lock(out, "generate"):
                pass
    assert not lock_path(out).exists()  # released and removed
    with output_lock(out):
        pass


def test_stale_lock_file_does_not_block(tmp_path) -> None:
    out = tmp_path / "o.h5"
    lock_path(out).write_text('{"pid": 999999999, "command": "killed -9"}')  # its holder died: no lock
    with output_lock(out) as path:
        assert f'"pid": {os.getpid()}' in path.read_text()
    lock_path(out).write_text("not json")
    with output_lock(out):
        pass
