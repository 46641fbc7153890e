"""The positions file: file offsets and journal cursors in one atomic file, and
files written before cursors existed."""

from __future__ import annotations

import json
from pathlib import Path

from edge.logs.positions import Position, Positions

CURSOR = "s=6b1e;i=2a;b=9f0c;m=1c;t=62f1a3b4c5d6e;x=77"


def test_cursors_and_files_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "positions.json"
    positions = Positions(path)
    positions.set(Position("/var/log/a.log", 1, 7, 120, 99, 100, ((0, 120, 5),)))
    positions.set_cursor("journal/system", CURSOR)
    positions.save()
    loaded = Positions(path)
    assert loaded.cursor("journal/system") == CURSOR
    assert loaded.cursor("journal/other") is None
    assert loaded.cursors() == {"journal/system": CURSOR}
    assert loaded.get(1, 7) == Position("/var/log/a.log", 1, 7, 120, 99, 100, ((0, 120, 5),))
    assert json.loads(path.read_text())["cursors"] == {"journal/system": CURSOR}

    loaded.set_cursor("journal/system", CURSOR.replace("i=2a", "i=2b"))
    loaded.forget(1, 7)
    loaded.save()
    again = Positions(path)
    assert again.cursor("journal/system") == CURSOR.replace("i=2a", "i=2b")
    assert again.all() == []


def test_a_file_written_before_cursors_existed_still_loads(tmp_path: Path) -> None:
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
    assert positions.get(1, 7) == Position("/var/log/a.log", 1, 7, 42, 5, 42)
    assert positions.cursors() == {}
    positions.save()  # and without cursors it is written as before
    assert "cursors" not in json.loads(path.read_text())
