"""Batch lineage: each batch's own path (edge → Kafka → worker → sink) as a trace.

**The header.** Every batch the edge produces (each Kafka message of the metrics and
logs shippers) carries a W3C Trace Context ``traceparent`` header: version ``00``, a
16-byte trace id, the 8-byte id of the edge's span for that batch and the flags
(``01`` when the batch is sampled). :func:`make_traceparent` writes it,
:func:`parse_traceparent` reads it and refuses what the specification calls invalid
(version ``ff``, all-zero ids, wrong lengths, upper-case or non-hex digits).

**Sampling.** :func:`sampled` decides by the trace id (its last 8 bytes below
``ratio * 2**64``), so every process deciding on the same id decides alike. A batch is
recorded when it is sampled (default 1 %) or when it hit an error (producing failed,
dead letter, retry, retry lane); an error batch is marked sampled from then on.

**The spans.** The edge records one PRODUCER span per batch, from the first produce
attempt to the broker's acknowledgement (attributes: topic, partition, offset, records,
bytes, attempts). A worker records, per consumed batch, a CONSUMER span ``process
<topic>`` *linked* (span links, not parents: OpenTelemetry's messaging conventions for
batches) to each record's producer span, with children ``deliver`` (one per attempt,
the sink's outcome), ``dead-letter``, ``retry-lane`` and ``commit``. So that searching
Jaeger for one batch's trace id shows the whole path, the worker's span tree is
written *into the trace of each sampled producer batch* it contains: a root span in
that trace, linked to the producer span. A batch recorded for an error alone (no
sampled record) gets one tree in a new trace, linked to its records' contexts.

**No feedback loop.** Lineage spans travel to Kafka as OTLP
``ExportTraceServiceRequest`` messages (schema ``otlp.traces.v1``, keyed by trace id,
one trace per message via :func:`ferryman.wire.otlp.split_by_trace`) with the header
``ferryman.lineage: 1``. Those messages carry no ``traceparent``, and a worker never
records spans for a batch made only of them.

**Never in the way.** :class:`LineageExporter` keeps at most ``max_spans`` spans in
memory and flushes them from its own thread about every second; :meth:`record` never
blocks on Kafka. A span that does not fit, or that Kafka did not take (lineage is not
retried: it describes data, it is not data), is counted as
``ferryman_lineage_spans_total{outcome="dropped"}``; those Kafka acknowledged as
``outcome="exported"``.
"""

from __future__ import annotations

import logging
import os
import random
import re
import socket
import threading
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from kafka import KafkaProducer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.trace.v1.trace_pb2 import Span as OtlpSpan
from opentelemetry.proto.trace.v1.trace_pb2 import Status
from pydantic import BaseModel, ConfigDict, Field

from . import headers as h
from .kafka import producer as kafka_producer
from .kafkaconfig import PLAINTEXT_CREDENTIALS, KafkaCredentials
from .telemetry import Registry
from .wire.otlp import split_by_trace

__all__ = [
    "LINEAGE_HEADERS",
    "Attribute",
    "Kind",
    "LineageExporter",
    "LineageSettings",
    "Link",
    "Span",
    "SpanContext",
    "flagged_sampled",
    "is_lineage",
    "make_traceparent",
    "new_context",
    "new_span_id",
    "parse_traceparent",
    "sampled",
    "to_otlp",
]

log = logging.getLogger("ferryman.lineage")

Attribute = str | int | float | bool
Kind = Literal["internal", "producer", "consumer", "client"]

#: The headers of every lineage message, besides the cluster: never traced themselves.
LINEAGE_HEADERS: tuple[tuple[str, bytes], ...] = (
    (h.SCHEMA, h.SCHEMA_OTLP_TRACES),
    (h.LINEAGE, b"1"),
)

_TRACEPARENT = re.compile(
    rb"([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-[\x20-\x7e]*)?"
)
#: hex digits whose bit 0 is set: the last flags digit of a sampled traceparent
_SAMPLED_DIGITS = frozenset(b"13579bdf")
_ZERO_TRACE = bytes(16)
_ZERO_SPAN = bytes(8)
_KINDS = {
    "internal": OtlpSpan.SPAN_KIND_INTERNAL,
    "producer": OtlpSpan.SPAN_KIND_PRODUCER,
    "consumer": OtlpSpan.SPAN_KIND_CONSUMER,
    "client": OtlpSpan.SPAN_KIND_CLIENT,
}


class LineageSettings(BaseModel):
    """The ``lineage:`` block of an edge shipper's ``ferryman:`` section and of a
    worker's settings."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    enabled: bool = Field(True, description="Record and export batch lineage (default true).")
    sample_ratio: float = Field(
        0.01,
        ge=0.0,
        le=1.0,
        description="Share of batches traced (default 0.01); batches that hit an error "
        "are traced always.",
    )
    topic: str = Field(
        "ferryman.traces", description="Kafka topic of the lineage spans (default ferryman.traces)."
    )


# ---- W3C trace context ---------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SpanContext:
    """A span's identity as ``traceparent`` carries it."""

    trace_id: bytes  # 16 bytes, not all zero
    span_id: bytes  # 8 bytes, not all zero
    sampled: bool = False


