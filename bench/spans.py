"""The traces benchmark's load: a fixed corpus of OTLP requests, posted or written to
Kafka with fresh trace ids.

Each request is what one service's SDK exports: 100 spans of 5 traces (a server span
and its 19 children: database and HTTP client calls, internal work) with the
resource and span attributes OpenTelemetry's semantic conventions name. The corpus
holds 64 such requests; every use replaces their trace ids with random ones (same
length, so the protobuf stays valid), so no two posted traces share an id.
"""

from __future__ import annotations

import os
import random
import time
from dataclasses import dataclass
from functools import partial

from kafka import KafkaProducer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from bench import loader
from bench.loader import Load
from ferryman import headers as h
from ferryman.wire.otlp import split_by_trace

SPANS_PER_TRACE = 20
TRACES_PER_REQUEST = 5
SPANS_PER_REQUEST = SPANS_PER_TRACE * TRACES_PER_REQUEST
#: Distinct request bodies in the corpus (their trace ids are replaced on every use).
DISTINCT = 64


def _kv(key: str, value: str | int | bool) -> KeyValue:
    if isinstance(value, bool):
        return KeyValue(key=key, value=AnyValue(bool_value=value))
    if isinstance(value, int):
        return KeyValue(key=key, value=AnyValue(int_value=value))
    return KeyValue(key=key, value=AnyValue(string_value=value))


SERVICES = ("checkout", "cart", "payment", "catalog", "shipping", "frontend", "auth", "search")


def _request(rng: random.Random, n: int) -> tuple[bytes, list[bytes]]:
    """One OTLP request from one service: TRACES_PER_REQUEST traces of
    SPANS_PER_TRACE spans each (a server span and its children: client calls to other
    services and a database, internal work), with the attributes an SDK sets."""
    service = SERVICES[n % len(SERVICES)]
    resource = Resource(
        attributes=[
            _kv("service.name", service),
            _kv("service.version", f"1.{n % 7}.{n % 13}"),
            _kv("service.instance.id", f"{service}-{rng.getrandbits(32):08x}"),
            _kv("deployment.environment.name", "production"),
            _kv("k8s.namespace.name", "shop"),
            _kv("k8s.deployment.name", service),
            _kv("k8s.pod.name", f"{service}-7d9f8b6c5-{rng.getrandbits(20):05x}"),
            _kv("k8s.node.name", f"node-{n % 5}"),
            _kv("host.name", f"node-{n % 5}"),
            _kv("telemetry.sdk.name", "opentelemetry"),
            _kv("telemetry.sdk.language", "go"),
            _kv("telemetry.sdk.version", "1.38.0"),
        ]
    )
    spans = []
    trace_ids = []
    now = time.time_ns()
    for t in range(TRACES_PER_REQUEST):
        trace_id = rng.randbytes(16)
        trace_ids.append(trace_id)
        root_id = rng.randbytes(8)
        start = now - rng.randrange(10**9, 60 * 10**9)
        route = f"/api/v1/{service}/{{id}}"
        status = 500 if rng.random() < 0.02 else 200
        spans.append(
            Span(
                trace_id=trace_id,
                span_id=root_id,
                parent_span_id=rng.randbytes(8),
                name=f"GET {route}",
                kind=Span.SPAN_KIND_SERVER,
                start_time_unix_nano=start,
                end_time_unix_nano=start + rng.randrange(5, 900) * 10**6,
                attributes=[
                    _kv("http.request.method", "GET"),
                    _kv("http.route", route),
                    _kv("url.path", route.replace("{id}", str(rng.randrange(10**6)))),
                    _kv("url.scheme", "http"),
                    _kv("http.response.status_code", status),
                    _kv("server.address", f"{service}.shop.svc"),
                    _kv("server.port", 8080),
                    _kv("network.protocol.version", "1.1"),
                    _kv("client.address", f"10.42.{n % 250}.{t + 1}"),
                    _kv("user_agent.original", "Mozilla/5.0 (X11; Linux x86_64)"),
                ],
                status=Status(
                    code=Status.STATUS_CODE_ERROR if status >= 500 else Status.STATUS_CODE_UNSET
                ),
            )
        )
        for c in range(1, SPANS_PER_TRACE):
            child_start = start + c * 2_000_000
            kind = c % 3
            if kind == 0:
                attributes = [
                    _kv("db.system.name", "postgresql"),
                    _kv("db.namespace", "shop"),
                    _kv("db.operation.name", "SELECT"),
                    _kv("db.query.text", f"SELECT * FROM {service} WHERE id = $1"),
                    _kv("server.address", "postgres.shop.svc"),
                    _kv("server.port", 5432),
                ]
                name, span_kind = f"SELECT shop.{service}", Span.SPAN_KIND_CLIENT
            elif kind == 1:
                peer = SERVICES[(n + c) % len(SERVICES)]
                attributes = [
                    _kv("http.request.method", "POST"),
                    _kv("url.full", f"http://{peer}.shop.svc:8080/api/v1/{peer}"),
                    _kv("http.response.status_code", 200),
                    _kv("server.address", f"{peer}.shop.svc"),
                    _kv("server.port", 8080),
                ]
                name, span_kind = "POST", Span.SPAN_KIND_CLIENT
            else:
                attributes = [
                    _kv("code.function.name", f"{service}.handle"),
                    _kv("cache.hit", True),
                ]
                name, span_kind = f"{service}.handle", Span.SPAN_KIND_INTERNAL
            spans.append(
                Span(
                    trace_id=trace_id,
                    span_id=rng.randbytes(8),
                    parent_span_id=root_id,
                    name=name,
                    kind=span_kind,
                    start_time_unix_nano=child_start,
                    end_time_unix_nano=child_start + rng.randrange(1, 50) * 10**6,
                    attributes=attributes,
                )
            )
    scope = InstrumentationScope(name="go.opentelemetry.io/contrib/otelhttp", version="0.63.0")
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(
                resource=resource,
                scope_spans=[ScopeSpans(scope=scope, spans=spans)],
                schema_url="https://opentelemetry.io/schemas/1.26.0",
            )
        ]
    )
    return request.SerializeToString(), trace_ids


