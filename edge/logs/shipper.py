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

Batch lineage (``ferryman.lineage``, see :mod:`ferryman.lineage`): every message
carries a ``traceparent``; its context is made when the batch is first produced and
kept on the batch across attempts. A sampled message, or any message of a batch whose
produce failed once, is recorded as a span from the batch's first line read to the
broker's acknowledgement.
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
from typing import Any

from ferryman_native import lines_deltas, loki_push_split
from kafka import KafkaProducer
from kafka.errors import KafkaError

from ferryman import headers as h
from ferryman.http import serve
from ferryman.kafka import producer as kafka_producer
from ferryman.kafkacheck import check_kafka
from ferryman.lineage import LineageExporter, Span, SpanContext, make_traceparent, new_context
from ferryman.telemetry import Registry
from ferryman.wire import loki
from ferryman.wire.lines import encode_lines, source_id
from ferryman.wire.otlp import CLUSTER_ATTRIBUTE
from ferryman.wire.remote_write import snappy_compress

from .batch import Batch
from .compressed import READABLE, CompressedTailer, decompressed_head, decompressed_mark
from .config import EdgeLogsConfig, LogScrapeConfig, load_config
from .filetargets import FileTargets, WantedFile
from .identity import compression, fingerprint
from .journals import JournalMetrics, Journals
from .positions import Identity, Position, Positions
from .promtail import read_promtail_positions
from .readclock import Anchor, ReadClock
from .stages import FilePipeline, Record, StageConfig, StageMetrics, build_stages
from .tailer import TRUNCATION_MARKER, Lines, Tailer
from .tracker import Live, live_by_fingerprint, place, retire

__all__ = ["LogShipper"]

log = logging.getLogger("ferryman.edge.logs")


@dataclass
class _File:
    """One file being read, known by its identity (device, inode): see
    :mod:`edge.logs.identity`."""

    tailer: Tailer
    path: str  # where it was last found
    origin: str  # the path whose labels it carries: the one it was first shipped from
    labels: dict[str, str]
    job: LogScrapeConfig | None
    fingerprint: int | None
    stages: tuple[StageConfig, ...] = ()
    pipeline: FilePipeline | None = None
    #: safe offsets already put in a batch, per (device, inode)
    marks: dict[tuple[int, int], int] = field(default_factory=dict)
    wanted: bool = True  # found under a path of a scrape config at the last scan
    idle_since: float | None = None  # at its end and no longer wanted, since
    compressed: bool = False
    #: where its position stands (the offset it was placed at, then acknowledged ones)
    acked: int = 0
    #: placed on content whose position is not on disk yet (a copy of content emptied
    #: in place since the last acknowledgement): not written until the next one
    provisional: bool = False


def _still_at(path: str, identity: Identity) -> bool:
    try:
        stat = os.stat(path)
    except OSError:
        return False
    return (stat.st_dev, stat.st_ino) == identity


def _budget(max_message: int) -> int:
    """Bytes of lines (plus 32 per line) one Kafka message may carry: snappy may grow
    its input by a sixth, framing needs a little more, and the ``ferryman.lines``
    header (at most 3 bytes per line of up to 1 MiB, under a tenth of this) the rest."""
    return (max_message - 4096) * 6 // 7 * 9 // 10


def _cut_runs(
    runs: list[tuple[bytes, list[int]]] | None, parts: list[tuple[bytes, int]]
) -> list[list[tuple[bytes, list[int]]] | None]:
    """The runs of each part, given the number of entries in each (by slices: no
    object per line)."""
    if runs is None:
        return [None] * len(parts)
    out: list[list[tuple[bytes, list[int]]] | None] = []
    run, used = 0, 0  # the run being cut, and how many of its ends went out already
    for _, count in parts:
        part: list[tuple[bytes, list[int]]] = []
        while count:
            source, ends = runs[run]
            take = min(count, len(ends) - used)
            part.append((source, ends[used : used + take]))
            count -= take
            used += take
            if used == len(ends):
                run, used = run + 1, 0
        out.append(part)
    return out


