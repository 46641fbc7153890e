"""OTLP/HTTP through the gateway: the OpenTelemetry SDK's exporter, per tenant."""

from __future__ import annotations

import httpx
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.trace.export import SpanExportResult

from ferryman import headers as h
from tests.integration.gateway.helpers import PASSWORD_B, TOKEN_A, basic, messages, sdk_spans


def test_sdk_exporter_spans_arrive_with_tenant_and_cluster(gw, unique):
    spans = sdk_spans(unique, "alpha", 5)
    exporter = OTLPSpanExporter(
        endpoint=f"{gw.url}/v1/traces", headers={"Authorization": f"Bearer {TOKEN_A}"}
    )
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    exporter.shutdown()
    found = messages(gw.bootstrap, gw.traces)
    assert {m.key for m in found} == {s.context.trace_id.to_bytes(16, "big") for s in spans}
    for message in found:
        assert dict(message.headers)[h.SCHEMA] == h.SCHEMA_OTLP_TRACES
        assert dict(message.headers)[h.TENANT] == b"team-a"
        assert dict(message.headers)[h.CLUSTER] == b"alpha"
        request = ExportTraceServiceRequest.FromString(message.value)
        assert request.resource_spans[0].scope_spans[0].spans[0].name.startswith("op-")
    assert (
        gw.gateway.metric(
            "ferryman_gateway_accepted_total", endpoint="otlp_traces", tenant="team-a"
        )
        == 5
    )


def test_sdk_exporter_is_refused_for_another_cluster_and_a_wrong_password(gw, unique):
    spans = sdk_spans(unique, "alpha", 2)  # team-b may write only as beta
    wrong_cluster = OTLPSpanExporter(
        endpoint=f"{gw.url}/v1/traces", headers={"Authorization": basic("bob", PASSWORD_B)}
    )
    assert wrong_cluster.export(spans) == SpanExportResult.FAILURE
    wrong_cluster.shutdown()
    wrong_password = OTLPSpanExporter(
        endpoint=f"{gw.url}/v1/traces", headers={"Authorization": basic("bob", "nope")}
    )
    assert wrong_password.export(sdk_spans(unique, "beta", 2)) == SpanExportResult.FAILURE
    wrong_password.shutdown()
    assert messages(gw.bootstrap, gw.traces) == []
    assert (
        gw.gateway.metric("ferryman_gateway_requests_total", endpoint="otlp_traces", status="403")
        == 1
    )
    assert (
        gw.gateway.metric("ferryman_gateway_requests_total", endpoint="otlp_traces", status="401")
        == 1
    )


def test_otlp_json_with_plain_http(gw):
    document = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [
                        {"key": "k8s.cluster.name", "value": {"stringValue": "beta"}},
                        {"key": "service.name", "value": {"stringValue": "json-client"}},
                    ]
                },
                "scopeSpans": [
                    {
                        "spans": [
                            {
                                "traceId": "5b8efff798038103d269b633813fc60c",
                                "spanId": "eee19b7ec3c1b174",
                                "name": "json-span",
                                "kind": 2,
                                "startTimeUnixNano": "1700000000000000000",
                                "endTimeUnixNano": "1700000000100000000",
                            }
                        ]
                    }
                ],
            }
        ]
    }
    answer = httpx.post(
        f"{gw.url}/v1/traces",
        json=document,
        headers={"Authorization": basic("bob", PASSWORD_B)},
        timeout=30,
    )
    assert answer.status_code == 200, answer.text
    assert answer.headers["Content-Type"] == "application/json"
    (found,) = messages(gw.bootstrap, gw.traces)
    assert found.key == bytes.fromhex("5b8efff798038103d269b633813fc60c")
    assert dict(found.headers)[h.TENANT] == b"team-b"


def test_grpc_exporter_spans_arrive_and_a_wrong_token_is_refused(
    stack, tmp_path, processes, unique
):
    from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
        OTLPSpanExporter as GrpcExporter,
    )

    from tests.integration.gateway.helpers import start_gateway
    from tests.integration.pipeline import free_port

    grpc_listen = f"127.0.0.1:{free_port()}"
    setup = start_gateway(
        tmp_path, processes, stack("kafka", "bootstrap"), unique, grpc_listen=grpc_listen
    )
    setup.gateway.wait_ready()
    spans = sdk_spans(unique, "alpha", 4)
    exporter = GrpcExporter(
        endpoint=grpc_listen, insecure=True, headers=(("authorization", f"Bearer {TOKEN_A}"),)
    )
    assert exporter.export(spans) == SpanExportResult.SUCCESS
    exporter.shutdown()
    wrong = GrpcExporter(
        endpoint=grpc_listen, insecure=True, headers=(("authorization", "Bearer nope"),)
    )
    assert wrong.export(sdk_spans(unique, "alpha", 1)) == SpanExportResult.FAILURE
    wrong.shutdown()
    other_cluster = GrpcExporter(
        endpoint=grpc_listen, insecure=True, headers=(("authorization", f"Bearer {TOKEN_A}"),)
    )
    assert other_cluster.export(sdk_spans(unique, "beta", 1)) == SpanExportResult.FAILURE
    other_cluster.shutdown()
    found = messages(setup.bootstrap, setup.traces)
    assert {m.key for m in found} == {s.context.trace_id.to_bytes(16, "big") for s in spans}
    assert {dict(m.headers)[h.TENANT] for m in found} == {b"team-a"}
    metric = setup.gateway.metric
    assert metric("ferryman_gateway_requests_total", status="UNAUTHENTICATED") == 1
    assert metric("ferryman_gateway_requests_total", status="PERMISSION_DENIED") == 1
