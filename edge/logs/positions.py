"""Where each file was read up to, and each journal's cursor, persisted so a restart
neither loses nor re-ships.

The file is replaced atomically (temp file, fsync, rename, fsync of the directory):
a crash leaves either the old or the new positions, never a torn file. Positions
are written only for lines Kafka acknowledged.

Format (``version`` 1): ``{"version": 1, "files": [...], "cursors": {key: cursor}}``.
``cursors`` (``journal/<job>`` → the journald cursor of the last entry acknowledged)
came later: files without it load with no cursors, and shippers that predate it
ignore it.
"""

from __future__ import annotations

import json
import os
import zlib
from dataclasses import dataclass
from pathlib import Path

__all__ = ["HEAD_BYTES", "Position", "Positions", "head_crc"]


@dataclass(frozen=True, slots=True)
class Position:
    """A file is identified by device and inode, so a rename keeps its position and a
    new file under the old name starts at zero."""

    path: str
    device: int
    inode: int
    offset: int
    #: crc32 of the file's first ``head_len`` bytes: a file truncated and rewritten
    #: (copytruncate) while we were away keeps its inode but not its head.
    head_crc: int = 0
    head_len: int = 0
    #: read-time anchors ``(start, end, ts)`` of lines not yet acknowledged (readclock)
    stamps: tuple[tuple[int, int, int], ...] = ()


class Positions:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._by_identity: dict[tuple[int, int], Position] = {}
        self._cursors: dict[str, str] = {}
        self._load()

    def _load(self) -> None:
        try:
            data = json.loads(self.path.read_text())
        except FileNotFoundError:
            return
        except ValueError as exc:
            # Only a file we did not write can be torn; keep it for inspection.
            self.path.rename(self.path.with_suffix(".corrupt"))
            raise ValueError(
                f"positions file {self.path} is not valid JSON ({exc}); "
                f"moved aside to {self.path.with_suffix('.corrupt')}"
            ) from None
        for item in data.get("files", []):
            position = Position(
                item["path"],
                item["device"],
                item["inode"],
                item["offset"],
                item.get("head_crc", 0),
                item.get("head_len", 0),
                tuple(tuple(s) for s in item.get("stamps", ())),
            )
            self._by_identity[(position.device, position.inode)] = position
        cursors = data.get("cursors") or {}
        self._cursors = {str(k): str(v) for k, v in cursors.items() if v}

    def get(self, device: int, inode: int) -> Position | None:
        return self._by_identity.get((device, inode))

    def set(self, position: Position) -> None:
        self._by_identity[(position.device, position.inode)] = position

    def forget(self, device: int, inode: int) -> None:
        self._by_identity.pop((device, inode), None)

    def all(self) -> list[Position]:
        return sorted(self._by_identity.values(), key=lambda p: p.path)

    def cursor(self, key: str) -> str | None:
        """The saved cursor of a non-file source (``journal/<job>``), or None."""
        return self._cursors.get(key)

    def set_cursor(self, key: str, cursor: str) -> None:
        self._cursors[key] = cursor

    def cursors(self) -> dict[str, str]:
        return dict(self._cursors)

    def save(self) -> None:
        payload = json.dumps(
            {
                "version": 1,
                "files": [
                    {
                        "path": p.path,
                        "device": p.device,
                        "inode": p.inode,
                        "offset": p.offset,
                        "head_crc": p.head_crc,
                        "head_len": p.head_len,
                        **({"stamps": [list(s) for s in p.stamps]} if p.stamps else {}),
                    }
                    for p in self.all()
                ],
                **({"cursors": dict(sorted(self._cursors.items()))} if self._cursors else {}),
            },
            indent=1,
        )
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        with tmp.open("w") as f:
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.path)
        directory = os.open(self.path.parent, os.O_RDONLY)
        try:
            os.fsync(directory)
        finally:
            os.close(directory)


HEAD_BYTES = 256


def head_crc(path: str, length: int) -> int | None:
    """crc32 of the first ``length`` bytes of ``path``; None if it has fewer."""
    try:
        with open(path, "rb") as f:
            data = f.read(length)
    except OSError:
        return None
    return zlib.crc32(data) if len(data) == length else None