def new_span_id() -> bytes:
    while True:
        span_id = random.getrandbits(64).to_bytes(8, "big")
        if span_id != bytes(8):
            return span_id


def new_context(ratio: float, *, force: bool = False) -> SpanContext:
    """A new trace: random ids, sampled with probability ``ratio`` (or when ``force``)."""
    while True:
        trace_id = random.getrandbits(128).to_bytes(16, "big")
        if trace_id != bytes(16):
            break
    return SpanContext(trace_id, new_span_id(), force or sampled(trace_id, ratio))


def sampled(trace_id: bytes, ratio: float) -> bool:
    """The sampling decision for ``trace_id``: the same in every process."""
    if ratio >= 1.0:
        return True
    return int.from_bytes(trace_id[8:16], "big") < int(ratio * 2**64)


def make_traceparent(context: SpanContext) -> bytes:
    """``00-<trace id>-<span id>-<flags>`` (55 ASCII bytes)."""
    flags = "01" if context.sampled else "00"
    return f"00-{context.trace_id.hex()}-{context.span_id.hex()}-{flags}".encode()


def parse_traceparent(value: bytes | str | None) -> SpanContext | None:
    """The context in a ``traceparent`` value; None when it is absent or invalid.

    Follows W3C Trace Context level 1: version ``ff`` is invalid; version ``00`` is
    exactly 55 characters; a later version may append fields after a ``-``; the trace
    id (32) and parent id (16) are lower-case hex and not all zeros; flags are 2 hex
    digits, bit 0 = sampled.
    """
    if value is None:
        return None
    if isinstance(value, str):
        try:
            value = value.encode("ascii")
        except UnicodeEncodeError:
            return None
    match = _TRACEPARENT.fullmatch(value)
    if match is None:
        return None
    version, trace_hex, span_hex, flags_hex, rest = match.groups()
    if version == b"ff" or (version == b"00" and rest):
        return None
    trace_id, span_id = bytes.fromhex(trace_hex.decode()), bytes.fromhex(span_hex.decode())
    if trace_id == _ZERO_TRACE or span_id == _ZERO_SPAN:
        return None
    return SpanContext(trace_id, span_id, flags_hex[1] in _SAMPLED_DIGITS)


def flagged_sampled(value: bytes | None) -> bool:
    """Whether a ``traceparent`` value's sampled flag is set, without checking the rest
    (a quick look before :func:`parse_traceparent`)."""
    return value is not None and len(value) >= 55 and value[54] in _SAMPLED_DIGITS


def is_lineage(headers: Sequence[tuple[str, bytes]]) -> bool:
    """Whether a message's headers mark it as lineage spans (never traced)."""
    return any(key == h.LINEAGE for key, _ in headers)


# ---- spans ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Link:
    context: SpanContext
    attributes: Mapping[str, Attribute] = field(default_factory=dict)


@dataclass(slots=True)
class Span:
    """A finished span, as the data path hands it over (converted in the exporter's
    thread). Times in nanoseconds since the epoch; ``error`` set means status ERROR
    with that message."""

    name: str
    trace_id: bytes
    span_id: bytes
    start_ns: int
    end_ns: int
    kind: Kind = "internal"
    parent_span_id: bytes = b""
    attributes: dict[str, Attribute] = field(default_factory=dict)
    links: list[Link] = field(default_factory=list)
    error: str | None = None


def _value(value: Attribute) -> AnyValue:
    if isinstance(value, bool):
        return AnyValue(bool_value=value)
    if isinstance(value, int):
        return AnyValue(int_value=value)
    if isinstance(value, float):
        return AnyValue(double_value=value)
    return AnyValue(string_value=value)


def _attributes(attributes: Mapping[str, Attribute]) -> list[KeyValue]:
    return [KeyValue(key=k, value=_value(v)) for k, v in attributes.items()]


def to_otlp(spans: Sequence[Span], resource: Mapping[str, Attribute]) -> ExportTraceServiceRequest:
    """One request: one resource (``resource`` attributes), scope ``ferryman.lineage``."""
    request = ExportTraceServiceRequest()
    rs = request.resource_spans.add()
    rs.resource.attributes.extend(_attributes(resource))
    ss = rs.scope_spans.add()
    ss.scope.CopyFrom(InstrumentationScope(name="ferryman.lineage"))
    for span in spans:
        out = ss.spans.add()
        out.trace_id = span.trace_id
        out.span_id = span.span_id
        out.parent_span_id = span.parent_span_id
        out.name = span.name
        out.kind = _KINDS[span.kind]
        out.start_time_unix_nano = span.start_ns
        out.end_time_unix_nano = max(span.end_ns, span.start_ns)
        out.attributes.extend(_attributes(span.attributes))
        for link in span.links:
            out.links.add(
                trace_id=link.context.trace_id,
                span_id=link.context.span_id,
                attributes=_attributes(link.attributes),
                flags=0x101 if link.context.sampled else 0x100,
            )
        if span.error is not None:
            out.status.code = Status.STATUS_CODE_ERROR
            out.status.message = span.error[:1024]
        else:
            out.status.code = Status.STATUS_CODE_OK
    return request


