"""Promtail's positions.yaml, as Promtail writes it: files and journal cursors kept,
every other entry skipped, ferryman's own JSON and a missing file not Promtail's."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path

import pytest

from edge.logs.positions import Position, Positions
from edge.logs.promtail import PromtailPositions, read_promtail_positions

CURSOR = (
    "s=739ad463348b4ceca5a9e69c95a3c93f;i=4ece7;b=6c7c6013a8b34d1a8ce2c4fa7b3d9e48;"
    "m=117e29a0c;t=5e6d3f2a1b7c4;x=f7dfcb1b50e9b8b0"
)
OLDER_CURSOR = CURSOR.replace("i=4ece7", "i=4e000")


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "positions.yaml"
    path.write_text(textwrap.dedent(text))
    return path


def test_files_and_journal_cursors_as_promtail_writes_them(tmp_path: Path) -> None:
    # Promtail marshals map[string]string: keys sorted, number-like values quoted.
    path = _write(
        tmp_path,
        f"""\
        positions:
          /var/log/app.log: "1024"
          /var/log/empty.log: "0"
          /var/log/pods/shop_cart-7d_0a1b2c/cart/0.log: "77"
          cursor-3f9a1c2e4b5d: "1712345678"
          cursor-system: {CURSOR}
          journal-legacy: {OLDER_CURSOR}
        """,
    )
    assert read_promtail_positions(path) == PromtailPositions(
        files={
            "/var/log/app.log": 1024,
            "/var/log/empty.log": 0,
            "/var/log/pods/shop_cart-7d_0a1b2c/cart/0.log": 77,
        },
        # cursor-3f9a1c2e4b5d is a docker target's time, not a journal's cursor
        cursors={"journal/system": CURSOR, "journal/legacy": OLDER_CURSOR},
    )


def test_unquoted_offsets_read_as_quoted_ones(tmp_path: Path) -> None:
    path = _write(tmp_path, "positions:\n  /var/log/a.log: 42\n  /var/log/b.log: '+7'\n")
    positions = read_promtail_positions(path)
    assert positions is not None
    assert positions.files == {"/var/log/a.log": 42, "/var/log/b.log": 7}


def test_entries_promtail_could_not_use_as_file_offsets_are_skipped(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        f"""\
        positions:
          /var/log/good.log: "10"
          /var/log/bad.log: "12abc"
          /var/log/negative.log: "-5"
          /var/log/hex.log: 0x10
          /var/log/underscored.log: "1_000"
          /var/log/huge.log: "9223372036854775808"
          /var/log/nothing.log:
          /var/log/archive.log.1.gz: "300"
          /var/log/archive.log.2.bz2: "300"
          relative/app.log: "10"
          cursor-zone-0a1b: "1700000000000000000"
          cursor-not-a-cursor: hello
          journal-broken: "12"
          C:\\logs\\app.log: "5"
          cursor-system: {CURSOR}
        """,
    )
    assert read_promtail_positions(path) == PromtailPositions(
        files={"/var/log/good.log": 10}, cursors={"journal/system": CURSOR}
    )


def test_the_current_cursor_key_wins_over_the_older_one(tmp_path: Path) -> None:
    # A Promtail upgraded across the key change keeps the old key, no longer updated.
    path = _write(
        tmp_path,
        f"positions:\n  journal-system: {OLDER_CURSOR}\n  cursor-system: {CURSOR}\n",
    )
    positions = read_promtail_positions(path)
    assert positions is not None
    assert positions.cursors == {"journal/system": CURSOR}


@pytest.mark.parametrize("text", ["", "# nothing yet\n", "positions:\n", "positions: {}\n"])
def test_no_positions_yet(tmp_path: Path, text: str) -> None:
    assert read_promtail_positions(_write(tmp_path, text)) == PromtailPositions()


def test_a_missing_file_is_none(tmp_path: Path) -> None:
    assert read_promtail_positions(tmp_path / "positions.yaml") is None


def test_ferrymans_own_positions_are_none(tmp_path: Path) -> None:
    path = tmp_path / "positions.json"
    positions = Positions(path)
    positions.set(Position("/var/log/a.log", 1, 7, 120))
    positions.set_cursor("journal/system", CURSOR)
    positions.save()
    assert read_promtail_positions(path) is None


@pytest.mark.parametrize(
    "text", ['{"version": 1, "files": [{"path": "/var/log/a.log", "off', "{{{ not yaml"]
)
def test_a_torn_or_foreign_file_is_not_promtails(tmp_path: Path, text: str) -> None:
    # ferryman's own loader reports it (and moves it aside)
    assert read_promtail_positions(_write(tmp_path, text)) is None


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ('positions:\n  /var/log/a.log: "12\n', "not valid YAML"),
        ("positions:\n  - /var/log/a.log\n", "not a mapping"),
        ("positions: 12\n", "not a mapping"),
        ('positions:\n  /var/log/a.log: "12"\nsync_period: 10s\n', "sync_period beside"),
        ("positions:\n  /var/log/a.log: {offset: 12}\n", "/var/log/a.log holds no text"),
    ],
)
def test_a_broken_promtail_file_is_an_error_naming_it(
    tmp_path: Path, text: str, problem: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ValueError, match=re.escape(str(path))) as raised:
        read_promtail_positions(path)
    assert problem in str(raised.value)
