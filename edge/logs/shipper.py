"""``ferryman edge logs --config F``: tail files and read journals, batch lines into
Loki push messages, produce them to Kafka, and advance positions (file offsets,
journal cursors) only after Kafka acknowledged.

Which files, with which labels: :mod:`edge.logs.filetargets`. The journal:
:mod:`edge.logs.journals`.

One batch is in flight at a time; while Kafka is slow or away the shipper stops
reading, so the files and the journal are the buffer and memory stays bounded.
Each stream (a label set) goes to Kafka as its own message keyed by its labels, so
its lines stay in order in one partition.

A file whose scrape config has ``pipeline_stages`` runs its lines through its own
:class:`~edge.logs.stages.FilePipeline`; entries may then carry label sets of
their own and are grouped per label set. Its position advances only to the
pipeline's safe offset: past lines shipped or dropped, never past a line a stage
still holds (a partial CRI line, a multiline record in progress). Held lines are
not flushed at shutdown: the restarted shipper reads and re-assembles them.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import signal
import threading
import time
from bisect import bisect_right
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import accumulate
from pathlib import Path

from ferryman_native import loki_push_parts
from kafka import KafkaProducer
from kafka.errors import KafkaError

from ferryman import headers as h
from ferryman.http import serve
from ferryman.kafka import producer as kafka_producer
from ferryman.telemetry import Registry
from ferryman.wire import loki
from ferryman.wire.remote_write import snappy_compress

from .batch import Batch
from .config import EdgeLogsConfig, LogScrapeConfig, load_config
from .filetargets import FileTargets, rotated_away
from .journals import JournalMetrics, Journals
from .positions import HEAD_BYTES, Position, Positions, head_crc
from .readclock import Anchor, ReadClock
from .stages import FilePipeline, Record, StageConfig, StageMetrics, build_stages
from .tailer import TRUNCATION_MARKER, Tailer

__all__ = ["LogShipper"]

log = logging.getLogger("ferryman.edge.logs")


@dataclass
class _File:
    tailer: Tailer
    labels: dict[str, str]
    stages: tuple[StageConfig, ...] = ()
    pipeline: FilePipeline | None = None
    #: safe offsets already put in a batch, per (device, inode)
    marks: dict[tuple[int, int], int] = field(default_factory=dict)


def _budget(max_message: int) -> int:
    """Bytes of lines (plus 32 per line) one Kafka message may carry: snappy may grow
    its input by a sixth, headers and framing need a little more."""
    return (max_message - 4096) * 6 // 7


class LogShipper:
    def __init__(self, config_path: Path) -> None:
        self.config_path = config_path
        self.config: EdgeLogsConfig = load_config(config_path)
        r = self.registry = Registry()
        self.m_read = r.counter(
            "ferryman_lines_read_total", "Lines read from files and journal entries read."
        )
        self.m_bytes = r.counter("ferryman_bytes_read_total", "Bytes of lines read.")
        self.m_sent = r.counter("ferryman_records_sent_total", "Lines acknowledged by Kafka.")
        self.m_truncated = r.counter(
            "ferryman_lines_truncated_total", "Lines cut at max_line_bytes."
        )
        self.m_errors = r.counter(
            "ferryman_errors_total", "Errors by type and stage.", ["error_type", "stage"]
        )
        self.m_dropped = r.counter(
            "ferryman_lines_dropped_total",
            "Lines dropped by pipeline stages or relabeling, by reason.",
            ["reason"],
        )
        self.stage_metrics = StageMetrics(self.m_errors, self.m_dropped)
        self.m_files = r.gauge("ferryman_files", "Files being tailed.")
        self.m_lag = r.gauge(
            "ferryman_file_lag_bytes", "Bytes not yet shipped, per file.", ["filename"]
        )
        self.positions = Positions(self.config.positions.filename)
        self.clock = ReadClock(
            {
                (p.device, p.inode): [Anchor(*s) for s in p.stamps]
                for p in self.positions.all()
                if p.stamps
            }
        )
        self._paths: dict[tuple[int, int], str] = {}  # where each identity was read from
        self.targets = FileTargets(self.config)
        self.files: dict[str, _File] = {}
        # Files renamed away while we were down, read to their end from the saved offset.
        self.draining: dict[str, _File] = {}
        self.stopping = threading.Event()
        self._reload = False
        self._producer: KafkaProducer | None = None
        self.journals = Journals(
            self.positions,
            JournalMetrics(
                self.m_read, self.m_bytes, self.m_truncated, self.m_dropped, self.m_errors
            ),
        )

    # ---- discovery ------------------------------------------------------------------

    def _scan(self, batch: Batch) -> None:
        wanted = self.targets.wanted()
        for path in [p for p in self.files if p not in wanted]:
            self.files.pop(path).tailer.close()
        for path, target in wanted.items():
            if path in self.files:
                known_file = self.files[path]
                known_file.labels = target.labels
                if known_file.stages != target.job.pipeline_stages:
                    self._restage(path, known_file, target.job, batch)
                continue
            start = 0
            try:
                stat = os.stat(path)
            except FileNotFoundError:
                continue
            known = self.positions.get(stat.st_dev, stat.st_ino)
            if known is not None:
                start = known.offset
                if known.head_len and head_crc(path, known.head_len) != known.head_crc:
                    log.warning(
                        "%s was truncated and rewritten while we were away; "
                        "reading it from the start",
                        path,
                    )
                    start = 0
            self.files[path] = self._file(path, start, target.labels, target.job)
            log.info("tailing %s from offset %d", path, start)
        live = {f.tailer.identity for f in [*self.files.values(), *self.draining.values()]}
        # A file our tailer followed through its rotation has lines in the batch in
        # flight: its saved position lags until Kafka acknowledges, which must not
        # make it look rotated away while we were down (it would be read twice).
        live.update(batch.ends)
        live.update(f.pipeline.identity for f in self.files.values() if f.pipeline is not None)
        for path, position in rotated_away(self.positions.all(), live, wanted):
            log.info(
                "draining %s (rotated from %s while we were away) from offset %d",
                path,
                position.path,
                position.offset,
            )
            old = wanted[position.path]
            self.draining[path] = self._file(path, position.offset, old.labels, old.job)
        self.m_files.set(len(self.files) + len(self.draining))

    def _file(self, path: str, start: int, labels: dict[str, str], job: LogScrapeConfig) -> _File:
        tailer = Tailer(
            Path(path), start_offset=start, max_line_bytes=self.config.ferryman.max_line_bytes
        )
        return _File(tailer, labels, job.pipeline_stages, self._pipeline(tailer, job))

    def _pipeline(self, tailer: Tailer, job: LogScrapeConfig) -> FilePipeline | None:
        if not job.pipeline_stages:
            return None
        stages = build_stages(
            job.pipeline_stages, self.stage_metrics, self.config.ferryman.max_line_bytes
        )
        return FilePipeline(stages, tailer.identity, tailer.offset)

    def _restage(self, path: str, f: _File, job: LogScrapeConfig, batch: Batch) -> None:
        """The file's stages changed on reload: what the old ones held is shipped as it
        is, and the new ones start after it."""
        if f.pipeline is not None:
            self._add(path, f, f.pipeline.release(time.monotonic()), batch)
        f.stages = job.pipeline_stages
        f.pipeline = self._pipeline(f.tailer, job)

    # ---- the loop -------------------------------------------------------------------

    def run(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self.stopping.set())
        signal.signal(signal.SIGINT, lambda *_: self.stopping.set())
        signal.signal(signal.SIGHUP, lambda *_: setattr(self, "_reload", True))
        server = serve(
            self.config.ferryman.listen,
            self.registry,
            {"/-/healthy": lambda: True, "/-/ready": lambda: True},
        )
        log.info(
            "edge log shipper running: Kafka %s topic %s, positions %s",
            self.config.ferryman.kafka.bootstrap_servers,
            self.config.ferryman.kafka.topic,
            self.config.positions.filename,
        )
        batch = Batch()
        scanned = 0.0
        backoff = 0.2
        try:
            self.journals.configure(self.config)
            while not self.stopping.is_set():
                if self._reload:
                    self._reload = False
                    self._reload_config()
                    scanned = 0.0
                if self.targets.refresh():
                    scanned = 0.0
                if time.monotonic() - scanned >= self.config.ferryman.rescan_interval:
                    self._scan(batch)
                    scanned = time.monotonic()
                settings = self.config.ferryman
                read_any = self._fill(batch)
                read_any = self.journals.fill(batch, settings.batch_bytes) or read_any
                due = batch.pending() and (
                    batch.size >= settings.batch_bytes
                    or time.monotonic() - batch.started >= settings.batch_wait
                )
                if due:
                    if self._ship(batch):
                        batch = Batch()
                        backoff = 0.2
                    else:
                        self.stopping.wait(backoff)
                        backoff = min(backoff * 2, 10.0)
                elif not read_any:
                    self.stopping.wait(0.1)
            if batch.pending():
                self._ship(batch)
        finally:
            self.journals.close()
            self.targets.close()
            for f in [*self.files.values(), *self.draining.values()]:
                f.tailer.close()
            if self._producer is not None:
                self._producer.close(timeout=5)
            server.shutdown()
            log.info("edge log shipper stopped")

    def _fill(self, batch: Batch) -> bool:
        """Read new lines into the batch, up to its size bound."""
        read_any = False
        limit = self.config.ferryman.batch_bytes
        now_ns = time.time_ns()
        for path in [p for p, f in self.draining.items() if f.tailer.at_end()]:
            done = self.draining.pop(path)
            if done.pipeline is not None:  # nothing more will come: ship what is held
                self._add(path, done, done.pipeline.release(time.monotonic()), batch)
            done.tailer.close()
        for path, f in [*self.draining.items(), *self.files.items()]:
            if batch.size >= limit:
                break
            before = f.tailer.truncations
            lines = f.tailer.read_lines()
            self.m_truncated.inc(f.tailer.truncations - before)
            stamps = self.clock.stamp_lines(lines, now_ns)
            if lines:
                self._paths[lines.identity] = path
            if f.pipeline is not None:
                rows = lines.rows()
                if rows:
                    read_any = True
                    self.m_read.inc(len(rows))
                    self.m_bytes.inc(sum(len(line.text) for line in rows))
                if rows or f.pipeline.held_start() is not None:
                    self._add(
                        path, f, f.pipeline.process(rows, f.labels, stamps, time.monotonic()), batch
                    )
                continue
            if not lines:
                continue
            read_any = True
            if not batch.lines:
                batch.started = time.monotonic()
            # By column: no object per line on the way from the file to the message.
            entries = batch.streams.setdefault(loki.format_labels(f.labels), loki.Entries())
            entries.extend_columns(stamps, lines.texts)
            size = sum(map(len, lines.texts))
            batch.size += size
            batch.lines += len(lines)
            batch.ends[lines.identity] = (path, lines.end)
            self.m_read.inc(len(lines))
            self.m_bytes.inc(size)
        return read_any

    def _add(self, path: str, f: _File, records: list[Record], batch: Batch) -> None:
        """Put a pipeline's output in the batch, and its file's safe offsets."""
        assert f.pipeline is not None
        if records and not batch.lines and not batch.ends:
            batch.started = time.monotonic()
        file_key = ""
        for record in records:
            if record.labels is f.labels:
                key = file_key = file_key or loki.format_labels(f.labels)
            else:
                key = loki.format_labels(record.labels)
            batch.streams.setdefault(key, loki.Entries()).append(
                loki.Entry(record.timestamp_ns, record.line)
            )
            batch.size += len(record.line)
        batch.lines += len(records)
        for identity, offset in f.pipeline.safe_offsets().items():
            if f.marks.get(identity) != offset:
                if not batch.lines and not batch.ends:
                    batch.started = time.monotonic()  # only dropped lines: save positions
                f.marks[identity] = offset
                batch.ends[identity] = (path, offset)

    def _save_anchors(self) -> None:
        """Before a batch is produced, the anchors of its lines go to disk, so lines
        read again after a crash get the timestamps they were shipped with."""
        if not self.clock.unsaved:
            return
        for identity, path in self._paths.items():
            anchors = self.clock.pending(identity)
            known = self.positions.get(*identity)
            if known is None and not anchors:
                continue
            stamps = tuple((a.start, a.end, a.ts) for a in anchors)
            if known is None:
                known = Position(path, identity[0], identity[1], 0)
            elif known.stamps == stamps:
                continue
            self.positions.set(dataclasses.replace(known, stamps=stamps))
        self.positions.save()
        self.clock.unsaved = False

    def _ship(self, batch: Batch) -> bool:
        """Produce one message per stream; positions advance only if all were acked."""
        kafka = self.config.ferryman.kafka
        try:
            self._save_anchors()
            producer = self._ensure_producer() if batch.streams else None
            futures = []
            for labels_text, entries in batch.streams.items():
                assert producer is not None
                for payload in self._messages(labels_text, entries, kafka.max_message_bytes):
                    futures.append(
                        producer.send(
                            kafka.topic,
                            key=labels_text.encode(),
                            value=payload,
                            headers=self._headers(),
                        )
                    )
            if producer is not None:
                producer.flush(timeout=kafka.acks_timeout)
            for future in futures:
                future.get(timeout=kafka.acks_timeout)
        except (KafkaError, OSError) as exc:
            self.m_errors.labels(error_type=type(exc).__name__, stage="produce").inc()
            log.warning(
                "Kafka did not take %d lines (%s: %s); holding them, reading paused",
                batch.lines,
                type(exc).__name__,
                exc,
            )
            self._discard_producer()
            return False
        for (device, inode), (path, offset) in batch.ends.items():
            length = min(HEAD_BYTES, offset)
            crc = head_crc(path, length) if length else 0
            self.clock.acknowledged((device, inode), offset)
            stamps = tuple((a.start, a.end, a.ts) for a in self.clock.pending((device, inode)))
            self.positions.set(
                Position(
                    path, device, inode, offset, crc or 0, length if crc is not None else 0, stamps
                )
            )
            try:
                self.m_lag.labels(filename=path).set(max(0, os.stat(path).st_size - offset))
            except FileNotFoundError:
                self.m_lag.remove(filename=path)
        live = {f.tailer.identity for f in [*self.files.values(), *self.draining.values()]}
        # A file rotated away keeps its position while its pipeline still holds lines
        # of it, so a crash now re-reads them from the renamed file.
        live.update(
            f.pipeline.identity
            for f in self.files.values()
            if f.pipeline is not None and f.pipeline.held_start() is not None
        )
        for stale in [p for p in self.positions.all() if (p.device, p.inode) not in live]:
            self.positions.forget(stale.device, stale.inode)  # rotated away and finished
            self.clock.forget((stale.device, stale.inode))
            self._paths.pop((stale.device, stale.inode), None)
        for key, cursor in batch.cursors.items():
            self.positions.set_cursor(key, cursor)
        self.positions.save()
        self.m_sent.inc(batch.lines)
        return True

    def _messages(self, labels_text: str, entries: loki.Entries, max_message: int) -> list[bytes]:
        """A stream's Kafka messages, snappy-compressed Loki pushes each below
        ``max_message``: natively in one pass (``ferryman_native``); in Python when
        that declines (a line too big for any message is cut here, with the marker)."""
        parts = loki_push_parts(
            labels_text, entries.timestamps, entries.lines, _budget(max_message)
        )
        if parts is not None:
            return parts
        labels = loki.parse_labels(labels_text)
        return [
            snappy_compress(loki.encode_push_request([loki.Stream(labels, part)]))
            for part in self._split(entries, max_message)
        ]

    def _split(self, entries: Sequence[loki.Entry], max_message: int) -> list[loki.Entries]:
        """Cut a stream's entries into messages Kafka will take (see :func:`_budget`)."""
        budget = _budget(max_message)
        columns = loki.Entries.of(entries)
        lines = columns.lines
        if all(map(str.isascii, lines)):
            sizes = list(map(len, lines))
        else:
            sizes = list(map(len, map(str.encode, lines)))
        if sizes and max(sizes) + 32 > budget:
            columns, sizes = self._cut(columns, sizes, budget)
        # A part takes entries while their sizes (+ 32 each) add up to the budget.
        sums = list(accumulate(map((32).__add__, sizes), initial=0))
        parts: list[loki.Entries] = []
        start = 0
        while start < len(sizes):
            end = max(bisect_right(sums, sums[start] + budget, start + 1) - 1, start + 1)
            parts.append(columns[start:end])
            start = end
        return parts or [loki.Entries()]

    def _cut(
        self, columns: loki.Entries, sizes: list[int], budget: int
    ) -> tuple[loki.Entries, list[int]]:
        """Lines too big for any message are cut, marked and counted."""
        lines, sizes = list(columns.lines), list(sizes)
        keep = budget - 64 - len(TRUNCATION_MARKER.encode())
        for index, size in enumerate(sizes):
            if size + 32 > budget:
                lines[index] = (
                    lines[index].encode()[:keep].decode("utf-8", "ignore") + TRUNCATION_MARKER
                )
                sizes[index] = budget - 32
                self.m_truncated.inc()
        return loki.Entries(list(columns.timestamps), lines), sizes

    def _headers(self) -> list[tuple[str, bytes]]:
        out = [(h.SCHEMA, h.SCHEMA_LOKI_PUSH)]
        cluster = self.config.global_.external_labels.get("cluster")
        if cluster:
            out.append((h.CLUSTER, cluster.encode()))
        if self.config.ferryman.kafka.tenant:
            out.append((h.TENANT, self.config.ferryman.kafka.tenant.encode()))
        return out

    def _ensure_producer(self) -> KafkaProducer:
        if self._producer is None:
            timeout_ms = int(self.config.ferryman.kafka.acks_timeout * 1000)
            self._producer = kafka_producer(
                self.config.ferryman.kafka.bootstrap_servers,
                self.config.ferryman.kafka.client_id,
                max_request_size=max(16 << 20, self.config.ferryman.kafka.max_message_bytes),
                request_timeout_ms=timeout_ms,
                max_block_ms=timeout_ms,
            )
        return self._producer

    def _discard_producer(self) -> None:
        if self._producer is not None:
            try:
                self._producer.close(timeout=1)
            except Exception as exc:  # a broken producer must not stop the shipper
                log.debug("closing producer: %s", exc)
            self._producer = None

    def _reload_config(self) -> None:
        try:
            self.config = load_config(self.config_path)
        except Exception as exc:
            log.error("reload failed, keeping the running configuration: %s", exc)
            return
        self.targets.reconfigure(self.config)
        self.journals.configure(self.config)
        log.info("configuration reloaded from %s", self.config_path)
