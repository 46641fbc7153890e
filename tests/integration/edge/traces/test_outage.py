"""Nothing lost: Kafka away (the receiver answers 503 / UNAVAILABLE with a retry delay
and the SDK's exporters deliver once Kafka is back) and kill -9 of the receiver while
an exporter sends (every span reported exported is in Kafka)."""

from __future__ import annotations

import signal
import threading
import time

import grpc
import httpx
import pytest
from google.rpc.error_details_pb2 import RetryInfo
from google.rpc.status_pb2 import Status
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import (
    OTLPSpanExporter as GrpcSpanExporter,
)
from opentelemetry.exporter.otlp.proto.http.trace_exporter import (
    OTLPSpanExporter as HttpSpanExporter,
)
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.sdk.trace.export import SpanExporter, SpanExportResult

from tests.integration.edge.traces.otlp import (
    all_span_ids,
    make_spans,
    read_back,
    settings,
    span_ids,
)
from tests.integration.pipeline import EdgeTraces, PrivateKafka, create_topics, wait_for

pytestmark = pytest.mark.integration

EXPORT = "/opentelemetry.proto.collector.trace.v1.TraceService/Export"


def _export_in_thread(
    exporter: SpanExporter, spans: list[ReadableSpan], results: list[SpanExportResult]
) -> threading.Thread:
    thread = threading.Thread(target=lambda: results.append(exporter.export(spans)))
    thread.start()
    return thread


def test_kafka_away_gets_unavailable_with_a_delay_and_the_sdk_delivers_when_it_returns(
    processes, tmp_path, unique
):
    kafka = PrivateKafka(tmp_path)  # its port is chosen; nothing listens there yet
    topic = f"traces-{unique}"
    config = settings(kafka.bootstrap, topic, limits={"retry_after": "8s", "ack_timeout": "5s"})
    config["external_labels"] = {"cluster": unique}
    receiver = processes(EdgeTraces(tmp_path, config)).wait_listening()
    assert not receiver.ready()
    try:
        probe = make_spans(f"probe-{unique}", traces=1, per_trace=1)
        body = encode_spans(probe).SerializeToString()
        with (
            grpc.insecure_channel(receiver.grpc) as channel,
            pytest.raises(grpc.RpcError) as refused,
        ):
            channel.unary_unary(EXPORT)(body, timeout=30)
        assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
        trailers = dict(refused.value.trailing_metadata())
        assert RetryInfo.FromString(trailers["google.rpc.retryinfo-bin"]).retry_delay.seconds == 8
        status = Status.FromString(trailers["grpc-status-details-bin"])
        assert status.code == grpc.StatusCode.UNAVAILABLE.value[0]
        detail = RetryInfo()
        assert status.details[0].Unpack(detail) and detail.retry_delay.seconds == 8

        answer = httpx.post(
            f"http://{receiver.http}/v1/traces",
            content=body,
            headers={"Content-Type": "application/x-protobuf"},
            timeout=30,
        )
        assert answer.status_code == 503
        assert answer.headers["retry-after"] == "8"
        assert Status.FromString(answer.content).code == grpc.StatusCode.UNAVAILABLE.value[0]

        by_grpc = make_spans(f"grpc-{unique}", traces=2, per_trace=3)
        by_http = make_spans(f"http-{unique}", traces=2, per_trace=3)
        results: list[SpanExportResult] = []
        threads = [
            _export_in_thread(
                GrpcSpanExporter(endpoint=receiver.grpc, insecure=True, timeout=120),
                by_grpc,
                results,
            ),
            _export_in_thread(
                HttpSpanExporter(endpoint=f"http://{receiver.http}/v1/traces", timeout=120),
                by_http,
                results,
            ),
        ]
        time.sleep(2)  # both have been refused at least once by now
        refusals = receiver.metric(
            "ferryman_requests_total", transport="grpc", status="UNAVAILABLE"
        )
        assert refusals >= 2
        kafka.start()
        create_topics(kafka.bootstrap, (topic, 2))
        for thread in threads:
            thread.join(150)
        assert results == [SpanExportResult.SUCCESS, SpanExportResult.SUCCESS]
        wanted = span_ids(by_grpc) | span_ids(by_http)
        messages = read_back(kafka.bootstrap, topic, wanted)
        assert wanted <= set(all_span_ids(messages))
        assert receiver.ready()
    finally:
        kafka.stop()


def _exporter(transport: str, receiver: EdgeTraces) -> SpanExporter:
    if transport == "grpc":
        return GrpcSpanExporter(endpoint=receiver.grpc, insecure=True, timeout=60)
    return HttpSpanExporter(endpoint=f"http://{receiver.http}/v1/traces", timeout=60)


