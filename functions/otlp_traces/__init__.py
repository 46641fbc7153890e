"""``otlp_traces``: Kafka → Jaeger, or any OTLP receiver (the OpenTelemetry Collector,
Grafana Tempo, ...), over OTLP/HTTP (protobuf) or OTLP/gRPC.

A record holds one serialized ``ExportTraceServiceRequest`` (schema ``otlp.traces.v1``,
usually one trace's spans, as ``ferryman edge traces`` produces them). The records of a
batch are merged by tenant into requests of at most ``max_request_bytes`` (default
4 MiB - 64 KiB, under the 4 MiB Jaeger's gRPC receiver takes) without encoding a span
again. What the handler guarantees when it returns:

* a record not listed as dead or retry was in a request the receiver acknowledged (HTTP
  2xx, gRPC OK); spans the answer's ``partial_success`` rejected are counted in
  ``ferryman_spans_rejected_total{function}`` and logged once per batch, never retried
  (the OTLP specification says they must not be);
* a record that is not an OTLP traces message (another ``schema`` header, a payload that
  does not parse, a span id of the wrong length) is dead-lettered with the reason;
* a refusal of the data (HTTP 400/413, gRPC INVALID_ARGUMENT, RESOURCE_EXHAUSTED without
  RetryInfo) of a request of several records is narrowed down by exporting them one by
  one; only the records still refused are dead-lettered, with the receiver's reason;
  401/403/404 (UNAUTHENTICATED, PERMISSION_DENIED, UNIMPLEMENTED) dead-letter the
  request's records;
* on 429/502/503/504 (UNAVAILABLE, DEADLINE_EXCEEDED, RESOURCE_EXHAUSTED with RetryInfo)
  or when the receiver is unreachable, the records of that request and of every request
  not sent yet are handed back for retry, with the delay the receiver asked for
  (``Retry-After``, ``RetryInfo``). Spans of the batch exported already are exported
  again (at least once, never lost): Jaeger v2's query API and UI show such a span
  once, identical spans being merged when a trace is read.

See :mod:`.classify` for every status. Counter ``ferryman_spans_sent_total{function}``
counts the spans of records delivered.
"""

from __future__ import annotations

from workers.function import FunctionSpec

from .config import OtlpTracesConfig
from .sink import OtlpTracesSink

__all__ = ["SPEC"]

SPEC = FunctionSpec(
    name="otlp_traces",
    kind="sink",
    summary="Export traces to Jaeger or any OTLP receiver (OTLP/HTTP or OTLP/gRPC, protobuf).",
    config_model=OtlpTracesConfig,
    create=OtlpTracesSink,
    example="""\
url: http://127.0.0.1:4318
protocol: http
traces_path: /v1/traces
compression: none
tenant_from_header: true
tenant_header: X-Scope-OrgID
max_request_bytes: 4128768
timeout_s: 30
""",
)
