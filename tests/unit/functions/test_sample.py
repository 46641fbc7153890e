"""sample: the decision is a pure function of the trace id and the ratio, near the ratio
over many ids, and the rules keep error and slow traces of the batch."""

from __future__ import annotations

import logging
import os
import random

import httpx
from hypothesis import given, settings
from hypothesis import strategies as st
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
from opentelemetry.proto.trace.v1.trace_pb2 import ResourceSpans, ScopeSpans, Span, Status

from ferryman import headers as h
from ferryman.telemetry import Registry
from ferryman.wire.otlp import span_count
from functions.sample.config import SampleConfig
from functions.sample.core import Sampler, keep_spans, randomness, threshold
from functions.sample.transform import SampleTransform
from workers.function import Context
from workers.records import Record

TRACE_ID = st.binary(min_size=16, max_size=16)
RATIO = st.floats(0.0, 1.0)


def _sampler(ratio: float, **rules: object) -> Sampler:
    return Sampler(SampleConfig.model_validate({"ratio": ratio, **rules}))


def _transform(ratio: float, **rules: object) -> tuple[SampleTransform, Registry]:
    registry = Registry()
    config = SampleConfig.model_validate({"ratio": ratio, **rules})
    context = Context("sample", httpx.Client, registry, logging.getLogger("test.sample"))
    return SampleTransform(config, context), registry


def _span(trace_id: bytes, *, error: bool = False, duration_s: float = 0.001) -> Span:
    return Span(
        trace_id=trace_id,
        span_id=os.urandom(8),
        name="op",
        start_time_unix_nano=1_000_000_000,
        end_time_unix_nano=1_000_000_000 + int(duration_s * 1e9),
        status=Status(code=Status.STATUS_CODE_ERROR if error else Status.STATUS_CODE_UNSET),
    )


def _record(offset: int, *spans: Span, headers: tuple[tuple[str, bytes], ...] = ()) -> Record:
    request = ExportTraceServiceRequest(
        resource_spans=[ResourceSpans(scope_spans=[ScopeSpans(spans=list(spans))])]
    )
    return Record(
        "in",
        0,
        offset,
        spans[0].trace_id if spans else None,
        request.SerializeToString(),
        ((h.SCHEMA, h.SCHEMA_OTLP_TRACES), *headers),
    )


@settings(max_examples=300)
@given(trace_id=TRACE_ID, ratio=RATIO)
def test_the_decision_is_the_same_for_every_instance_and_call(trace_id: bytes, ratio: float):
    decisions = {_sampler(ratio).sampled(trace_id) for _ in range(3)}
    assert len(decisions) == 1
    # The OpenTelemetry rule, written out: the lower 56 bits against the threshold.
    expected = int.from_bytes(trace_id[-7:], "big") >= round((1 - ratio) * 2**56)
    assert decisions == {expected}


@settings(max_examples=200)
@given(trace_id=TRACE_ID, low=RATIO, high=RATIO)
def test_a_trace_kept_at_a_ratio_is_kept_at_every_larger_one(
    trace_id: bytes, low: float, high: float
):
    low, high = sorted((low, high))
    if _sampler(low).sampled(trace_id):
        assert _sampler(high).sampled(trace_id)


def test_the_ends_of_the_range() -> None:
    ids = [os.urandom(16) for _ in range(1000)] + [bytes(16), b"\xff" * 16]
    assert all(_sampler(1.0).sampled(t) for t in ids)
    assert not any(_sampler(0.0).sampled(t) for t in ids)
    assert threshold(1.0) == 0 and threshold(0.0) == 2**56
    assert randomness(bytes(9) + b"\xff" * 7) == 2**56 - 1


@settings(max_examples=20, deadline=None)
@given(ratio=st.floats(0.01, 0.99), seed=st.integers(0, 2**32))
def test_the_kept_fraction_is_near_the_ratio(ratio: float, seed: int) -> None:
    rng = random.Random(seed)
    n = 20_000
    sampler = _sampler(ratio)
    kept = sum(sampler.sampled(rng.randbytes(16)) for _ in range(n))
    # Binomial: five standard deviations, about one failure in 3.5 million runs.
    sigma = (n * ratio * (1 - ratio)) ** 0.5
    assert abs(kept - n * ratio) <= 5 * sigma + 1


