"""otlp_traces on the real stack: records made by real OTLP encoding go through a real
``ferryman worker otlp_traces`` into the stack's real Jaeger v2, over OTLP/HTTP and
OTLP/gRPC, and are read back from Jaeger's query API.

TLS is proved against a private Jaeger of the test's own. Outages are staged in front
of the stack's Jaeger, never on it (other tests share it): a
:class:`~tests.integration.faultproxy.FaultProxy` answering 503 for OTLP/HTTP, a
:class:`~tests.integration.functions.traces.TcpForwarder` that closes its port and cuts
its connections for OTLP/gRPC.
"""

from __future__ import annotations

import time
from typing import Any

import pytest
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTracePartialSuccess,
    ExportTraceServiceResponse,
)

from ferryman import headers as h
from tests.integration.functions.traces import (
    PrivateJaeger,
    TcpForwarder,
    jaeger_spans,
    jaeger_trace,
    self_signed,
    stored_span_ids,
    trace,
)
from tests.integration.pipeline import (
    create_topics,
    dead_letters,
    produce,
    raw,
    topic_size,
    wait_for,
)

pytestmark = pytest.mark.integration

PROTOCOLS = ["http", "grpc"]
OUTAGE_S = 60


def _endpoint(stack: Any, protocol: str) -> str:
    if protocol == "http":
        return stack("jaeger", "otlp_http")
    return "http://" + stack("jaeger", "otlp_grpc")


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_every_span_in_jaeger_then_committed_and_garbage_dead_lettered(
    protocol, stack, unique, worker
):
    bootstrap, query = stack("kafka", "bootstrap"), stack("jaeger", "query")
    create_topics(bootstrap, (unique, 2))
    service = f"svc-{unique}"
    traces = [trace(service, spans=1 + n % 4, tenant="team-a") for n in range(30)]
    garbage = [
        raw(b"\xff\x00 not protobuf", schema=h.SCHEMA_OTLP_TRACES, key=b"g"),
        raw(traces[0].message.value, schema=h.SCHEMA_LOKI_PUSH, key=b"w"),
    ]
    produce(bootstrap, unique, [t.message for t in traces[:15]] + garbage)
    produce(bootstrap, unique, [t.message for t in traces[15:]])
    running = worker(
        "otlp_traces",
        unique,
        {"url": _endpoint(stack, protocol), "protocol": protocol},
        batch={"max_records": 10},
    )
    total = len(traces) + len(garbage)

    wait_for(lambda: running.committed() == total, 60, "every offset committed")
    # Committed means acknowledged by Jaeger; its store takes it a moment later.
    expected = {t.hex: sorted(t.span_ids) for t in traces}
    found = wait_for(
        lambda: (
            {k: sorted(v) for k, v in jaeger_spans(query, service).items()} == expected
            or jaeger_spans(query, service)
        ),
        30,
        "every span in Jaeger",
    )
    assert found is True
    one = jaeger_trace(query, traces[3].hex)
    assert {span["spanID"] for span in one} == traces[3].span_ids
    dead = dead_letters(bootstrap, running.dead_letter_topic, timeout_ms=3000)
    reasons = sorted(dict(d.headers)[h.DEAD_LETTER_ERROR].decode() for d in dead)
    assert len(reasons) == 2
    assert reasons[0].startswith("not a traces message (OTLP"), reasons
    assert reasons[1].startswith("schema b'loki.push.v1' is not b'otlp.traces.v1'"), reasons
    assert running.metric("ferryman_spans_sent_total") == sum(len(t.span_ids) for t in traces)
    assert running.metric("ferryman_records_dead_lettered_total") == 2


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_a_jaeger_outage_of_a_minute_loses_nothing(protocol, stack, unique, worker, fault_proxy):
    """For 60 s Jaeger answers 503 (HTTP) or cannot be reached (gRPC) while records keep
    coming: nothing is committed or dead-lettered meanwhile; afterwards every span is in
    Jaeger, nothing is dead-lettered, and the group's lag is 0."""
    bootstrap, query = stack("kafka", "bootstrap"), stack("jaeger", "query")
    create_topics(bootstrap, (unique, 2))
    service = f"svc-{unique}"
    forwarder: TcpForwarder | None = None
    if protocol == "http":
        proxy = fault_proxy(stack("jaeger", "otlp_http"))
        proxy.fail(503, body="unavailable\n", path="/v1/traces")
        url = proxy.url
    else:
        forwarder = TcpForwarder(stack("jaeger", "otlp_grpc"))
        forwarder.close()
        url = f"http://{forwarder.address}"
    try:
        traces = [trace(service) for _ in range(40)]
        produce(bootstrap, unique, [t.message for t in traces[:20]])
        running = worker("otlp_traces", unique, {"url": url, "protocol": protocol, "timeout_s": 5})
        started = time.monotonic()
        time.sleep(OUTAGE_S / 2)
        produce(bootstrap, unique, [t.message for t in traces[20:]])
        time.sleep(max(0.0, OUTAGE_S - (time.monotonic() - started)))
        assert running.committed() == 0, "committed while Jaeger was away"
        assert running.metric("ferryman_errors_total", stage="deliver") >= 3
        assert stored_span_ids(query, service) == set()
        if protocol == "http":
            assert len(proxy.refused(503)) >= 3
            proxy.heal()
        else:
            assert forwarder is not None
            forwarder.open()

        wait_for(lambda: running.committed() == len(traces), 90, "every offset committed")
        expected = set().union(*(t.span_ids for t in traces))
        wait_for(lambda: stored_span_ids(query, service) == expected, 30, "every span in Jaeger")
        assert running.committed() == topic_size(bootstrap, unique), "lag is not 0"
        assert running.metric("ferryman_records_dead_lettered_total") == 0
        assert topic_size(bootstrap, running.dead_letter_topic) == 0
    finally:
        if forwarder is not None:
            forwarder.close()


