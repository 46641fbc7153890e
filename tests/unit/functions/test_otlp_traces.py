"""otlp_traces: the pure parts (config, the merge and cut of records, the reading of
OTLP/HTTP and OTLP/gRPC answers). Delivery to a real Jaeger is proved in
tests/integration/functions/test_otlp_traces.py."""

from __future__ import annotations

import gzip
import logging
import os
import socket

import httpx
import pytest
from google.protobuf.duration_pb2 import Duration
from google.rpc import error_details_pb2, status_pb2
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span
from pydantic import ValidationError

from ferryman import headers as h
from ferryman.telemetry import Registry
from ferryman.wire.otlp import span_count
from functions._records import UnsupportedRecord
from functions._traces import decode_traces
from functions.otlp_traces.classify import (
    classify,
    data_at_fault,
    grpc_answer,
    http_answer,
    retry_after_header,
)
from functions.otlp_traces.config import DEFAULT_MAX_REQUEST_BYTES, OtlpTracesConfig
from functions.otlp_traces.encode import (
    chunk,
    grpc_metadata,
    http_headers,
    record_tenant,
    request_body,
)
from functions.otlp_traces.sink import OtlpTracesSink
from workers.function import Context
from workers.records import Record


def _config(**extra: object) -> OtlpTracesConfig:
    return OtlpTracesConfig.model_validate({"url": "http://jaeger:4318", **extra})


def _request(spans: int, service_tag: str = "a") -> bytes:
    made = [
        Span(trace_id=os.urandom(16), span_id=os.urandom(8), name=f"{service_tag}{n}")
        for n in range(spans)
    ]
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=made)])]
    )
    return request.SerializeToString()


# ---- config -----------------------------------------------------------------------------


def test_defaults_stay_under_the_grpc_limit_of_jaeger() -> None:
    config = _config()
    assert config.protocol == "http"
    assert config.export_url == "http://jaeger:4318/v1/traces"
    assert config.max_request_bytes == DEFAULT_MAX_REQUEST_BYTES < 4 * 1024 * 1024


@pytest.mark.parametrize(
    ("url", "target", "tls"),
    [
        ("http://jaeger:4317", "jaeger:4317", False),
        ("https://jaeger.example", "jaeger.example:4317", True),
        ("http://[::1]:4317/", "[::1]:4317", False),
    ],
)
def test_grpc_target(url: str, target: str, tls: bool) -> None:
    config = _config(url=url, protocol="grpc")
    assert (config.grpc_target, config.grpc_tls) == (target, tls)


def test_grpc_refuses_what_it_cannot_do() -> None:
    with pytest.raises(ValidationError, match="insecure_skip_verify"):
        _config(protocol="grpc", tls={"insecure_skip_verify": True})
    with pytest.raises(ValidationError, match="metadata keys"):
        _config(protocol="grpc", headers={"bad key": "x"})
    with pytest.raises(ValidationError, match="at most one"):
        _config(bearer_token="t", basic_auth={"username": "u", "password": "p"})


# ---- the merge and cut ------------------------------------------------------------------


@settings(max_examples=60, deadline=None)
@given(
    sizes=st.lists(st.integers(1, 4), min_size=1, max_size=12),
    tenants=st.lists(st.sampled_from(["", "a", "b"]), min_size=12, max_size=12),
    limit=st.integers(200, 2000),
)
def test_chunks_hold_every_record_once_under_the_limit(
    sizes: list[int], tenants: list[str], limit: int
) -> None:
    values = [_request(n) for n in sizes]
    chunks = chunk(((i, tenants[i], v) for i, v in enumerate(values)), limit)
    owners = sorted(o for c in chunks for o in c.owners)
    assert owners == list(range(len(values)))
    for c in chunks:
        assert c.size <= limit or len(c.parts) == 1
        assert {tenants[o] for o in c.owners} == {c.tenant}
        assert [o for o, _ in c.parts] == sorted(c.owners)  # batch order kept
        # The joined bytes are one request with every span of its records.
        merged = ExportTraceServiceRequest.FromString(c.request())
        assert span_count(merged) == sum(sizes[o] for o in c.owners)
        assert [p.owners for p in c.by_owner()] == [frozenset({o}) for o in sorted(c.owners)]


def test_gzip_and_headers() -> None:
    config = _config(compression="gzip", tenant_header="X-Tenant", headers={"X-Extra": "1"})
    (c,) = chunk([(0, "team-a", _request(2))], 10_000)
    assert gzip.decompress(request_body(config, c)) == c.request()
    assert http_headers(config, "team-a") == {
        "Content-Type": "application/x-protobuf",
        "Content-Encoding": "gzip",
        "X-Tenant": "team-a",
    }
    assert http_headers(_config(), "") == {"Content-Type": "application/x-protobuf"}


def test_grpc_metadata_carries_headers_credentials_and_tenant() -> None:
    config = _config(protocol="grpc", headers={"X-Extra": "1"}, bearer_token="s3cret")
    assert dict(grpc_metadata(config, "team-a")) == {
        "x-extra": "1",
        "authorization": "Bearer s3cret",
        "x-scope-orgid": "team-a",
    }
    basic = _config(protocol="grpc", basic_auth={"username": "u", "password": "p"})
    assert dict(grpc_metadata(basic, "")) == {"authorization": "Basic dTpw"}


