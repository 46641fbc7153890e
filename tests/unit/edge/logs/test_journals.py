"""The shipper's journal plumbing over a stand-in source: relabeling, grouping by
label set, the batch bound, the cursor of the last entry read (dropped or not),
errors and truncations counted, sources kept or restarted on reload. The real
journalctl is exercised in tests/integration/edge/test_logs_shipper_journal.py."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest

from edge.logs import journals as journals_module
from edge.logs.batch import Batch
from edge.logs.config import EdgeLogsConfig, load_config
from edge.logs.journal import JournalConfig, JournalEntry
from edge.logs.journals import JournalMetrics, Journals
from edge.logs.positions import Positions
from edge.logs.shipper import LogShipper
from ferryman.telemetry import Registry
from ferryman.wire.loki import parse_labels


class FakeSource:
    """Hands out what the test queued, as JournalSource.read does."""

    made: ClassVar[list[FakeSource]] = []

    def __init__(
        self, config: JournalConfig, cursor: str | None = None, *, max_line_bytes: int, name: str
    ) -> None:
        self.config, self.cursor, self.name = config, cursor, name
        self.max_line_bytes = max_line_bytes
        self.queued: list[JournalEntry] = []
        self.errors: dict[str, int] = {}
        self.last_cursor = cursor
        self.started = self.closed = False
        FakeSource.made.append(self)

    def start(self) -> FakeSource:
        self.started = True
        return self

    def read(self, max_entries: int = 1000) -> list[JournalEntry]:
        taken, self.queued = self.queued[:max_entries], self.queued[max_entries:]
        if taken:
            self.last_cursor = taken[-1].cursor
        return taken

    def drain_errors(self) -> dict[str, int]:
        drained, self.errors = self.errors, {}
        return drained

    def close(self) -> None:
        self.closed = True


@pytest.fixture(autouse=True)
def fake_source(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    FakeSource.made = []
    monkeypatch.setattr(journals_module, "JournalSource", FakeSource)
    yield


def entry(
    i: int, unit: str = "web.service", line: str | None = None, truncated: bool = False
) -> JournalEntry:
    return JournalEntry(
        1_000 + i,
        f"line {i}" if line is None else line,
        f"c{i}",
        {
            "source": "journald",  # the config's labels come with the entry
            "__journal__systemd_unit": unit,
            "__journal_priority": "6",
        },
        truncated,
    )


CONFIG = """
global: {external_labels: {cluster: alpha}}
scrape_configs:
  - job_name: system
    journal: {max_age: 1h, labels: {source: journald}}
    relabel_configs:
      - {source_labels: [__journal__systemd_unit], target_label: unit}
      - {source_labels: [unit], regex: noisy.service, action: drop}
