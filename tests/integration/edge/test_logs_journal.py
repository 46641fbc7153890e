"""The journald source against real journalctl following a real journal file.

No journald runs here (nor needs to): ``systemd-journal-remote --output=F.journal -``
(Debian package systemd-journal-remote) turns the journal export format on its
stdin into a real journal file, entry by entry, while JournalSource follows that
file with journalctl (Debian package systemd) as it would /var/log/journal.
"""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.logs.journal import JournalConfig, JournalEntry, JournalSource
from edge.logs.tailer import TRUNCATION_MARKER
from tests.integration.journald import BOOT_ID, JournalWriter
from tests.integration.pipeline import wait_for


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[JournalWriter]:
    (tmp_path / "journal").mkdir()
    writer = JournalWriter(tmp_path / "journal" / "test.journal")
    yield writer
    writer.close()


@pytest.fixture
def sources() -> Iterator[list[JournalSource]]:
    started: list[JournalSource] = []
    yield started
    for source in started:
        source.close()


def follow(
    sources: list[JournalSource], writer: JournalWriter, cursor: str | None = None, **settings: Any
) -> JournalSource:
    wait_for(writer.path.exists, 10, "the journal file")
    config = JournalConfig.model_validate({"files": [str(writer.path)], "max_age": 0, **settings})
    source = JournalSource(config, cursor, name="test").start()
    sources.append(source)
    return source


def read_until(
    source: JournalSource, count: int, timeout: float = 20, batch: int = 100
) -> list[JournalEntry]:
    got: list[JournalEntry] = []

    def enough() -> bool:
        got.extend(source.read(min(batch, count - len(got))))
        return len(got) >= count

    wait_for(enough, timeout, f"{count} entries (have {len(got)})", interval=0.05)
    return got


def lines(entries: list[JournalEntry]) -> list[str]:
    return [e.line for e in entries]


def test_entries_appended_while_following_arrive_in_order(journal, sources):
    first = journal.append("before start", unit="web.service", priority=3)
    journal.append("before start 2")
    source = follow(sources, journal, labels={"job": "journal"})
    entries = read_until(source, 2)
    assert lines(entries) == ["before start", "before start 2"]
    assert entries[0].timestamp_ns == first * 1000
    assert dict(entries[0].labels) == {
        "job": "journal",
        "__journal__systemd_unit": "web.service",
        "__journal__hostname": "edge-7",
        "__journal_priority": "3",
        "__journal_priority_keyword": "error",
        "__journal_syslog_identifier": "web",
        "__journal__boot_id": BOOT_ID,
    }

    for i in range(300):
        journal.append(f"line {i}")
    entries = read_until(source, 300)
    assert lines(entries) == [f"line {i}" for i in range(300)]
    assert source.last_cursor == entries[-1].cursor
    assert source.errors == {}


def test_a_restart_from_the_saved_cursor_neither_repeats_nor_loses(journal, sources):
    for i in range(20):
        journal.append(f"entry {i}")
    source = follow(sources, journal)
    handed_out = read_until(source, 12, batch=1)
    saved = source.last_cursor  # what the shipper saves once Kafka acknowledged these
    assert lines(handed_out) == [f"entry {i}" for i in range(12)]
    assert saved == handed_out[-1].cursor
    source.close()  # entries read ahead (12..19) are dropped with it

    for i in range(20, 25):
        journal.append(f"entry {i}")
    again = follow(sources, journal, cursor=saved)
    assert lines(read_until(again, 13)) == [f"entry {i}" for i in range(12, 25)]
    time.sleep(0.5)
    assert again.read() == []


def test_binary_and_long_messages(journal, sources):
    journal.append(b"binary \x00\xff\xfe end\nsecond line")
    journal.append("x" * 10_000)  # above journalctl's 4096-byte limit without --all
    journal.append("plain")
    source = follow(sources, journal)
    binary, long, plain = read_until(source, 3)
    assert binary.line == "binary \x00\ufffd\ufffd end\nsecond line"
    assert long.line == "x" * 10_000
    assert plain.line == "plain"