def test_kill_9_mid_stream_loses_no_span(stack, unique, worker):
    """The worker is killed (SIGKILL) while it exports; a new one resumes from the last
    commit. Every span is in Jaeger; records exported but not committed before the kill
    are exported again, and Jaeger's query API shows each such span once."""
    bootstrap, query = stack("kafka", "bootstrap"), stack("jaeger", "query")
    create_topics(bootstrap, (unique, 2))
    service = f"svc-{unique}"
    traces = [trace(service, spans=2) for _ in range(1500)]
    produce(bootstrap, unique, [t.message for t in traces])
    config = {"url": stack("jaeger", "otlp_http")}
    small = {"batch": {"max_records": 5, "max_wait_s": 0.05}}
    first = worker("otlp_traces", unique, config, **small)
    wait_for(lambda: first.committed() >= 100, 60, "a first part committed")
    first.kill9()
    at_kill = first.committed()
    assert at_kill < len(traces), "the worker finished before it was killed"

    second = worker("otlp_traces", unique, config, **small)
    wait_for(lambda: second.committed() == len(traces), 120, "every offset committed")
    expected = set().union(*(t.span_ids for t in traces))
    wait_for(lambda: stored_span_ids(query, service) == expected, 60, "every span in Jaeger")
    copies = [s for spans in jaeger_spans(query, service).values() for s in spans]
    # Jaeger answers every span once, re-exported ones included.
    assert len(copies) == len(expected)
    resent = second.metric("ferryman_spans_sent_total") - 2 * (len(traces) - at_kill)
    print(f"\nkilled at {at_kill} records committed; spans exported again: {resent:.0f}")