ferryman: {host: node-1}
"""


def config(tmp_path: Path, text: str = CONFIG) -> EdgeLogsConfig:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text))
    return load_config(path)


def journals(tmp_path: Path, positions: Positions | None = None) -> tuple[Journals, Registry]:
    r = Registry()
    metrics = JournalMetrics(
        r.counter("ferryman_lines_read_total", ""),
        r.counter("ferryman_bytes_read_total", ""),
        r.counter("ferryman_lines_truncated_total", ""),
        r.counter("ferryman_lines_dropped_total", "", ["reason"]),
        r.counter("ferryman_errors_total", "", ["error_type", "stage"]),
    )
    return Journals(positions or Positions(tmp_path / "p.json"), metrics), r


def streams(batch: Batch) -> dict[str, list[str]]:
    return {parse_labels(k)["unit"]: [e.line for e in v] for k, v in batch.streams.items()}


def test_entries_are_relabeled_grouped_and_the_last_cursor_kept(tmp_path: Path) -> None:
    positions = Positions(tmp_path / "p.json")
    positions.set_cursor("journal/system", "saved")
    js, _ = journals(tmp_path, positions)
    js.configure(config(tmp_path))
    [source] = FakeSource.made
    assert source.started and source.cursor == "saved" and source.name == "system"
    source.queued = [entry(0), entry(1, "db.service"), entry(2), entry(3, "noisy.service")]
    source.errors = {"malformed_entry": 2}
    batch = Batch()
    assert js.fill(batch, 1 << 20)
    assert streams(batch) == {"web.service": ["line 0", "line 2"], "db.service": ["line 1"]}
    assert parse_labels(next(iter(batch.streams))) == {
        "job": "system",
        "source": "journald",
        "unit": "web.service",
        "host": "node-1",
        "cluster": "alpha",
    }
    assert batch.streams[next(iter(batch.streams))][0].timestamp_ns == 1_000
    assert batch.lines == 3
    assert batch.cursors == {"journal/system": "c3"}  # past the dropped entry
    assert js.metrics.dropped.value(reason="relabel") == 1
    assert js.metrics.errors.value(error_type="malformed_entry", stage="journal") == 2
    assert js.metrics.read.value() == 4
    assert not js.fill(batch, 1 << 20)


def test_only_dropped_entries_still_make_the_cursor_due(tmp_path: Path) -> None:
    js, _ = journals(tmp_path)
    js.configure(config(tmp_path))
    FakeSource.made[0].queued = [entry(0, "noisy.service")]
    batch = Batch()
    js.fill(batch, 1 << 20)
    assert batch.lines == 0 and batch.pending() and batch.cursors == {"journal/system": "c0"}


def test_the_batch_bound_stops_reading(tmp_path: Path) -> None:
    js, _ = journals(tmp_path)
    js.configure(config(tmp_path))
    source = FakeSource.made[0]
    source.queued = [entry(i, line="x" * 100, truncated=i == 0) for i in range(2000)]
    batch = Batch()
    js.fill(batch, 10_000)
    # Read a chunk at a time: at most one chunk past the bound, the rest left in journalctl.
    assert 10_000 <= batch.size < 10_000 + 256 * 100
    assert len(source.queued) == 2000 - batch.lines
    assert batch.cursors == {"journal/system": f"c{batch.lines - 1}"}
    assert js.metrics.truncated.value() == 1
    js.fill(batch, 10_000)
    assert len(source.queued) == 2000 - batch.lines  # full: nothing more read
    empty = [entry(i, line="") for i in range(5000)]
    source.queued = empty
    bounded = Batch()
    js.fill(bounded, 1000)  # empty messages count too
    assert bounded.lines < 5000


def test_reload_keeps_unchanged_sources_and_restarts_changed_ones_after_the_batch(
    tmp_path: Path,
) -> None:
    js, _ = journals(tmp_path)
    js.configure(config(tmp_path))
    first = FakeSource.made[0]
    first.queued = [entry(0), entry(1)]
    js.fill(Batch(), 1 << 20)
    js.configure(config(tmp_path))
    assert FakeSource.made == [first] and not first.closed
    js.configure(config(tmp_path, CONFIG.replace("max_age: 1h", "max_age: 2h")))
    assert first.closed
    second = FakeSource.made[1]
    assert second.cursor == "c1"  # what the batch holds is not read again
    js.configure(config(tmp_path, "scrape_configs: []\n"))
    assert second.closed
    js.close()


def test_no_journal_no_source(tmp_path: Path) -> None:
    js, _ = journals(tmp_path)
    settings: dict[str, Any] = {}
    js.configure(EdgeLogsConfig.model_validate(settings))
    assert FakeSource.made == [] and not js.fill(Batch(), 100)


def test_the_shipper_saves_a_batch_cursor_once_shipped(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_text(
        textwrap.dedent(f"""
        positions: {{filename: {tmp_path / "positions.json"}}}
        scrape_configs:
          - {{job_name: system, journal: {{}}}}
    """)
    )
    shipper = LogShipper(path)
    batch = Batch(cursors={"journal/system": "c9"})  # only dropped entries: no produce
    assert shipper._ship(batch)
    assert Positions(tmp_path / "positions.json").cursor("journal/system") == "c9"
