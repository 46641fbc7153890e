"""Follow one file through appends, rotation by rename, copytruncate and deletion.

A :class:`Tailer` holds the open file it is reading and the offset up to which
complete lines were handed out. It reads at most ``max_bytes`` per call, so memory
stays bounded whatever the backlog: the file is the buffer. Lines longer than
``max_line_bytes`` are cut, marked and counted; invalid UTF-8 is replaced, never
fatal. A partial last line waits for its newline (or for the file to be rotated
away, when it is handed out as is).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

__all__ = ["TRUNCATION_MARKER", "Line", "Tailer"]

TRUNCATION_MARKER = " …[truncated by ferryman]"


@dataclass(frozen=True, slots=True)
class Line:
    text: str
    end_offset: int  # offset just after this line's newline in its file
    device: int
    inode: int
    truncated: bool


class Tailer:
    def __init__(self, path: Path, *, start_offset: int = 0, max_line_bytes: int = 256 * 1024,
                 read_bytes: int = 1 << 20) -> None:
        self.path = path
        self.max_line_bytes = max_line_bytes
        self.read_bytes = read_bytes
        self.truncations = 0
        self._file: BinaryIO | None = None
        self._device = self._inode = 0
        self._offset = start_offset  # where the next unread byte of the open file is
        self._pending = b""  # bytes of an incomplete last line
        self._skipping = False  # inside an over-long line, dropping until its newline
        self._open()

    @property
    def identity(self) -> tuple[int, int]:
        return self._device, self._inode

    @property
    def offset(self) -> int:
        """End of the last line handed out of the open file."""
        return self._offset

    def _open(self) -> bool:
        try:
            handle = self.path.open("rb")
        except FileNotFoundError:
            return False
        stat = os.fstat(handle.fileno())
        if stat.st_size < self._offset:
            self._offset = 0  # truncated while we were away
        handle.seek(self._offset)
        self._file = handle
        self._device, self._inode = stat.st_dev, stat.st_ino
        return True

    def at_end(self) -> bool:
        """Everything in the open file was handed out."""
        if self._file is None:
            return True
        return not self._pending and self._file.tell() >= os.fstat(self._file.fileno()).st_size

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def read(self) -> list[Line]:
        """Complete lines appended since the last call (at most ``read_bytes`` of them)."""
        if self._file is None and not self._open():
            return []
        assert self._file is not None
        size = os.fstat(self._file.fileno()).st_size
        if size < self._offset + len(self._pending):
            # copytruncate: the file was emptied under us; start again from its top.
            self._file.seek(0)
            self._offset, self._pending, self._skipping = 0, b"", False
        lines = self._drain()
        if not lines and self._rotated():
            if self._file.tell() < os.fstat(self._file.fileno()).st_size:
                return lines  # the old file is not read to its end yet: go on next call
            # Renamed or deleted: hand out the last partial line, then follow the new file.
            lines = self._drain(final=True)
            self.close()
            self._offset, self._pending, self._skipping = 0, b"", False
            self._open()
        return lines

    def _rotated(self) -> bool:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return True
        return (stat.st_dev, stat.st_ino) != (self._device, self._inode)

    def _drain(self, final: bool = False) -> list[Line]:
        assert self._file is not None
        chunk = self._file.read(self.read_bytes)
        if not chunk and not (final and self._pending):
            return []
        data = self._pending + chunk
        start_offset = self._offset
        lines: list[Line] = []
        pos = 0
        while True:
            newline = data.find(b"\n", pos)
            if newline < 0:
                break
            self._emit(lines, data[pos:newline], start_offset + newline + 1)
            pos = newline + 1
        rest = data[pos:]
        if final and rest:
            self._emit(lines, rest, start_offset + len(data))
            rest = b""
        elif len(rest) > self.max_line_bytes:
            # Hand out the head of an over-long line now and drop the rest until its
            # newline, so memory stays bounded by max_line_bytes.
            if not self._skipping:
                self._emit(lines, rest, start_offset + len(data), cut=True)
            self._skipping = True
            rest = b""
            start_offset += len(data)
            pos = 0
            self._offset = start_offset
            self._pending = b""
            return lines
        self._offset = start_offset + pos
        self._pending = rest
        return lines

    def _emit(self, lines: list[Line], raw: bytes, end: int, cut: bool = False) -> None:
        if self._skipping:
            self._skipping = False  # the newline ending an over-long line
            return
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        truncated = cut or len(raw) > self.max_line_bytes
        if truncated:
            raw = raw[:self.max_line_bytes]
            self.truncations += 1
        text = raw.decode("utf-8", "replace")
        if truncated:
            text += TRUNCATION_MARKER
        lines.append(Line(text, end, self._device, self._inode, truncated))