def test_kill_9_with_a_batch_half_exported(stack, unique, worker, fault_proxy):
    """The worker is killed while a batch is half exported: Jaeger took its first
    requests, then answered 503 (the proxy), so nothing of the batch is committed. The
    next worker exports the whole batch again: every span is in Jaeger, and the spans
    exported twice are answered once by Jaeger's query API."""
    bootstrap, query = stack("kafka", "bootstrap"), stack("jaeger", "query")
    create_topics(bootstrap, (unique, 1))
    service = f"svc-{unique}"
    traces = [trace(service, spans=2) for _ in range(200)]
    produce(bootstrap, unique, [t.message for t in traces])
    proxy = fault_proxy(stack("jaeger", "otlp_http"))
    proxy.pass_through(30, path="/v1/traces")
    proxy.fail(503, body="unavailable\n", path="/v1/traces")
    # Small requests, 50 records a batch: the 30 requests let through take the first
    # batches whole and a part of the next one, which then meets the 503s.
    config = {"url": proxy.url, "max_request_bytes": 1024}
    settings = {"batch": {"max_records": 50, "max_wait_s": 1.0}}
    first = worker("otlp_traces", unique, config, **settings)
    wait_for(lambda: len(proxy.refused(503)) >= 2, 60, "503s in the second batch")
    first.kill9()
    at_kill = first.committed()
    exported = wait_for(
        lambda: (n := len(stored_span_ids(query, service))) > 2 * at_kill and n,
        30,
        "spans of records not committed in Jaeger",
    )
    assert at_kill < len(traces)

    proxy.heal()
    second = worker("otlp_traces", unique, config, **settings)
    wait_for(lambda: second.committed() == len(traces), 120, "every offset committed")
    expected = set().union(*(t.span_ids for t in traces))
    wait_for(lambda: stored_span_ids(query, service) == expected, 60, "every span in Jaeger")
    twice = exported - 2 * at_kill
    assert second.metric("ferryman_spans_sent_total") == 2 * (len(traces) - at_kill)
    copies = [s for spans in jaeger_spans(query, service).values() for s in spans]
    assert len(copies) == len(expected), "Jaeger answered a span exported twice twice"
    print(f"\n{at_kill} records committed at the kill; {twice} spans exported twice")


def test_a_span_exported_twice_is_shown_once(stack, unique, worker):
    """What a replay after a crash looks like in Jaeger: two workers of different groups
    export the same records, so every span reaches Jaeger twice; its query API answers
    each span once."""
    bootstrap, query = stack("kafka", "bootstrap"), stack("jaeger", "query")
    create_topics(bootstrap, (unique, 1))
    service = f"svc-{unique}"
    traces = [trace(service, spans=3) for _ in range(10)]
    produce(bootstrap, unique, [t.message for t in traces])
    config = {"url": stack("jaeger", "otlp_http")}
    runs = [
        worker("otlp_traces", unique, config, kafka={"group_id": f"{unique}-{n}"}) for n in (1, 2)
    ]
    for run in runs:
        wait_for(lambda run=run: run.committed() == len(traces), 60, "committed")
    expected = {t.hex: sorted(t.span_ids) for t in traces}
    assert sum(run.metric("ferryman_spans_sent_total") for run in runs) == 2 * 3 * len(traces)
    wait_for(
        lambda: {k: sorted(v) for k, v in jaeger_spans(query, service).items()} == expected,
        30,
        "every span once in Jaeger",
    )


def test_partial_success_is_counted_and_not_retried(stack, unique, worker, fault_proxy):
    """An acknowledged export whose ``partial_success`` rejected spans: counted in
    ``ferryman_spans_rejected_total``, committed, not retried, not dead-lettered. Jaeger
    never answers so; the proxy answers in its place, as an OTLP receiver with limits
    would."""
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (unique, 1))
    proxy = fault_proxy(stack("jaeger", "otlp_http"))
    answer = ExportTraceServiceResponse(
        partial_success=ExportTracePartialSuccess(rejected_spans=2, error_message="spans too old")
    )
    proxy.fail(
        200,
        times=1,
        body=answer.SerializeToString(),
        content_type="application/x-protobuf",
        path="/v1/traces",
    )
    traces = [trace(f"svc-{unique}", spans=2) for _ in range(3)]
    produce(bootstrap, unique, [t.message for t in traces])
    running = worker("otlp_traces", unique, {"url": proxy.url}, batch={"max_wait_s": 1.0})

    wait_for(lambda: running.committed() == len(traces), 60, "every offset committed")
    assert running.metric("ferryman_spans_rejected_total") == 2
    assert len(proxy.exchanges()) == 1, "an export with a partial success was retried"
    assert running.metric("ferryman_records_dead_lettered_total") == 0
    assert "rejected 2 spans" in running.output()


