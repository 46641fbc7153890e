"""The OTLP receiver with real clients: the OpenTelemetry SDK's exporters (gRPC and
HTTP), plain httpx for the JSON mapping, and bodies no client should send."""

from __future__ import annotations

import gzip
import json
import os

import grpc
import httpx
import pytest
from google.rpc.status_pb2 import Status
from kafka import KafkaAdminClient
from kafka.admin import NewTopic
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http import Compression
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.sdk.trace.export import SpanExportResult

from ferryman import headers as h
from ferryman.lineage import parse_traceparent
from tests.integration.edge.traces.otlp import (
    all_span_ids,
    make_spans,
    read_back,
    settings,
    span_ids,
)
from tests.integration.pipeline import EdgeTraces, create_topics

pytestmark = pytest.mark.integration

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


@pytest.fixture
def topic(stack, unique: str) -> str:
    name = f"traces-{unique}"
    create_topics(stack("kafka", "bootstrap"), (name, 3))
    return name


def start(processes, tmp_path, config) -> EdgeTraces:
    receiver = processes(EdgeTraces(tmp_path, config))
    return receiver.wait_ready()


def test_sdk_exporters_deliver_spans_keyed_by_trace_with_the_cluster(
    stack, processes, tmp_path, topic, unique
):
    bootstrap = stack("kafka", "bootstrap")
    config = settings(bootstrap, topic, kafka={"tenant": "team-a"})
    config["external_labels"] = {"cluster": unique, "region": "eu-1"}
    receiver = start(processes, tmp_path, config)

    by_grpc = make_spans(f"grpc-{unique}", traces=3, per_trace=4)
    by_http = make_spans(f"http-{unique}", traces=3, per_trace=4)
    grpc_exporter = GrpcSpanExporter(endpoint=receiver.grpc, insecure=True, timeout=30)
    http_exporter = HttpSpanExporter(
        endpoint=f"http://{receiver.http}/v1/traces", compression=Compression.Gzip, timeout=30
    )
    assert grpc_exporter.export(by_grpc) == SpanExportResult.SUCCESS
    assert http_exporter.export(by_http) == SpanExportResult.SUCCESS
    grpc_exporter.shutdown()
    http_exporter.shutdown()

    wanted = span_ids(by_grpc) | span_ids(by_http)
    messages = read_back(bootstrap, topic, wanted)
    assert sorted(all_span_ids(messages)) == sorted(wanted)
    assert len(messages) == 6  # one message per trace
    for message in messages:
        assert {span.trace_id for span in message.spans()} == {message.key}
        # Batch lineage (on by default) names each request's batch in a traceparent.
        assert parse_traceparent(message.headers.pop(h.TRACEPARENT)) is not None
        assert message.headers == {
            h.SCHEMA: h.SCHEMA_OTLP_TRACES,
            h.CLUSTER: unique.encode(),
            h.TENANT: b"team-a",
        }
        for attributes in message.resource_attributes():
            assert attributes["k8s.cluster.name"] == unique
            assert attributes["region"] == "eu-1"
            assert attributes["service.name"] in (f"grpc-{unique}", f"http-{unique}")
    assert receiver.metric("ferryman_spans_received_total", transport="grpc") == 12
    assert receiver.metric("ferryman_spans_received_total", transport="http") == 12
    assert receiver.metric("ferryman_spans_produced_total") == 24
    assert receiver.metric("ferryman_requests_total", transport="grpc", status="OK") == 1
    assert receiver.metric("ferryman_requests_total", transport="http", status="200") == 1


def _json_request(trace_id: str, span_ids: list[str]) -> dict:
    return {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [{"key": "service.name", "value": {"stringValue": "json"}}]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "curl"},
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": span_id,
                                "name": f"op-{span_id}",
                                "kind": 2,
                                "startTimeUnixNano": "1700000000000000000",
                                "endTimeUnixNano": "1700000000100000000",
                                "status": {"code": 2},
                            }
                            for span_id in span_ids
                        ],
                    }
                ],
            }
        ]
    }


