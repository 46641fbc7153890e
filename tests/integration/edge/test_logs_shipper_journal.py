"""The edge log shipper reading a real journal file (written by
systemd-journal-remote, followed by journalctl) into the real Kafka: relabeled
``__journal_*`` labels, and a journal cursor saved only after Kafka acknowledged,
so kill -9 and a restart lose nothing and ship nothing acknowledged again."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from kafka import KafkaConsumer

from ferryman.wire.loki import decode_push_request
from ferryman.wire.remote_write import snappy_decompress
from infra.local.procs import live_processes
from tests.integration.journald import JournalWriter, cursors
from tests.integration.pipeline import EdgeLogs, create_topics, wait_for


class Shipped:
    """Every entry shipped to a topic: (labels, line), in arrival order."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = KafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest"
        )
        self.entries: list[tuple[dict[str, str], str]] = []

    def poll(self) -> Shipped:
        batches = self.consumer.poll(timeout_ms=500, max_records=10_000)
        for message in (m for records in batches.values() for m in records):
            for stream in decode_push_request(snappy_decompress(message.value)):
                self.entries += [(dict(stream.labels), e.line) for e in stream.entries]
        return self

    def lines(self) -> list[str]:
        return [line for _, line in self.entries]

    def by_stream(self) -> dict[tuple[str, str], list[str]]:
        """Lines per (unit, level): each stream keeps its order (streams may not)."""
        out: dict[tuple[str, str], list[str]] = {}
        for labels, line in self.entries:
            out.setdefault((labels["unit"], labels["level"]), []).append(line)
        return out


def streams_of(lines: list[str]) -> dict[tuple[str, str], list[str]]:
    out: dict[tuple[str, str], list[str]] = {}
    for line in lines:
        stream = (
            "db.service" if line.startswith("db") else "web.service",
            "error" if line == "db 0007" else "info",
        )
        out.setdefault(stream, []).append(line)
    return out


@pytest.fixture
def journal(tmp_path: Path) -> Iterator[JournalWriter]:
    (tmp_path / "journal").mkdir()
    writer = JournalWriter(tmp_path / "journal" / "system.journal")
    yield writer
    writer.close()


def saved_cursor(positions: Path) -> str | None:
    try:
        cursor: str | None = (
            json.loads(positions.read_text()).get("cursors", {}).get("journal/system")
        )
    except (OSError, ValueError):
        return None
    return cursor


def journalctl_pids(journal_file: Path) -> list[int]:
    """Live (not zombie) journalctl processes reading ``journal_file``."""
    found = []
    for pid, _ in live_processes():
        try:
            argv = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if argv[0].endswith(b"journalctl") and f"--file={journal_file}".encode() in argv:
            found.append(pid)
    return found


def test_journal_entries_relabeled_and_a_kill_9_neither_loses_nor_repeats(
    stack, unique, tmp_path, processes, journal
):
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (unique, 2))
    positions = tmp_path / "positions.json"
    settings = {
        "global": {"external_labels": {"cluster": "alpha"}},
        "positions": {"filename": str(positions)},
        "scrape_configs": [
            {
                "job_name": "system",
                "journal": {
                    "files": [str(journal.path)],
                    "max_age": 0,
                    "labels": {"source": "journald"},
                },
                "relabel_configs": [
                    {"source_labels": ["__journal__systemd_unit"], "target_label": "unit"},
                    {"source_labels": ["__journal_priority_keyword"], "target_label": "level"},
                    {"source_labels": ["unit"], "regex": "noisy.service", "action": "drop"},
                ],
            }
        ],
        "ferryman": {
            "kafka": {"bootstrap_servers": bootstrap, "topic": unique},
            "listen": "127.0.0.1:0",
            "host": "node-1",
            "batch_wait": "200ms",
            "batch_bytes": 600,
        },
    }
    expected: list[str] = []
    for i in range(60):
        unit = ("web.service", "db.service")[i % 2]
        journal.append(f"{unit[:2]} {i:04d}", unit=unit, priority=3 if i == 7 else 6)
        expected.append(f"{unit[:2]} {i:04d}")
    journal.append("dropped by relabeling", unit="noisy.service")  # the last entry

    shipper = processes(EdgeLogs(tmp_path, settings))
    shipped = Shipped(bootstrap, unique)
    wait_for(lambda: len(shipped.poll().entries) >= 60, 60, "the first entries")
    labels = {line: found for found, line in shipped.entries}
    assert labels["db 0007"] == {
        "job": "system",
        "source": "journald",
        "unit": "db.service",
        "level": "error",
        "host": "node-1",
        "cluster": "alpha",
    }
    assert labels["we 0000"]["unit"] == "web.service" and labels["we 0000"]["level"] == "info"
    # The cursor passes the dropped last entry once its batch was acknowledged.
    wait_for(
        lambda: saved_cursor(positions) == cursors(journal.path)[-1],
        30,
        "the cursor of the last entry (dropped by relabeling) to be saved",
    )
    assert shipped.by_stream() == streams_of(expected)

    # More entries, kill -9 while they are being shipped, more while it is down.
    for i in range(60, 660):
        journal.append(f"we {i:04d}", unit="web.service")
        expected.append(f"we {i:04d}")
    wait_for(lambda: len(shipped.poll().entries) >= 100, 60, "some of the new entries")
    followers = journalctl_pids(journal.path)
    assert followers, "no journalctl following the journal"
    shipper.kill9()
    # journalctl goes with the shipper (its parent-death signal), not at its next write.
    wait_for(lambda: not journalctl_pids(journal.path), 10, "journalctl gone with the shipper")
    at_kill = saved_cursor(positions)
    assert at_kill is not None
    for i in range(660, 700):
        journal.append(f"we {i:04d}", unit="web.service")
        expected.append(f"we {i:04d}")
    processes(EdgeLogs(tmp_path, settings))

    wait_for(lambda: set(shipped.poll().lines()) >= set(expected), 60, "every entry")
    wait_for(lambda: saved_cursor(positions) == cursors(journal.path)[-1], 30, "the last cursor")
    got = shipped.lines()
    assert {
        stream: list(dict.fromkeys(lines))  # nothing lost, order kept
        for stream, lines in shipped.by_stream().items()
    } == streams_of(expected)
    # Entries acknowledged before the kill (up to its saved cursor) came exactly once;
    # only those of the batch in flight at the kill may come twice.
    acknowledged = cursors(journal.path).index(at_kill) + 1  # journal entries up to it
    before = expected[: acknowledged - (acknowledged > 60)]  # less the dropped entry
    assert len(before) >= 60
    assert all(got.count(line) == 1 for line in before)
    assert len(got) - len(set(got)) <= 600
    assert "dropped by relabeling" not in got
