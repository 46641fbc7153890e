"""Where the local stack keeps its downloads, builds, data, logs and state.

Everything lives under one home directory, ``$FERRYMAN_HOME`` (default
``~/.cache/ferryman``), outside the repository so that a fresh clone on the same
machine reuses every download and build.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Layout", "default_layout"]

ASSETS = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Layout:
    """Directory layout of the stack home.

    ``opt``  installed services (one folder per service and version),
    ``bin``  binaries built from Go modules,
    ``data`` service data, ``logs`` service output, ``run`` the state file.
    """

    home: Path

    @property
    def opt(self) -> Path:
        return self.home / "opt"

    @property
    def bin(self) -> Path:
        return self.home / "bin"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    @property
    def run(self) -> Path:
        return self.home / "run"

    @property
    def state_file(self) -> Path:
        return self.run / "stack.json"

    def data(self, service: str) -> Path:
        return self.home / "data" / service

    def conf(self, service: str) -> Path:
        return self.home / "conf" / service

    def log(self, service: str) -> Path:
        return self.logs / f"{service}.log"

    def ensure(self) -> None:
        for path in (self.opt, self.bin, self.logs, self.run):
            path.mkdir(parents=True, exist_ok=True)


def default_layout() -> Layout:
    """The layout under ``$FERRYMAN_HOME``, default ``~/.cache/ferryman``."""
    home = os.environ.get("FERRYMAN_HOME") or str(Path.home() / ".cache" / "ferryman")
    return Layout(Path(home).expanduser().resolve())