def test_json_bodies_with_hex_ids_plain_and_gzip_and_partial_success(
    stack, processes, tmp_path, topic, unique
):
    bootstrap = stack("kafka", "bootstrap")
    config = settings(bootstrap, topic)
    config["external_labels"] = {"cluster": unique}
    receiver = start(processes, tmp_path, config)
    url = f"http://{receiver.http}/v1/traces"
    trace_a, trace_b = os.urandom(16).hex(), os.urandom(16).hex()
    ids_a = [os.urandom(8).hex() for _ in range(3)]
    ids_b = [os.urandom(8).hex() for _ in range(2)]

    plain = httpx.post(url, json=_json_request(trace_a, ids_a), timeout=30)
    assert plain.status_code == 200, plain.text
    assert plain.headers["content-type"] == "application/json"
    assert plain.json() == {}

    # An all-zero trace id is invalid (OTLP): that span is refused, the others kept.
    body = _json_request(trace_b, ids_b)
    zero_span = os.urandom(8).hex()
    body["resourceSpans"][0]["scopeSpans"][0]["spans"].append(
        _json_request("0" * 32, [zero_span])["resourceSpans"][0]["scopeSpans"][0]["spans"][0]
    )
    zipped = httpx.post(
        url,
        content=gzip.compress(json.dumps(body).encode()),
        headers={"Content-Type": "application/json", "Content-Encoding": "gzip"},
        timeout=30,
    )
    assert zipped.status_code == 200, zipped.text
    assert zipped.headers["content-encoding"] == "gzip"  # httpx has decoded it
    partial = zipped.json()["partialSuccess"]
    assert int(partial["rejectedSpans"]) == 1
    assert "trace_id" in partial["errorMessage"]

    wanted = {bytes.fromhex(i) for i in ids_a + ids_b}
    messages = read_back(bootstrap, topic, wanted)
    assert sorted(all_span_ids(messages)) == sorted(wanted)
    assert {m.key.hex() for m in messages} == {trace_a, trace_b}
    assert receiver.metric("ferryman_spans_refused_total", reason="invalid_trace_id") == 1


def test_undecodable_bodies_get_400_and_invalid_argument_and_the_receiver_keeps_serving(
    stack, processes, tmp_path, topic, unique
):
    bootstrap = stack("kafka", "bootstrap")
    receiver = start(processes, tmp_path, settings(bootstrap, topic))
    url = f"http://{receiver.http}/v1/traces"
    protobuf = {"Content-Type": "application/x-protobuf"}

    bad_protobuf = httpx.post(url, content=b"\x0a\xff\xff\xff\xff\x0f", headers=protobuf)
    assert bad_protobuf.status_code == 400
    status = Status.FromString(bad_protobuf.content)
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert "protobuf" in status.message

    bad_json = httpx.post(
        url, content=b'{"resourceSpans": [', headers={"Content-Type": "application/json"}
    )
    assert bad_json.status_code == 400
    assert bad_json.json()["code"] == grpc.StatusCode.INVALID_ARGUMENT.value[0]

    bad_hex = httpx.post(url, json=_json_request("zz" * 16, ["00" * 8]))
    assert bad_hex.status_code == 400
    assert "not hex" in bad_hex.json()["message"]

    bad_gzip = httpx.post(
        url, content=b"not gzip at all", headers={**protobuf, "Content-Encoding": "gzip"}
    )
    assert bad_gzip.status_code == 400

    with grpc.insecure_channel(receiver.grpc) as channel:
        export = channel.unary_unary(EXPORT)
        with pytest.raises(grpc.RpcError) as refused:
            export(b"\x0a\xff\xff\xff\xff\x0f", timeout=30)
        assert refused.value.code() == grpc.StatusCode.INVALID_ARGUMENT

        assert receiver.metric("ferryman_errors_total", error_type="decode", stage="http") == 4
        assert receiver.metric("ferryman_errors_total", error_type="decode", stage="grpc") == 1

        # ... and serves good requests after all that.
        good = make_spans(f"after-{unique}", traces=1, per_trace=2)
        answer = ExportTraceServiceResponse.FromString(
            export(encode_spans(good).SerializeToString(), timeout=30)
        )
        assert not answer.HasField("partial_success")
    ok = httpx.post(url, json=_json_request(os.urandom(16).hex(), [os.urandom(8).hex()]))
    assert ok.status_code == 200
    messages = read_back(bootstrap, topic, span_ids(good))
    assert span_ids(good) <= set(all_span_ids(messages))
    assert receiver.alive()


