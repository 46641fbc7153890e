"""Helpers of the receiver's tests: spans made by the OpenTelemetry SDK, a receiver
with free ports, and reading the spans back from Kafka."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from tests.integration.pipeline import EdgeTraces, free_port


def settings(bootstrap: str, topic: str, **ferryman: Any) -> dict[str, Any]:
    """A receiver's configuration on free ports; ``ferryman`` keys replace the defaults."""
    out: dict[str, Any] = {
        "kafka": {"bootstrap_servers": bootstrap, "topic": topic},
        "grpc": {"listen": f"127.0.0.1:{free_port()}"},
        "http": {"listen": f"127.0.0.1:{free_port()}"},
        "listen": f"127.0.0.1:{free_port()}",
    }
    for key, value in ferryman.items():
        out[key] = {**out.get(key, {}), **value} if isinstance(value, dict) else value
    return {"ferryman": out}


def receiver(tmp: Path, config: dict[str, Any]) -> EdgeTraces:
    return EdgeTraces(tmp, config)


def make_spans(service: str, traces: int, per_trace: int) -> list[ReadableSpan]:
    """``traces`` traces of ``per_trace`` spans each (a root and its children), made by
    the SDK's tracer and held in memory."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("ferryman.tests")
    for t in range(traces):
        with tracer.start_as_current_span(f"root-{t}"):
            for c in range(per_trace - 1):
                with tracer.start_as_current_span(f"child-{t}-{c}") as span:
                    span.set_attribute("index", c)
    provider.shutdown()
    return list(memory.get_finished_spans())


def span_ids(spans: list[ReadableSpan]) -> set[bytes]:
    return {span.context.span_id.to_bytes(8, "big") for span in spans}


@dataclass(frozen=True)
class Consumed:
    key: bytes
    headers: dict[str, bytes]
    request: ExportTraceServiceRequest

    def spans(self) -> list[Any]:
        return [
            span for rs in self.request.resource_spans for ss in rs.scope_spans for span in ss.spans
        ]

    def resource_attributes(self) -> list[dict[str, str]]:
        return [
            {kv.key: kv.value.string_value for kv in rs.resource.attributes}
            for rs in self.request.resource_spans
        ]


def read_back(
    bootstrap: str, topic: str, wanted: set[bytes], timeout: float = 60
) -> list[Consumed]:
    """Every message of ``topic`` from the start, read until the span ids ``wanted`` are
    all seen (or ``timeout`` passed: the caller's assertion tells what is missing)."""
    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
    )
    out: list[Consumed] = []
    seen: set[bytes] = set()
    deadline = time.monotonic() + timeout
    try:
        while not wanted <= seen and time.monotonic() < deadline:
            for records in consumer.poll(timeout_ms=500).values():
                for record in records:
                    request = ExportTraceServiceRequest.FromString(record.value)
                    message = Consumed(record.key, dict(record.headers), request)
                    out.append(message)
                    seen |= {span.span_id for span in message.spans()}
    finally:
        consumer.close()
    return out


def all_span_ids(messages: list[Consumed]) -> list[bytes]:
    return [span.span_id for m in messages for span in m.spans()]
