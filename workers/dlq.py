"""``ferryman dlq replay``: put dead-lettered records back once their cause is fixed.

The records of a dead-letter topic are read from where this replay's consumer group
left off (the beginning the first time) up to the end the topic had when the replay
started — records dead-lettered again meanwhile wait for the next run. Each record
that matches the selection is produced to its original topic (``ferryman.source``) or
to ``--to``, without the ``ferryman.error``/``function``/``source`` headers and with
``ferryman.replayed-from: <dlq>/<partition>/<offset>``.

Guarantees: the group's offsets are committed only after Kafka acknowledged every
record produced up to them, so a replay that is interrupted (Ctrl-C, SIGTERM, ``--limit``)
and run again with the same arguments goes on where it stopped without producing a
record twice. A crash between the acknowledgement and the commit can produce the
records of that last poll again (at-least-once; sinks tolerate replays). The default
group is derived from the topic, the selection and the destination, so a replay with
other arguments starts from the beginning. ``--dry-run`` neither produces nor commits.
"""

from __future__ import annotations

import hashlib
import re
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, TextIO

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.structs import OffsetAndMetadata

from ferryman.kafka import producer as kafka_producer
from ferryman.kafkaconfig import PLAINTEXT_CREDENTIALS, KafkaCredentials
from ferryman.units import parse_duration

from .dead_letter import (
    DEAD_LETTER_HEADERS,
    ERROR,
    FUNCTION,
    REPLAYED_FROM,
    SOURCE,
    format_source,
    parse_source,
)

__all__ = ["ReplayError", "ReplayOptions", "Selection", "Summary", "parse_time", "replay"]


class ReplayError(Exception):
    """Raised when a replay cannot start (no such topic, Kafka unreachable)."""


def parse_time(value: str, now: float | None = None) -> int:
    """``2026-11-25T20:00:00Z`` (ISO 8601, UTC unless it says otherwise), or a duration
    ago (``90m``, ``2h``), → milliseconds since the epoch."""
    try:
        return int(((time.time() if now is None else now) - parse_duration(value)) * 1000)
    except ValueError:
        pass
    try:
        when = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ValueError(f"not a time: {value!r} (use e.g. 2026-11-25T20:00:00Z or 2h)") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return int(when.timestamp() * 1000)


def _text(headers: Sequence[tuple[str, bytes | None]], name: str) -> str | None:
    for key, value in headers:
        if key == name and value is not None:
            return value.decode("utf-8", "replace")
    return None


@dataclass(frozen=True)
class Selection:
    """Which dead letters to replay; unset criteria select everything. Offsets are per
    partition, ``until_offset`` exclusive; times are the dead letters' timestamps (ms)."""

    function: str | None = None
    error: re.Pattern[str] | None = None
    from_offset: int | None = None
    until_offset: int | None = None
    since_ms: int | None = None
    until_ms: int | None = None

    def skip_reason(
        self, headers: Sequence[tuple[str, bytes | None]], timestamp_ms: int
    ) -> str | None:
        """Why a dead letter is not selected (None: it is)."""
        if self.function is not None and _text(headers, FUNCTION) != self.function:
            return "function"
        if self.error is not None and not self.error.search(_text(headers, ERROR) or ""):
            return "error"
        if self.since_ms is not None and timestamp_ms < self.since_ms:
            return "time"
        if self.until_ms is not None and timestamp_ms >= self.until_ms:
            return "time"
        return None

    def describe(self) -> str:
        return (
            f"function={self.function} error={self.error.pattern if self.error else None}"
            f" offsets={self.from_offset}..{self.until_offset}"
            f" time={self.since_ms}..{self.until_ms}"
        )


@dataclass(frozen=True)
class ReplayOptions:
    topic: str
    bootstrap_servers: str
    selection: Selection = Selection()
    to: str | None = None
    group: str | None = None
    dry_run: bool = False
    limit: int | None = None
    show: int = 5
    credentials: KafkaCredentials = PLAINTEXT_CREDENTIALS

    @property
    def group_id(self) -> str:
        if self.group:
            return self.group
        digest = hashlib.sha256(f"{self.selection.describe()} to={self.to}".encode())
        return f"ferryman-dlq-replay.{self.topic}.{digest.hexdigest()[:10]}"


