"""The native OTLP splitter (``ferryman_native.otlp_split``) against the Python one,
its oracle (``set_resource_attributes`` then ``split_by_trace`` on the decoded
request): the same messages byte for byte, the same refusals, the same errors, on
generated requests with several resources and scopes, empty ones, unknown fields,
invalid trace ids, spans larger than the limit and fields in an unusual order."""

from __future__ import annotations

from typing import Any

import pytest
from ferryman_native import otlp_split
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.common.v1.common_pb2 import AnyValue, InstrumentationScope, KeyValue
from opentelemetry.proto.resource.v1.resource_pb2 import Resource
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span

from ferryman.wire import otlp

VALID_IDS = [bytes([n]) * 16 for n in range(1, 6)] + [bytes(15) + b"\x01"]
INVALID_IDS = [b"", bytes(16), b"\x01" * 15, b"\x01" * 17]
KEYS = ["k8s.cluster.name", "service.name", "a", ""]

text = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=12)


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


@st.composite
def unknown_fields(draw: st.DrawFn) -> bytes:
    """Zero to two fields of numbers no OTLP message here uses, of every wire type."""
    out = b""
    for _ in range(draw(st.integers(0, 2))):
        number = draw(st.sampled_from([17, 99, 1000, 4095]))
        kind = draw(st.sampled_from(["varint", "i64", "len", "i32", "group"]))
        if kind == "varint":
            out += _varint(number << 3) + _varint(draw(st.integers(0, 2**64 - 1)))
        elif kind == "i64":
            out += _varint(number << 3 | 1) + bytes(8)
        elif kind == "len":
            payload = draw(st.binary(max_size=20))
            out += _varint(number << 3 | 2) + _varint(len(payload)) + payload
        elif kind == "i32":
            out += _varint(number << 3 | 5) + b"\x01\x02\x03\x04"
        else:
            out += _varint(number << 3 | 3) + _varint(1 << 3) + b"\x07" + _varint(number << 3 | 4)
    return out


def _with_unknown(message: Any, extra: bytes) -> Any:
    """``message`` with ``extra`` (unknown fields) kept by protobuf."""
    if extra:
        message.ParseFromString(message.SerializeToString() + extra)
    return message


@st.composite
def spans(draw: st.DrawFn) -> Span:
    trace_id = draw(
        st.one_of(st.sampled_from(VALID_IDS), st.sampled_from(INVALID_IDS))
        if draw(st.integers(0, 9)) == 0
        else st.sampled_from(VALID_IDS)
    )
    span = Span(
        trace_id=trace_id,
        span_id=draw(st.binary(min_size=8, max_size=8)),
        name=draw(st.one_of(text, st.text(alphabet="xyz", min_size=200, max_size=3000))),
        kind=draw(st.integers(0, 5)),  # type: ignore[arg-type]
        start_time_unix_nano=draw(st.integers(0, 2**64 - 1)),
        attributes=[
            KeyValue(key=k, value=AnyValue(string_value=v))
            for k, v in draw(st.lists(st.tuples(text, text), max_size=3))
        ],
    )
    return _with_unknown(span, draw(unknown_fields()))  # type: ignore[no-any-return]


@st.composite
def scope_spans(draw: st.DrawFn) -> ScopeSpans:
    ss = ScopeSpans(spans=draw(st.lists(spans(), max_size=6)), schema_url=draw(text))
    if draw(st.booleans()):
        scope = InstrumentationScope(name=draw(text), version=draw(text))
        ss.scope.CopyFrom(_with_unknown(scope, draw(unknown_fields())))
    return _with_unknown(ss, draw(unknown_fields()))  # type: ignore[no-any-return]


@st.composite
def resource_spans(draw: st.DrawFn) -> ResourceSpans:
    rs = ResourceSpans(scope_spans=draw(st.lists(scope_spans(), max_size=3)), schema_url=draw(text))
    if draw(st.booleans()):
        resource = Resource(
            attributes=[
                KeyValue(key=k, value=AnyValue(string_value=v))
                for k, v in draw(st.lists(st.tuples(st.sampled_from(KEYS), text), max_size=4))
            ],
            dropped_attributes_count=draw(st.integers(0, 3)),
        )
        rs.resource.CopyFrom(_with_unknown(resource, draw(unknown_fields())))
    return _with_unknown(rs, draw(unknown_fields()))  # type: ignore[no-any-return]


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    request = ExportTraceServiceRequest(resource_spans=draw(st.lists(resource_spans(), max_size=4)))
    return _with_unknown(request, draw(unknown_fields())).SerializeToString()  # type: ignore[no-any-return]