@dataclass(frozen=True)
class Template:
    """A serialized OTLP message and the trace ids in it, to be replaced per use."""

    body: bytes
    trace_ids: tuple[bytes, ...]


def corpus() -> list[Template]:
    rng = random.Random(11)
    out = []
    for n in range(DISTINCT):
        body, ids = _request(rng, n)
        out.append(Template(body, tuple(ids)))
    return out


def fresh(template: Template) -> bytes:
    """``template`` with new random trace ids (same length: the protobuf stays valid)."""
    body = template.body
    for trace_id in template.trace_ids:
        body = body.replace(trace_id, os.urandom(16))
    return body


# --- the load generator ------------------------------------------------------------------


def _fresh_at(templates: list[Template], i: int) -> bytes:
    return fresh(templates[i % len(templates)])


def post(url: str, templates: list[Template], requests: int, processes: int, threads: int) -> int:
    """Post ``requests`` bodies to ``url`` from ``processes`` loader processes of
    ``threads`` connections each; returns how many posts were repeated (after a 429 or
    503, or a connection the receiver closed). Any other answer than 200 fails it."""
    load = Load(url, partial(_fresh_at, templates), {"Content-Type": "application/x-protobuf"}, 200)
    return loader.post(load, requests, processes, threads)


def fill(bootstrap: str, topic: str, templates: list[Template], spans: int) -> int:
    """Write ``spans`` spans to ``topic`` as ferryman's edge does; returns messages."""
    per_template = [
        split_by_trace(ExportTraceServiceRequest.FromString(t.body), 1 << 20) for t in templates
    ]
    producer = KafkaProducer(
        bootstrap_servers=bootstrap,
        acks="all",
        compression_type="snappy",
        linger_ms=20,
        batch_size=512 * 1024,
        max_request_size=8 << 20,
    )
    headers = [(h.SCHEMA, h.SCHEMA_OTLP_TRACES), (h.CLUSTER, b"bench")]
    written = messages = 0
    n = 0
    while written < spans:
        for message in per_template[n % len(per_template)]:
            new_id = os.urandom(16)
            producer.send(
                topic,
                key=new_id,
                value=message.value.replace(message.trace_id, new_id),
                headers=headers,
            )
            written += message.spans
            messages += 1
        n += 1
    producer.flush()
    producer.close()
    return messages
