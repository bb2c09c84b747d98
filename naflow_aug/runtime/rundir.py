"""Run directories: one job's output folder (``config.toml``, ``metrics.jsonl``, ``results.json``,
checkpoints, figures), every file a crash could tear written atomically."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from naflow_aug.runtime.configs import config_to_dict, dumps_toml
from naflow_aug.runtime.files import atomic_write_json, atomic_write_text, json_default


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
            f.write(json.dumps(dict(record), default=json_default) + "\n")

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