# ---- the exporter --------------------------------------------------------------------


class LineageExporter:
    """Buffers finished spans and produces them to the lineage topic from its own thread.

    ``resource`` holds the resource attributes (``service.name``, ``k8s.cluster.name``
    where known; ``service.instance.id`` is added: host name and process id). Spans go
    out about every ``interval`` seconds (default 1), in messages of at most
    ``max_message_bytes`` (default 1 MiB); at most ``max_spans`` (default 10000) wait.
    """

    def __init__(
        self,
        settings: LineageSettings,
        *,
        bootstrap_servers: str,
        registry: Registry,
        resource: Mapping[str, Attribute],
        credentials: KafkaCredentials = PLAINTEXT_CREDENTIALS,
        cluster: str | None = None,
        interval: float = 1.0,
        max_spans: int = 10_000,
        max_message_bytes: int = 1 << 20,
        ack_timeout: float = 10.0,
    ) -> None:
        self.settings = settings
        self.bootstrap_servers = bootstrap_servers
        self.credentials = credentials
        self.resource: dict[str, Attribute] = {
            **resource,
            "service.instance.id": f"{socket.gethostname()}/{os.getpid()}",
        }
        self.headers = list(LINEAGE_HEADERS)
        if cluster:
            self.headers.append((h.CLUSTER, cluster.encode()))
        self.interval = interval
        self.max_spans = max_spans
        self.max_message_bytes = max_message_bytes
        self.ack_timeout = ack_timeout
        self.m_spans = registry.counter(
            "ferryman_lineage_spans_total",
            "Batch lineage spans, by outcome: exported (Kafka acknowledged) or dropped "
            "(buffer full, Kafka refused or away).",
            ["outcome"],
        )
        self._pending: deque[Span] = deque()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._producer: KafkaProducer | None = None
        self._thread = threading.Thread(
            target=self._run, name="ferryman-lineage-exporter", daemon=True
        )
        self._started = False

    @property
    def ratio(self) -> float:
        return self.settings.sample_ratio

    def start(self) -> None:
        if not self._started:
            self._started = True
            self._thread.start()

    def record(self, spans: Sequence[Span]) -> None:
        """Queue finished spans for export; drops (and counts) what does not fit."""
        with self._lock:
            room = self.max_spans - len(self._pending)
            self._pending.extend(spans[: max(room, 0)])
        if len(spans) > room:
            self.m_spans.labels(outcome="dropped").inc(len(spans) - max(room, 0))

    def pending(self) -> list[Span]:
        """The spans waiting for the next flush."""
        with self._lock:
            return list(self._pending)

    def close(self, timeout: float = 5.0) -> None:
        """Export what is queued, waiting at most ``timeout`` seconds, then stop. When
        Kafka does not answer by then the thread is left to finish on its own (it is a
        daemon thread: it never holds the process up)."""
        self._stop.set()
        if self._started:
            self._thread.join(timeout=timeout)
            if self._thread.is_alive():
                log.warning("lineage spans still being exported at shutdown; left behind")
                return
        else:
            self.flush()
        self._discard_producer()

    def flush(self) -> None:
        """Produce every queued span now and wait for Kafka (the thread does this)."""
        with self._lock:
            spans = list(self._pending)
            self._pending.clear()
        if not spans:
            return
        try:
            self._produce(spans)
        except Exception as exc:  # lineage never takes the process down
            self.m_spans.labels(outcome="dropped").inc(len(spans))
            log.warning(
                "could not export %d lineage spans to %s (%s: %s); dropped",
                len(spans),
                self.settings.topic,
                type(exc).__name__,
                exc,
            )
            self._discard_producer()
            return
        self.m_spans.labels(outcome="exported").inc(len(spans))

    def _produce(self, spans: list[Span]) -> None:
        request = to_otlp(spans, self.resource)
        messages = split_by_trace(request, self.max_message_bytes)
        producer = self._ensure_producer()
        futures: list[Any] = [
            producer.send(self.settings.topic, key=m.trace_id, value=m.value, headers=self.headers)
            for m in messages
        ]
        producer.flush(timeout=self.ack_timeout)
        for future in futures:
            future.get(timeout=self.ack_timeout)

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.flush()
        self.flush()

    def _ensure_producer(self) -> KafkaProducer:
        if self._producer is None:
            timeout_ms = int(self.ack_timeout * 1000)
            self._producer = kafka_producer(
                self.bootstrap_servers,
                "ferryman-lineage",
                compression="snappy",
                request_timeout_ms=timeout_ms,
                max_block_ms=timeout_ms,
                credentials=self.credentials,
            )
        return self._producer

    def _discard_producer(self) -> None:
        if self._producer is not None:
            try:
                self._producer.close(timeout=1)
            except Exception as exc:  # closing a broken producer must not end the thread
                log.debug("closing the lineage producer: %s", exc)
            self._producer = None
