"""The pure parts of the receiver: bounded gunzip, answer bodies, headers, refusals,
and a request while Kafka is not connected."""

from __future__ import annotations

import gzip
import json

import pytest
from google.rpc.error_details_pb2 import RetryInfo
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)

from edge.traces.answers import JSON, PROTOBUF, error_body, response_body
from edge.traces.config import EdgeTracesConfig
from edge.traces.intake import Accepted, BusyError, Intake, Metrics
from edge.traces.otlphttp import _TooLargeError, gunzip
from edge.traces.produce import KafkaLink
from ferryman import headers as h
from ferryman.kafkaconfig import PLAINTEXT_CREDENTIALS
from ferryman.telemetry import Registry
from ferryman.wire.otlp import OtlpDecodeError, TraceMessage, decode_json


def test_gunzip_stops_at_the_limit() -> None:
    assert gunzip(gzip.compress(b"x" * 1000), 1000) == b"x" * 1000
    with pytest.raises(_TooLargeError):
        gunzip(gzip.compress(b"\0" * (8 * 2**20)), 1000)
    with pytest.raises(OtlpDecodeError, match="not gzip"):
        gunzip(b"plain", 1000)
    with pytest.raises(OtlpDecodeError, match="truncated"):
        gunzip(gzip.compress(b"y" * 1000)[:-12], 1000)


def test_answers_in_both_encodings() -> None:
    assert response_body(Accepted(), PROTOBUF) == b""
    assert json.loads(response_body(Accepted(), JSON)) == {}
    partial = Accepted(2, "2 spans refused: why")
    decoded = ExportTraceServiceResponse.FromString(response_body(partial, PROTOBUF))
    assert decoded.partial_success.rejected_spans == 2
    assert decoded.partial_success.error_message == "2 spans refused: why"
    assert json.loads(response_body(partial, JSON)) == {
        "partialSuccess": {"rejectedSpans": "2", "errorMessage": "2 spans refused: why"}
    }
    status = Status.FromString(error_body(14, "Kafka away", PROTOBUF, 1.5))
    assert (status.code, status.message) == (14, "Kafka away")
    info = RetryInfo()
    assert status.details[0].Unpack(info)
    assert (info.retry_delay.seconds, info.retry_delay.nanos) == (1, 500_000_000)
    assert json.loads(error_body(3, "bad", JSON, None)) == {"code": 3, "message": "bad"}


def _intake(config: EdgeTracesConfig) -> tuple[Intake, Registry]:
    registry = Registry()
    metrics = Metrics(registry)
    link = KafkaLink(  # never started: not connected
        bootstrap_servers="127.0.0.1:1",
        topic="t",
        credentials=PLAINTEXT_CREDENTIALS,
        max_message_bytes=2**20,
        ack_timeout=1.0,
        errors=metrics.errors,
    )
    return Intake(config, link, metrics), registry


def test_headers_of_a_produced_message() -> None:
    config = EdgeTracesConfig.model_validate(
        {"external_labels": {"cluster": "c1"}, "ferryman": {"kafka": {"tenant": "t1"}}}
    )
    intake, _ = _intake(config)
    message = TraceMessage(trace_id=b"\1" * 16, value=b"", spans=1)
    assert list(intake.headers_for(message)) == [
        (h.SCHEMA, h.SCHEMA_OTLP_TRACES),
        (h.CLUSTER, b"c1"),
        (h.TENANT, b"t1"),
    ]
    bare, _ = _intake(EdgeTracesConfig())
    assert list(bare.headers_for(message)) == [(h.SCHEMA, h.SCHEMA_OTLP_TRACES)]


def _request(*trace_ids: str) -> ExportTraceServiceRequest:
    spans = [
        {"traceId": trace_id, "spanId": f"{n + 1:016x}", "name": "op"}
        for n, trace_id in enumerate(trace_ids)
    ]
    document = {"resourceSpans": [{"scopeSpans": [{"spans": spans}]}]}
    return decode_json(json.dumps(document).encode())


def test_kafka_not_connected_is_busy_and_refusals_are_counted_by_reason() -> None:
    intake, registry = _intake(EdgeTracesConfig())
    with pytest.raises(BusyError) as busy:
        intake.export(_request("ab" * 16, "00" * 16), "http")
    assert busy.value.retry_after == 1.0
    assert "not connected" in str(busy.value)
    assert registry.value("ferryman_spans_received_total", transport="http") == 2
    assert registry.value("ferryman_spans_refused_total", reason="invalid_trace_id") == 1
    assert registry.value("ferryman_spans_produced_total") == 0
    assert registry.value("ferryman_requests_in_flight") == 0


def test_a_request_of_refused_spans_only_needs_no_kafka() -> None:
    intake, registry = _intake(EdgeTracesConfig())
    accepted = intake.export(_request("00" * 16, "00" * 16), "grpc")
    assert accepted.rejected_spans == 2
    assert "trace_id" in accepted.error_message
    assert registry.value("ferryman_spans_refused_total", reason="invalid_trace_id") == 2


def test_a_listener_on_a_busy_port_is_an_os_error() -> None:
    import socket

    from edge.traces.otlpgrpc import GrpcListener
    from edge.traces.otlphttp import HttpListener

    intake, _ = _intake(EdgeTracesConfig())
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        address = f"127.0.0.1:{busy.getsockname()[1]}"
        with pytest.raises(OSError, match="cannot listen on"):
            GrpcListener(address, intake)
        with pytest.raises(OSError):
            HttpListener(address, intake)


def test_undecodable_requests_are_all_counted_and_logged_once_a_while(
    caplog: pytest.LogCaptureFixture,
) -> None:
    intake, registry = _intake(EdgeTracesConfig())
    with caplog.at_level("WARNING", logger="ferryman.edge.traces"):
        for _ in range(3):
            intake.undecodable("http", "10.0.0.7", "not JSON")
        intake.undecodable("grpc", "10.0.0.8", "not protobuf")
    assert registry.value("ferryman_errors_total", error_type="decode", stage="http") == 3
    assert registry.value("ferryman_errors_total", error_type="decode", stage="grpc") == 1
    assert [r.getMessage() for r in caplog.records] == [
        "undecodable OTLP/HTTP request from 10.0.0.7: not JSON"
    ]
