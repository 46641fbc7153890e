"""Pure: an OTLP export answer → ok / retry / permanent.

Both transports are read into one :class:`Answer` with an HTTP status, so that one
delivery loop (:func:`functions._chunks.deliver_chunks`) decides for both. The rules
are the OTLP specification's, within the project's contract:

=================================================  =====================================
OTLP/HTTP                  OTLP/gRPC               outcome
=================================================  =====================================
2xx                        OK                      ok; ``partial_success.rejected_spans``
                                                   counted, never retried (the spec)
429, 502, 503, 504         UNAVAILABLE, CANCELLED, retry (backpressure), after
                           ABORTED, OUT_OF_RANGE,  ``Retry-After`` / ``RetryInfo``
                           DATA_LOSS (503),        where given
                           DEADLINE_EXCEEDED (504)
429                        RESOURCE_EXHAUSTED      retry after the delay given
                           with RetryInfo
400, 413                   INVALID_ARGUMENT,       permanent, about the data: a
                           FAILED_PRECONDITION     request of several records is sent
                           (400), RESOURCE_        again record by record; the records
                           EXHAUSTED without       still refused are dead-lettered
                           RetryInfo (413: above
                           the receiver's size)
401, 403, 404, other 4xx   UNAUTHENTICATED (401),  permanent for the request's records
                           PERMISSION_DENIED
                           (403), UNIMPLEMENTED,
                           NOT_FOUND (404)
500 and other 5xx          INTERNAL, UNKNOWN       retry; a record refused so alone is
                           (500)                   handed back as refused (poison after
                                                   the runtime's bounds)
=================================================  =====================================

The specification calls 500 / INTERNAL not retryable; here they are retried like every
sink's 500, which loses nothing when the receiver's fault is passing and dead-letters a
record the receiver keeps refusing alone.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from google.protobuf.message import DecodeError
from google.rpc import error_details_pb2, status_pb2
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceResponse,
)

from workers.outcome import Outcome, classify_http, retry_after_seconds

__all__ = [
    "GRPC_STATUS",
    "Answer",
    "classify",
    "data_at_fault",
    "grpc_answer",
    "http_answer",
    "retry_after_header",
]

_DATA_AT_FAULT = frozenset({400, 413})
_STATUS_DETAILS = "grpc-status-details-bin"
_RETRY_INFO = "type.googleapis.com/google.rpc.RetryInfo"

#: gRPC status code names → the HTTP status that means the same to the delivery loop.
GRPC_STATUS: Mapping[str, int] = {
    "OK": 200,
    "CANCELLED": 503,
    "UNKNOWN": 500,
    "INVALID_ARGUMENT": 400,
    "DEADLINE_EXCEEDED": 504,
    "NOT_FOUND": 404,
    "ALREADY_EXISTS": 409,
    "PERMISSION_DENIED": 403,
    "RESOURCE_EXHAUSTED": 413,  # 429 when RetryInfo says when to come back
    "FAILED_PRECONDITION": 400,
    "ABORTED": 503,
    "OUT_OF_RANGE": 503,
    "UNIMPLEMENTED": 404,
    "INTERNAL": 500,
    "UNAVAILABLE": 503,
    "DATA_LOSS": 503,
    "UNAUTHENTICATED": 401,
}


@dataclass(frozen=True, slots=True)
class Answer:
    """What the receiver said to one export: ``status`` as HTTP; ``message`` readable;
    ``delay`` the wait it asked for; the spans its ``partial_success`` rejected."""

    status: int
    message: str = ""
    delay: float | None = None
    rejected_spans: int = 0
    rejected_message: str = ""


def _seconds(value: str | None) -> float | None:
    """``Retry-After`` as seconds: delta seconds (fractions accepted) or an HTTP date."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        return retry_after_seconds(value)
    return seconds if math.isfinite(seconds) and seconds >= 0 else None


def retry_after_header(delay: float | None) -> dict[str, str]:
    return {} if delay is None else {"retry-after": f"{delay:.3f}"}


def classify(status: int, headers: Mapping[str, str], body: str) -> Outcome:
    outcome = classify_http(status, headers, body)
    if outcome.kind == "ok":
        return outcome
    message = " ".join(body.split())[:500]
    return Outcome(outcome.kind, f"HTTP {status}: {message}", _seconds(headers.get("retry-after")))


def data_at_fault(status: int) -> bool:
    """Whether a permanent refusal is about the request's data (so a record sent alone may
    pass) rather than about where or how it was sent."""
    return status in _DATA_AT_FAULT


def _retry_delay(status: status_pb2.Status) -> float | None:
    for detail in status.details:
        if detail.type_url == _RETRY_INFO:
            info = error_details_pb2.RetryInfo()
            try:
                info.ParseFromString(detail.value)
            except DecodeError:
                return None
            delay = info.retry_delay
            return max(0.0, float(delay.seconds) + float(delay.nanos) / 1e9)
    return None


def _rpc_status(content: bytes) -> status_pb2.Status | None:
    status = status_pb2.Status()
    try:
        status.ParseFromString(content)
    except DecodeError:
        return None
    return status


def _partial_success(content: bytes, content_type: str) -> tuple[int, str]:
    if not content:
        return 0, ""
    if "json" in content_type:
        try:
            document = json.loads(content)
            partial = document.get("partialSuccess") or document.get("partial_success") or {}
            rejected = int(partial.get("rejectedSpans") or partial.get("rejected_spans") or 0)
            message = str(partial.get("errorMessage") or partial.get("error_message") or "")
        except (ValueError, AttributeError, TypeError):
            return 0, ""
        return rejected, message
    response = ExportTraceServiceResponse()
    try:
        response.ParseFromString(content)
    except DecodeError:
        return 0, ""
    partial = response.partial_success
    return partial.rejected_spans, partial.error_message


def http_answer(status: int, headers: Mapping[str, str], content: bytes) -> Answer:
    """An OTLP/HTTP answer: on 2xx the ``ExportTraceServiceResponse``, else the
    ``google.rpc.Status`` body (protobuf) or the text, and ``Retry-After`` (else the
    Status's RetryInfo)."""
    content_type = headers.get("content-type", "")
    if 200 <= status < 300:
        rejected, message = _partial_success(content, content_type)
        return Answer(status, rejected_spans=rejected, rejected_message=message)
    delay = _seconds(headers.get("retry-after"))
    rpc = _rpc_status(content) if "protobuf" in content_type else None
    if rpc is not None:
        return Answer(status, rpc.message, delay if delay is not None else _retry_delay(rpc))
    return Answer(status, content[:2000].decode("utf-8", "replace"), delay)


def grpc_answer(
    code: str,
    details: str,
    trailing: Sequence[tuple[str, str | bytes]] = (),
    response: bytes | None = None,
) -> Answer:
    """An OTLP/gRPC answer (``code`` a ``grpc.StatusCode`` name), with the RetryInfo of
    the ``grpc-status-details-bin`` trailer and, on OK, the response's partial success."""
    if code == "OK":
        rejected, message = _partial_success(response or b"", "protobuf")
        return Answer(200, rejected_spans=rejected, rejected_message=message)
    delay = None
    for key, value in trailing:
        if key == _STATUS_DETAILS and isinstance(value, bytes):
            rpc = _rpc_status(value)
            delay = _retry_delay(rpc) if rpc is not None else None
    status = GRPC_STATUS.get(code, 500)
    if code == "RESOURCE_EXHAUSTED" and delay is not None:
        status = 429
    return Answer(status, f"gRPC {code}: {details}", delay)
