"""Batch lineage on the real stack: a batch's path, edge → Kafka → worker → sink, is
one trace in the stack's Jaeger.

A real edge shipper (metrics: scraping a test exporter; logs: tailing a file; traces:
the OTLP receiver) and a real worker (``prometheus_remote_write`` into the stack's
Prometheus, ``loki`` into the stack's VictoriaLogs, ``otlp_traces`` into Jaeger) run
with lineage on at ``sample_ratio: 1.0`` and a lineage topic of their own, and
ferryman's own traces path carries that topic into Jaeger: an ``otlp_traces`` worker
exporting OTLP/HTTP to the stack's Jaeger. The test also reads the topic itself, to
check what the lineage messages carry and to know which trace ids to look up.

Then, reading Jaeger's query API by a batch's trace id, the test finds the edge's
PRODUCER span for the batch and, in the same trace, the worker's ``process <topic>``
span linked to it (a FOLLOWS_FROM reference, Jaeger's form of a span link) with its
``deliver`` and ``commit`` children: for a metrics batch, for a log batch, and for a
garbage record produced with a sampled ``traceparent``, which the worker dead-letters
(its span has the ``dead-letter`` child and ERROR status).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx
from kafka import KafkaConsumer
from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor

from ferryman import headers as h
from ferryman.lineage import make_traceparent, new_context
from ferryman.wire.otlp import decode_protobuf
from tests.integration.exporter import TEXT
from tests.integration.pipeline import (
    EdgeLogs,
    EdgeMetrics,
    EdgeTraces,
    Message,
    Worker,
    create_topics,
    free_port,
    produce,
    wait_for,
)

JAEGER_OTLP_BASE = "http://127.0.0.1:4318"
JAEGER_QUERY = "http://127.0.0.1:16686"


class LineageReader:
    """Reads the lineage topic from its start; keeps every span seen, as
    (service.name, span), and checks what each message carries."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = KafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest"
        )
        self.spans: list[tuple[str, Any]] = []

    def pump(self) -> None:
        polled = self.consumer.poll(timeout_ms=500)
        for records in polled.values():
            for record in records:
                headers = dict(record.headers or ())
                # lineage messages say so, and are never traced themselves
                assert headers[h.LINEAGE] == b"1", headers
                assert headers[h.SCHEMA] == h.SCHEMA_OTLP_TRACES
                assert h.TRACEPARENT not in headers
                request = decode_protobuf(record.value)
                for rs in request.resource_spans:
                    resource = {kv.key: kv.value.string_value for kv in rs.resource.attributes}
                    for ss in rs.scope_spans:
                        for span in ss.spans:
                            assert span.trace_id == record.key  # keyed by trace id
                            self.spans.append((resource["service.name"], span))

    def close(self) -> None:
        self.consumer.close()


def _to_jaeger(tmp_path: Path, bootstrap: str, topic: str) -> Worker:
    """An ``otlp_traces`` worker carrying the lineage ``topic`` into the stack's Jaeger."""
    return Worker(
        tmp_path,
        "otlp_traces",
        {
            "kafka": {
                "bootstrap_servers": bootstrap,
                "input_topic": topic,
                "group_id": f"g-{topic}",
                "dead_letter_topic": f"{topic}-dlq",
            },
            "batch": {"max_wait_s": 0.2},
            "http": {"listen": f"127.0.0.1:{free_port()}"},
            "config": {"url": JAEGER_OTLP_BASE, "protocol": "http"},
        },
    )


def _jaeger_trace(trace_id: bytes) -> dict[str, Any] | None:
    response = httpx.get(f"{JAEGER_QUERY}/api/traces/{trace_id.hex()}", timeout=10)
    if response.status_code != 200:
        return None
    data = response.json().get("data") or []
    return data[0] if data else None