class LogShipper:
    def __init__(self, config_path: Path, *, expand_env: bool = False) -> None:
        self.config_path = config_path
        self.expand_env = expand_env
        self.config: EdgeLogsConfig = load_config(config_path, expand_env=expand_env)
        #: Read once at start; a reload keeps them (restart to change them).
        self.kafka_credentials = self.config.ferryman.kafka.credentials("ferryman.kafka")
        r = self.registry = Registry()
        lineage = self.config.ferryman.lineage
        cluster = self.config.global_.external_labels.get("cluster")
        self.lineage = (
            LineageExporter(
                lineage,
                bootstrap_servers=self.config.ferryman.kafka.bootstrap_servers,
                registry=r,
                resource={
                    "service.name": "ferryman-edge-logs",
                    **({CLUSTER_ATTRIBUTE: cluster} if cluster else {}),
                },
                credentials=self.kafka_credentials,
                cluster=cluster,
            )
            if lineage.enabled
            else None
        )
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
        self.positions = self._load_positions(self.config.positions.filename)
        self.clock = ReadClock(
            {
                (p.device, p.inode): [Anchor(*s) for s in p.stamps]
                for p in self.positions.all()
                if p.stamps
            }
        )
        self.m_skipped = r.counter(
            "ferryman_files_skipped_total",
            "Files found and not read, by reason (compressed rotations).",
            ["reason"],
        )
        self.targets = FileTargets(self.config)
        #: the files being read, by identity (device, inode)
        self.files: dict[Identity, _File] = {}
        self._closed: dict[Identity, _File] = {}  # closed since the last acknowledgement
        self._waiting: dict[Identity, tuple[int, int, int]] = {}  # copies of live files
        self._skipped: set[Identity] = set()  # compressed files not read (counted once)
        self._recovered = False
        self._alive: set[Identity] = set()  # found or open at the last scan
        self._started = time.time()
        self.stopping = threading.Event()
        self._reload = False
        self._producer: KafkaProducer | None = None
        self.journals = Journals(
            self.positions,
            JournalMetrics(
                self.m_read, self.m_bytes, self.m_truncated, self.m_dropped, self.m_errors
            ),
        )

    def _load_positions(self, filename: Path) -> Positions:
        """Ferryman's positions; when there are none, Promtail's (``filename`` may name
        Promtail's positions.yaml: it is kept as ``<filename>.promtail``, and read from
        there until ferryman's own file was written once)."""
        kept = filename.with_name(filename.name + ".promtail")
        imported = read_promtail_positions(filename)
        if imported is not None:
            filename.rename(kept)
        elif not filename.exists() and kept.exists():
            imported = read_promtail_positions(kept)
        positions = Positions(filename)
        if imported is None or positions.loaded:
            return positions
        now = time.time()
        for path, offset in sorted(imported.files.items()):
            tailer = Tailer(Path(path), follow=False)
            fp = fingerprint(tailer.head())
            if tailer._file is not None and fp is not None and 0 < offset <= tailer.size():
                device, inode = tailer.identity
                positions.set(
                    Position(path, device, inode, offset, fp, tailer.mark_at(offset) or 0, seen=now)
                )
            else:
                log.info("%s: Promtail's offset %d no longer fits it; read from 0", path, offset)
            tailer.close()
        for key, cursor in imported.cursors.items():
            positions.set_cursor(key, cursor)
        positions.save()
        log.info(
            "carried over Promtail's positions: %d files, %d journal cursors",
            len(positions.all()),
            len(imported.cursors),
        )
        return positions

    # ---- which files ------------------------------------------------------------------

    def _scan(self, batch: Batch) -> None:
        """Find the files the scrape configs name now, and start reading the ones no
        reader has open (see :func:`edge.logs.tracker.place`)."""
        now = time.time()
        wanted = self.targets.wanted()
        found: dict[Identity, tuple[str, WantedFile]] = {}
        for path, target in wanted.items():
            try:
                stat = os.stat(path)
            except OSError:
                continue
            found.setdefault((stat.st_dev, stat.st_ino), (path, target))
        for identity, f in list(self.files.items()):
            hit = found.get(identity)
            f.wanted = hit is not None
            if hit is None and not f.compressed and _still_at(f.path, identity):
                # Still where it was, but no scrape config names it any more (reload,
                # discovery): not read further.
                self._retire_reader(identity, f, batch)
                continue
            if hit is not None:
                f.path, f.idle_since = hit[0], None
                if hit[0] == f.origin:  # under its first name: labels follow the config
                    f.labels = hit[1].labels
                    if f.job is not hit[1].job and not f.compressed:
                        f.job = hit[1].job
                        if f.stages != hit[1].job.pipeline_stages:
                            self._restage(f, hit[1].job, batch)
            self._check_head(f, batch)
        # Files with a position first: one replaced in place makes its old content an
        # orphan, which a copy placed after it continues.
        new = [i for i in found if i not in self.files]
        new.sort(key=lambda i: self.positions.get(*i) is None)
        self._alive = set(found) | set(self.files)
        for identity in new:
            path, target = found[identity]
            self._start(path, target, wanted, batch, now)
        if not self._recovered:
            self._recovered = True
            self._recover(set(found), wanted, now)
        self.positions.seen([*found, *self.files], now)
        self.m_files.set(len(self.files))

    def _check_head(self, f: _File, batch: Batch) -> None:
        """A file emptied in place (copytruncate), or whose first line changed (rewritten
        and grown past where it was read before its reader saw it shrink), is read again
        from its start; the old content is an orphan a copy may continue. Done before new
        files are placed, so a copy found in the same scan finds its orphan."""
        if f.compressed:
            return
        fp = fingerprint(f.tailer.head())
        if f.tailer.size() < f.tailer.offset:
            f.tailer.truncated()
        elif fp is not None and f.fingerprint is not None and fp != f.fingerprint:
            log.warning("%s was rewritten in place; reading it from the start", f.path)
            f.tailer.truncated()
        self._take_truncations(f, batch)
        if f.fingerprint is None:
            f.fingerprint = fp

    def _start(
        self, path: str, target: WantedFile, wanted: dict[str, WantedFile], batch: Batch, now: float
    ) -> None:
        max_line = self.config.ferryman.max_line_bytes
        tailer = Tailer(Path(path), max_line_bytes=max_line, follow=False)
        identity = tailer.identity
        if tailer._file is None or identity in self.files:
            tailer.close()  # gone, or renamed onto a file being read since the stat
            return
        kind = compression(path, tailer.head())
        if kind is not None:
            tailer.close()
            self._start_compressed(path, identity, kind, target, wanted, now)
            return
        waiting = (tailer.size(), self.positions.version, len(self.files))
        if self._waiting.get(identity) == waiting or self._unacknowledged(tailer.head()):
            tailer.close()
            return
        placement = place(tailer, self.positions, self._live(), now, self._alive)
        if placement is None:
            self._waiting[identity] = waiting
            tailer.close()
            return
        self._waiting.pop(identity, None)
        tailer.seek(placement.start)
        labels, job, origin = target.labels, target.job, path
        known = placement.continues
        if known is not None and known.labels:
            origin = known.path
            if origin in wanted:
                labels, job = wanted[origin].labels, wanted[origin].job
            else:
                labels, job = known.labels, self._job(known.job) or target.job
        f = self.files[identity] = self._file(
            tailer, path, origin, labels, job, placement.fingerprint
        )
        f.acked = placement.start
        f.provisional = placement.reason == "copy"
        if placement.reason != "known":
            self.clock.forget(identity)  # anchors of content that is gone
        log.info(
            "tailing %s from offset %d (%s%s)",
            path,
            placement.start,
            placement.reason,
            f" of {known.path}" if known is not None and known.path != path else "",
        )

    def _start_compressed(
        self,
        path: str,
        identity: Identity,
        kind: str,
        target: WantedFile,
        wanted: dict[str, WantedFile],
        now: float,
    ) -> None:
        """A compressed rotation is never read as text; with the job's ``decompression``
        enabled it is read once, decompressed, from where its uncompressed original was
        read up to (matched by fingerprint and mark), or from its start."""
        options = target.job.decompression
        known = self.positions.get(*identity)
        if known is not None and not known.compressed:
            retire(self.positions, known, now)  # an inode reused by the compressed file
            known = None
        if known is not None and known.compressed and known.done:
            return
        if options is None or not options.enabled or kind not in READABLE:
            if identity not in self._skipped:
                self._skipped.add(identity)
                reason = "compressed" if kind in READABLE else "compressed_unsupported"
                self.m_skipped.labels(reason=reason).inc()
                log.info("not reading %s: %s-compressed", path, kind)
            return
        if options.format is not None and options.format != kind:
            return
        try:
            if time.time() - os.stat(path).st_mtime < options.initial_delay:
                return  # may still be being written
        except OSError:
            return
        head = decompressed_head(Path(path), kind)
        fp = fingerprint(head) if head is not None else None
        if fp is None:
            return
        start, origin, labels, job = 0, path, target.labels, target.job
        continues = known if known is not None and known.compressed else None
        if continues is None:
            if any(True for _ in self._live()(fp)) or self._unacknowledged(head or b""):
                return  # its original is still being read: it goes on from there
            twins = [
                p
                for p in [*self.positions.all(), *self.positions.orphans()]
                if p.fingerprint == fp and not p.compressed and p.identity != identity
            ]
            for twin in sorted(twins, key=lambda p: -p.offset):
                if not twin.mark or decompressed_mark(Path(path), kind, twin.offset) == twin.mark:
                    continues = twin
                    break
        if continues is not None:
            start, origin = continues.offset, continues.path
            if origin in wanted:
                labels, job = wanted[origin].labels, wanted[origin].job
            elif continues.labels:
                labels, job = continues.labels, self._job(continues.job) or target.job
        tailer = CompressedTailer(
            Path(path), kind, start_offset=start, max_line_bytes=self.config.ferryman.max_line_bytes
        )
        if tailer.error is not None:
            self.m_errors.labels(error_type="decompress", stage="read").inc()
            log.warning("cannot read %s: %s", path, tailer.error)
            tailer.close()
            return
        f = self._file(tailer, path, origin, labels, job, fp)
        f.compressed = True
        self.files[tailer.identity] = f
        log.info("reading compressed %s from offset %d", path, tailer.offset)

    def _recover(self, found: set[Identity], wanted: dict[str, WantedFile], now: float) -> None:
        """Once, at start: files renamed while we were down to names no scrape config
        matches, not read to their end, are found in their directory by identity and
        read to their end."""
        listed: dict[str, list[os.DirEntry[str]]] = {}
        for known in self.positions.all():
            if known.identity in found or known.identity in self.files or known.compressed:
                continue
            directory = os.path.dirname(known.path)
            if directory not in listed:
                try:
                    listed[directory] = list(os.scandir(directory))
                except OSError:
                    listed[directory] = []
            for entry in listed[directory]:
                try:
                    stat = entry.stat(follow_symlinks=False)
                except OSError:
                    continue
                if (stat.st_dev, stat.st_ino) != known.identity or stat.st_size <= known.offset:
                    continue
                tailer = Tailer(
                    Path(entry.path),
                    max_line_bytes=self.config.ferryman.max_line_bytes,
                    follow=False,
                )
                placement = None
                if compression(entry.path, tailer.head()) is None:
                    placement = place(tailer, self.positions, self._live(), now, self._alive)
                if placement is None or placement.reason != "known" or known.identity in self.files:
                    tailer.close()
                    break
                tailer.seek(placement.start)
                origin = known.path
                labels, job = (
                    (wanted[origin].labels, wanted[origin].job)
                    if origin in wanted
                    else (known.labels, self._job(known.job))
                )
                f = self._file(tailer, entry.path, origin, labels, job, placement.fingerprint)
                f.wanted, f.acked = False, placement.start
                self.files[known.identity] = f
                log.info(
                    "draining %s (rotated from %s while we were away) from offset %d",
                    entry.path,
                    known.path,
                    known.offset,
                )
                break

    def _source(self, f: _File) -> bytes:
        """The source id of ``f``'s lines (the Elasticsearch ``_id`` is derived from it
        and a line's end offset): its host, identity and fingerprint, not its name."""
        if f.fingerprint is None:
            f.fingerprint = fingerprint(f.tailer.head())
        device, inode = f.tailer.identity
        return source_id(self.config.ferryman.host, device, inode, f.fingerprint or 0)

    def _unacknowledged(self, head: bytes) -> bool:
        """Whether a file closed since the last acknowledgement has this head: a copy
        of it waits until its position is written."""
        fp = fingerprint(head)
        return fp is not None and any(f.fingerprint == fp for f in self._closed.values())

    def _live(self) -> Live:
        return live_by_fingerprint(
            (f.fingerprint, f.tailer) for f in self.files.values() if not f.compressed
        )

    def _job(self, name: str) -> LogScrapeConfig | None:
        return next((j for j in self.config.scrape_configs if j.job_name == name), None)

    def _file(
        self,
        tailer: Tailer,
        path: str,
        origin: str,
        labels: dict[str, str],
        job: LogScrapeConfig | None,
        fp: int | None,
    ) -> _File:
        stages = job.pipeline_stages if job is not None else ()
        f = _File(tailer, path, origin, labels, job, fp, stages)
        f.pipeline = self._pipeline(tailer, job)
        return f

    def _pipeline(self, tailer: Tailer, job: LogScrapeConfig | None) -> FilePipeline | None:
        if job is None or not job.pipeline_stages:
            return None
        stages = build_stages(
            job.pipeline_stages, self.stage_metrics, self.config.ferryman.max_line_bytes
        )
        return FilePipeline(stages, tailer.identity, tailer.offset)

    def _restage(self, f: _File, job: LogScrapeConfig, batch: Batch) -> None:
        """The file's stages changed on reload: what the old ones held is shipped as it
        is, and the new ones start after it."""
        if f.pipeline is not None:
            self._add(f, f.pipeline.release(time.monotonic()), batch)
        f.stages = job.pipeline_stages
        f.pipeline = self._pipeline(f.tailer, job)

    # ---- the loop -------------------------------------------------------------------

    def run(self) -> None:
        """Ship until SIGTERM; raises KafkaStartError first when Kafka refuses the
        configured certificate or login (see :mod:`ferryman.kafkacheck`)."""
        check_kafka(self.config.ferryman.kafka.bootstrap_servers, self.kafka_credentials)
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
        if self.lineage is not None:
            self.lineage.start()
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
            for f in self.files.values():
                f.tailer.close()
            if self._producer is not None:
                self._producer.close(timeout=5)
            if self.lineage is not None:
                self.lineage.close()
            server.shutdown()
            log.info("edge log shipper stopped")

    def _fill(self, batch: Batch) -> bool:
        """Read new lines into the batch, up to its size bound."""
        read_any = False
        limit = self.config.ferryman.batch_bytes
        now_ns = time.time_ns()
        self._close_finished(batch)
        # A file renamed away is read to its end before the one now under its first
        # name: the stream they share keeps the order they were written in.
        behind = {
            f.origin for f in self.files.values() if f.path != f.origin and not f.tailer.at_end()
        }
        for f in list(self.files.values()):
            if batch.size >= limit:
                break
            if f.path == f.origin and f.origin in behind:
                continue
            if not f.compressed and f.tailer.size() > f.tailer.offset:
                # Before reading on: emptied and grown again since the last read?
                self._check_head(f, batch)
            before = f.tailer.truncations
            lines = f.tailer.read_lines()
            self.m_truncated.inc(f.tailer.truncations - before)
            self._take_truncations(f, batch)
            if lines:
                f.idle_since = None
            read_any = self._take(f, lines, batch, now_ns) or read_any
        return read_any

    def _take(self, f: _File, lines: Lines, batch: Batch, now_ns: int) -> bool:
        """Put one read of a file into the batch; whether it had lines."""
        stamps = self.clock.stamp_lines(lines, now_ns)
        if f.pipeline is not None:
            rows = lines.rows()
            if rows:
                self.m_read.inc(len(rows))
                self.m_bytes.inc(sum(len(line.text) for line in rows))
            if rows or f.pipeline.held_start() is not None:
                self._add(f, f.pipeline.process(rows, f.labels, stamps, time.monotonic()), batch)
            return bool(rows)
        if not lines:
            return False
        if not batch.lines:
            batch.started = time.monotonic()
        # By column: no object per line on the way from the file to the message.
        key = loki.format_labels(f.labels)
        entries = batch.streams.setdefault(key, loki.Entries())
        entries.extend_columns(stamps, lines.texts)
        batch.add_sources(key, self._source(f), lines.ends)
        size = sum(map(len, lines.texts))
        batch.size += size
        batch.lines += len(lines)
        batch.ends[lines.identity] = (f.path, lines.end)
        self.m_read.inc(len(lines))
        self.m_bytes.inc(size)
        return True

    def _take_truncations(self, f: _File, batch: Batch) -> None:
        for offset, mark in f.tailer.take_truncations():
            self._orphan(f, offset, mark)
            identity = f.tailer.identity
            batch.ends[identity] = (f.path, 0)  # the old content's lines: the orphan's
            f.marks.pop(identity, None)

    def _orphan(self, f: _File, offset: int, mark: int) -> None:
        """The file was emptied in place (copytruncate) after being read up to
        ``offset``: a copy of the old content, found later, continues from there. Saved
        with the next acknowledged batch, which holds every line read before."""
        if f.fingerprint is not None and offset:
            identity = f.tailer.identity
            self.positions.add_orphan(
                pending=True,
                position=Position(
                    f.origin,
                    identity[0],
                    identity[1],
                    offset,
                    f.fingerprint,
                    mark,
                    dict(f.labels),
                    f.job.job_name if f.job is not None else "",
                    time.time(),
                ),
            )
            log.info("%s was emptied in place at offset %d (copytruncate)", f.path, offset)
        f.fingerprint = fingerprint(f.tailer.head())

    def _close_finished(self, batch: Batch) -> None:
        """Files no scrape config names any more (renamed away, deleted), read to their
        end and quiet for ``rotate_wait``, are closed; their last line goes out even
        without a newline. A compressed file is closed at its end."""
        now = time.monotonic()
        wait = self.config.ferryman.rotate_wait
        for identity, f in list(self.files.items()):
            if f.wanted and not f.compressed:
                continue
            if not f.tailer.at_end():
                f.idle_since = None
                continue
            if not f.compressed:
                if f.idle_since is None:
                    f.idle_since = now
                if now - f.idle_since < wait:
                    continue
            self._take(f, f.tailer.final_lines(), batch, time.time_ns())
            if isinstance(f.tailer, CompressedTailer) and f.tailer.eof:
                batch.done.add(identity)
            self._retire_reader(identity, f, batch)
            log.info("finished %s at offset %d", f.path, f.tailer.offset)

    def _retire_reader(self, identity: Identity, f: _File, batch: Batch) -> None:
        """Stop reading ``f``; its position is written with the next acknowledgement."""
        if f.pipeline is not None:  # nothing more will come: ship what is held
            self._add(f, f.pipeline.release(time.monotonic()), batch)
        batch.ends.setdefault(identity, (f.path, f.tailer.offset))
        f.tailer.close()
        del self.files[identity]
        self._closed[identity] = f

    def _add(self, f: _File, records: list[Record], batch: Batch) -> None:
        """Put a pipeline's output in the batch, and its file's safe offsets."""
        assert f.pipeline is not None
        if records and not batch.lines and not batch.ends:
            batch.started = time.monotonic()
        file_key = ""
        source = self._source(f) if records else b""
        for record in records:
            if record.labels is f.labels:
                key = file_key = file_key or loki.format_labels(f.labels)
            else:
                key = loki.format_labels(record.labels)
            batch.streams.setdefault(key, loki.Entries()).append(
                loki.Entry(record.timestamp_ns, record.line)
            )
            batch.add_sources(key, source, [record.end])
            batch.size += len(record.line)
        batch.lines += len(records)
        for identity, offset in f.pipeline.safe_offsets().items():
            if f.marks.get(identity) != offset:
                if not batch.lines and not batch.ends:
                    batch.started = time.monotonic()  # only dropped lines: save positions
                f.marks[identity] = offset
                batch.ends[identity] = (f.path, offset)

    def _save_anchors(self) -> None:
        """Before a batch is produced, the anchors of its lines go to disk, so lines
        read again after a crash get the timestamps they were shipped with."""
        if not self.clock.unsaved:
            return
        for identity, f in self.files.items():
            anchors = self.clock.pending(identity)
            known = self.positions.get(*identity)
            if (known is None and not anchors) or f.provisional:
                continue
            stamps = tuple((a.start, a.end, a.ts) for a in anchors)
            if known is None:
                known = self._position(f, identity, f.acked)
            elif known.stamps == stamps:
                continue
            self.positions.set(dataclasses.replace(known, stamps=stamps))
        self.positions.save()
        self.clock.unsaved = False

    def _position(self, f: _File, identity: Identity, offset: int) -> Position:
        """What the positions file says of ``f`` read up to ``offset``."""
        tailer = f.tailer
        if f.fingerprint is None and not f.compressed:
            f.fingerprint = fingerprint(tailer.head())
        mark = tailer.mark if offset == tailer.offset else tailer.mark_at(offset)
        return Position(
            f.origin,
            identity[0],
            identity[1],
            offset,
            f.fingerprint or 0,
            mark or 0,
            dict(f.labels),
            f.job.job_name if f.job is not None else "",
            time.time(),
            tuple((a.start, a.end, a.ts) for a in self.clock.pending(identity)),
            compressed=f.compressed,
        )

    def _ship(self, batch: Batch) -> bool:
        """Produce one message per stream; positions advance only if all were acked."""
        kafka = self.config.ferryman.kafka
        try:
            self._save_anchors()
            batch.attempts += 1
            sent: list[tuple[str, int, int, SpanContext | None]] = []
            producer = self._ensure_producer() if batch.streams else None
            futures = []
            for labels_text, entries in batch.streams.items():
                assert producer is not None
                runs = batch.sources.get(labels_text)
                if runs is not None and sum(len(ends) for _, ends in runs) != len(entries):
                    runs = None  # not every entry came from a file (cannot happen: kept safe)
                parts = self._messages(labels_text, entries, kafka.max_message_bytes)
                for index, (payload, part_runs) in enumerate(
                    zip(parts, _cut_runs(runs, parts), strict=True)
                ):
                    headers = self._headers()
                    if part_runs is not None:
                        headers.append((h.LINES, encode_lines([part_runs], lines_deltas)))
                    context = self._context(batch, labels_text, index)
                    if context is not None:
                        headers.append((h.TRACEPARENT, make_traceparent(context)))
                    sent.append((labels_text, payload[1], len(payload[0]), context))
                    futures.append(
                        producer.send(
                            kafka.topic, key=labels_text.encode(), value=payload[0], headers=headers
                        )
                    )
            if producer is not None:
                producer.flush(timeout=kafka.acks_timeout)
            metadata = [future.get(timeout=kafka.acks_timeout) for future in futures]
        except (KafkaError, OSError) as exc:
            batch.error = f"{type(exc).__name__}: {exc}"
            self.m_errors.labels(error_type=type(exc).__name__, stage="produce").inc()
            log.warning(
                "Kafka did not take %d lines (%s: %s); holding them, reading paused",
                batch.lines,
                type(exc).__name__,
                exc,
            )
            self._discard_producer()
            return False
        self._acknowledged(batch)
        if self.lineage is not None:
            try:
                self._record(batch, sent, metadata)
            except Exception:  # lineage describes the data; it never stops it
                log.exception("could not record the lineage of a batch")
        return True

    def _context(self, batch: Batch, stream: str, index: int) -> SpanContext | None:
        """The lineage context of a message of ``batch``: the same at every attempt,
        sampled from the first failed attempt on."""
        if self.lineage is None:
            return None
        context = batch.contexts.get((stream, index))
        if context is None:
            context = new_context(self.lineage.ratio)
        if batch.error is not None and not context.sampled:
            context = SpanContext(context.trace_id, context.span_id, True)
        batch.contexts[(stream, index)] = context
        return context

    def _record(
        self,
        batch: Batch,
        sent: list[tuple[str, int, int, SpanContext | None]],
        metadata: list[Any],
    ) -> None:
        """A span per sampled message of ``batch``, now acknowledged."""
        assert self.lineage is not None
        end_ns = time.time_ns()
        waited = time.monotonic() - batch.started if batch.started else 0.0
        start_ns = end_ns - int(max(0.0, waited) * 1e9)
        topic = self.config.ferryman.kafka.topic
        spans = []
        for (stream, lines, size, context), meta in zip(sent, metadata, strict=True):
            if context is None or not context.sampled:
                continue
            attributes: dict[str, str | int | float | bool] = {
                "messaging.system": "kafka",
                "messaging.operation.type": "send",
                "messaging.destination.name": topic,
                "messaging.destination.partition.id": str(meta.partition),
                "messaging.kafka.offset": int(meta.offset),
                "messaging.message.body.size": size,
                "ferryman.lines": lines,
                "ferryman.stream": stream[:512],
                "ferryman.attempts": batch.attempts,
            }
            if batch.error is not None:
                attributes["ferryman.produce.error"] = batch.error
            spans.append(
                Span(
                    name=f"send {topic}",
                    trace_id=context.trace_id,
                    span_id=context.span_id,
                    start_ns=start_ns,
                    end_ns=end_ns,
                    kind="producer",
                    attributes=attributes,
                )
            )
        if spans:
            self.lineage.record(spans)

    def _acknowledged(self, batch: Batch) -> None:
        """Kafka has every line of ``batch``: positions advance, and are saved."""
        for identity, f in self.files.items():
            if f.provisional and identity not in batch.ends:
                batch.ends[identity] = (f.path, f.acked)
            f.provisional = False
        for identity, (path, offset) in batch.ends.items():
            shipped = self.files.get(identity) or self._closed.get(identity)
            if shipped is None:
                continue
            f = shipped
            f.acked = offset
            self.clock.acknowledged(identity, offset)
            position = self._position(f, identity, offset)
            if identity in batch.done:
                position = dataclasses.replace(position, done=True)
            self.positions.set(position)
            try:
                self.m_lag.labels(filename=path).set(max(0, f.tailer.size() - offset))
            except OSError:
                self.m_lag.remove(filename=path)
        for identity, f in self._closed.items():
            self.clock.forget(identity)
            if not f.compressed:
                self.m_lag.remove(filename=f.path)
        self._closed.clear()
        self.positions.settle()
        for key, cursor in batch.cursors.items():
            self.positions.set_cursor(key, cursor)
        grace = self.config.positions.stale_after
        if time.time() - self._started >= grace:
            for gone in self.positions.prune(time.time() - grace):
                log.info("forgetting the position of %s (not seen for %.0fs)", gone.path, grace)
        self.positions.save()
        self.m_sent.inc(batch.lines)

    def _messages(
        self, labels_text: str, entries: loki.Entries, max_message: int
    ) -> list[tuple[bytes, int]]:
        """A stream's Kafka messages, snappy-compressed Loki pushes each below
        ``max_message``, with the number of entries each holds: natively in one pass
        (``ferryman_native``); in Python when that declines (a line too big for any
        message is cut here, with the marker)."""
        split = loki_push_split(
            labels_text, entries.timestamps, entries.lines, _budget(max_message)
        )
        if split is not None:
            return list(zip(*split, strict=True))
        labels = loki.parse_labels(labels_text)
        return [
            (snappy_compress(loki.encode_push_request([loki.Stream(labels, part)])), len(part))
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
                credentials=self.kafka_credentials,
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
            self.config = load_config(self.config_path, expand_env=self.expand_env)
        except Exception as exc:
            log.error("reload failed, keeping the running configuration: %s", exc)
            return
        self.targets.reconfigure(self.config)
        self.journals.configure(self.config)
        log.info("configuration reloaded from %s", self.config_path)
