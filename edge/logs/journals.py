"""The journal side of the edge log shipper.

One :class:`~edge.logs.journal.JournalSource` per scrape config with ``journal:``,
started after the cursor saved for it (``journal/<job_name>`` in the positions
file). Each loop its entries are relabeled with the job's ``relabel_configs`` (over
``job``, the config's labels and the ``__journal_*`` meta labels), ``__`` labels
dropped, ``host`` and external labels added, and put in the batch grouped by label
set, up to the batch's size bound. The batch remembers the cursor of the last entry
read, relabeling dropped or not; the shipper saves it once Kafka acknowledged the
batch, so a restart re-reads nothing acknowledged and loses nothing.

While Kafka is away the batch is full and nothing is read: the source's buffer
fills, journalctl blocks on its pipe and the journal is the buffer.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

from ferryman.prom.relabel import Relabeler, compile_rules
from ferryman.telemetry import Counter
from ferryman.wire import loki

from .batch import Batch, stream_labels
from .config import EdgeLogsConfig, LogScrapeConfig
from .journal import JournalConfig, JournalEntry, JournalSource
from .positions import Positions

__all__ = ["CURSOR_PREFIX", "JournalMetrics", "Journals"]

log = logging.getLogger("ferryman.edge.logs")

CURSOR_PREFIX = "journal/"
#: entries taken from a source at a time, between checks of the batch's size bound
READ_CHUNK = 256


@dataclass(frozen=True)
class JournalMetrics:
    read: Counter
    read_bytes: Counter
    truncated: Counter
    dropped: Counter  # by reason
    errors: Counter  # by error_type, stage


@dataclass
class _Journal:
    job: LogScrapeConfig
    config: JournalConfig
    max_line_bytes: int
    source: JournalSource
    rules: Relabeler


class Journals:
    def __init__(self, positions: Positions, metrics: JournalMetrics) -> None:
        self.positions = positions
        self.metrics = metrics
        self._journals: dict[str, _Journal] = {}
        self._host = ""
        self._external: dict[str, str] = {}

    def configure(self, config: EdgeLogsConfig) -> None:
        """Starts the sources of ``config`` (at start and on reload). A job whose
        journal settings did not change keeps its journalctl; one that changed is
        restarted after the last entry already read into a batch, so nothing in the
        batch is read twice."""
        self._host = config.ferryman.host
        self._external = dict(config.global_.external_labels)
        max_line = config.ferryman.max_line_bytes
        old, self._journals = self._journals, {}
        for job in config.scrape_configs:
            if job.journal is None:
                continue
            previous = old.pop(job.job_name, None)
            rules = compile_rules(job.relabel_configs)
            if previous is not None and (previous.config, previous.max_line_bytes) == (
                job.journal,
                max_line,
            ):
                self._journals[job.job_name] = _Journal(
                    job, job.journal, max_line, previous.source, rules
                )
                continue
            if previous is not None:
                cursor = previous.source.last_cursor
                previous.source.close()
            else:
                cursor = self.positions.cursor(CURSOR_PREFIX + job.job_name)
            source = JournalSource(
                job.journal, cursor, max_line_bytes=max_line, name=job.job_name
            ).start()
            log.info(
                "reading the journal for job %s %s",
                job.job_name,
                "after the saved cursor"
                if cursor
                else f"from {job.journal.max_age:.0f}s ago"
                if job.journal.max_age
                else "from its start",
            )
            self._journals[job.job_name] = _Journal(job, job.journal, max_line, source, rules)
        for gone in old.values():
            gone.source.close()

    def fill(self, batch: Batch, limit: int) -> bool:
        """Entries into the batch until it holds ``limit`` characters of lines (an
        empty line counts one, so it stays bounded); True if any were read."""
        read_any = False
        for name, journal in self._journals.items():
            for kind, count in journal.source.drain_errors().items():
                self.metrics.errors.labels(error_type=kind, stage="journal").inc(count)
            while batch.size < limit:
                entries = journal.source.read(READ_CHUNK)
                if not entries:
                    break
                read_any = True
                self._add(journal, entries, batch)
                batch.cursors[CURSOR_PREFIX + name] = entries[-1].cursor
        return read_any

    def _add(self, journal: _Journal, entries: list[JournalEntry], batch: Batch) -> None:
        if not batch.pending():
            batch.started = time.monotonic()
        name = journal.job.job_name
        keys: dict[tuple[tuple[str, str], ...], str] = {}
        added = dropped = size = truncated = 0
        for entry in entries:
            size += len(entry.line)
            truncated += entry.truncated
            relabeled = journal.rules.apply({"job": name, **entry.labels})
            if relabeled is None:
                dropped += 1
                continue
            labels = stream_labels(relabeled, self._host, self._external)
            identity = tuple(sorted(labels.items()))
            key = keys.get(identity)
            if key is None:
                key = keys[identity] = loki.format_labels(labels)
            batch.streams.setdefault(key, loki.Entries()).append(
                loki.Entry(entry.timestamp_ns, entry.line)
            )
            batch.size += len(entry.line) or 1
            added += 1
        batch.lines += added
        self.metrics.read.inc(len(entries))
        self.metrics.read_bytes.inc(size)
        if truncated:
            self.metrics.truncated.inc(truncated)
        if dropped:
            self.metrics.dropped.labels(reason="relabel").inc(dropped)

    def close(self) -> None:
        """Stops every journalctl; entries read but not shipped come again after the
        saved cursor."""
        for journal in self._journals.values():
            journal.source.close()
        self._journals = {}
