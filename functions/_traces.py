"""Reading a traces record: its OTLP ``ExportTraceServiceRequest``, or
:class:`~functions._records.UnsupportedRecord`. A module of its own so that the
functions of other signals do not load the OTLP messages."""

from __future__ import annotations

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from ferryman import headers as h
from ferryman.wire.otlp import decode_protobuf
from workers.records import Record

from ._records import check_schema, unreadable

__all__ = ["decode_traces"]

_OTLP_TRACES = "traces message (OTLP ExportTraceServiceRequest)"


def _checked_ids(request: ExportTraceServiceRequest) -> ExportTraceServiceRequest:
    # Any OTLP receiver refuses ids of another length (400 / INVALID_ARGUMENT): such a
    # record can never be delivered, so it is refused here, before anything is sent.
    for rs in request.resource_spans:
        for ss in rs.scope_spans:
            for span in ss.spans:
                if len(span.trace_id) != 16:
                    raise ValueError(f"a span's trace_id is {len(span.trace_id)} bytes, not 16")
                if len(span.span_id) != 8:
                    raise ValueError(f"a span's span_id is {len(span.span_id)} bytes, not 8")
    return request


def decode_traces(record: Record) -> ExportTraceServiceRequest:
    """The ``ExportTraceServiceRequest`` of a traces record (protobuf, not compressed),
    every span with a 16-byte trace id and an 8-byte span id."""
    check_schema(record, h.SCHEMA_OTLP_TRACES)
    with unreadable(_OTLP_TRACES):
        return _checked_ids(decode_protobuf(record.value))
