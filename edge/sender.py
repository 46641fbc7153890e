"""Drain a DiskQueue into Kafka, in order, acknowledging only what Kafka acknowledged.

Runs in its own thread. When Kafka is unreachable the queue simply grows on disk
(bounded, oldest dropped and counted); when it returns, the backlog drains in
order. Position in the queue advances only after the broker acknowledged every
message up to it (acks=all).

Batch lineage (see :mod:`ferryman.lineage`), when a :class:`LineageExporter` is given:
every message carries a ``traceparent`` whose trace and span ids are *derived from the
message's bytes* (BLAKE2b of the payload), not stored in the queue, so a batch buffered
through a Kafka outage or a restart keeps its context with no change to the on-disk
format. Two messages with the same bytes would share a trace id; remote-write
messages carry their samples' timestamps, so that does not happen in practice. The
span runs from the first produce attempt this process made to the broker's
acknowledgement; a batch whose produce failed is recorded (and its ``traceparent``
flagged sampled) whatever the sampling says.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from hashlib import blake2b
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from ferryman import headers as h
from ferryman.kafka import producer as kafka_producer
from ferryman.kafkaconfig import PLAINTEXT_CREDENTIALS, KafkaCredentials
from ferryman.lineage import LineageExporter, Span, SpanContext, make_traceparent, sampled
from ferryman.telemetry import Counter, Gauge

from .diskqueue import DiskQueue, Entry

__all__ = ["KafkaSender", "entry_context"]

log = logging.getLogger("ferryman.edge.sender")

#: Entries whose first attempt is remembered for their span, at most.
_MAX_TRACKED = 4096


def entry_context(payload: bytes, ratio: float, *, errored: bool = False) -> SpanContext:
    """The lineage context of a queued message: ids derived from its bytes (the same
    after a restart), sampled per ``ratio`` or because producing it failed."""
    digest = blake2b(payload, digest_size=24, person=b"ferryman.lineage").digest()
    trace_id, span_id = digest[:16], digest[16:]
    if trace_id == bytes(16) or span_id == bytes(8):  # 2**-64: keep the ids valid
        trace_id, span_id = b"\x01" + trace_id[1:], b"\x01" + span_id[1:]
    return SpanContext(trace_id, span_id, errored or sampled(trace_id, ratio))


@dataclass(slots=True)
class _Attempts:
    """What this process knows of one entry not yet acknowledged."""

    started_ns: int
    attempts: int = 0
    error: str | None = None


class KafkaSender:
    def __init__(
        self,
        queue: DiskQueue,
        *,
        bootstrap_servers: str,
        topic: str,
        headers: Sequence[tuple[str, bytes]],
        ack_timeout: float,
        sent: Counter,
        errors: Counter,
        backlog: Gauge,
        window_records: int = 256,
        window_bytes: int = 8 * 2**20,
        credentials: KafkaCredentials = PLAINTEXT_CREDENTIALS,
        lineage: LineageExporter | None = None,
    ) -> None:
        """``lineage`` (default none) records a span per sampled or failed message (see
        the module docstring)."""
        self.queue = queue
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.headers = list(headers)
        self.ack_timeout = ack_timeout
        self.window_records = window_records
        self.window_bytes = window_bytes
        self.credentials = credentials
        self._sent = sent
        self._errors = errors
        self._backlog = backlog
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._producer: KafkaProducer | None = None
        self._partitions = 0
        self.connected = False
        self.lineage = lineage
        self._tracked: OrderedDict[bytes, _Attempts] = OrderedDict()
        self._in_flight: list[bytes] = []  # trace ids of the window being sent
        self._thread = threading.Thread(target=self._run, name="ferryman-kafka-sender", daemon=True)

    def start(self) -> None:
        if self.lineage is not None:
            self.lineage.start()
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, drain_timeout: float = 10.0) -> None:
        """Try to drain for ``drain_timeout`` seconds, then stop; the rest stays on disk."""
        deadline = time.monotonic() + drain_timeout
        while (
            self.queue.pending_bytes() > 0
            and time.monotonic() < deadline
            and self._thread.is_alive()
        ):
            self._wake.set()
            time.sleep(0.05)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=drain_timeout + 5)
        if self._producer is not None:
            self._producer.close(timeout=5)
        if self.lineage is not None:
            self.lineage.close()

    # ---- the thread ---------------------------------------------------------------

    def _run(self) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            self._backlog.set(self.queue.pending_bytes())
            try:
                sent = self._send_window()
            except (KafkaError, OSError, ValueError) as exc:
                self._failed(exc)
                self.queue.rewind()
                if self.connected:
                    log.warning(
                        "Kafka unavailable (%s: %s); buffering on disk", type(exc).__name__, exc
                    )
                self.connected = False
                self._errors.labels(error_type=type(exc).__name__, stage="produce").inc()
                self._discard_producer()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            backoff = 0.2
            if not sent:
                self._wake.wait(0.2)
                self._wake.clear()

    def _send_window(self) -> int:
        self._in_flight = []
        entries = self.queue.read(self.window_records, self.window_bytes)
        if not entries:
            return 0
        contexts = [self._context(e) for e in entries]
        producer = self._ensure_producer()
        futures: list[Any] = [
            producer.send(
                self.topic,
                value=e.payload,
                partition=e.bucket % self._partitions,
                headers=self.headers
                if context is None
                else [*self.headers, (h.TRACEPARENT, make_traceparent(context))],
            )
            for e, context in zip(entries, contexts, strict=True)
        ]
        producer.flush(timeout=self.ack_timeout)
        metadata = [future.get(timeout=self.ack_timeout) for future in futures]
        self.queue.ack(entries[-1].end)
        self._in_flight = []
        if self.lineage is not None:
            try:
                self._record(entries, contexts, metadata)
            except Exception:  # lineage describes the data; it never stops it
                log.exception("could not record the lineage of %d messages", len(entries))
        if not self.connected:
            log.info("Kafka reachable at %s; draining the disk buffer", self.bootstrap_servers)
            self.connected = True
        self._sent.inc(sum(e.samples for e in entries))
        return len(entries)

    # ---- lineage ------------------------------------------------------------------

    def _context(self, entry: Entry) -> SpanContext | None:
        if self.lineage is None:
            return None
        context = entry_context(entry.payload, self.lineage.ratio)
        tracked = self._tracked.get(context.trace_id)
        if tracked is None:
            tracked = self._tracked[context.trace_id] = _Attempts(time.time_ns())
            while len(self._tracked) > _MAX_TRACKED:  # dropped from the queue meanwhile
                self._tracked.popitem(last=False)
        tracked.attempts += 1
        if tracked.error is not None and not context.sampled:
            context = SpanContext(context.trace_id, context.span_id, True)
        self._in_flight.append(context.trace_id)
        return context

    def _failed(self, exc: Exception) -> None:
        """The window in flight hit ``exc``: its entries are traced from now on."""
        for trace_id in self._in_flight:
            tracked = self._tracked.get(trace_id)
            if tracked is not None:
                tracked.error = f"{type(exc).__name__}: {exc}"
        self._in_flight = []

    def _record(
        self, entries: list[Entry], contexts: list[SpanContext | None], metadata: list[Any]
    ) -> None:
        assert self.lineage is not None
        spans: list[Span] = []
        end_ns = time.time_ns()
        for entry, context, meta in zip(entries, contexts, metadata, strict=True):
            if context is None:
                continue
            tracked = self._tracked.pop(context.trace_id, None)
            if not context.sampled:
                continue
            attributes: dict[str, str | int | float | bool] = {
                "messaging.system": "kafka",
                "messaging.operation.type": "send",
                "messaging.destination.name": self.topic,
                "messaging.destination.partition.id": str(meta.partition),
                "messaging.kafka.offset": int(meta.offset),
                "messaging.message.body.size": len(entry.payload),
                "ferryman.samples": entry.samples,
                "ferryman.attempts": tracked.attempts if tracked else 1,
            }
            if tracked is not None and tracked.error is not None:
                attributes["ferryman.produce.error"] = tracked.error
            spans.append(
                Span(
                    name=f"send {self.topic}",
                    trace_id=context.trace_id,
                    span_id=context.span_id,
                    start_ns=tracked.started_ns if tracked else end_ns,
                    end_ns=end_ns,
                    kind="producer",
                    attributes=attributes,
                )
            )
        if spans:
            self.lineage.record(spans)

    def _ensure_producer(self) -> KafkaProducer:
        if self._producer is None:
            # Payloads are snappy'd remote-write already: no second compression.
            producer = kafka_producer(
                self.bootstrap_servers,
                "ferryman-edge",
                request_timeout_ms=int(self.ack_timeout * 1000),
                max_block_ms=int(self.ack_timeout * 1000),
                credentials=self.credentials,
            )
            partitions = producer.partitions_for(self.topic)
            if not partitions:
                producer.close(timeout=1)
                raise KafkaError(f"topic {self.topic} does not exist")
            self._partitions = len(partitions)
            self._producer = producer
        return self._producer

    def _discard_producer(self) -> None:
        if self._producer is not None:
            try:
                self._producer.close(timeout=1)
            except Exception as exc:  # closing a broken producer must not kill the thread
                log.debug("closing producer: %s", exc)
            self._producer = None
