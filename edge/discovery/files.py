"""Target discovery: static_configs and file_sd_configs (JSON or YAML, re-read on change).

Each job's discoverers yield TargetGroups; the shipper asks them every second
whether anything changed (cheap: a stat per file) and rebuilds the job's targets
when it did.
"""

from __future__ import annotations

import glob
import json
import logging
import time
from pathlib import Path
from typing import Any

import yaml

from .config import FileSDConfig, StaticConfig
from .group import TargetGroup

__all__ = ["Discoverer", "FileSD", "Static"]

log = logging.getLogger("ferryman.edge.discovery")


class Discoverer:
    """Yields target groups; ``changed()`` says whether to ask again."""

    def changed(self) -> bool:
        raise NotImplementedError

    def groups(self) -> list[TargetGroup]:
        raise NotImplementedError


class Static(Discoverer):
    def __init__(self, job: str, configs: tuple[StaticConfig, ...]) -> None:
        self._groups = [
            TargetGroup(
                f"static/{job}/{i}", tuple({"__address__": t} for t in c.targets), dict(c.labels)
            )
            for i, c in enumerate(configs)
        ]
        self._fresh = True

    def changed(self) -> bool:
        fresh, self._fresh = self._fresh, False
        return fresh

    def groups(self) -> list[TargetGroup]:
        return list(self._groups)


class FileSD(Discoverer):
    """Prometheus file_sd: lists of ``{targets: [...], labels: {...}}``; adds
    ``__meta_filepath``. A file that fails to parse keeps its last good content."""

    def __init__(self, config: FileSDConfig) -> None:
        self.config = config
        self._seen: dict[str, float] = {}
        self._content: dict[str, list[TargetGroup]] = {}
        self._refreshed = 0.0

    def changed(self) -> bool:
        files = sorted({p for pattern in self.config.files for p in glob.glob(pattern)})
        stamps = {}
        for path in files:
            try:
                stamps[path] = Path(path).stat().st_mtime
            except OSError:
                continue
        due = time.monotonic() - self._refreshed >= self.config.refresh_interval
        if stamps == self._seen and not due:
            return False
        self._seen = stamps
        self._refreshed = time.monotonic()
        for path in list(self._content):
            if path not in stamps:
                del self._content[path]
        for path in stamps:
            try:
                self._content[path] = self._read(path)
            except (OSError, ValueError, yaml.YAMLError) as exc:
                log.error("file_sd: cannot read %s (%s); keeping its previous targets", path, exc)
        return True

    def groups(self) -> list[TargetGroup]:
        return [g for path in sorted(self._content) for g in self._content[path]]

    @staticmethod
    def _read(path: str) -> list[TargetGroup]:
        text = Path(path).read_text()
        data: Any = json.loads(text) if path.endswith(".json") else yaml.safe_load(text)
        if data is None:
            return []
        if not isinstance(data, list):
            raise ValueError("expected a list of target groups")
        groups = []
        for i, item in enumerate(data):
            if not isinstance(item, dict) or not isinstance(item.get("targets", []), list):
                raise ValueError(f"group {i}: expected {{targets: [...], labels: {{...}}}}")
            labels = {str(k): str(v) for k, v in (item.get("labels") or {}).items()}
            labels["__meta_filepath"] = path
            groups.append(
                TargetGroup(
                    f"file/{path}/{i}",
                    tuple({"__address__": str(t)} for t in item["targets"]),
                    labels,
                )
            )
        return groups
