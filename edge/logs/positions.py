"""Where each file was read up to, and each journal's cursor, persisted so a restart
neither loses nor re-ships.

The file is replaced atomically (temp file, fsync, rename, fsync of the directory):
a crash leaves either the old or the new positions, never a torn file. Positions
are written only for lines Kafka acknowledged.

An entry records a file's identity (device, inode and the fingerprint of its first
line, see :mod:`edge.logs.identity`), the offset read up to and the *mark* (crc32 of
the bytes just before it), where it was last found, the labels and job it was first
shipped with, and when it was last seen. ``orphans`` are contents that were emptied
in place (copytruncate) before every copy of them was read: a copy found later
continues from there. Entries and orphans not seen for ``stale_after`` while the
shipper runs are pruned (:meth:`Positions.prune`).

Format (``version`` 2): ``{"version": 2, "files": [...], "orphans": [...],
"cursors": {key: cursor}}``. Version 1 files (no fingerprint: ``head_crc`` over
``head_len`` bytes) load; their entries are matched by inode and head and take a
fingerprint when next saved.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["Position", "Positions"]

Identity = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Position:
    path: str
    device: int
    inode: int
    offset: int
    #: see :func:`edge.logs.identity.fingerprint`; 0 for a version 1 entry
    fingerprint: int = 0
    #: crc32 of the bytes before ``offset`` (:data:`~edge.logs.tailer.MARK_BYTES`), 0:
    #: unknown
    mark: int = 0
    #: the labels and job the file was first shipped with (kept when it is renamed)
    labels: dict[str, str] = field(default_factory=dict)
    job: str = ""
    #: unix time it was last found (by a scan, or open)
    seen: float = 0.0
    #: read-time anchors ``(start, end, ts)`` of lines not yet acknowledged (readclock)
    stamps: tuple[tuple[int, int, int], ...] = ()
    #: a compressed file, ``offset`` counted in decompressed bytes; ``done`` once read
    #: to its end
    compressed: bool = False
    done: bool = False
    #: version 1: crc32 of the first ``head_len`` bytes
    head_crc: int = 0
    head_len: int = 0

    @property
    def identity(self) -> Identity:
        return self.device, self.inode


_FIELDS = {f.name for f in dataclasses.fields(Position)}


def _position(item: dict[str, Any]) -> Position:
    values = {k: v for k, v in item.items() if k in _FIELDS}
    values["stamps"] = tuple(tuple(s) for s in item.get("stamps", ()))
    values["labels"] = {str(k): str(v) for k, v in (item.get("labels") or {}).items()}
    return Position(**values)


def _item(position: Position) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name in _FIELDS:
        value = getattr(position, name)
        default = Position.__dataclass_fields__[name].default
        if name in ("path", "device", "inode", "offset") or (value and value != default):
            out[name] = [list(s) for s in value] if name == "stamps" else value
    return dict(sorted(out.items()))


class Positions:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._by_identity: dict[Identity, Position] = {}
        self._orphans: list[Position] = []  # on disk (from the next save)
        self._pending: list[Position] = []  # not on disk before the next settle()
        self._adopted: list[Position] = []  # on disk until the next settle()
        #: changes with the orphans (decisions that depend on them are taken again)
        self.version = 0
        self._cursors: dict[str, str] = {}
        #: whether a positions file was there to load
        self.loaded = False
        self._load()

    def _load(self) -> None:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return
        try:
            data = json.loads(text)
            if not isinstance(data, dict):
                raise ValueError("not an object")
            files = [_position(item) for item in data.get("files", [])]
            orphans = [_position(item) for item in data.get("orphans", [])]
        except (ValueError, TypeError, KeyError) as exc:
            # Only a file we did not write can be torn; keep it for inspection.
            aside = self.path.with_suffix(".corrupt")
            self.path.rename(aside)
            raise ValueError(
                f"positions file {self.path} is not a ferryman positions file ({exc}); "
                f"moved aside to {aside}"
            ) from None
        for position in files:
            self._by_identity[position.identity] = position
        self._orphans = orphans
        cursors = data.get("cursors") or {}
        self._cursors = {str(k): str(v) for k, v in cursors.items() if v}
        self.loaded = True

    def get(self, device: int, inode: int) -> Position | None:
        return self._by_identity.get((device, inode))

    def set(self, position: Position) -> None:
        self._by_identity[position.identity] = position

    def forget(self, device: int, inode: int) -> None:
        self._by_identity.pop((device, inode), None)

    def all(self) -> list[Position]:
        return sorted(self._by_identity.values(), key=lambda p: (p.path, p.identity))

    def seen(self, identities: Iterable[Identity], now: float) -> None:
        """These files were found (or are open) now."""
        for identity in identities:
            known = self._by_identity.get(identity)
            if known is not None and now - known.seen >= 1.0:
                self._by_identity[identity] = dataclasses.replace(known, seen=now)

    # ---- contents emptied in place before every copy of them was read ------------------

    def orphans(self) -> list[Position]:
        """Contents emptied in place that a copy may continue, newest first."""
        return [*reversed(self._pending), *reversed(self._orphans)]

    def add_orphan(self, position: Position, *, pending: bool = False) -> None:
        """``pending``: the lines read up to its offset are not acknowledged yet, so it
        is written only from the next :meth:`settle` (a crash before finds the old
        content's position in its file's entry instead)."""
        (self._pending if pending else self._orphans).append(position)
        self.version += 1

    def with_fingerprint(self, fingerprint: int) -> list[Position]:
        """The entries (not orphans) of files with this fingerprint."""
        return [p for p in self._by_identity.values() if p.fingerprint == fingerprint]

    def adopt(self, orphan: Position) -> None:
        """A copy continues ``orphan`` (an orphan, or the entry of a file that is gone):
        it stays on disk until the copy's own position is written (the next
        :meth:`settle`), and is no longer offered."""
        if self._by_identity.get(orphan.identity) is orphan:
            del self._by_identity[orphan.identity]
            self._adopted.append(orphan)
        elif orphan in self._pending:
            self._pending.remove(orphan)
        elif orphan in self._orphans:
            self._orphans.remove(orphan)
            self._adopted.append(orphan)
        self.version += 1

    def settle(self) -> None:
        """A batch was acknowledged: pending orphans are written, adopted ones dropped."""
        self._orphans += self._pending
        self._pending, self._adopted = [], []

    def prune(self, older_than: float) -> list[Position]:
        """Entries and orphans last seen before ``older_than`` (unix time), removed."""
        gone = [p for p in self._by_identity.values() if p.seen < older_than]
        for position in gone:
            del self._by_identity[position.identity]
        stale = [o for o in self._orphans if o.seen < older_than]
        self._orphans = [o for o in self._orphans if o.seen >= older_than]
        self.version += 1 if stale else 0
        return gone + stale

    # ---- journal cursors ---------------------------------------------------------------

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
                "version": 2,
                "files": [_item(p) for p in self.all()],
                **(
                    {"orphans": [_item(o) for o in [*self._orphans, *self._adopted]]}
                    if self._orphans or self._adopted
                    else {}
                ),
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