def test_a_request_over_jaegers_grpc_limit_is_narrowed_down(stack, unique, worker):
    """With ``max_request_bytes`` set above Jaeger's 4 MiB, the merged request is
    refused (RESOURCE_EXHAUSTED without RetryInfo, Jaeger's own answer); its records are
    exported one by one and stored, and a record that alone exceeds the limit is
    dead-lettered with Jaeger's reason."""
    bootstrap, query = stack("kafka", "bootstrap"), stack("jaeger", "query")
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics(
            [NewTopic(unique, 1, 1, topic_configs={"max.message.bytes": str(8 << 20)})]
        )
    finally:
        admin.close()
    service = f"svc-{unique}"
    fitting = [trace(service, spans=1, padding=900_000) for _ in range(6)]
    too_large = trace(service, spans=1, padding=5_000_000)
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all", max_request_size=8 << 20)
    try:
        for t in [*fitting[:3], too_large, *fitting[3:]]:
            producer.send(unique, t.message.value, t.message.key, list(t.message.headers))
        producer.flush(30)
    finally:
        producer.close()
    running = worker(
        "otlp_traces",
        unique,
        {"url": _endpoint(stack, "grpc"), "protocol": "grpc", "max_request_bytes": 16 << 20},
        batch={"max_records": 20, "max_wait_s": 1.0},
    )

    wait_for(lambda: running.committed() == 7, 60, "every offset committed")
    expected = set().union(*(t.span_ids for t in fitting))
    wait_for(lambda: stored_span_ids(query, service) == expected, 30, "the fitting spans")
    (dead,) = dead_letters(bootstrap, running.dead_letter_topic, timeout_ms=3000)
    assert dead.key == too_large.trace_id
    assert dict(dead.headers)[h.DEAD_LETTER_ERROR].startswith(
        b"HTTP 413: gRPC RESOURCE_EXHAUSTED: grpc: received message larger than max"
    )
    assert "sending them one by one" in running.output()


@pytest.mark.parametrize("protocol", PROTOCOLS)
def test_tls_to_a_receiver_of_our_own(protocol, stack, unique, worker, tmp_path):
    """OTLP over TLS, verified against the CA the config names: a private Jaeger (the
    stack's binary) serves its OTLP receivers with a self-signed certificate."""
    bootstrap = stack("kafka", "bootstrap")
    cert, key = self_signed(tmp_path)
    jaeger = PrivateJaeger(tmp_path, cert=cert, key=key).start()
    try:
        create_topics(bootstrap, (unique, 1))
        service = f"svc-{unique}"
        traces = [trace(service) for _ in range(5)]
        produce(bootstrap, unique, [t.message for t in traces])
        port = jaeger.http_port if protocol == "http" else jaeger.grpc_port
        config = {
            "url": f"https://127.0.0.1:{port}",
            "protocol": protocol,
            "tls": {"ca_file": str(cert)},
            "bearer_token": "not-checked-by-jaeger",
        }
        # Without the CA the certificate is not trusted: nothing is delivered.
        untrusting = worker(
            "otlp_traces",
            unique,
            {key: value for key, value in config.items() if key != "tls"},
            kafka={"group_id": f"{unique}-untrusting"},
        )
        wait_for(
            lambda: untrusting.metric("ferryman_errors_total", stage="deliver") >= 2,
            60,
            "refused certificates",
        )
        assert untrusting.committed() == 0
        assert untrusting.terminate() == 0

        running = worker("otlp_traces", unique, config)
        wait_for(lambda: running.committed() == len(traces), 60, "every offset committed")
        expected = set().union(*(t.span_ids for t in traces))
        wait_for(
            lambda: stored_span_ids(jaeger.query, service) == expected, 30, "every span stored"
        )
        assert running.errors_but_rebalance_quirk() == {}
    finally:
        jaeger.stop()