def _dropped_id(ratio: float) -> bytes:
    """A trace id the ratio drops."""
    sampler = _sampler(ratio)
    while True:
        trace_id = os.urandom(16)
        if not sampler.sampled(trace_id):
            return trace_id


def test_error_and_slow_traces_are_kept_across_the_batch() -> None:
    transform, registry = _transform(0.1, keep_slower_than_s=1.0)
    error, slow, plain = _dropped_id(0.1), _dropped_id(0.1), _dropped_id(0.1)
    batch = [
        # The error span is in the second record; the first record's span of that trace
        # is kept too.
        _record(0, _span(error), _span(plain)),
        _record(1, _span(error, error=True)),
        _record(2, _span(slow, duration_s=1.5), _span(slow)),
        _record(3, _span(plain)),
    ]
    delivered = transform.handle(batch)
    assert list(delivered.dead) == []
    kept = [ExportTraceServiceRequest.FromString(o.value) for o in delivered.outputs]
    spans_of = [
        [s.trace_id for rs in r.resource_spans for ss in rs.scope_spans for s in ss.spans]
        for r in kept
    ]
    assert spans_of == [[error], [error], [slow, slow]]
    assert [o.key for o in delivered.outputs] == [error, error, slow]
    # Records kept whole travel as they came.
    assert delivered.outputs[1].value == batch[1].value
    assert delivered.outputs[2].value == batch[2].value
    text = registry.render()
    assert 'ferryman_spans_kept_total{function="sample",reason="error"} 2.0' in text
    assert 'ferryman_spans_kept_total{function="sample",reason="slow"} 2.0' in text
    assert 'ferryman_spans_dropped_total{function="sample",reason="not_sampled"} 2.0' in text


def test_rules_can_be_off() -> None:
    transform, _ = _transform(0.0, keep_errors=False)
    delivered = transform.handle([_record(0, _span(os.urandom(16), error=True))])
    assert (list(delivered.outputs), list(delivered.dead)) == ([], [])


def test_headers_stay_and_lineage_passes_whole() -> None:
    transform, _ = _transform(0.0)
    headers = (
        (h.CLUSTER, b"alpha"),
        (h.TENANT, b"team-a"),
        (h.TRACEPARENT, b"00-" + b"1" * 32 + b"-" + b"2" * 16 + b"-01"),
    )
    kept = _record(0, _span(os.urandom(16), error=True), headers=headers)
    lineage = _record(1, _span(os.urandom(16)), headers=((h.LINEAGE, b"1"),))
    delivered = transform.handle([kept, lineage])
    assert [(o.key, o.headers, o.value) for o in delivered.outputs] == [
        (kept.key, kept.headers, kept.value),
        (lineage.key, lineage.headers, lineage.value),
    ]


@settings(max_examples=50, deadline=None)
@given(
    traces=st.lists(st.tuples(TRACE_ID, st.integers(1, 3), st.booleans()), min_size=1, max_size=6),
    ratio=RATIO,
)
def test_a_record_keeps_exactly_the_spans_of_the_traces_decided_kept(
    traces: list[tuple[bytes, int, bool]], ratio: float
) -> None:
    transform, _ = _transform(ratio)
    spans = [_span(t, error=e) for t, n, e in traces for _ in range(n)]
    record = _record(0, *spans)
    delivered = transform.handle([record])
    sampler = _sampler(ratio)
    errors = {t for t, _, e in traces if e}
    expected = [s.span_id for s in spans if sampler.sampled(s.trace_id) or s.trace_id in errors]
    got = [
        s.span_id
        for o in delivered.outputs
        for rs in ExportTraceServiceRequest.FromString(o.value).resource_spans
        for ss in rs.scope_spans
        for s in ss.spans
    ]
    assert got == expected
    assert len(delivered.outputs) == (1 if expected else 0)


def test_keep_spans_removes_empty_scopes_and_resources() -> None:
    a, b = os.urandom(16), os.urandom(16)
    request = ExportTraceServiceRequest(
        resource_spans=[
            ResourceSpans(scope_spans=[ScopeSpans(spans=[_span(a)]), ScopeSpans(spans=[_span(b)])]),
            ResourceSpans(scope_spans=[ScopeSpans(spans=[_span(b)])]),
        ]
    )
    cut = keep_spans(request, {a})
    assert span_count(cut) == 1
    assert len(cut.resource_spans) == 1 and len(cut.resource_spans[0].scope_spans) == 1
