"""A bounded, crash-safe FIFO of records on disk: the edge's buffer in front of Kafka.

Every batch is appended here first and removed only after Kafka acknowledged it,
so a Kafka outage, or a kill -9 of the shipper, loses nothing that was appended.
The queue is a directory of segment files plus a cursor file::

    00000000000000000001.seg   records: header (length, crc32, bucket, samples) + payload
    00000000000000000002.seg
    cursor                     "<segment> <offset>" of the first unacknowledged record

Guarantees: records come out in the order they went in; a record is handed out
again after a restart unless it was acknowledged (at-least-once); a torn record at
the tail after a crash is detected by its checksum and cut off. When the queue
would grow past ``max_bytes`` the oldest segment is deleted and every record and
sample in it that was not yet acknowledged is reported to ``on_drop``: nothing is
dropped silently. Thread-safe for one writer and one reader.
"""

from __future__ import annotations

import os
import struct
import threading
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

__all__ = ["DiskQueue", "Entry", "Position"]

_HEADER = struct.Struct("<IIHI")  # payload length, crc32(payload), bucket, samples
_SUFFIX = ".seg"

Position = tuple[int, int]  # (segment id, byte offset)


@dataclass(frozen=True, slots=True)
class Entry:
    """One queued record; ``end`` is the position just after it (what to ack)."""

    end: Position
    bucket: int
    samples: int
    payload: bytes


class DiskQueue:
    def __init__(
        self,
        directory: Path,
        *,
        max_bytes: int,
        segment_bytes: int = 8 * 2**20,
        on_drop: Callable[[int, int], None] = lambda records, samples: None,
    ) -> None:
        if segment_bytes * 2 > max_bytes:
            segment_bytes = max(4096, max_bytes // 4)
        self.directory = directory
        self.max_bytes = max_bytes
        self.segment_bytes = segment_bytes
        self.on_drop = on_drop
        self._lock = threading.Lock()
        directory.mkdir(parents=True, exist_ok=True)
        self._segments = sorted(int(p.stem) for p in directory.glob(f"*{_SUFFIX}"))
        self._acked = self._load_cursor()
        if self._segments:
            self._repair_tail(self._segments[-1])
        else:
            self._segments = [self._acked[0] or 1]
            self._path(self._segments[0]).touch()
        self._acked = max(self._acked, (self._segments[0], 0))
        self._read = self._acked
        self._writer = self._path(self._segments[-1]).open("ab")

    # ---- writing ----------------------------------------------------------------------

    def append(self, bucket: int, samples: int, payload: bytes) -> None:
        record = _HEADER.pack(len(payload), zlib.crc32(payload), bucket, samples) + payload
        with self._lock:
            if self._writer.tell() > 0 and self._writer.tell() + len(record) > self.segment_bytes:
                self._roll()
            self._writer.write(record)
            self._writer.flush()  # in the page cache: survives a kill -9 of this process
            self._enforce_bound()

    def _roll(self) -> None:
        self._writer.close()
        self._segments.append(self._segments[-1] + 1)
        self._writer = self._path(self._segments[-1]).open("ab")

    def _enforce_bound(self) -> None:
        while len(self._segments) > 1 and self._size() > self.max_bytes:
            oldest = self._segments.pop(0)
            start = self._acked[1] if self._acked[0] == oldest else 0
            records, samples = self._count(oldest, start)
            self._path(oldest).unlink(missing_ok=True)
            if self._acked[0] <= oldest:
                self._acked = (self._segments[0], 0)
                self._write_cursor()
            if self._read[0] <= oldest:
                self._read = (self._segments[0], 0)
            if records:
                self.on_drop(records, samples)

    # ---- reading ----------------------------------------------------------------------

    def read(self, max_records: int, max_bytes: int) -> list[Entry]:
        """The next records after those already handed out (not yet acknowledged)."""
        out: list[Entry] = []
        size = 0
        with self._lock:
            self._writer.flush()
            segment, offset = self._read
            while len(out) < max_records and size < max_bytes:
                entry = self._read_one(segment, offset)
                if entry is None:
                    later = [s for s in self._segments if s > segment]
                    if not later:
                        break
                    segment, offset = later[0], 0
                    continue
                out.append(entry)
                size += len(entry.payload)
                segment, offset = entry.end
            self._read = (segment, offset)
        return out

    def rewind(self) -> None:
        """Hand out again everything not acknowledged (after a failed send)."""
        with self._lock:
            self._read = self._acked

    def ack(self, end: Position) -> None:
        """Everything before ``end`` was acknowledged downstream."""
        with self._lock:
            if end <= self._acked:
                return  # already acknowledged, or its segment was dropped meanwhile
            self._acked = end
            while len(self._segments) > 1 and self._segments[0] < end[0]:
                self._path(self._segments.pop(0)).unlink(missing_ok=True)
            self._write_cursor()

    def pending_bytes(self) -> int:
        with self._lock:
            return self._size() - (self._acked[1] if self._acked[0] == self._segments[0] else 0)

    def close(self) -> None:
        with self._lock:
            self._writer.close()

    def __enter__(self) -> DiskQueue:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- files ------------------------------------------------------------------------

    def _path(self, segment: int) -> Path:
        return self.directory / f"{segment:020d}{_SUFFIX}"

    def _size(self) -> int:
        total = 0
        for segment in self._segments:
            try:
                total += self._path(segment).stat().st_size
            except FileNotFoundError:
                continue
        return total

    def _read_one(self, segment: int, offset: int) -> Entry | None:
        try:
            with self._path(segment).open("rb") as f:
                f.seek(offset)
                header = f.read(_HEADER.size)
                if len(header) < _HEADER.size:
                    return None
                length, crc, bucket, samples = _HEADER.unpack(header)
                payload = f.read(length)
        except FileNotFoundError:
            return None
        if len(payload) < length or zlib.crc32(payload) != crc:
            return None
        return Entry((segment, offset + _HEADER.size + length), bucket, samples, payload)

    def _count(self, segment: int, offset: int) -> tuple[int, int]:
        records = samples = 0
        while (entry := self._read_one(segment, offset)) is not None:
            records += 1
            samples += entry.samples
            offset = entry.end[1]
        return records, samples

    def _repair_tail(self, segment: int) -> None:
        """Cut a torn record (crash mid-write) off the last segment."""
        offset = 0
        while (entry := self._read_one(segment, offset)) is not None:
            offset = entry.end[1]
        path = self._path(segment)
        if path.stat().st_size != offset:
            with path.open("r+b") as f:
                f.truncate(offset)

    def _load_cursor(self) -> Position:
        try:
            segment, offset = (self.directory / "cursor").read_text().split()
            return int(segment), int(offset)
        except (OSError, ValueError):
            return (0, 0)

    def _write_cursor(self) -> None:
        tmp = self.directory / "cursor.tmp"
        with tmp.open("w") as f:
            f.write(f"{self._acked[0]} {self._acked[1]}\n")
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(self.directory / "cursor")