attributes_st = st.dictionaries(st.sampled_from(KEYS), text, max_size=3)
limits_st = st.one_of(st.integers(20, 4000), st.just(4 * 2**20))


def _oracle(
    body: bytes, max_bytes: int, attributes: dict[str, str]
) -> tuple[list[tuple[bytes, bytes, int]], otlp.Refused]:
    request = otlp.decode_protobuf(body)
    otlp.set_resource_attributes(request, attributes)
    refused = otlp.Refused()
    messages = otlp.split_by_trace(request, max_bytes, refused)
    return [(m.trace_id, m.value, m.spans) for m in messages], refused


def _expected_refusals(refused: otlp.Refused, native_invalid: int, too_large: list[int]) -> None:
    again = otlp.Refused()
    if native_invalid:
        again.add(native_invalid, "a span's trace_id is not 16 bytes, or is all zero")
    for cost in too_large:
        again.add(1, f"a span of {cost} bytes")
    assert again.spans == refused.spans
    assert again.reason.split(" is larger")[0] == refused.reason.split(" is larger")[0]


PROPERTY = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(requests(), limits_st, attributes_st)
def test_the_same_messages_and_refusals_as_python(body, max_bytes, attributes):
    expected, refused = _oracle(body, max_bytes, attributes)
    messages, invalid, too_large = otlp_split(body, max_bytes, list(attributes.items()))
    assert messages == expected
    _expected_refusals(refused, invalid, too_large)
    for _, value, _ in messages:
        assert len(value) <= max_bytes
    # and through the module's entry point, refusals included word for word
    ours = otlp.Refused()
    wrapped = otlp.split_serialized(body, max_bytes, ours, attributes)
    assert [(m.trace_id, m.value, m.spans) for m in wrapped] == expected
    assert (ours.spans, ours.reason) == (refused.spans, refused.reason)


def _fields(data: bytes) -> list[bytes]:
    """The raw fields of a message (tag, length and payload each); varint and
    length-delimited only, all there is once unknown fields are discarded."""
    out, pos = [], 0
    while pos < len(data):
        start = pos
        key, pos = _read(data, pos)
        if key & 7 == 2:
            length, pos = _read(data, pos)
            pos += length
        elif key & 7 == 0:
            _, pos = _read(data, pos)
        else:
            raise AssertionError(f"wire type {key & 7}")
        out.append(data[start:pos])
    return out


def _read(data: bytes, pos: int) -> tuple[int, int]:
    value, shift = 0, 0
    while True:
        byte = data[pos]
        pos += 1
        value |= (byte & 0x7F) << shift
        shift += 7
        if byte < 0x80:
            return value, pos


def _len_field(number: int, payload: bytes) -> bytes:
    return _varint(number << 3 | 2) + _varint(len(payload)) + payload


@PROPERTY
@given(st.data(), limits_st, attributes_st)
def test_field_order_and_unknown_fields_around_the_spans_do_not_matter(data, max_bytes, attributes):
    """Resource spans and scope spans with their fields shuffled, unknown fields
    between them and the resource given in two halves (protobuf merges them): the
    messages are the ones Python makes of what protobuf reads there."""
    request = data.draw(st.lists(resource_spans(), min_size=1, max_size=3))
    body = b""
    for rs in request:
        rs.DiscardUnknownFields()  # the fields below are varint and length-delimited
        fields = []
        for field in _fields(rs.SerializeToString()):
            if field[0] == 0x12:  # scope_spans: shuffle its fields too
                inner = [*_fields(_payload(field)), _varint(17 << 3) + b"\x05"]
                field = _len_field(2, b"".join(data.draw(st.permutations(inner))))
            fields.append(field)
        fields.append(_varint(1000 << 3 | 2) + b"\x00")
        halves: list[bytes] = []
        if rs.HasField("resource") and len(rs.resource.attributes) > 1:
            first, *rest = _fields(rs.resource.SerializeToString())
            fields = [f for f in fields if f[0] != 0x0A]
            halves = [_len_field(1, first), _len_field(1, b"".join(rest))]
        fields = data.draw(st.permutations(fields))
        # The halves in their order (anywhere): merged, they are the resource's
        # fields in protobuf's order, which is what Python writes back.
        positions = sorted(data.draw(st.lists(st.integers(0, len(fields)), min_size=2, max_size=2)))
        for offset, (half, at) in enumerate(zip(halves, positions, strict=False)):
            fields.insert(at + offset, half)
        body += _len_field(1, b"".join(fields))
    expected, refused = _oracle(body, max_bytes, attributes)
    messages, invalid, too_large = otlp_split(body, max_bytes, list(attributes.items()))
    assert messages == expected
    _expected_refusals(refused, invalid, too_large)


