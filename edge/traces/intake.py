"""What both listeners do with a decoded request: label it, cut it by trace, produce it.

:meth:`Intake.export` returns only after Kafka acknowledged every message of the
request; it raises :class:`BusyError` when it cannot (Kafka away or slow, or
``max_in_flight_requests`` requests already waiting), and the listener answers
503 / UNAVAILABLE with a retry delay. Spans the limits refuse (a trace id that is not
16 bytes, a single span larger than a message may be) are left out, counted by
reason and reported to the client as ``partial_success``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)

from ferryman import headers as h
from ferryman.lineage import LineageExporter, Span, SpanContext, make_traceparent, new_context
from ferryman.telemetry import Registry
from ferryman.wire.otlp import Refused, TraceMessage, span_count, split_request

from .config import MESSAGE_HEADROOM, EdgeTracesConfig
from .produce import KafkaLink, KafkaUnavailableError, Outgoing

__all__ = ["Accepted", "BusyError", "Intake", "Metrics"]

log = logging.getLogger("ferryman.edge.traces")

#: At most one line per this many seconds about undecodable requests.
LOG_EVERY = 10.0


class BusyError(Exception):
    """Raised when a request cannot be acknowledged now; retry after ``retry_after`` s."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class Accepted:
    """Every span of the request is in Kafka, except ``rejected_spans`` (and why)."""

    rejected_spans: int = 0
    error_message: str = ""


class Metrics:
    """The receiver's own series, declared once."""

    def __init__(self, registry: Registry) -> None:
        r = registry
        self.received = r.counter(
            "ferryman_spans_received_total",
            "Spans in decoded requests, by transport (grpc, http).",
            ["transport"],
        )
        self.refused = r.counter(
            "ferryman_spans_refused_total",
            "Spans left out by the limits, by reason (invalid_trace_id, span_too_large).",
            ["reason"],
        )
        self.produced = r.counter(
            "ferryman_spans_produced_total", "Spans Kafka acknowledged (acks=all)."
        )
        self.messages = r.counter(
            "ferryman_messages_produced_total", "Kafka messages acknowledged (one trace each)."
        )
        self.requests = r.counter(
            "ferryman_requests_total",
            "Export requests by transport and answer (HTTP status or gRPC code).",
            ["transport", "status"],
        )
        self.latency = r.histogram(
            "ferryman_request_duration_seconds",
            "Time from a request's arrival to its answer, by transport.",
            ["transport"],
        )
        self.in_flight = r.gauge(
            "ferryman_requests_in_flight", "Requests waiting for Kafka's acknowledgement."
        )
        self.errors = r.counter(
            "ferryman_errors_total", "Errors by type and stage.", ["error_type", "stage"]
        )
        self.reloads = r.counter(
            "ferryman_config_reloads_total", "Configuration reloads by result.", ["result"]
        )


class _Refusals(Refused):
    """:class:`Refused` that also counts by a short reason label."""

    def __init__(self) -> None:
        super().__init__()
        self.by_reason: dict[str, int] = {}

    def add(self, count: int, reason: str) -> None:
        super().add(count, reason)
        label = "invalid_trace_id" if "trace_id" in reason else "span_too_large"
        self.by_reason[label] = self.by_reason.get(label, 0) + count


def _add_missing(request: ExportTraceServiceRequest, attributes: Mapping[str, str]) -> None:
    for rs in request.resource_spans:
        present = {kv.key for kv in rs.resource.attributes}
        for key, value in attributes.items():
            if key not in present:
                rs.resource.attributes.add(key=key).value.string_value = value


