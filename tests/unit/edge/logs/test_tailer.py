from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.logs.positions import Position, Positions
from edge.logs.tailer import TRUNCATION_MARKER, Tailer


@pytest.fixture
def log(tmp_path: Path) -> Path:
    return tmp_path / "app.log"


@pytest.fixture
def tailers() -> Iterator[list[Tailer]]:
    opened: list[Tailer] = []
    yield opened
    for tailer in opened:
        tailer.close()


def _open(tailers: list[Tailer], path: Path, **kwargs: int) -> Tailer:
    tailer = Tailer(path, **kwargs)
    tailers.append(tailer)
    return tailer


def _texts(tailer: Tailer) -> list[str]:
    return [line.text for line in tailer.read()]


def _append(path: Path, data: bytes) -> None:
    with path.open("ab") as f:
        f.write(data)


def test_appends_partial_lines_and_offsets(log: Path, tailers: list[Tailer]) -> None:
    log.write_bytes(b"one\ntw")
    tailer = _open(tailers, log)
    lines = tailer.read()
    assert [(line.text, line.end_offset) for line in lines] == [("one", 4)]
    _append(log, b"o\r\nthree\n")
    assert _texts(tailer) == ["two", "three"]
    assert _texts(tailer) == []


def test_rename_rotation_reads_the_old_file_to_its_end(log: Path, tailers: list[Tailer]) -> None:
    log.write_bytes(b"a\n")
    tailer = _open(tailers, log, read_bytes=4)
    assert _texts(tailer) == ["a"]
    _append(log, b"b\nc\nlast-partial")
    log.rename(log.with_suffix(".log.1"))
    log.write_bytes(b"new-1\n")
    got: list[str] = []
    for _ in range(10):
        got += _texts(tailer)
    assert got == ["b", "c", "last-partial", "new-1"]


def test_copytruncate_starts_again_from_the_top(log: Path, tailers: list[Tailer]) -> None:
    log.write_bytes(b"x1\nx2\n")
    tailer = _open(tailers, log)
    assert _texts(tailer) == ["x1", "x2"]
    with log.open("r+b") as f:
        f.truncate(0)
    _append(log, b"y\n")
    assert _texts(tailer) == ["y"]


def test_deleted_then_recreated(log: Path, tailers: list[Tailer]) -> None:
    log.write_bytes(b"old\n")
    tailer = _open(tailers, log)
    assert _texts(tailer) == ["old"]
    log.unlink()
    assert _texts(tailer) == []
    log.write_bytes(b"reborn\n")
    assert _texts(tailer) + _texts(tailer) == ["reborn"]


def test_long_lines_are_cut_marked_and_counted(log: Path, tailers: list[Tailer]) -> None:
    log.write_bytes(b"short\n" + b"L" * 5000 + b"\nafter\n")
    tailer = _open(tailers, log, max_line_bytes=100, read_bytes=1024)
    got: list[str] = []
    for _ in range(10):
        got += _texts(tailer)
    assert got == ["short", "L" * 100 + TRUNCATION_MARKER, "after"]
    assert tailer.truncations == 1


def test_invalid_utf8_is_replaced_not_fatal(log: Path, tailers: list[Tailer]) -> None:
    log.write_bytes(b"ok \xff\xfe bytes\n\xe2\x82\xac\n")
    assert _texts(_open(tailers, log)) == ["ok \ufffd\ufffd bytes", "€"]


def test_positions_survive_restart_and_follow_inode(
    tmp_path: Path, log: Path, tailers: list[Tailer]
) -> None:
    log.write_bytes(b"1\n2\n3\n")
    tailer = _open(tailers, log)
    lines = tailer.read()
    positions = Positions(tmp_path / "positions.json")
    device, inode = tailer.identity
    positions.set(Position(str(log), device, inode, lines[1].end_offset))  # 1 and 2 acked
    positions.save()
    reloaded = Positions(tmp_path / "positions.json").get(device, inode)
    assert reloaded is not None and reloaded.offset == 4
    resumed = _open(tailers, log, start_offset=reloaded.offset)
    assert _texts(resumed) == ["3"]
    assert not list(tmp_path.glob("*.tmp"))


def test_corrupt_positions_file_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "positions.json"
    path.write_text('{"files": [')
    with pytest.raises(ValueError, match="moved aside"):
        Positions(path)
    assert (tmp_path / "positions.corrupt").exists() and not path.exists()
    assert Positions(path).all() == []
