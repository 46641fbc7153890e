"""Read a compressed rotation (gzip, bzip2, xz) once, as lines.

Offsets count decompressed bytes. A stream that ends before its end-of-stream marker
(still being written) stops the read without error; a corrupt one is reported by
:attr:`CompressedTailer.error` and not read further.
"""

from __future__ import annotations

import bz2
import gzip
import lzma
import os
import zlib
from pathlib import Path
from typing import IO, cast

from .tailer import MARK_BYTES, Lines, Tailer

__all__ = ["READABLE", "CompressedTailer", "decompressed_head", "open_decompressed"]

#: the formats read (others are never read)
READABLE = ("gz", "bz2", "xz")


def open_decompressed(path: Path, kind: str) -> IO[bytes]:
    if kind == "gz":
        return cast(IO[bytes], gzip.open(path, "rb"))
    if kind == "bz2":
        return bz2.open(path, "rb")
    if kind == "xz":
        return lzma.open(path, "rb")
    raise ValueError(f"cannot read {kind} files")


def decompressed_head(path: Path, kind: str, length: int = MARK_BYTES) -> bytes | None:
    """The first ``length`` decompressed bytes (fewer if it is shorter), or None if
    it cannot be read."""
    try:
        with open_decompressed(path, kind) as f:
            return f.read(length)
    except (OSError, EOFError, lzma.LZMAError, zlib.error):
        return None


def decompressed_mark(path: Path, kind: str, offset: int) -> int | None:
    """crc32 of the :data:`MARK_BYTES` decompressed bytes before ``offset``, or None."""
    try:
        with open_decompressed(path, kind) as f:
            start = max(0, offset - MARK_BYTES)
            _skip(f, start)
            data = f.read(offset - start)
    except (OSError, EOFError, lzma.LZMAError, zlib.error):
        return None
    return zlib.crc32(data) if len(data) == offset - start else None


def _skip(f: IO[bytes], count: int) -> int:
    done = 0
    while done < count:
        chunk = f.read(min(1 << 20, count - done))
        if not chunk:
            break
        done += len(chunk)
    return done


class CompressedTailer(Tailer):
    """A :class:`Tailer` over the decompressed content of one file, read once."""

    def __init__(
        self,
        path: Path,
        kind: str,
        *,
        start_offset: int = 0,
        max_line_bytes: int = 256 * 1024,
        read_bytes: int = 1 << 20,
    ) -> None:
        self.kind = kind
        self.eof = False
        self.error: str | None = None
        self._stream: IO[bytes] | None = None
        super().__init__(
            path,
            start_offset=start_offset,
            max_line_bytes=max_line_bytes,
            read_bytes=read_bytes,
            follow=False,
        )

    def _open(self) -> bool:
        try:
            raw = self.path.open("rb")
        except FileNotFoundError:
            return False
        stat = os.fstat(raw.fileno())
        self._device, self._inode = stat.st_dev, stat.st_ino
        try:
            stream = open_decompressed(self.path, self.kind)
            skipped = _skip(stream, self._offset)
        except (OSError, EOFError, lzma.LZMAError, zlib.error) as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            raw.close()
            return False
        raw.close()
        self._offset = skipped
        self._stream = stream
        return True

    def at_end(self) -> bool:
        return self.eof or self.error is not None or self._stream is None

    def close(self) -> None:
        if self._stream is not None:
            self._stream.close()
            self._stream = None
        super().close()

    def head(self) -> bytes:
        return decompressed_head(self.path, self.kind) or b""

    def mark_at(self, offset: int) -> int | None:
        return decompressed_mark(self.path, self.kind, offset)

    def final_lines(self) -> Lines:
        return Lines([], [], self._offset, self._device, self._inode)

    def size(self) -> int:
        return self._offset

    def read_lines(self) -> Lines:
        if self._stream is None or self.eof or self.error is not None:
            return Lines([], [], self._offset, self._device, self._inode)
        lines = self._drain()
        if not lines and self.eof:
            lines = self._drain(final=True)
        return lines

    def _read_more(self) -> tuple[memoryview, int]:
        assert self._stream is not None
        pending = len(self._pending)
        if len(self._buffer) < pending + self.read_bytes:
            self._buffer = bytearray(pending + self.read_bytes)
        view = memoryview(self._buffer)
        view[:pending] = self._pending
        got = 0
        try:
            chunk = self._stream.read(self.read_bytes)
        except EOFError:
            chunk = b""  # ends before its end-of-stream marker: still being written
        except (OSError, lzma.LZMAError, zlib.error) as exc:
            self.error = f"{type(exc).__name__}: {exc}"
            chunk = b""
        else:
            if not chunk:
                self.eof = True
        got = len(chunk)
        view[pending : pending + got] = chunk
        return view[: pending + got], got