class Intake:
    """Shared by both listeners; ``config`` may be replaced (reload) at any time.

    With ``lineage`` (default none), each request is a batch of its own: its messages
    carry one ``traceparent``, and a PRODUCER span ``send <topic>`` from the request's
    arrival to Kafka's acknowledgement is recorded when the batch is sampled or Kafka
    failed it (see :mod:`ferryman.lineage`)."""

    def __init__(
        self,
        config: EdgeTracesConfig,
        link: KafkaLink,
        metrics: Metrics,
        lineage: LineageExporter | None = None,
    ) -> None:
        self.config = config
        self.link = link
        self.metrics = metrics
        self.lineage = lineage
        self._lock = threading.Lock()
        self._in_flight = 0
        self._logged_at = -LOG_EVERY
        self._unlogged = 0

    @property
    def in_flight(self) -> int:
        """Requests waiting for Kafka now."""
        return self._in_flight

    def export(
        self,
        request: ExportTraceServiceRequest,
        transport: str,
        extra_attributes: Mapping[str, str] | None = None,
    ) -> Accepted:
        """Produce ``request``'s spans; see the module docstring for what it guarantees.

        External labels replace a resource's own attributes of the same name;
        ``extra_attributes`` (the sending pod's) are added only where it has none."""
        config = self.config
        limits = config.ferryman.limits
        started_ns = time.time_ns()
        context = new_context(self.lineage.ratio) if self.lineage is not None else None
        spans = span_count(request)
        self.metrics.received.labels(transport=transport).inc(spans)
        if extra_attributes:
            _add_missing(request, extra_attributes)
        refused = _Refusals()
        # Natively when ferryman_native has the splitter (the same messages).
        messages = split_request(
            request, self.max_message_bytes(), refused, config.resource_attributes()
        )
        for reason, count in refused.by_reason.items():
            self.metrics.refused.labels(reason=reason).inc(count)
        if messages:
            outgoing: list[Outgoing] = [
                (m.trace_id, m.value, self.headers_for(m, context)) for m in messages
            ]
            try:
                self._produce(
                    outgoing, limits.max_in_flight_requests, limits.retry_after, limits.ack_timeout
                )
            except BusyError as exc:
                self._trace(context, started_ns, messages, transport, str(exc))
                raise
            self._trace(context, started_ns, messages, transport, None)
            self.metrics.produced.inc(sum(m.spans for m in messages))
            self.metrics.messages.inc(len(messages))
        if refused.spans:
            return Accepted(refused.spans, f"{refused.spans} spans refused: {refused.reason}")
        return Accepted()

    def max_message_bytes(self) -> int:
        """``kafka.max_message_bytes``, lowered to fit the topic's own
        ``max.message.bytes`` (less the headroom) when Kafka told a smaller one."""
        configured = self.config.ferryman.kafka.max_message_bytes
        topic = self.link.topic_max_message_bytes
        if topic is None:
            return configured
        return max(1024, min(configured, topic - MESSAGE_HEADROOM))

    def undecodable(self, transport: str, peer: str, reason: str) -> None:
        """Count a request whose body did not decode, and say so in the log at most
        once every :data:`LOG_EVERY` seconds (a broken client sends many)."""
        self.metrics.errors.labels(error_type="decode", stage=transport).inc()
        with self._lock:
            now = time.monotonic()
            if now - self._logged_at < LOG_EVERY:
                self._unlogged += 1
                return
            more, self._unlogged, self._logged_at = self._unlogged, 0, now
        log.warning(
            "undecodable OTLP/%s request from %s: %s%s",
            transport.upper() if transport == "http" else "gRPC",
            peer,
            reason,
            f" (and {more} more since the last such line)" if more else "",
        )

    def headers_for(
        self, message: TraceMessage, context: SpanContext | None = None
    ) -> Sequence[tuple[str, bytes]]:
        """The headers of one produced message: schema, cluster, tenant, and the
        request's ``traceparent`` when lineage is on."""
        del message  # every message of a request belongs to the request's batch
        config = self.config
        out = [(h.SCHEMA, h.SCHEMA_OTLP_TRACES)]
        cluster = config.external_labels.get("cluster")
        if cluster:
            out.append((h.CLUSTER, cluster.encode()))
        if config.ferryman.kafka.tenant:
            out.append((h.TENANT, config.ferryman.kafka.tenant.encode()))
        if context is not None:
            out.append((h.TRACEPARENT, make_traceparent(context)))
        return out

    def _trace(
        self,
        context: SpanContext | None,
        started_ns: int,
        messages: Sequence[TraceMessage],
        transport: str,
        error: str | None,
    ) -> None:
        """Record the request's lineage span when it is sampled or failed; lineage never
        fails a request."""
        if self.lineage is None or context is None or not (context.sampled or error):
            return
        topic = self.config.ferryman.kafka.topic
        try:
            self.lineage.record(
                [
                    Span(
                        name=f"send {topic}",
                        trace_id=context.trace_id,
                        span_id=context.span_id,
                        start_ns=started_ns,
                        end_ns=time.time_ns(),
                        kind="producer",
                        attributes={
                            "messaging.system": "kafka",
                            "messaging.operation.type": "send",
                            "messaging.destination.name": topic,
                            "messaging.batch.message_count": len(messages),
                            "ferryman.spans": sum(m.spans for m in messages),
                            "ferryman.transport": transport,
                        },
                        error=error,
                    )
                ]
            )
        except Exception:  # lineage describes the data; it never stops it
            log.exception("could not record the lineage of a request")

    def _produce(
        self, outgoing: list[Outgoing], bound: int, retry_after: float, timeout: float
    ) -> None:
        with self._lock:
            if self._in_flight >= bound:
                raise BusyError(
                    f"{self._in_flight} requests already wait for Kafka; retry later",
                    retry_after,
                )
            self._in_flight += 1
            self.metrics.in_flight.set(self._in_flight)
        try:
            self.link.produce(outgoing, timeout)
        except KafkaUnavailableError as exc:
            raise BusyError(str(exc), retry_after) from None
        finally:
            with self._lock:
                self._in_flight -= 1
                self.metrics.in_flight.set(self._in_flight)
