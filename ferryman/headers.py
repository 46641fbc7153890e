"""Kafka message headers every ferryman producer sets and every consumer reads."""

from __future__ import annotations

__all__ = [
    "CLUSTER",
    "DEAD_LETTER",
    "DEAD_LETTER_ERROR",
    "DEAD_LETTER_FUNCTION",
    "DEAD_LETTER_SOURCE",
    "LINEAGE",
    "LINES",
    "REPLAYED_FROM",
    "SCHEMA",
    "SCHEMA_LOKI_PUSH",
    "SCHEMA_OTLP_TRACES",
    "SCHEMA_REMOTE_WRITE",
    "TENANT",
    "TRACEPARENT",
]

SCHEMA = "schema"
CLUSTER = "cluster"
TENANT = "tenant"
TRACEPARENT = "traceparent"

#: value = snappy(prometheus.WriteRequest), remote write 1.0
SCHEMA_REMOTE_WRITE = b"prometheus.remote_write.v1"
#: value = snappy(logproto.PushRequest)
SCHEMA_LOKI_PUSH = b"loki.push.v1"
#: value = opentelemetry.proto.collector.trace.v1.ExportTraceServiceRequest (protobuf),
#: the spans of one trace; the message key is the 16-byte trace id
SCHEMA_OTLP_TRACES = b"otlp.traces.v1"
#: on a traces message whose spans are ferryman's own batch lineage: such batches are
#: never traced themselves (no feedback loop)
LINEAGE = "ferryman.lineage"
#: on a Loki push message: each entry's source file and end offset there, so that a sink
#: can name a line by where it was read (see :mod:`ferryman.wire.lines`); a transform keeps
#: it only while it still describes the message
LINES = "ferryman.lines"

# A record on a dead-letter topic keeps its own headers and gains these three:
#: why it was dead-lettered (UTF-8, at most 4096 bytes)
DEAD_LETTER_ERROR = "ferryman.error"
#: the function that gave up on it
DEAD_LETTER_FUNCTION = "ferryman.function"
#: where it was consumed from, ``topic/partition/offset``
DEAD_LETTER_SOURCE = "ferryman.source"
DEAD_LETTER = frozenset({DEAD_LETTER_ERROR, DEAD_LETTER_FUNCTION, DEAD_LETTER_SOURCE})
#: set by ``ferryman dlq replay`` in place of the three: ``topic/partition/offset`` on the
#: dead-letter topic
REPLAYED_FROM = "ferryman.replayed-from"
