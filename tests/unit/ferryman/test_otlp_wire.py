"""The OTLP wire helpers: JSON mapping, cluster attribute, the cut by trace."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import Span, Status

from ferryman.wire.otlp import (
    OtlpDecodeError,
    Refused,
    decode_json,
    decode_protobuf,
    encode_json,
    set_resource_attributes,
    span_count,
    split_by_trace,
)

JSON_BODY = b"""{"resourceSpans":[{"resource":{"attributes":[{"key":"service.name",
"value":{"stringValue":"shop"}}]},"scopeSpans":[{"scope":{"name":"s"},"spans":[{
"traceId":"5b8efff798038103d269b633813fc60c","spanId":"eee19b7ec3c1b174",
"parentSpanId":"eee19b7ec3c1b173","name":"GET /","kind":2,
"startTimeUnixNano":"1544712660000000000","endTimeUnixNano":"1544712661000000000",
"status":{"code":2},"links":[{"traceId":"5b8efff798038103d269b633813fc60d",
"spanId":"eee19b7ec3c1b175"}],"unknownField":1}]}]}]}"""


def test_json_mapping_reads_hex_ids_integer_enums_and_ignores_unknown_fields() -> None:
    request = decode_json(JSON_BODY)
    span = request.resource_spans[0].scope_spans[0].spans[0]
    assert span.trace_id.hex() == "5b8efff798038103d269b633813fc60c"
    assert span.parent_span_id.hex() == "eee19b7ec3c1b173"
    assert span.links[0].span_id.hex() == "eee19b7ec3c1b175"
    assert span.kind == Span.SPAN_KIND_SERVER
    assert span.status.code == Status.STATUS_CODE_ERROR
    assert span.start_time_unix_nano == 1544712660000000000
    assert decode_json(encode_json(request)) == request
    assert b'"traceId":"5b8efff798038103d269b633813fc60c"' in encode_json(request)


@pytest.mark.parametrize(
    "body",
    [
        b"{",
        b"[]",
        b'{"resourceSpans":[{"scopeSpans":[{"spans":[{"traceId":"zz"}]}]}]}',
        b'{"resourceSpans":"x"}',
        b"\xff\xfe",
    ],
)
def test_bad_json_is_a_decode_error(body: bytes) -> None:
    with pytest.raises(OtlpDecodeError):
        decode_json(body)


def test_bad_protobuf_is_a_decode_error() -> None:
    with pytest.raises(OtlpDecodeError):
        decode_protobuf(b"\x0a\xff\xff\xff\xff\x0f")


def _request(traces: list[tuple[bytes, int]], resources: int = 2) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    for r in range(resources):
        rs = request.resource_spans.add()
        rs.resource.attributes.add(key="service.name").value.string_value = f"svc{r}"
        ss = rs.scope_spans.add()
        ss.scope.name = "lib"
        for trace_id, count in traces:
            for i in range(count):
                span = ss.spans.add(trace_id=trace_id, span_id=os.urandom(8), name=f"op{i}")
                span.attributes.add(key="k").value.string_value = "v" * (i * 7 % 90)
    return request


def test_cluster_attribute_replaces_what_the_application_said() -> None:
    request = _request([(b"\x01" * 16, 1)])
    request.resource_spans[0].resource.attributes.add(
        key="k8s.cluster.name"
    ).value.string_value = "x"
    set_resource_attributes(request, {"k8s.cluster.name": "alpha"})
    for rs in request.resource_spans:
        values = [
            kv.value.string_value for kv in rs.resource.attributes if kv.key == "k8s.cluster.name"
        ]
        assert values == ["alpha"]


@settings(max_examples=60, deadline=None)
@given(
    counts=st.lists(st.integers(1, 30), min_size=1, max_size=5),
    limit=st.integers(300, 5000),
)
def test_split_keeps_each_trace_whole_and_every_message_under_the_limit(
    counts: list[int], limit: int
) -> None:
    traces = [(bytes([i + 1]) * 16, n) for i, n in enumerate(counts)]
    request = _request(traces)
    refused = Refused()
    messages = split_by_trace(request, limit, refused)
    got: dict[bytes, list[bytes]] = {}
    for m in messages:
        assert len(m.value) <= limit
        decoded = decode_protobuf(m.value)
        assert span_count(decoded) == m.spans
        for rs in decoded.resource_spans:
            assert rs.resource.attributes[0].key == "service.name"
            for ss in rs.scope_spans:
                assert ss.scope.name == "lib"
                for span in ss.spans:
                    assert span.trace_id == m.trace_id
                    got.setdefault(m.trace_id, []).append(span.span_id)
    assert refused.spans == 0
    assert {t: sorted(ids) for t, ids in got.items()} == {
        trace_id: sorted(
            s.span_id
            for rs in request.resource_spans
            for ss in rs.scope_spans
            for s in ss.spans
            if s.trace_id == trace_id
        )
        for trace_id, _ in traces
    }


def test_one_message_per_trace_when_it_fits() -> None:
    messages = split_by_trace(_request([(b"\x01" * 16, 3), (b"\x02" * 16, 2)]), 1 << 20)
    assert [(m.trace_id[0], m.spans) for m in messages] == [(1, 6), (2, 4)]


def test_bad_trace_ids_and_oversized_spans_are_refused_and_counted() -> None:
    request = _request([(b"\x01" * 16, 1), (b"\x00" * 16, 1), (b"\x02" * 8, 1)], resources=1)
    request.resource_spans[0].scope_spans[0].spans[0].name = "x" * 2000
    refused = Refused()
    assert split_by_trace(request, 1000, refused) == []
    assert refused.spans == 3
    assert "trace_id" in refused.reason
