"""The block-at-a-time tailer hands out exactly what reading line by line did.

``_LineByLine`` is the tailer as it was before reads were split and decoded a block
at a time: the reference the fast one is held to, through appends, partial lines,
``\\r\\n``, invalid UTF-8, over-long lines, rotation, copytruncate and restarts.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.logs.tailer import TRUNCATION_MARKER, Line, Tailer


class _LineByLine:
    """The reference: finds newlines one by one and decodes each line on its own."""

    def __init__(
        self,
        path: Path,
        *,
        start_offset: int = 0,
        max_line_bytes: int = 256 * 1024,
        read_bytes: int = 1 << 20,
    ) -> None:
        self.path = path
        self.max_line_bytes = max_line_bytes
        self.read_bytes = read_bytes
        self.truncations = 0
        self._file: BinaryIO | None = None
        self._device = self._inode = 0
        self._offset = start_offset
        self._pending = b""
        self._skipping = False
        self._open()

    @property
    def offset(self) -> int:
        return self._offset

    def _open(self) -> bool:
        try:
            handle = self.path.open("rb")
        except FileNotFoundError:
            return False
        stat = os.fstat(handle.fileno())
        if stat.st_size < self._offset:
            self._offset = 0
        handle.seek(self._offset)
        self._file = handle
        self._device, self._inode = stat.st_dev, stat.st_ino
        return True

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
            self._file = None

    def read(self) -> list[Line]:
        if self._file is None and not self._open():
            return []
        assert self._file is not None
        size = os.fstat(self._file.fileno()).st_size
        if size < self._offset + len(self._pending):
            self._file.seek(0)
            self._offset, self._pending, self._skipping = 0, b"", False
        lines = self._drain()
        if not lines and self._rotated():
            if self._file.tell() < os.fstat(self._file.fileno()).st_size:
                return lines
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
            if not self._skipping:
                self._emit(lines, rest, start_offset + len(data), cut=True)
            self._skipping = True
            self._offset = start_offset + len(data)
            self._pending = b""
            return lines
        self._offset = start_offset + pos
        self._pending = rest
        return lines

    def _emit(self, lines: list[Line], raw: bytes, end: int, cut: bool = False) -> None:
        if self._skipping:
            self._skipping = False
            return
        if raw.endswith(b"\r"):
            raw = raw[:-1]
        truncated = cut or len(raw) > self.max_line_bytes
        if truncated:
            raw = raw[: self.max_line_bytes]
            self.truncations += 1
        text = raw.decode("utf-8", "replace")
        if truncated:
            text += TRUNCATION_MARKER
        lines.append(Line(text, end, self._device, self._inode, truncated))


FRAGMENTS = [
    b"a",
    b"bc",
    b"     ",
    b"\n",
    b"\n",
    b"\r",
    b"\r\n",
    b"\xff",
    b"\xe2\x82\xac",
    b"\xe2\x82",
    b"\xc3\xa9",
    b"\xc3",
    b"\xf0\x9f\x98\x80",
    b"\xf0\x9f",
    b"\x80",
]
data = st.lists(st.sampled_from(FRAGMENTS), max_size=40).map(b"".join)
operations = st.lists(
    st.one_of(
        st.tuples(st.just("append"), data),
        st.just(("read", b"")),
        st.just(("read", b"")),
        st.just(("rotate", b"")),
        st.just(("copytruncate", b"")),
        st.just(("delete", b"")),
        st.tuples(st.just("create"), data),
        st.just(("restart", b"")),
    ),
    max_size=30,
)


@contextmanager
def _directory() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="tailer-fast-") as name:
        yield Path(name)


def _check(path: Path, ops: list[tuple[str, bytes]], max_line_bytes: int, read_bytes: int) -> None:
    knobs = {"max_line_bytes": max_line_bytes, "read_bytes": read_bytes}
    fast, slow = Tailer(path, **knobs), _LineByLine(path, **knobs)
    rotations = 0
    try:
        for op, payload in [*ops, *[("read", b"")] * 6]:
            if op == "append":
                with path.open("ab") as f:
                    f.write(payload)
            elif op == "create":
                path.write_bytes(payload)
            elif op == "rotate" and path.exists():
                rotations += 1
                path.rename(path.with_name(f"{path.name}.{rotations}"))
            elif op == "copytruncate" and path.exists():
                os.truncate(path, 0)
            elif op == "delete" and path.exists():
                path.unlink()
            elif op == "restart":
                assert fast.offset == slow.offset
                fast.close()
                slow.close()
                fast = Tailer(path, start_offset=slow.offset, **knobs)
                slow = _LineByLine(path, start_offset=slow.offset, **knobs)
            elif op == "read":
                lines = fast.read_lines()
                assert lines.rows() == slow.read()
                assert lines.end == (lines.ends[-1] if lines else lines.start)
                assert all(span > 0 for span in lines.spans)
                assert (fast.offset, fast.truncations) == (slow.offset, slow.truncations)
    finally:
        fast.close()
        slow.close()


@settings(max_examples=300, deadline=None)
@given(ops=operations, max_line_bytes=st.integers(1, 24), read_bytes=st.integers(1, 48))
def test_block_reads_match_line_by_line(
    ops: list[tuple[str, bytes]], max_line_bytes: int, read_bytes: int
) -> None:
    with _directory() as directory:
        path = directory / "app.log"
        path.write_bytes(b"")
        _check(path, ops, max_line_bytes, read_bytes)


@settings(max_examples=200, deadline=None)
@given(
    content=st.lists(st.sampled_from(FRAGMENTS), max_size=400).map(b"".join),
    max_line_bytes=st.integers(1, 300),
    read_bytes=st.integers(1, 4096),
)
def test_one_file_in_reads_of_any_size(
    content: bytes, max_line_bytes: int, read_bytes: int
) -> None:
    with _directory() as directory:
        path = directory / "big.log"
        path.write_bytes(content)
        _check(path, [("read", b"")] * 3 + [("rotate", b"")], max_line_bytes, read_bytes)


def test_lines_by_column(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"one\r\ntwo\n\xff\nlong-line\npart")
    tailer = Tailer(log, max_line_bytes=5)
    try:
        lines = tailer.read_lines()
        assert lines.texts == ["one", "two", "\ufffd", "long-" + TRUNCATION_MARKER]
        assert lines.spans == [5, 4, 2, 10]
        assert (lines.start, lines.end, lines.ends) == (0, 21, [5, 9, 11, 21])
        assert lines.cut == {3} and tailer.truncations == 1
        assert lines.identity == tailer.identity and len(lines) == 4
        assert [line.truncated for line in lines.rows()] == [False, False, False, True]
        assert tailer.offset == 21
        empty = tailer.read_lines()
        assert not empty and empty.start == empty.end == 21 and empty.ends == []
    finally:
        tailer.close()


def test_the_dropped_rest_of_an_over_long_line_moves_start(tmp_path: Path) -> None:
    log = tmp_path / "app.log"
    log.write_bytes(b"x" * 30 + b"\nnext\n")
    tailer = Tailer(log, max_line_bytes=8, read_bytes=20)
    try:
        first = tailer.read_lines()
        assert first.texts == ["x" * 8 + TRUNCATION_MARKER] and first.ends == [20]
        second = tailer.read_lines()
        assert second.texts == ["next"] and (second.start, second.end) == (31, 36)
    finally:
        tailer.close()