def test_tenant_from_the_record_or_the_config() -> None:
    record = Record("t", 0, 0, None, b"", ((h.TENANT, b"team-b"),))
    assert record_tenant(_config(), record) == "team-b"
    assert record_tenant(_config(tenant="fixed"), record) == "fixed"
    assert record_tenant(_config(tenant_from_header=False), record) == ""


# ---- answers ----------------------------------------------------------------------------


def _status(message: str, delay_s: float | None = None) -> bytes:
    status = status_pb2.Status(code=14, message=message)
    if delay_s is not None:
        info = error_details_pb2.RetryInfo(
            retry_delay=Duration(seconds=int(delay_s), nanos=int(delay_s % 1 * 1e9))
        )
        status.details.add().Pack(info)
    return status.SerializeToString()


def test_partial_success_is_read_from_a_2xx() -> None:
    body = ExportTraceServiceResponse(
        partial_success=ExportTracePartialSuccess(rejected_spans=3, error_message="too old")
    ).SerializeToString()
    answer = http_answer(200, {"content-type": "application/x-protobuf"}, body)
    assert (answer.status, answer.rejected_spans, answer.rejected_message) == (200, 3, "too old")
    assert http_answer(200, {}, b"").rejected_spans == 0
    as_json = b'{"partialSuccess":{"rejectedSpans":"4","errorMessage":"x"}}'
    assert http_answer(200, {"content-type": "application/json"}, as_json).rejected_spans == 4


def test_an_http_refusal_gives_its_status_message_and_delay() -> None:
    proto = {"content-type": "application/x-protobuf"}
    answer = http_answer(503, proto, _status("memory limit", 1.5))
    assert (answer.status, answer.message, answer.delay) == (503, "memory limit", 1.5)
    answer = http_answer(429, {**proto, "retry-after": "7"}, _status("slow down", 1.0))
    assert answer.delay == 7.0  # Retry-After wins over RetryInfo
    answer = http_answer(400, {"content-type": "text/plain"}, b"bad trace id")
    assert (answer.status, answer.message, answer.delay) == (400, "bad trace id", None)


@pytest.mark.parametrize(
    ("code", "delay", "status", "kind", "about_the_data"),
    [
        ("OK", None, 200, "ok", False),
        ("UNAVAILABLE", None, 503, "retry", False),
        ("UNAVAILABLE", 2.5, 503, "retry", False),
        ("DEADLINE_EXCEEDED", None, 504, "retry", False),
        ("RESOURCE_EXHAUSTED", 3.0, 429, "retry", False),
        ("RESOURCE_EXHAUSTED", None, 413, "permanent", True),
        ("INVALID_ARGUMENT", None, 400, "permanent", True),
        ("UNAUTHENTICATED", None, 401, "permanent", False),
        ("PERMISSION_DENIED", None, 403, "permanent", False),
        ("UNIMPLEMENTED", None, 404, "permanent", False),
        ("INTERNAL", None, 500, "retry", False),
    ],
)
def test_a_grpc_answer_means_what_its_http_status_means(
    code: str, delay: float | None, status: int, kind: str, about_the_data: bool
) -> None:
    trailing = () if delay is None else (("grpc-status-details-bin", _status("x", delay)),)
    answer = grpc_answer(code, "details", trailing)
    assert answer.status == status
    # What the sink hands the delivery loop, classified as the loop classifies it.
    response = httpx.Response(
        answer.status, headers=retry_after_header(answer.delay), text=answer.message
    )
    outcome = classify(response.status_code, response.headers, response.text)
    assert (outcome.kind, outcome.delay) == (kind, delay)
    assert data_at_fault(status) == about_the_data
    if kind != "ok":
        assert f"gRPC {code}: details" in outcome.reason


def test_fractional_retry_after_is_kept() -> None:
    assert classify(503, {"retry-after": "0.250"}, "").delay == 0.25
    assert classify(503, {"retry-after": "soon"}, "").delay is None


@pytest.mark.parametrize(
    ("span", "reason"),
    [
        (Span(trace_id=b"abc", span_id=b"12345678"), "trace_id is 3 bytes, not 16"),
        (Span(trace_id=b"a" * 16, span_id=b""), "span_id is 0 bytes, not 8"),
    ],
)
def test_ids_of_the_wrong_length_make_a_record_unsupported(span: Span, reason: str) -> None:
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])]
    )
    record = Record("t", 0, 0, None, request.SerializeToString())
    with pytest.raises(UnsupportedRecord, match=reason):
        decode_traces(record)
    assert span_count(decode_traces(Record("t", 0, 0, None, _request(2)))) == 2


def test_a_record_without_spans_is_delivered_without_a_request() -> None:
    """An empty request has nothing to export: nothing is sent (the receiver here is a
    closed port, which would hand a sent record back for retry)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    config = _config(url=f"http://127.0.0.1:{port}")
    context = Context("otlp_traces", httpx.Client, Registry(), logging.getLogger("test"))
    sink = OtlpTracesSink(config, context)
    try:
        empty = Record("t", 0, 0, None, b"", ((h.SCHEMA, h.SCHEMA_OTLP_TRACES),))
        delivered = sink.handle([empty])
        assert (list(delivered.dead), list(delivered.retry)) == ([], [])
        full = Record("t", 0, 1, None, _request(1), ((h.SCHEMA, h.SCHEMA_OTLP_TRACES),))
        delivered = sink.handle([empty, full])
        assert list(delivered.retry) == [full]
        assert "unreachable" in delivered.retry_reason
    finally:
        sink.close()
