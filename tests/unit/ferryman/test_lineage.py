"""Batch lineage: the W3C traceparent, sampling by trace id, the OTLP form of the spans
and the exporter's bound."""

from __future__ import annotations

import pytest

from ferryman import headers as h
from ferryman.lineage import (
    LINEAGE_HEADERS,
    LineageExporter,
    LineageSettings,
    Link,
    Span,
    SpanContext,
    make_traceparent,
    new_context,
    parse_traceparent,
    sampled,
    to_otlp,
)
from ferryman.telemetry import Registry
from ferryman.wire.otlp import split_by_trace

TRACE = bytes.fromhex("4bf92f3577b34da6a3ce929d0e0e4736")
SPAN = bytes.fromhex("00f067aa0ba902b7")


def test_traceparent_round_trip() -> None:
    context = SpanContext(TRACE, SPAN, True)
    value = make_traceparent(context)
    assert value == b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"
    assert parse_traceparent(value) == context
    unsampled = SpanContext(TRACE, SPAN, False)
    assert make_traceparent(unsampled).endswith(b"-00")
    assert parse_traceparent(make_traceparent(unsampled)) == unsampled
    fresh = new_context(0.5)
    assert parse_traceparent(make_traceparent(fresh)) == fresh


def test_the_specifications_example_and_other_flags() -> None:
    parsed = parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01")
    assert parsed == SpanContext(TRACE, SPAN, True)
    # bit 0 is sampled; other bits are not ours to read
    assert parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-03") == (
        SpanContext(TRACE, SPAN, True)
    )
    assert parse_traceparent("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-02") == (
        SpanContext(TRACE, SPAN, False)
    )


def test_a_later_version_may_append_fields() -> None:
    later = "01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-what-comes-next"
    assert parse_traceparent(later) == SpanContext(TRACE, SPAN, True)
    assert parse_traceparent(later[:55]) == SpanContext(TRACE, SPAN, True)
    assert parse_traceparent(later[:55] + "x") is None  # no dash after the flags


@pytest.mark.parametrize(
    "value",
    [
        None,
        b"",
        "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # version ff
        "00-00000000000000000000000000000000-00f067aa0ba902b7-01",  # all-zero trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",  # all-zero span id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-",  # 00 is 55 long
        "00-4bf92f3577b34da6a3ce929d0e0e473-00f067aa0ba902b7-01",  # short trace id
        "00-4bf92f3577b34da6a3ce929d0e0e47366-00f067aa0ba902b7-01",  # long trace id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b-01",  # short span id
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-1",  # short flags
        "00-4BF92F3577B34DA6A3CE929D0E0E4736-00F067AA0BA902B7-01",  # upper case
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902g7-01",  # not hex
        "00_4bf92f3577b34da6a3ce929d0e0e4736_00f067aa0ba902b7_01",  # separators
        "0x-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # version not hex
        b"00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-0\xff",  # not ASCII
    ],
)
def test_malformed_traceparents_are_refused(value: str | bytes | None) -> None:
    assert parse_traceparent(value) is None


def test_sampling_follows_the_ratio_and_the_trace_id() -> None:
    contexts = [new_context(0.1) for _ in range(20_000)]
    share = sum(c.sampled for c in contexts) / len(contexts)
    assert 0.08 < share < 0.12
    # the decision is the trace id's: every process decides alike
    assert all(c.sampled == sampled(c.trace_id, 0.1) for c in contexts)
    assert not any(sampled(c.trace_id, 0.0) for c in contexts)
    assert all(sampled(c.trace_id, 1.0) for c in contexts)
    assert new_context(0.0, force=True).sampled


def test_spans_become_one_otlp_message_per_trace_with_links() -> None:
    producer = SpanContext(TRACE, SPAN, True)
    other = new_context(1.0)
    spans = [
        Span("process t", TRACE, b"\x01" * 8, 10, 20, "consumer", links=[Link(producer)]),
        Span("commit", TRACE, b"\x02" * 8, 15, 18, parent_span_id=b"\x01" * 8),
        Span("process t", other.trace_id, b"\x03" * 8, 10, 20, "consumer", error="poison"),
    ]
    request = to_otlp(spans, {"service.name": "ferryman-worker-x", "k8s.cluster.name": "a"})
    messages = split_by_trace(request, 1 << 20)
    assert [m.trace_id for m in messages] == [TRACE, other.trace_id]
    assert [m.spans for m in messages] == [2, 1]
    resource = {
        kv.key: kv.value.string_value for kv in request.resource_spans[0].resource.attributes
    }
    assert resource == {"service.name": "ferryman-worker-x", "k8s.cluster.name": "a"}
    out = request.resource_spans[0].scope_spans[0].spans
    assert out[0].links[0].trace_id == TRACE and out[0].links[0].span_id == SPAN
    assert out[1].parent_span_id == b"\x01" * 8
    assert out[2].status.code == 2 and out[2].status.message == "poison"  # ERROR
    assert out[0].kind == 5  # CONSUMER


def test_the_buffer_is_bounded_and_drops_are_counted() -> None:
    registry = Registry()
    exporter = LineageExporter(
        LineageSettings(),
        bootstrap_servers="127.0.0.1:1",
        registry=registry,
        resource={"service.name": "t"},
        max_spans=3,
    )
    span = Span("s", TRACE, SPAN, 1, 2)
    exporter.record([span, span])
    exporter.record([span, span])
    assert len(exporter.pending()) == 3
    assert registry.value("ferryman_lineage_spans_total", outcome="dropped") == 1
    assert exporter.headers[:2] == list(LINEAGE_HEADERS)
    assert (h.LINEAGE, b"1") in exporter.headers
    assert h.TRACEPARENT not in dict(exporter.headers)


def test_settings_defaults() -> None:
    settings = LineageSettings()
    assert (settings.enabled, settings.sample_ratio, settings.topic) == (
        True,
        0.01,
        "ferryman.traces",
    )
    with pytest.raises(ValueError):
        LineageSettings(sample_ratio=1.5)
    with pytest.raises(ValueError):
        LineageSettings.model_validate({"ratio": 0.5})
