"""OTLP traces on the wire: the ``ExportTraceServiceRequest`` of the published
``opentelemetry-proto`` package, its JSON mapping, and the cut into Kafka messages.

Kafka message value (schema ``otlp.traces.v1``): one serialized
``ExportTraceServiceRequest`` holding the spans of **one trace** (with their resource
and scope), so the message is keyed by the trace id and the trace stays on one
partition. A trace too large for one message is cut into several, each under the
limit, all with the same key.

The OTLP JSON mapping differs from protobuf's canonical JSON in three ways (OTLP
specification, "JSON Protobuf Encoding"): trace and span ids are hex strings, not
base64; enums are integers (protobuf's parser takes those too); field names are
lowerCamelCase (protobuf's parser takes both). Unknown fields are ignored, as the
specification asks of receivers.

:func:`split_request` and :func:`split_serialized` cut natively (``ferryman_native``,
``native/src/otlp.rs``: on the serialized request, copying span bytes) when that
module has the splitter, and fall back to :func:`split_by_trace`, which stays the
reference the native splitter is tested against (the same bytes for the same
request).
"""

from __future__ import annotations

import base64
import binascii
import json
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import DecodeError
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import (
    ResourceSpans,
    ScopeSpans,
    Span,
    Status,
)

_NativeSplit = Callable[
    [bytes, int, list[tuple[str, str]]], tuple[list[tuple[bytes, bytes, int]], int, list[int]]
]
_native_split: _NativeSplit | None
try:
    from ferryman_native import otlp_split as _native_split
except ImportError:  # an older build of the native module, or none: Python cuts
    _native_split = None

__all__ = [
    "CLUSTER_ATTRIBUTE",
    "NATIVE",
    "OtlpDecodeError",
    "TraceMessage",
    "decode_json",
    "decode_protobuf",
    "encode_json",
    "is_error",
    "set_resource_attributes",
    "span_count",
    "split_by_trace",
    "split_request",
    "split_serialized",
]

#: Whether :func:`split_request` and :func:`split_serialized` cut natively.
NATIVE = _native_split is not None

#: the resource attribute that names a span's cluster (OpenTelemetry semantic conventions)
CLUSTER_ATTRIBUTE = "k8s.cluster.name"

_ID_FIELDS = ("traceId", "spanId", "parentSpanId", "trace_id", "span_id", "parent_span_id")
_ID_LENGTHS = {"traceId": 16, "trace_id": 16}


class OtlpDecodeError(ValueError):
    """Raised when a body is not an ``ExportTraceServiceRequest`` in the encoding it
    claims; the message says why (an OTLP client must not retry it: 400)."""


def decode_protobuf(body: bytes) -> ExportTraceServiceRequest:
    request = ExportTraceServiceRequest()
    try:
        request.ParseFromString(body)
    except DecodeError as exc:
        raise OtlpDecodeError(f"not an OTLP ExportTraceServiceRequest protobuf: {exc}") from None
    return request


def decode_json(body: bytes) -> ExportTraceServiceRequest:
    """The OTLP JSON form (hex ids) to a request."""
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise OtlpDecodeError(f"not JSON: {exc}") from None
    if not isinstance(document, dict):
        raise OtlpDecodeError("an OTLP JSON request is an object")
    _ids_to_base64(document)
    request = ExportTraceServiceRequest()
    try:
        json_format.ParseDict(document, request, ignore_unknown_fields=True)
    except json_format.ParseError as exc:
        raise OtlpDecodeError(f"not an OTLP ExportTraceServiceRequest: {exc}") from None
    return request


def encode_json(request: ExportTraceServiceRequest) -> bytes:
    """``request`` in the OTLP JSON form (hex ids, integer enums, lowerCamelCase)."""
    document = json_format.MessageToDict(request, use_integers_for_enums=True)
    _ids_to_hex(document)
    return json.dumps(document, separators=(",", ":")).encode()


