"""sample as a real worker: a traces topic in, a traces topic out; then otlp_traces
takes the sampled topic into the real Jaeger."""

from __future__ import annotations

import pytest
from kafka import KafkaConsumer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from ferryman import headers as h
from functions.sample.config import SampleConfig
from functions.sample.core import Sampler
from tests.integration.functions.traces import jaeger_spans, trace
from tests.integration.pipeline import create_topics, dead_letters, produce, raw, wait_for

pytestmark = pytest.mark.integration

RATIO = 0.3


def _read_all(bootstrap: str, topic: str, count: int) -> list:
    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=5000
    )
    try:
        got: list = []
        for message in consumer:
            got.append(message)
            if len(got) >= count:
                break
        return got
    finally:
        consumer.close()


def test_sampled_by_trace_id_with_error_and_slow_traces_kept(stack, unique, worker):
    bootstrap, query = stack("kafka", "bootstrap"), stack("jaeger", "query")
    raw_topic, sampled_topic = unique, f"{unique}-sampled"
    create_topics(bootstrap, (raw_topic, 2), (sampled_topic, 2))
    service = f"svc-{unique}"
    config = {"ratio": RATIO, "keep_errors": True, "keep_slower_than_s": 1.0}
    plain = [trace(service, tenant="team-a") for _ in range(200)]
    errors = [trace(service, error=True) for _ in range(10)]
    slow = [trace(service, slow_s=2.0) for _ in range(10)]
    traces = plain + errors + slow
    produce(
        bootstrap,
        raw_topic,
        [t.message for t in traces] + [raw(b"\x0a\xff garbage", schema=h.SCHEMA_OTLP_TRACES)],
    )
    sample = worker(
        "sample",
        raw_topic,
        config,
        kafka={"output_topic": sampled_topic},
        batch={"max_records": 50},
    )
    sampler = Sampler(SampleConfig.model_validate(config))
    decided = {t.hex for t in plain if sampler.sampled(t.trace_id)}
    expected = decided | {t.hex for t in errors + slow}
    # Not every error or slow trace would have been kept by its id alone.
    assert {t.hex for t in errors + slow} - {
        t.hex for t in errors + slow if sampler.sampled(t.trace_id)
    }

    wait_for(lambda: sample.committed() == len(traces) + 1, 60, "input committed")
    out = _read_all(bootstrap, sampled_topic, len(expected))
    by_id = {t.hex: t for t in traces}
    kept = {m.key.hex() for m in out}
    assert kept == expected
    for message in out:
        original = by_id[message.key.hex()].message
        # Whole traces, kept as they came: same value, key and headers.
        assert (message.value, list(message.headers)) == (original.value, list(original.headers))
        assert ExportTraceServiceRequest.FromString(message.value).resource_spans
    dead = dead_letters(bootstrap, sample.dead_letter_topic, timeout_ms=3000)
    assert len(dead) == 1
    assert dict(dead[0].headers)[h.DEAD_LETTER_ERROR].startswith(b"not a traces message (OTLP")
    assert sample.metric("ferryman_spans_kept_total", reason="error") == 3 * len(
        [t for t in errors if not sampler.sampled(t.trace_id)]
    )
    assert sample.metric("ferryman_spans_dropped_total") == 3 * (len(plain) - len(decided))

    # The sampled topic into Jaeger: exactly the kept traces.
    sink = worker("otlp_traces", sampled_topic, {"url": stack("jaeger", "otlp_http")})
    wait_for(lambda: sink.committed() == len(expected), 60, "sampled topic committed")
    wait_for(lambda: set(jaeger_spans(query, service)) == expected, 30, "the kept traces in Jaeger")