def test_long_lines_are_cut_and_json_mode_ships_the_whole_entry(journal, sources):
    journal.append("y" * 5000, CODE_FILE="main.c")
    wait_for(journal.path.exists, 10, "the journal file")
    cut = JournalSource(JournalConfig(files=(journal.path,), max_age=0), max_line_bytes=100)
    sources.append(cut.start())
    [entry] = read_until(cut, 1)
    assert entry.truncated and entry.line.startswith("y" * 100) and len(entry.line) < 200

    whole = follow(sources, journal, json=True)
    [entry] = read_until(whole, 1)
    assert entry.line.startswith('{"CODE_FILE":"main.c","MESSAGE":"yyy')
    assert '"_SYSTEMD_UNIT":"app.service"' in entry.line


def test_journalctl_killed_is_restarted_after_the_last_entry_read(journal, sources):
    for i in range(5):
        journal.append(f"early {i}")
    source = follow(sources, journal)
    got = read_until(source, 5)
    pid = source.pid
    assert pid is not None
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: source.pid not in (None, pid), 20, "journalctl to be started again")
    for i in range(5):
        journal.append(f"late {i}")
    got += read_until(source, 5)
    assert lines(got) == [f"early {i}" for i in range(5)] + [f"late {i}" for i in range(5)]
    assert source.errors == {"journalctl_exit": 1}
    assert source.drain_errors() == {"journalctl_exit": 1}
    assert source.drain_errors() == {}


def test_a_slow_reader_bounds_the_buffer_and_journalctl_waits(journal, sources):
    for i in range(3000):
        journal.append(f"backlog {i:04d} " + "z" * 200)
    source = follow(sources, journal, buffer_entries=50)
    wait_for(lambda: source.buffered() == 50, 20, "a full buffer")
    time.sleep(0.5)
    assert source.buffered() == 50  # journalctl is blocked on the pipe, not buffered here
    pid = source.pid
    got = read_until(source, 3000, timeout=60)
    assert lines(got) == [f"backlog {i:04d} " + "z" * 200 for i in range(3000)]
    assert source.pid == pid and source.errors == {}


def test_units_matches_and_max_age_filter(journal, sources):
    old = (time.time_ns() // 1000) - 3 * 3600 * 10**6
    journal.append("too old", realtime_us=old)
    journal.append("web", unit="web.service")
    journal.append("db", unit="db.service")
    journal.append("db error", unit="db.service", priority=3)
    recent = follow(sources, journal, max_age="1h")
    assert lines(read_until(recent, 3)) == ["web", "db", "db error"]
    web = follow(sources, journal, units=["web.service"])
    assert lines(read_until(web, 1)) == ["web"]
    errors = follow(sources, journal, matches="_SYSTEMD_UNIT=db.service PRIORITY=3")
    assert lines(read_until(errors, 1)) == ["db error"]
    time.sleep(0.5)
    assert web.read() == [] and errors.read() == []


def test_a_directory_of_journal_files(journal, sources):
    journal.append("in a directory")
    source = follow(sources, journal, files=[], path=str(journal.path.parent))
    assert lines(read_until(source, 1)) == ["in a directory"]
    journal.append("appended")
    assert lines(read_until(source, 1)) == ["appended"]


def test_an_entry_above_max_entry_bytes_arrives_with_its_message_cut(journal, sources):
    """journalctl's real JSON for a 3 MiB message, read with a 1 MiB entry bound: the
    head of MESSAGE with the marker, and the fields journalctl writes after it."""
    journal.append("before")
    journal.append("é" + "x" * (3 << 20), unit="huge.service", CODE_LINE="42")
    journal.append("after")
    source = follow(sources, journal, max_entry_bytes="1MiB")
    got = read_until(source, 3)
    assert lines(got)[0] == "before" and lines(got)[2] == "after"
    huge = got[1]
    assert huge.truncated and huge.line.endswith(TRUNCATION_MARKER)
    assert huge.line.startswith("éxxx") and len(huge.line.encode()) < 1 << 20
    assert huge.labels["__journal__systemd_unit"] == "huge.service"
    assert huge.labels["__journal_code_line"] == "42"
    assert source.errors.get("oversized_entry") == 1