@dataclass
class Summary:
    scanned: int = 0
    replayed: int = 0
    skipped: Counter[str] = field(default_factory=Counter)
    by_function: Counter[str] = field(default_factory=Counter)
    by_error: Counter[str] = field(default_factory=Counter)
    by_destination: Counter[str] = field(default_factory=Counter)
    first: list[str] = field(default_factory=list)
    interrupted: bool = False

    def render(self, options: ReplayOptions) -> str:
        verb = "would replay" if options.dry_run else "replayed"
        skipped = ", ".join(f"{n} by {why}" for why, n in sorted(self.skipped.items()))
        lines = [
            f"dlq replay of {options.topic} (group {options.group_id})"
            f"{' [dry run]' if options.dry_run else ''}"
            f"{' [interrupted: run it again to resume]' if self.interrupted else ''}:",
            f"  scanned {self.scanned}, {verb} {self.replayed}, "
            f"skipped {sum(self.skipped.values())}{f' ({skipped})' if skipped else ''}",
        ]
        for title, counts in (
            ("by function", self.by_function),
            ("by error", self.by_error),
            ("to topic", self.by_destination),
        ):
            if counts:
                lines.append(f"  {title}:")
                lines.extend(f"    {n:8d}  {name}" for name, n in counts.most_common(20))
        if self.first:
            lines.append(f"  first {len(self.first)}:")
            lines.extend(f"    {line}" for line in self.first)
        return "\n".join(lines)


class _Progress:
    """A bar redrawn in place on a terminal; a plain line every few seconds otherwise."""

    def __init__(self, total: int, out: TextIO, clock: Callable[[], float] = time.monotonic):
        self.total = max(total, 1)
        self.out = out
        self.tty = out.isatty()
        self.clock = clock
        self.shown_at = clock()

    def update(self, done: int, replayed: int, force: bool = False) -> None:
        now = self.clock()
        if not force and now - self.shown_at < (0.2 if self.tty else 5.0):
            return
        self.shown_at = now
        share = min(1.0, done / self.total)
        if self.tty:
            bar = "#" * int(share * 30)
            self.out.write(
                f"\r[{bar:<30}] {share:4.0%} {done}/{self.total} scanned, {replayed} selected"
            )
        else:
            self.out.write(
                f"dlq replay: {done}/{self.total} scanned ({share:.0%}), {replayed} selected\n"
            )
        self.out.flush()

    def close(self) -> None:
        if self.tty:
            self.out.write("\n")
            self.out.flush()