def _spans_by_service(trace: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    processes = trace["processes"]
    out: dict[str, list[dict[str, Any]]] = {}
    for span in trace["spans"]:
        out.setdefault(processes[span["processID"]]["serviceName"], []).append(span)
    return out


def _tags(span: dict[str, Any]) -> dict[str, Any]:
    return {tag["key"]: tag["value"] for tag in span.get("tags", [])}


def _path_in_jaeger(
    reader: LineageReader, edge_service: str, worker_service: str, topic: str
) -> tuple[dict[str, Any], dict[str, Any], list[dict[str, Any]]]:
    """Read the lineage topic until Jaeger holds one edge batch's trace with the worker's
    linked span and its children; returns (edge span, worker root, children)."""
    found: dict[str, Any] = {}

    def complete() -> bool:
        reader.pump()
        edge_traces = {s.trace_id for service, s in reader.spans if service == edge_service}
        worker_traces = {
            s.trace_id
            for service, s in reader.spans
            if service == worker_service and s.name == f"process {topic}"
        }
        for trace_id in sorted(edge_traces & worker_traces)[:5]:
            trace = _jaeger_trace(trace_id)
            if trace is None:
                continue
            by_service = _spans_by_service(trace)
            edges = [
                s for s in by_service.get(edge_service, []) if s["operationName"] == f"send {topic}"
            ]
            workers = by_service.get(worker_service, [])
            roots = [s for s in workers if s["operationName"] == f"process {topic}"]
            if not edges or not roots:
                continue
            root = roots[0]
            children = [
                s
                for s in workers
                if any(
                    r["refType"] == "CHILD_OF" and r["spanID"] == root["spanID"]
                    for r in s.get("references", [])
                )
            ]
            if {"deliver", "commit"} <= {c["operationName"] for c in children}:
                found.update(edge=edges[0], root=root, children=children, trace=trace_id)
                return True
        return False

    wait_for(complete, 90, f"a {edge_service} batch's path in Jaeger")
    return found["edge"], found["root"], found["children"]


def _assert_linked(edge: dict[str, Any], root: dict[str, Any]) -> None:
    assert edge["traceID"] == root["traceID"]
    # the worker's span is a root of its own in that trace, linked to the edge's span
    refs = root.get("references", [])
    assert not [r for r in refs if r["refType"] == "CHILD_OF"], refs
    assert {"traceID": edge["traceID"], "spanID": edge["spanID"]} in [
        {"traceID": r["traceID"], "spanID": r["spanID"]} for r in refs
    ], refs
    assert _tags(edge)["span.kind"] == "producer"
    assert _tags(root)["span.kind"] == "consumer"


def _lineage(topic: str) -> dict[str, Any]:
    return {"enabled": True, "sample_ratio": 1.0, "topic": topic}


def test_a_metrics_batch_and_a_dead_lettered_record_in_jaeger(
    stack, unique, tmp_path: Path, processes, exporter
) -> None:
    bootstrap = stack("kafka", "bootstrap")
    lineage_topic = f"{unique}-lineage"
    create_topics(
        bootstrap,
        (unique, 2),
        (f"{unique}-dlq", 1),
        (lineage_topic, 1),
        (f"{lineage_topic}-dlq", 1),
    )
    metric = f"lineage_{unique}"
    exporter.routes["/metrics"] = lambda n: (
        200,
        TEXT,
        f"# TYPE {metric}_total counter\n{metric}_total {n}\n".encode(),
    )
    processes(
        EdgeMetrics(
            tmp_path,
            {
                "global": {
                    "scrape_interval": "1s",
                    "scrape_timeout": "1s",
                    "external_labels": {"cluster": unique},
                },
                "scrape_configs": [
                    {"job_name": "app", "static_configs": [{"targets": [exporter.address]}]}
                ],
                "ferryman": {
                    "kafka": {"bootstrap_servers": bootstrap, "topic": unique},
                    "buffer": {"directory": str(tmp_path / "buffer")},
                    "listen": "127.0.0.1:0",
                    "flush_interval": "200ms",
                    "lineage": _lineage(lineage_topic),
                },
            },
        )
    )
    worker = processes(
        Worker(
            tmp_path,
            "prometheus_remote_write",
            {
                "kafka": {
                    "bootstrap_servers": bootstrap,
                    "input_topic": unique,
                    "group_id": f"g-{unique}",
                    "dead_letter_topic": f"{unique}-dlq",
                },
                "batch": {"max_wait_s": 0.2},
                "http": {"listen": f"127.0.0.1:{free_port()}"},
                "lineage": _lineage(lineage_topic),
                "config": {"url": stack("prometheus", "remote_write")},
            },
        )
    )
    processes(_to_jaeger(tmp_path, bootstrap, lineage_topic))
    reader = LineageReader(bootstrap, lineage_topic)
    try:
        edge, root, children = _path_in_jaeger(
            reader,
            "ferryman-edge-metrics",
            "ferryman-worker-prometheus_remote_write",
            unique,
        )
        _assert_linked(edge, root)
        edge_tags = _tags(edge)
        assert edge_tags["messaging.destination.name"] == unique
        assert edge_tags["ferryman.samples"] >= 1
        assert "messaging.kafka.offset" in edge_tags
        root_tags = _tags(root)
        assert root_tags["messaging.system"] == "kafka"
        assert root_tags["messaging.consumer.group.name"] == f"g-{unique}"
        assert root_tags["ferryman.function"] == "prometheus_remote_write"
        assert root_tags["k8s.cluster.name"] == unique  # the batch's, from its header
        assert root_tags["messaging.batch.message_count"] >= 1
        deliver = next(c for c in children if c["operationName"] == "deliver")
        assert _tags(deliver)["ferryman.records.delivered"] >= 1

        # A garbage record, sampled by whoever produced it, is dead-lettered: its trace
        # holds the worker's span with the dead-letter child and ERROR status.
        garbage = new_context(0.0, force=True)
        produce(
            bootstrap,
            unique,
            [
                Message(
                    b"\xffnot snappy at all",
                    headers=(
                        (h.SCHEMA, h.SCHEMA_REMOTE_WRITE),
                        (h.TRACEPARENT, make_traceparent(garbage)),
                    ),
                )
            ],
        )

        def dead_letter_path() -> dict[str, Any] | None:
            reader.pump()
            trace = _jaeger_trace(garbage.trace_id)
            if trace is None:
                return None
            spans = trace["spans"]
            roots = [s for s in spans if s["operationName"] == f"process {unique}"]
            dead = [s for s in spans if s["operationName"] == f"dead-letter {unique}-dlq"]
            return {"root": roots[0], "dead": dead[0]} if roots and dead else None

        path = wait_for(dead_letter_path, 60, "the dead-lettered record's path in Jaeger")
        root_tags = _tags(path["root"])
        assert root_tags.get("otel.status_code") == "ERROR" or root_tags.get("error") is True
        assert "dead-lettered" in root_tags.get("otel.status_description", "")
        assert {"traceID": garbage.trace_id.hex(), "spanID": garbage.span_id.hex()} in [
            {"traceID": r["traceID"], "spanID": r["spanID"]}
            for r in path["root"].get("references", [])
        ]
        dead_refs = path["dead"]["references"]
        assert [r["spanID"] for r in dead_refs if r["refType"] == "CHILD_OF"] == [
            path["root"]["spanID"]
        ]
        assert worker.metric("ferryman_lineage_spans_total", outcome="exported") > 0
        assert worker.metric("ferryman_records_dead_lettered_total") >= 1
    finally:
        reader.close()


def test_a_log_batch_in_jaeger(stack, unique, tmp_path: Path, processes) -> None:
    bootstrap = stack("kafka", "bootstrap")
    lineage_topic = f"{unique}-lineage"
    create_topics(
        bootstrap,
        (unique, 2),
        (f"{unique}-dlq", 1),
        (lineage_topic, 1),
        (f"{lineage_topic}-dlq", 1),
    )
    logs = tmp_path / "logs"
    logs.mkdir()
    processes(
        EdgeLogs(
            tmp_path,
            {
                "global": {"external_labels": {"cluster": unique}},
                "positions": {"filename": str(tmp_path / "positions.json")},
                "scrape_configs": [
                    {
                        "job_name": "app",
                        "static_configs": [
                            {"labels": {"job": unique, "__path__": str(logs / "*.log")}}
                        ],
                    }
                ],
                "ferryman": {
                    "kafka": {"bootstrap_servers": bootstrap, "topic": unique},
                    "listen": f"127.0.0.1:{free_port()}",
                    "batch_wait": 0.2,
                    "rescan_interval": 0.5,
                    "lineage": _lineage(lineage_topic),
                },
            },
        )
    )
    loki_push = stack("victorialogs", "loki_push")
    base, path = loki_push.split("/insert/", 1)
    processes(
        Worker(
            tmp_path,
            "loki",
            {
                "kafka": {
                    "bootstrap_servers": bootstrap,
                    "input_topic": unique,
                    "group_id": f"g-{unique}",
                    "dead_letter_topic": f"{unique}-dlq",
                },
                "batch": {"max_wait_s": 0.2},
                "http": {"listen": f"127.0.0.1:{free_port()}"},
                "lineage": _lineage(lineage_topic),
                "config": {"url": base, "push_path": f"/insert/{path}"},
            },
        )
    )
    with (logs / "app.log").open("a") as out:
        for n in range(20):
            out.write(f"{unique} line {n}\n")
            out.flush()
            time.sleep(0.05)
    processes(_to_jaeger(tmp_path, bootstrap, lineage_topic))
    reader = LineageReader(bootstrap, lineage_topic)
    try:
        edge, root, children = _path_in_jaeger(
            reader, "ferryman-edge-logs", "ferryman-worker-loki", unique
        )
        _assert_linked(edge, root)
        edge_tags = _tags(edge)
        assert edge_tags["ferryman.lines"] >= 1
        assert unique in edge_tags["ferryman.stream"]
        deliver = next(c for c in children if c["operationName"] == "deliver")
        assert _tags(deliver)["ferryman.records.delivered"] >= 1
    finally:
        reader.close()


def test_a_traces_request_in_jaeger(stack, unique, tmp_path: Path, processes) -> None:
    """The OpenTelemetry SDK exports to the edge receiver; the request's batch is traced
    from the receiver to the ``otlp_traces`` worker that hands it to Jaeger, and the
    application's own span arrives there too."""
    bootstrap = stack("kafka", "bootstrap")
    lineage_topic = f"{unique}-lineage"
    create_topics(
        bootstrap,
        (unique, 2),
        (f"{unique}-dlq", 1),
        (lineage_topic, 1),
        (f"{lineage_topic}-dlq", 1),
    )
    receiver = processes(
        EdgeTraces(
            tmp_path,
            {
                "external_labels": {"cluster": unique},
                "ferryman": {
                    "kafka": {"bootstrap_servers": bootstrap, "topic": unique},
                    "grpc": {"listen": f"127.0.0.1:{free_port()}"},
                    "http": {"listen": f"127.0.0.1:{free_port()}"},
                    "listen": f"127.0.0.1:{free_port()}",
                    "lineage": _lineage(lineage_topic),
                },
            },
        )
    )
    processes(
        Worker(
            tmp_path,
            "otlp_traces",
            {
                "kafka": {
                    "bootstrap_servers": bootstrap,
                    "input_topic": unique,
                    "group_id": f"g-{unique}",
                    "dead_letter_topic": f"{unique}-dlq",
                },
                "batch": {"max_wait_s": 0.2},
                "http": {"listen": f"127.0.0.1:{free_port()}"},
                "lineage": _lineage(lineage_topic),
                "config": {"url": JAEGER_OTLP_BASE, "protocol": "http"},
            },
        )
    )
    processes(_to_jaeger(tmp_path, bootstrap, lineage_topic))
    receiver.wait_ready()
    exporter = OTLPSpanExporter(endpoint=f"http://{receiver.http}/v1/traces")
    provider = TracerProvider(resource=Resource.create({"service.name": f"app-{unique}"}))
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    with provider.get_tracer("test").start_as_current_span("order") as span:
        app_trace = f"{span.get_span_context().trace_id:032x}"
    provider.shutdown()
    reader = LineageReader(bootstrap, lineage_topic)
    try:
        edge, root, children = _path_in_jaeger(
            reader, "ferryman-edge-traces", "ferryman-worker-otlp_traces", unique
        )
        _assert_linked(edge, root)
        assert _tags(edge)["ferryman.spans"] == 1
        assert _tags(edge)["ferryman.transport"] == "http"
        assert _tags(root)["k8s.cluster.name"] == unique
        deliver = next(c for c in children if c["operationName"] == "deliver")
        assert _tags(deliver)["ferryman.records.delivered"] == 1
    finally:
        reader.close()
    # The application's span, in its own trace, labelled with the receiver's cluster.
    trace = wait_for(lambda: _jaeger_trace(bytes.fromhex(app_trace)), 30, "the app's span")
    (process,) = [p for p in trace["processes"].values() if p["serviceName"] == f"app-{unique}"]
    assert {t["key"]: t["value"] for t in process["tags"]}["k8s.cluster.name"] == unique
