"""A metrics batch buffered on disk through a Kafka outage keeps its trace context, and
a batch whose produce failed is traced whatever the sampling says.

A real edge metrics shipper with ``lineage.sample_ratio: 0`` ships to a private Kafka
that is stopped for a while: the batches written before the outage go out unsampled
and unrecorded; those that waited on disk go out with a sampled ``traceparent`` whose
ids are the ones derived from the message's bytes, and each has an edge span on the
lineage topic (attempts > 1, the produce error) with exactly that context.
"""

from __future__ import annotations

import signal

import httpx
from kafka import KafkaConsumer

from edge.sender import entry_context
from ferryman import headers as h
from ferryman.lineage import SpanContext, parse_traceparent
from ferryman.wire.otlp import decode_protobuf
from tests.integration.exporter import TEXT
from tests.integration.pipeline import EdgeMetrics, PrivateKafka, create_topics, free_port, wait_for


def _messages(bootstrap: str, topic: str) -> list[tuple[bytes, dict[str, bytes]]]:
    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=4000
    )
    try:
        return [(m.value, dict(m.headers or ())) for m in consumer]
    finally:
        consumer.close()


def _sent(port: int) -> float:
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.TransportError:  # not listening yet
        return 0.0
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("ferryman_records_sent_total ")
    )


def test_a_batch_buffered_through_an_outage_keeps_its_context_and_is_traced(
    tmp_path, unique, processes, exporter
):
    exporter.routes["/metrics"] = lambda n: (
        200,
        TEXT,
        f"# TYPE lineage_seq gauge\nlineage_seq {n}\n".encode(),
    )
    lineage_topic = f"{unique}-lineage"
    kafka = PrivateKafka(tmp_path).start()
    try:
        create_topics(kafka.bootstrap, (unique, 2), (lineage_topic, 1))
        port = free_port()
        edge = processes(
            EdgeMetrics(
                tmp_path,
                {
                    "global": {
                        "scrape_interval": "300ms",
                        "scrape_timeout": "300ms",
                        "external_labels": {"cluster": unique},
                    },
                    "scrape_configs": [
                        {"job_name": "seq", "static_configs": [{"targets": [exporter.address]}]}
                    ],
                    "ferryman": {
                        "kafka": {
                            "bootstrap_servers": kafka.bootstrap,
                            "topic": unique,
                            "acks_timeout": "3s",
                        },
                        "buffer": {"directory": str(tmp_path / "buffer")},
                        "listen": f"127.0.0.1:{port}",
                        "flush_interval": "200ms",
                        "lineage": {"sample_ratio": 0.0, "topic": lineage_topic},
                    },
                },
            )
        )
        wait_for(lambda: _sent(port) > 0, 30, "first samples acknowledged by Kafka")
        kafka.stop()
        before = exporter.counts["/metrics"]
        wait_for(lambda: exporter.counts["/metrics"] >= before + 10, 30, "scrapes meanwhile")
        kafka.start()
        wait_for(lambda: "draining the disk buffer" in edge.output(), 60, "Kafka back")
        edge.signal(signal.SIGTERM)
        assert edge.proc is not None and edge.proc.wait(30) == 0

        data = _messages(kafka.bootstrap, unique)
        contexts: list[SpanContext] = []
        for value, headers in data:
            context = parse_traceparent(headers.get(h.TRACEPARENT))
            assert context is not None, headers
            derived = entry_context(value, 0.0)
            # the ids are the message's own: the same whichever process sent it, whenever
            assert (context.trace_id, context.span_id) == (derived.trace_id, derived.span_id)
            contexts.append(context)
        traced = {(c.trace_id, c.span_id) for c in contexts if c.sampled}
        assert not contexts[0].sampled  # before the outage, at ratio 0: not traced
        assert traced, "no batch of the outage was flagged sampled"

        spans = {}
        for value, headers in _messages(kafka.bootstrap, lineage_topic):
            assert headers[h.LINEAGE] == b"1" and h.TRACEPARENT not in headers
            for rs in decode_protobuf(value).resource_spans:
                for ss in rs.scope_spans:
                    for span in ss.spans:
                        spans[(span.trace_id, span.span_id)] = span
        assert set(spans) == traced
        for span in spans.values():
            attributes = {kv.key: kv.value for kv in span.attributes}
            assert attributes["ferryman.attempts"].int_value >= 2
            assert attributes["ferryman.produce.error"].string_value
            assert attributes["messaging.destination.name"].string_value == unique
    finally:
        kafka.stop()
