"""Follow one file through appends, rotation by rename, copytruncate and deletion.

A :class:`Tailer` holds the open file it is reading and the offset up to which
complete lines were handed out. It reads at most ``read_bytes`` per call, so memory
stays bounded whatever the backlog: the file is the buffer. Lines longer than
``max_line_bytes`` are cut, marked and counted; invalid UTF-8 is replaced, never
fatal. A partial last line waits for its newline (or for the file to be rotated
away, when it is handed out as is).

With ``follow=False`` (the shipper's way) a tailer reads one file, by its open
descriptor, for as long as it lives: it never reopens its path, so a rename or a new
file under the old name is the file tracker's business (:mod:`edge.logs.tracker`).
Each tailer keeps the last :data:`MARK_BYTES` of the complete lines it handed out, so
where it stands can be checked against a copy of the file (:attr:`Tailer.mark`).

A read is split and decoded a whole block at a time (:meth:`Tailer.read_lines`
hands the lines out by column, with no object per line); only a block holding a
line longer than ``max_line_bytes`` goes through lines one by one.
"""

from __future__ import annotations

import io
import os
import zlib
from dataclasses import dataclass
from itertools import accumulate, islice
from pathlib import Path

__all__ = ["MARK_BYTES", "TRUNCATION_MARKER", "Line", "Lines", "Tailer"]

#: bytes before a position that :attr:`Tailer.mark` covers
MARK_BYTES = 256

TRUNCATION_MARKER = " …[truncated by ferryman]"


@dataclass(frozen=True, slots=True)
class Line:
    text: str
    end_offset: int  # offset just after this line's newline in its file
    device: int
    inode: int
    truncated: bool


@dataclass(frozen=True, slots=True)
class Lines:
    """The complete lines of one read of one file, by column: line ``i`` is
    ``texts[i]`` and took ``spans[i]`` bytes of the file (its newline included), the
    first one starting at offset ``start``. ``cut`` holds the indexes of the lines cut
    at ``max_line_bytes`` (usually none). The lists belong to the caller."""

    texts: list[str]
    spans: list[int]
    start: int
    device: int
    inode: int
    cut: frozenset[int] = frozenset()

    def __len__(self) -> int:
        return len(self.texts)

    @property
    def identity(self) -> tuple[int, int]:
        return self.device, self.inode

    @property
    def ends(self) -> list[int]:
        """Each line's end offset, just after its newline (computed on each call)."""
        return list(islice(accumulate(self.spans, initial=self.start), 1, None))

    @property
    def end(self) -> int:
        """End offset of the last line (``start`` when there is none)."""
        return self.start + sum(self.spans)

    def rows(self) -> list[Line]:
        """One :class:`Line` per line, for the stage pipelines."""
        device, inode, cut = self.device, self.inode, self.cut
        return [
            Line(text, end, device, inode, index in cut)
            for index, (text, end) in enumerate(zip(self.texts, self.ends, strict=True))
        ]


