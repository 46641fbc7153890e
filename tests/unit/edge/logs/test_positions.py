"""The positions file: file identities, offsets, orphans and journal cursors in one
atomic file; version 1 files still load."""

from __future__ import annotations

import json
from pathlib import Path

from edge.logs.positions import Position, Positions

CURSOR = "s=6b1e;i=2a;b=9f0c;m=1c;t=62f1a3b4c5d6e;x=77"


def _position(**kw: object) -> Position:
    values: dict[str, object] = dict(
        path="/var/log/a.log",
        device=1,
        inode=7,
        offset=120,
        fingerprint=(12 << 32) | 99,
        mark=5,
        labels={"job": "varlogs", "filename": "/var/log/a.log"},
        job="varlogs",
        seen=1700000000.0,
        stamps=((0, 120, 5),),
    )
    values.update(kw)
    return Position(**values)  # type: ignore[arg-type]


def test_cursors_files_and_orphans_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "positions.json"
    positions = Positions(path)
    assert not positions.loaded
    positions.set(_position())
    positions.set_cursor("journal/system", CURSOR)
    orphan = _position(inode=8, offset=300, stamps=())
    positions.add_orphan(orphan)
    positions.save()
    loaded = Positions(path)
    assert loaded.loaded
    assert loaded.cursor("journal/system") == CURSOR
    assert loaded.cursor("journal/other") is None
    assert loaded.get(1, 7) == _position()
    assert loaded.orphans() == [orphan]
    assert json.loads(path.read_text())["version"] == 2

    loaded.set_cursor("journal/system", CURSOR.replace("i=2a", "i=2b"))
    loaded.forget(1, 7)
    loaded.save()
    again = Positions(path)
    assert again.cursor("journal/system") == CURSOR.replace("i=2a", "i=2b")
    assert again.all() == []


def test_a_pending_orphan_is_written_only_once_settled(tmp_path: Path) -> None:
    """Its offset covers lines not acknowledged yet: a crash before must not find it."""
    path = tmp_path / "positions.json"
    positions = Positions(path)
    orphan = _position(offset=500)
    positions.add_orphan(orphan, pending=True)
    assert positions.orphans() == [orphan]  # offered to copies at once
    positions.save()
    assert Positions(path).orphans() == []
    positions.settle()
    positions.save()
    assert Positions(path).orphans() == [orphan]


def test_an_adopted_orphan_stays_on_disk_until_the_copy_is_written(tmp_path: Path) -> None:
    path = tmp_path / "positions.json"
    positions = Positions(path)
    orphan = _position(offset=500)
    positions.add_orphan(orphan)
    positions.adopt(orphan)
    assert positions.orphans() == []
    positions.save()
    assert Positions(path).orphans() == [orphan]
    positions.settle()
    positions.save()
    assert Positions(path).orphans() == []


def test_prune_forgets_what_was_not_seen(tmp_path: Path) -> None:
    positions = Positions(tmp_path / "positions.json")
    positions.set(_position(inode=1, seen=100.0))
    positions.set(_position(inode=2, seen=50.0))
    positions.add_orphan(_position(inode=3, seen=10.0))
    positions.seen([(1, 2)], now=200.0)
    gone = positions.prune(older_than=150.0)
    assert sorted(p.inode for p in gone) == [1, 3]
    assert [p.inode for p in positions.all()] == [2]
    assert positions.orphans() == []


def test_a_version_1_file_still_loads(tmp_path: Path) -> None:
    path = tmp_path / "positions.json"
    path.write_text(
        json.dumps(
            {
                "version": 1,
                "files": [
                    {
                        "path": "/var/log/a.log",
                        "device": 1,
                        "inode": 7,
                        "offset": 42,
                        "head_crc": 5,
                        "head_len": 42,
                    }
                ],
            }
        )
    )
    positions = Positions(path)
    assert positions.get(1, 7) == Position("/var/log/a.log", 1, 7, 42, head_crc=5, head_len=42)
    assert positions.cursors() == {}
    positions.save()  # and without cursors or orphans it is written without them
    saved = json.loads(path.read_text())
    assert "cursors" not in saved and "orphans" not in saved


def test_a_file_that_is_not_ours_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "positions.json"
    path.write_text('{"files": [{"device": 1}]')
    try:
        Positions(path)
    except ValueError as exc:
        assert "moved aside" in str(exc)
    else:
        raise AssertionError("a torn positions file loaded")
    assert (tmp_path / "positions.corrupt").exists()