def _walk_spans(document: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """Every span and span link object of a JSON request (both carry the ids)."""
    for rs in _list(document, "resourceSpans", "resource_spans"):
        for ss in _list(rs, "scopeSpans", "scope_spans"):
            for span in _list(ss, "spans"):
                if isinstance(span, dict):
                    yield span
                    for link in _list(span, "links"):
                        if isinstance(link, dict):
                            yield link


def _list(obj: Any, *names: str) -> list[Any]:
    if not isinstance(obj, dict):
        return []
    for name in names:
        value = obj.get(name)
        if isinstance(value, list):
            return value
    return []


def _ids_to_base64(document: dict[str, Any]) -> None:
    for obj in _walk_spans(document):
        for name in _ID_FIELDS:
            value = obj.get(name)
            if value is None or value == "":
                continue
            if not isinstance(value, str):
                raise OtlpDecodeError(f"{name} must be a hex string")
            try:
                raw = binascii.unhexlify(value)
            except (binascii.Error, ValueError):
                raise OtlpDecodeError(f"{name} {value[:40]!r} is not hex") from None
            obj[name] = base64.b64encode(raw).decode()


def _ids_to_hex(document: dict[str, Any]) -> None:
    for obj in _walk_spans(document):
        for name in _ID_FIELDS:
            value = obj.get(name)
            if isinstance(value, str) and value:
                obj[name] = base64.b64decode(value).hex()


def span_count(request: ExportTraceServiceRequest) -> int:
    return sum(len(ss.spans) for rs in request.resource_spans for ss in rs.scope_spans)


def is_error(span: Span) -> bool:
    return span.status.code == Status.STATUS_CODE_ERROR


def set_resource_attributes(
    request: ExportTraceServiceRequest, attributes: Mapping[str, str]
) -> None:
    """Set each of ``attributes`` on every resource, replacing a value already there:
    the edge knows which cluster it runs in better than an application does."""
    if not attributes:
        return
    for rs in request.resource_spans:
        _set_attributes(rs.resource, attributes)


def _set_attributes(resource: Resource, attributes: Mapping[str, str]) -> None:
    kept = [kv for kv in resource.attributes if kv.key not in attributes]
    del resource.attributes[:]
    resource.attributes.extend(kept)
    resource.attributes.extend(
        KeyValue(key=key, value=AnyValue(string_value=value)) for key, value in attributes.items()
    )


@dataclass(frozen=True)
class TraceMessage:
    """One Kafka message: a trace's spans (or a part of them, when cut)."""

    trace_id: bytes
    value: bytes
    spans: int


@dataclass
class Refused:
    """Spans that cannot be carried, and why (for ``partial_success``)."""

    spans: int = 0
    reason: str = ""

    def add(self, count: int, reason: str) -> None:
        self.spans += count
        if not self.reason:
            self.reason = reason


_INVALID_ID = "a span's trace_id is not 16 bytes, or is all zero"


def _too_large(cost: int, max_bytes: int) -> str:
    return f"a span of {cost} bytes is larger than the {max_bytes} byte limit"


def split_by_trace(
    request: ExportTraceServiceRequest, max_bytes: int, refused: Refused | None = None
) -> list[TraceMessage]:
    """Regroup ``request``'s spans by trace id, keeping each span with its resource and
    scope, into messages of at most ``max_bytes`` serialized. Spans with a trace id that
    is not 16 bytes, and single spans larger than ``max_bytes``, are left out and
    counted in ``refused``. Traces come out in the order they first appear."""
    refused = refused if refused is not None else Refused()
    groups: dict[bytes, list[tuple[int, int, Span]]] = {}
    for r_index, rs in enumerate(request.resource_spans):
        for s_index, ss in enumerate(rs.scope_spans):
            for span in ss.spans:
                if len(span.trace_id) != 16 or span.trace_id == bytes(16):
                    refused.add(1, _INVALID_ID)
                    continue
                groups.setdefault(span.trace_id, []).append((r_index, s_index, span))
    messages: list[TraceMessage] = []
    for trace_id, spans in groups.items():
        messages.extend(_cut(request, trace_id, spans, max_bytes, refused))
    return messages


def _cut(
    request: ExportTraceServiceRequest,
    trace_id: bytes,
    spans: list[tuple[int, int, Span]],
    max_bytes: int,
    refused: Refused,
) -> Iterable[TraceMessage]:
    builder = _Builder(request)
    for r_index, s_index, span in spans:
        cost = builder.cost_of(r_index, s_index, span)
        if builder.spans and builder.size + cost > max_bytes:
            yield builder.finish(trace_id)
            builder = _Builder(request)
            cost = builder.cost_of(r_index, s_index, span)
        if cost > max_bytes:
            refused.add(1, _too_large(cost, max_bytes))
            continue
        builder.add(r_index, s_index, span, cost)
    if builder.spans:
        yield builder.finish(trace_id)


def _field_size(payload: int) -> int:
    """Bytes of a length-delimited field (one-byte tag) with ``payload`` bytes."""
    return 1 + _varint_size(payload) + payload


def _varint_size(value: int) -> int:
    size = 1
    while value >= 0x80:
        value >>= 7
        size += 1
    return size


class _Builder:
    """A request being filled with spans of one trace; ``size`` is exact."""

    def __init__(self, source: ExportTraceServiceRequest) -> None:
        self.source = source
        self.request = ExportTraceServiceRequest()
        self.resources: dict[int, ResourceSpans] = {}
        self.scopes: dict[tuple[int, int], ScopeSpans] = {}
        self.scope_sizes: dict[tuple[int, int], int] = {}
        self.resource_sizes: dict[int, int] = {}
        self.size = 0
        self.spans = 0

    def _resource_head(self, r_index: int) -> int:
        rs = self.source.resource_spans[r_index]
        head = 0
        if rs.HasField("resource"):
            head += _field_size(rs.resource.ByteSize())
        if rs.schema_url:
            head += _field_size(len(rs.schema_url.encode()))
        return head

    def _scope_head(self, r_index: int, s_index: int) -> int:
        ss = self.source.resource_spans[r_index].scope_spans[s_index]
        head = 0
        if ss.HasField("scope"):
            head += _field_size(ss.scope.ByteSize())
        if ss.schema_url:
            head += _field_size(len(ss.schema_url.encode()))
        return head

    def _sizes_with(self, r_index: int, s_index: int, span_bytes: int) -> tuple[int, int]:
        """(new scope payload, new resource payload) once a span of ``span_bytes`` is in."""
        key = (r_index, s_index)
        old_scope = self.scope_sizes.get(key)
        new_scope = (
            old_scope if old_scope is not None else self._scope_head(r_index, s_index)
        ) + _field_size(span_bytes)
        old_resource = self.resource_sizes.get(r_index)
        resource = old_resource if old_resource is not None else self._resource_head(r_index)
        if old_scope is not None:
            resource -= _field_size(old_scope)
        return new_scope, resource + _field_size(new_scope)

    def cost_of(self, r_index: int, s_index: int, span: Span) -> int:
        _, new_resource = self._sizes_with(r_index, s_index, span.ByteSize())
        old_resource = self.resource_sizes.get(r_index)
        return _field_size(new_resource) - (
            _field_size(old_resource) if old_resource is not None else 0
        )

    def add(self, r_index: int, s_index: int, span: Span, cost: int) -> None:
        new_scope, new_resource = self._sizes_with(r_index, s_index, span.ByteSize())
        rs = self.resources.get(r_index)
        if rs is None:
            source = self.source.resource_spans[r_index]
            rs = self.request.resource_spans.add()
            if source.HasField("resource"):
                rs.resource.CopyFrom(source.resource)
            rs.schema_url = source.schema_url
            self.resources[r_index] = rs
        ss = self.scopes.get((r_index, s_index))
        if ss is None:
            source_scope = self.source.resource_spans[r_index].scope_spans[s_index]
            ss = rs.scope_spans.add()
            if source_scope.HasField("scope"):
                ss.scope.CopyFrom(source_scope.scope)
            ss.schema_url = source_scope.schema_url
            self.scopes[(r_index, s_index)] = ss
        ss.spans.append(span)
        self.scope_sizes[(r_index, s_index)] = new_scope
        self.resource_sizes[r_index] = new_resource
        self.size += cost
        self.spans += 1

    def finish(self, trace_id: bytes) -> TraceMessage:
        value = self.request.SerializeToString()
        return TraceMessage(trace_id=trace_id, value=value, spans=self.spans)


def split_request(
    request: ExportTraceServiceRequest,
    max_bytes: int,
    refused: Refused | None = None,
    attributes: Mapping[str, str] | None = None,
) -> list[TraceMessage]:
    """:func:`set_resource_attributes` with ``attributes`` (default: none), then
    :func:`split_by_trace`: the same messages and refusals. Natively when
    :data:`NATIVE` (``request`` is serialized once and left as it is); otherwise in
    Python, which sets the attributes on ``request`` itself."""
    if _native_split is None:
        set_resource_attributes(request, attributes or {})
        return split_by_trace(request, max_bytes, refused)
    return _split_native(request.SerializeToString(), max_bytes, refused, attributes)


def split_serialized(
    body: bytes,
    max_bytes: int,
    refused: Refused | None = None,
    attributes: Mapping[str, str] | None = None,
) -> list[TraceMessage]:
    """:func:`split_request` of a serialized request; raises :class:`OtlpDecodeError`
    when ``body`` is not one. The native splitter reads only the structure around the
    spans (a malformed span attribute goes through); each message is at most
    ``max_bytes`` by its actual bytes. For a body as protobuf serializes it (fields in
    number order, no default values written) the messages are the bytes
    :func:`split_by_trace` makes."""
    if _native_split is None:
        return split_request(decode_protobuf(body), max_bytes, refused, attributes)
    return _split_native(body, max_bytes, refused, attributes)


def _split_native(
    body: bytes,
    max_bytes: int,
    refused: Refused | None,
    attributes: Mapping[str, str] | None,
) -> list[TraceMessage]:
    assert _native_split is not None
    try:
        found, invalid, too_large = _native_split(
            body, max_bytes, list(attributes.items()) if attributes else []
        )
    except ValueError as exc:
        raise OtlpDecodeError(str(exc)) from None
    if refused is not None:
        if invalid:
            refused.add(invalid, _INVALID_ID)
        for cost in too_large:
            refused.add(1, _too_large(cost, max_bytes))
    return [TraceMessage(trace_id, value, spans) for trace_id, value, spans in found]