class Tailer:
    def __init__(
        self,
        path: Path,
        *,
        start_offset: int = 0,
        max_line_bytes: int = 256 * 1024,
        read_bytes: int = 1 << 20,
        follow: bool = True,
    ) -> None:
        self.path = path
        self.follow = follow
        #: (offset, mark) of the content before each copytruncate seen, oldest first;
        #: the owner takes them (see :meth:`take_truncations`)
        self._truncated: list[tuple[int, int]] = []
        self._tail = b""  # the last MARK_BYTES of complete lines handed out
        self.max_line_bytes = max_line_bytes
        self.read_bytes = read_bytes
        self.truncations = 0
        self._file: io.BufferedReader | None = None
        self._device = self._inode = 0
        self._offset = start_offset  # where the next unread byte of the open file is
        self._pending = b""  # bytes of an incomplete last line
        self._skipping = False  # inside an over-long line, dropping until its newline
        self._buffer = bytearray()  # what each read fills: pending bytes, then new ones
        self._open()

    @property
    def identity(self) -> tuple[int, int]:
        return self._device, self._inode

    @property
    def offset(self) -> int:
        """End of the last line handed out of the open file."""
        return self._offset

    @property
    def mark(self) -> int:
        """crc32 of the :data:`MARK_BYTES` before :attr:`offset` (fewer near the start),
        kept in memory: it stays known after the file was emptied."""
        return zlib.crc32(self._tail[-MARK_BYTES:])

    def mark_at(self, offset: int) -> int | None:
        """crc32 of the :data:`MARK_BYTES` before ``offset`` in the open file, or None."""
        if self._file is None:
            return None
        start = max(0, offset - MARK_BYTES)
        try:
            data = os.pread(self._file.fileno(), offset - start, start)
        except OSError:
            return None
        return zlib.crc32(data) if len(data) == offset - start else None

    def head(self) -> bytes:
        """The first bytes of the open file (for its fingerprint), b"" if none."""
        if self._file is None:
            return b""
        try:
            return os.pread(self._file.fileno(), MARK_BYTES, 0)
        except OSError:
            return b""

    def size(self) -> int:
        if self._file is None:
            return 0
        return os.fstat(self._file.fileno()).st_size

    def seek(self, offset: int) -> None:
        """Read from ``offset`` on (the start of a line)."""
        if self._file is not None:
            self._file.seek(offset)
        self._offset, self._pending, self._skipping = offset, b"", False
        self._tail = self._before(offset)

    def _before(self, offset: int) -> bytes:
        """The :data:`MARK_BYTES` before ``offset`` in the open file (b"" if unreadable)."""
        if self._file is None or not offset:
            return b""
        start = max(0, offset - MARK_BYTES)
        try:
            return os.pread(self._file.fileno(), offset - start, start)
        except OSError:
            return b""

    def take_truncations(self) -> list[tuple[int, int]]:
        """(offset, mark) where the content read so far ended, for each copytruncate
        seen since the last call."""
        out, self._truncated = self._truncated, []
        return out

    def truncated(self) -> None:
        """The content was replaced in place (the owner saw a new head): read the
        file again from its start, as after a copytruncate."""
        if self._file is not None:
            self._truncated.append((self._offset, self.mark))
            self._file.seek(0)
        self._offset, self._pending, self._skipping, self._tail = 0, b"", False, b""

    def final_lines(self) -> Lines:
        """The file will not be read again: its last line, even without a newline."""
        if self._file is None:
            return Lines([], [], self._offset, self._device, self._inode)
        return self._drain(final=True)

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
        self._tail = self._before(self._offset)
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
        return self.read_lines().rows()

    def read_lines(self) -> Lines:
        """:meth:`read`, by column: all of one file (one identity)."""
        if self._file is None and not self._open():
            return Lines([], [], self._offset, self._device, self._inode)
        assert self._file is not None
        size = os.fstat(self._file.fileno()).st_size
        if size < self._offset + len(self._pending):
            # copytruncate: the file was emptied under us; start again from its top.
            self.truncated()
        lines = self._drain()
        if not lines and self.follow and self._rotated():
            if self._file.tell() < os.fstat(self._file.fileno()).st_size:
                return lines  # the old file is not read to its end yet: go on next call
            # Renamed or deleted: hand out the last partial line, then follow the new file.
            lines = self._drain(final=True)
            self.close()
            self._offset, self._pending, self._skipping, self._tail = 0, b"", False, b""
            self._open()
        return lines

    def _rotated(self) -> bool:
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            return True
        return (stat.st_dev, stat.st_ino) != (self._device, self._inode)

    def _drain(self, final: bool = False) -> Lines:
        texts: list[str] = []
        spans: list[int] = []
        cut: list[int] = []
        start = self._offset
        data, got = self._read_more()
        if not got and not (final and self._pending):
            return Lines(texts, spans, start, self._device, self._inode)
        buffer, size = self._buffer, len(data)
        pos = 0
        if self._skipping and (newline := buffer.find(b"\n", 0, size)) >= 0:
            self._skipping = False  # the newline ending an over-long line: dropped with it
            pos = newline + 1
        first = start + pos
        complete = buffer.rfind(b"\n", pos, size) + 1
        if complete:
            texts, spans = self._split(data[pos:complete], cut)
            pos = complete
        rest = bytes(data[pos:])
        if final and rest:
            self._emit(texts, spans, cut, rest, len(rest))
            rest = b""
        elif len(rest) > self.max_line_bytes:
            # Hand out the head of an over-long line now and drop the rest until its
            # newline, so memory stays bounded by max_line_bytes.
            if not self._skipping:
                self._emit(texts, spans, cut, rest, len(rest), cut_now=True)
            self._skipping = True
            pos, rest = size, b""
        if pos:
            tail = bytes(data[max(0, pos - MARK_BYTES) : pos])
            self._tail = tail if len(tail) >= MARK_BYTES else (self._tail + tail)[-MARK_BYTES:]
        self._offset = start + pos
        self._pending = rest
        return Lines(texts, spans, first, self._device, self._inode, frozenset(cut))

    def _read_more(self) -> tuple[memoryview, int]:
        """The pending bytes then up to ``read_bytes`` new ones, in a buffer kept from
        read to read (a read allocates no large block), and how many are new."""
        assert self._file is not None
        pending = len(self._pending)
        if len(self._buffer) < pending + self.read_bytes:
            self._buffer = bytearray(pending + self.read_bytes)
        view = memoryview(self._buffer)
        view[:pending] = self._pending
        got = self._file.readinto(view[pending : pending + self.read_bytes]) or 0
        return view[: pending + got], got

    def _split(self, block: memoryview, cut: list[int]) -> tuple[list[str], list[int]]:
        """Texts and spans of the lines of ``block`` (whole lines, each ending in a
        newline), the first ones of a read."""
        text = str(block, "utf-8", "replace")
        # "\n" is ASCII: a replacement never swallows one, so lines split the same
        # whether decoded together or one by one.
        parts = text.split("\n")
        parts.pop()  # the empty string after the last newline
        if text.isascii():
            sizes = map(len, parts)
        else:
            raws = bytes(block).split(b"\n")
            raws.pop()
            sizes = map(len, raws)
        spans = list(map((1).__add__, sizes))
        if len(block) - 1 > self.max_line_bytes and max(spans) - 1 > self.max_line_bytes:
            # Some line must be cut (and may then end inside a character): one by one.
            texts: list[str] = []
            spans = []
            for raw in bytes(block).split(b"\n")[:-1]:
                self._emit(texts, spans, cut, raw, len(raw) + 1)
            return texts, spans
        if "\r" in text:
            parts = text.replace("\r\n", "\n").split("\n")
            parts.pop()
        return parts, spans

    def _emit(
        self,
        texts: list[str],
        spans: list[int],
        cut: list[int],
        raw: bytes,
        span: int,
        cut_now: bool = False,
    ) -> None:
        if self._skipping:
            self._skipping = False  # the end of an over-long line
            return
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        truncated = cut_now or len(raw) > self.max_line_bytes
        if truncated:
            raw = raw[: self.max_line_bytes]
            self.truncations += 1
        text = raw.decode("utf-8", "replace")
        if truncated:
            text += TRUNCATION_MARKER
            cut.append(len(texts))
        texts.append(text)
        spans.append(span)