@pytest.mark.parametrize("transport", ["grpc", "http"])
def test_kill9_while_the_sdk_exports_loses_no_span_reported_exported(
    stack, processes, tmp_path, unique, transport
):
    bootstrap = stack("kafka", "bootstrap")
    topic = f"traces-{unique}"
    create_topics(bootstrap, (topic, 3))
    config = settings(bootstrap, topic)
    receiver = processes(EdgeTraces(tmp_path, config)).wait_ready()
    batches = [make_spans(f"{transport}-{unique}-{b}", traces=2, per_trace=5) for b in range(40)]
    exported: set[bytes] = set()
    failed: set[bytes] = set()
    done_before_kill = threading.Event()
    exporter = _exporter(transport, receiver)

    def send() -> None:
        for number, batch in enumerate(batches):
            result = exporter.export(batch)
            (exported if result == SpanExportResult.SUCCESS else failed).update(span_ids(batch))
            if number == 10:
                done_before_kill.set()
            time.sleep(0.02)

    sender = threading.Thread(target=send)
    sender.start()
    assert done_before_kill.wait(60)
    receiver.kill9()
    at_kill = len(exported)
    time.sleep(1)
    processes(EdgeTraces(tmp_path, config)).wait_ready()  # the same ports
    sender.join(300)
    assert not sender.is_alive()
    exporter.shutdown()

    assert not failed, f"{len(failed)} spans not exported: the client gave up"
    assert len(exported) == 40 * 10 > at_kill
    messages = read_back(bootstrap, topic, exported)
    in_kafka = set(all_span_ids(messages))
    missing = exported - in_kafka
    assert not missing, f"{len(missing)} of {len(exported)} exported spans are not in Kafka"
    assert in_kafka <= set().union(*(span_ids(batch) for batch in batches))  # nothing else
    for message in messages:
        assert {span.trace_id for span in message.spans()} == {message.key}


def test_kafka_slow_and_the_in_flight_bound_get_unavailable_with_a_delay(
    processes, tmp_path, unique
):
    kafka = PrivateKafka(tmp_path).start()
    topic = f"traces-{unique}"
    try:
        create_topics(kafka.bootstrap, (topic, 1))
        config = settings(
            kafka.bootstrap,
            topic,
            limits={"max_in_flight_requests": 1, "ack_timeout": "3s", "retry_after": "2s"},
        )
        receiver = processes(EdgeTraces(tmp_path, config)).wait_ready()
        url = f"http://{receiver.http}/v1/traces"
        protobuf = {"Content-Type": "application/x-protobuf"}

        def body(name: str) -> bytes:
            return encode_spans(make_spans(name, 1, 2)).SerializeToString()

        assert httpx.post(url, content=body("before"), headers=protobuf).status_code == 200
        assert kafka.proc is not None
        kafka.proc.send_signal(signal.SIGSTOP)  # alive, silent: a broker that hangs
        try:
            slow: list[httpx.Response] = []
            waiting = threading.Thread(
                target=lambda: slow.append(
                    httpx.post(url, content=body("slow"), headers=protobuf, timeout=30)
                )
            )
            waiting.start()
            wait_for(
                lambda: receiver.metric("ferryman_requests_in_flight") == 1,
                10,
                "a request waiting for Kafka",
                interval=0.05,
            )
            with (
                grpc.insecure_channel(receiver.grpc) as channel,
                pytest.raises(grpc.RpcError) as bounced,
            ):
                channel.unary_unary(EXPORT)(body("bounced"), timeout=30)
            assert bounced.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "already wait" in bounced.value.details()
            trailers = dict(bounced.value.trailing_metadata())
            delay = RetryInfo.FromString(trailers["google.rpc.retryinfo-bin"]).retry_delay
            assert delay.seconds == 2
            waiting.join(30)
            assert slow[0].status_code == 503
            assert slow[0].headers["retry-after"] == "2"
            assert "did not acknowledge" in Status.FromString(slow[0].content).message
        finally:
            kafka.proc.send_signal(signal.SIGCONT)
        after = make_spans(f"after-{unique}", traces=2, per_trace=2)
        exporter = GrpcSpanExporter(endpoint=receiver.grpc, insecure=True, timeout=60)
        assert exporter.export(after) == SpanExportResult.SUCCESS
        exporter.shutdown()
        messages = read_back(kafka.bootstrap, topic, span_ids(after))
        assert span_ids(after) <= set(all_span_ids(messages))
    finally:
        kafka.stop()
