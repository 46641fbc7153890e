"""Kafka message headers every ferryman producer sets and every consumer reads."""

from __future__ import annotations

__all__ = ["CLUSTER", "SCHEMA", "SCHEMA_LOKI_PUSH", "SCHEMA_REMOTE_WRITE", "TENANT",
           "TRACEPARENT"]

SCHEMA = "schema"
CLUSTER = "cluster"
TENANT = "tenant"
TRACEPARENT = "traceparent"

#: value = snappy(prometheus.WriteRequest), remote write 1.0
SCHEMA_REMOTE_WRITE = b"prometheus.remote_write.v1"
#: value = snappy(logproto.PushRequest)
SCHEMA_LOKI_PUSH = b"loki.push.v1"