def replay(
    options: ReplayOptions,
    *,
    progress_out: TextIO = sys.stderr,
    stop: threading.Event | None = None,
) -> Summary:
    """Replay ``options.topic`` as described in the module docstring; ``stop`` ends the
    replay after the records in hand are acknowledged and committed."""
    stop = stop or threading.Event()
    try:
        consumer = KafkaConsumer(
            bootstrap_servers=options.bootstrap_servers,
            group_id=options.group_id,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            client_id="ferryman-dlq-replay",
            **options.credentials.kwargs(),
        )
    except Exception as exc:  # kafka-python raises KafkaTimeoutError and friends
        raise ReplayError(f"cannot reach Kafka at {options.bootstrap_servers}: {exc}") from exc
    producer: KafkaProducer | None = None
    try:
        partitions = consumer.partitions_for_topic(options.topic)
        if not partitions:
            raise ReplayError(f"topic {options.topic} does not exist or has no partitions")
        tps = [TopicPartition(options.topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        stops = _seek(consumer, tps, options.selection)
        remaining = {tp: stops[tp] - consumer.position(tp) for tp in tps}
        if not options.dry_run:
            producer = kafka_producer(
                options.bootstrap_servers, "ferryman-dlq-replay", credentials=options.credentials
            )
        summary = Summary()
        bar = _Progress(sum(max(0, n) for n in remaining.values()), progress_out)
        try:
            _run(consumer, producer, options, stops, summary, bar, stop)
        finally:
            bar.update(summary.scanned, summary.replayed, force=True)
            bar.close()
        summary.interrupted = stop.is_set()
        return summary
    finally:
        if producer is not None:
            producer.close(timeout=10)
        consumer.close(autocommit=False)


def _seek(
    consumer: KafkaConsumer, tps: list[TopicPartition], selection: Selection
) -> dict[TopicPartition, int]:
    """Position every partition where this replay starts; returns where it stops."""
    ends: dict[TopicPartition, int] = consumer.end_offsets(tps)
    beginnings: dict[TopicPartition, int] = consumer.beginning_offsets(tps)
    by_time: dict[TopicPartition, Any] = {}
    if selection.since_ms is not None:
        by_time = consumer.offsets_for_times({tp: selection.since_ms for tp in tps})
    stops = {}
    for tp in tps:
        committed = consumer.committed(tp)
        start = max(beginnings[tp], committed or 0, selection.from_offset or 0)
        found = by_time.get(tp)
        if selection.since_ms is not None:
            start = max(start, found.offset if found is not None else ends[tp])
        stops[tp] = (
            ends[tp] if selection.until_offset is None else min(ends[tp], selection.until_offset)
        )
        consumer.seek(tp, min(start, ends[tp]))
    return stops


def _run(
    consumer: KafkaConsumer,
    producer: KafkaProducer | None,
    options: ReplayOptions,
    stops: dict[TopicPartition, int],
    summary: Summary,
    bar: _Progress,
    stop: threading.Event,
) -> None:
    active = {tp for tp, end in stops.items() if consumer.position(tp) < end}
    while active and not stop.is_set():
        polled = consumer.poll(timeout_ms=1000, max_records=500)
        futures: list[Any] = []
        done: dict[TopicPartition, int] = {}
        for tp, messages in polled.items():
            for m in messages:
                if tp not in active:
                    break
                if m.offset >= stops[tp] or _limit_reached(options, summary):
                    active.discard(tp)
                    break
                summary.scanned += 1
                done[tp] = m.offset + 1
                future = _one(m, producer, options, summary)
                if future is not None:
                    futures.append(future)
        if producer is not None and futures:
            producer.flush(timeout=60)
            for future in futures:
                future.get(timeout=60)  # raises: nothing of this poll is committed then
        if not options.dry_run and done:
            consumer.commit({tp: OffsetAndMetadata(offset, "", -1) for tp, offset in done.items()})
        for tp in list(active):
            if consumer.position(tp) >= stops[tp]:
                active.discard(tp)
        if _limit_reached(options, summary):
            break
        bar.update(summary.scanned, summary.replayed)


def _limit_reached(options: ReplayOptions, summary: Summary) -> bool:
    return options.limit is not None and summary.replayed >= options.limit


def _one(m: Any, producer: KafkaProducer | None, options: ReplayOptions, summary: Summary) -> Any:
    """Decide about one dead letter; returns the produce future, if any."""
    headers: list[tuple[str, bytes | None]] = list(m.headers or ())
    why = options.selection.skip_reason(headers, m.timestamp)
    if why is not None:
        summary.skipped[why] += 1
        return None
    destination = options.to
    if destination is None:
        try:
            destination = parse_source(dict(headers).get(SOURCE) or b"")[0]
        except (ValueError, UnicodeDecodeError):
            summary.skipped["no ferryman.source header"] += 1
            return None
    summary.replayed += 1
    function = _text(headers, FUNCTION) or "?"
    error = _text(headers, ERROR) or "?"
    summary.by_function[function] += 1
    summary.by_error[error[:120]] += 1
    summary.by_destination[destination] += 1
    if len(summary.first) < options.show:
        summary.first.append(
            f"{m.topic}/{m.partition}/{m.offset} -> {destination} ({function}): {error[:160]}"
        )
    if producer is None:
        return None
    kept = [(k, v) for k, v in headers if k not in DEAD_LETTER_HEADERS and k != REPLAYED_FROM]
    kept.append((REPLAYED_FROM, format_source(m.topic, m.partition, m.offset)))
    return producer.send(destination, key=m.key, value=m.value, headers=kept)