def test_size_type_and_path_limits(stack, processes, tmp_path, topic):
    bootstrap = stack("kafka", "bootstrap")
    config = settings(bootstrap, topic, limits={"max_request_bytes": 64 * 1024})
    receiver = start(processes, tmp_path, config)
    url = f"http://{receiver.http}/v1/traces"
    protobuf = {"Content-Type": "application/x-protobuf"}

    too_large = httpx.post(url, content=b"\0" * (64 * 1024 + 1), headers=protobuf)
    assert too_large.status_code == 413
    # 64 MiB of zeros gzip to 64 KiB: decompression stops at the limit.
    bomb = gzip.compress(b"\0" * (64 * 2**20))
    assert len(bomb) < 64 * 1024 * 2
    exploded = httpx.post(
        url, content=bomb[: 64 * 1024], headers={**protobuf, "Content-Encoding": "gzip"}
    )
    assert exploded.status_code == 413
    assert httpx.post(url, content=b"x", headers={"Content-Type": "text/plain"}).status_code == 415
    assert (
        httpx.post(url, content=b"", headers={**protobuf, "Content-Encoding": "br"}).status_code
        == 415
    )
    wrong_path = httpx.post(f"http://{receiver.http}/v1/metrics", content=b"", headers=protobuf)
    assert wrong_path.status_code == 404
    empty = httpx.post(
        url, content=ExportTraceServiceRequest().SerializeToString(), headers=protobuf
    )
    assert empty.status_code == 200
    assert ExportTraceServiceResponse.FromString(empty.content) == ExportTraceServiceResponse()

    # Chunked bodies (no Content-Length) count against the limit as they arrive.
    good = encode_spans(make_spans("chunked", traces=1, per_trace=3)).SerializeToString()
    chunked = httpx.post(url, content=iter([good[:10], good[10:]]), headers=protobuf)
    assert chunked.status_code == 200
    flood = httpx.post(url, content=iter([b"\0" * 4096] * 20), headers=protobuf)
    assert flood.status_code == 413

    # gRPC's own receive limit, without a RetryInfo: the client must not retry it.
    with grpc.insecure_channel(receiver.grpc) as channel:
        export = channel.unary_unary(EXPORT)
        with pytest.raises(grpc.RpcError) as refused:
            export(b"\0" * (64 * 1024 + 1), timeout=30)
        assert refused.value.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
        trailers = dict(refused.value.trailing_metadata() or ())
        assert "google.rpc.retryinfo-bin" not in trailers
    assert receiver.metric("ferryman_errors_total", error_type="too_large", stage="http") == 3


def test_a_large_trace_is_cut_below_max_message_bytes_and_an_oversized_span_refused(
    stack, processes, tmp_path, topic, unique
):
    bootstrap = stack("kafka", "bootstrap")
    config = settings(bootstrap, topic, kafka={"max_message_bytes": 8192})
    receiver = start(processes, tmp_path, config)
    trace_id = os.urandom(16).hex()
    small = [os.urandom(8).hex() for _ in range(40)]
    huge = os.urandom(8).hex()
    body = _json_request(trace_id, [*small, huge])
    spans = body["resourceSpans"][0]["scopeSpans"][0]["spans"]
    for span in spans[:-1]:
        span["attributes"] = [{"key": "payload", "value": {"stringValue": "x" * 700}}]
    spans[-1]["attributes"] = [{"key": "payload", "value": {"stringValue": "y" * 9000}}]
    answer = httpx.post(f"http://{receiver.http}/v1/traces", json=body, timeout=30)
    assert answer.status_code == 200
    partial = answer.json()["partialSuccess"]
    assert int(partial["rejectedSpans"]) == 1
    assert "larger than the 8192 byte limit" in partial["errorMessage"]

    messages = read_back(bootstrap, topic, {bytes.fromhex(i) for i in small})
    assert sorted(all_span_ids(messages)) == sorted(bytes.fromhex(i) for i in small)
    assert len(messages) >= 4  # 40 spans of ~750 bytes in messages of at most 8 KiB
    assert {m.key.hex() for m in messages} == {trace_id}
    assert all(m.request.ByteSize() <= 8192 for m in messages)
    assert receiver.metric("ferryman_spans_refused_total", reason="span_too_large") == 1
    assert receiver.metric("ferryman_messages_produced_total") == len(messages)
    assert receiver.terminate() == 0


def test_the_topics_own_max_message_bytes_is_respected(stack, processes, tmp_path, unique):
    bootstrap = stack("kafka", "bootstrap")
    topic = f"traces-small-{unique}"
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(topic, 1, 1, topic_configs={"max.message.bytes": "40000"})])
    finally:
        admin.close()
    # Configured for 1 MiB messages; the topic takes 40000 bytes: cut below 40000 - 16 KiB.
    receiver = start(processes, tmp_path, settings(bootstrap, topic))
    assert "max.message.bytes 40000" in receiver.output()
    trace_id = os.urandom(16).hex()
    small = [os.urandom(8).hex() for _ in range(40)]
    body = _json_request(trace_id, [*small, os.urandom(8).hex()])
    spans = body["resourceSpans"][0]["scopeSpans"][0]["spans"]
    for span in spans[:-1]:
        span["attributes"] = [{"key": "payload", "value": {"stringValue": "x" * 700}}]
    spans[-1]["attributes"] = [{"key": "payload", "value": {"stringValue": "y" * 30000}}]
    answer = httpx.post(f"http://{receiver.http}/v1/traces", json=body, timeout=30)
    assert answer.status_code == 200, answer.text
    assert int(answer.json()["partialSuccess"]["rejectedSpans"]) == 1
    messages = read_back(bootstrap, topic, {bytes.fromhex(i) for i in small})
    assert sorted(all_span_ids(messages)) == sorted(bytes.fromhex(i) for i in small)
    assert len(messages) >= 2
    assert all(m.request.ByteSize() <= 40000 - 16 * 1024 for m in messages)