def _payload(field: bytes) -> bytes:
    _, pos = _read(field, 0)
    _, pos = _read(field, pos)
    return field[pos:]


@settings(max_examples=200, deadline=None)
@given(requests(), st.data())
def test_a_cut_body_is_refused_when_python_refuses_it(body, data):
    cut = body[: data.draw(st.integers(0, max(0, len(body) - 1)))]
    try:
        otlp.decode_protobuf(cut)
    except otlp.OtlpDecodeError:
        with pytest.raises(otlp.OtlpDecodeError):
            otlp.split_serialized(cut, 10_000)
    else:
        assert [m.value for m in otlp.split_serialized(cut, 10_000)] == [
            v for _, v, _ in _oracle(cut, 10_000, {})[0]
        ]


@pytest.mark.parametrize(
    "body",
    [
        b"\xff",  # a truncated varint
        b"\x0a\x05ab",  # a length past the end
        b"\x0f",  # wire type 7
        b"\x00\x01",  # field number 0
        b"\x0a\x03\x12\x01",  # a scope spans field cut short inside a resource
        b"\x0a\x04\x12\x02\x12\x05",  # a span's length past its scope's end
        b"\x0b\x14",  # a group closed by another number
        b"\x0c",  # an end group without a start
        b"\x1b\x08\x01",  # an unterminated group
        b"\x08" + b"\xff" * 10 + b"\x01",  # a varint of 11 bytes
    ],
)
def test_malformed_bodies_raise_the_decode_error(body):
    with pytest.raises(otlp.OtlpDecodeError, match="not an OTLP ExportTraceServiceRequest"):
        otlp.split_serialized(body, 10_000)
    with pytest.raises(otlp.OtlpDecodeError):
        otlp.decode_protobuf(body)


def test_the_module_cuts_natively_with_this_build():
    assert otlp.NATIVE


def test_split_request_leaves_the_request_as_it_was_and_matches_python():
    span = Span(trace_id=VALID_IDS[0], span_id=b"\x01" * 8, name="x")
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=[span])])]
    )
    body = request.SerializeToString()
    messages = otlp.split_request(request, 10_000, None, {"k8s.cluster.name": "eu"})
    assert request.SerializeToString() == body
    assert [(m.trace_id, m.value, m.spans) for m in messages] == _oracle(
        body, 10_000, {"k8s.cluster.name": "eu"}
    )[0]


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests(), limits_st, attributes_st)
def test_without_the_native_splitter_the_module_makes_the_same_messages(
    body, max_bytes, attributes
):
    native_refused, python_refused = otlp.Refused(), otlp.Refused()
    native = otlp.split_serialized(body, max_bytes, native_refused, attributes)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(otlp, "_native_split", None)
        python = otlp.split_serialized(body, max_bytes, python_refused, attributes)
    assert native == python
    assert (native_refused.spans, native_refused.reason) == (
        python_refused.spans,
        python_refused.reason,
    )


def test_a_resource_in_two_parts_out_of_order_decodes_the_same():
    """Protobuf merges the parts, and writes the merged resource's fields in number
    order; the native splitter keeps the parts' order: other bytes, the same message."""
    resource = Resource(
        attributes=[KeyValue(key="a", value=AnyValue(string_value="1"))],
        dropped_attributes_count=2,
    )
    first, second = _fields(resource.SerializeToString())
    span = Span(trace_id=VALID_IDS[0], span_id=b"\x01" * 8, name="x")
    rs = _len_field(1, second) + _len_field(1, first)
    rs += _len_field(2, _len_field(2, span.SerializeToString()))
    body = _len_field(1, rs)
    (message,), _, _ = otlp_split(body, 10_000)
    (expected,), _ = _oracle(body, 10_000, {})
    assert message[1] != expected[1]
    assert ExportTraceServiceRequest.FromString(message[1]) == ExportTraceServiceRequest.FromString(
        expected[1]
    )
