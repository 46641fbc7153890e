"""The bodies both listeners answer with, in the encoding the request came in.

Success is an ``ExportTraceServiceResponse`` (with ``partial_success`` when spans were
refused); a failure is a ``google.rpc.Status`` (OTLP specification, "Failures"), with a
``google.rpc.RetryInfo`` detail when the client should retry after a delay.
"""

from __future__ import annotations

import json

from google.protobuf.duration_pb2 import Duration
from google.rpc.error_details_pb2 import RetryInfo
from google.rpc.status_pb2 import Status
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceResponse,
)

from .intake import Accepted

__all__ = ["JSON", "PROTOBUF", "error_body", "response", "retry_info", "status"]

PROTOBUF = "application/x-protobuf"
JSON = "application/json"


def response(accepted: Accepted) -> ExportTraceServiceResponse:
    out = ExportTraceServiceResponse()
    if accepted.rejected_spans:
        out.partial_success.rejected_spans = accepted.rejected_spans
        out.partial_success.error_message = accepted.error_message
    return out


def response_body(accepted: Accepted, content_type: str) -> bytes:
    message = response(accepted)
    if content_type == JSON:
        document: dict[str, object] = {}
        if accepted.rejected_spans:
            document["partialSuccess"] = {
                # int64 is a string in protobuf's JSON mapping; OTLP receivers accept both
                "rejectedSpans": str(accepted.rejected_spans),
                "errorMessage": accepted.error_message,
            }
        return json.dumps(document).encode()
    return message.SerializeToString()


def retry_info(seconds: float) -> RetryInfo:
    whole = int(seconds)
    return RetryInfo(retry_delay=Duration(seconds=whole, nanos=int((seconds - whole) * 1e9)))


def status(code: int, message: str, retry_after: float | None = None) -> Status:
    """A ``google.rpc.Status``; ``code`` is the gRPC code number."""
    out = Status(code=code, message=message)
    if retry_after is not None:
        out.details.add().Pack(retry_info(retry_after))
    return out


def error_body(code: int, message: str, content_type: str, retry_after: float | None) -> bytes:
    found = status(code, message, retry_after)
    if content_type == JSON:
        return json.dumps({"code": found.code, "message": found.message}).encode()
    serialized: bytes = found.SerializeToString()
    return serialized
