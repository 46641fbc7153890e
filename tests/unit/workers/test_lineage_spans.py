"""The span tree a worker records per consumed batch (see :mod:`workers.lineage`),
driven through ``run()`` with in-memory clients."""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence

from kafka import TopicPartition

from ferryman import headers as h
from ferryman.lineage import (
    LineageExporter,
    LineageSettings,
    Span,
    SpanContext,
    make_traceparent,
    new_context,
)
from ferryman.telemetry import Registry
from tests.unit.workers.fakes import FakeClock, FakeConsumer, FakeKafka, FakeProducer
from workers.errors import Permanent
from workers.lineage import MAX_STEPS, BatchTrace
from workers.records import Batch, Delivered, Record
from workers.runtime import Runtime
from workers.settings import WorkerSettings

TP0 = TopicPartition("t", 0)


class _Recording(LineageExporter):
    """Keeps the recorded spans instead of producing them."""

    def __init__(self, registry: Registry, ratio: float) -> None:
        super().__init__(
            LineageSettings(sample_ratio=ratio),
            bootstrap_servers="127.0.0.1:1",
            registry=registry,
            resource={"service.name": "ferryman-worker-prw"},
        )
        self.recorded: list[Span] = []

    def record(self, spans: Sequence[Span]) -> None:
        self.recorded.extend(spans)


class _Handler:
    def __init__(self, handle: Callable[[Batch], Delivered]) -> None:
        self._handle = handle

    def start(self) -> None:
        pass

    def handle(self, batch: Batch) -> Delivered:
        return self._handle(batch)

    def close(self) -> None:
        pass


def _run(
    values: list[bytes],
    headers: dict[int, list[tuple[str, bytes]]],
    handle: Callable[[Batch], Delivered],
    ratio: float = 0.0,
) -> tuple[list[Span], FakeProducer]:
    kafka = FakeKafka({TP0: values}, {(TP0, o): hs for o, hs in headers.items()})
    consumer = FakeConsumer(kafka, FakeClock())
    producer = FakeProducer()
    registry = Registry()
    exporter = _Recording(registry, ratio)
    runtime = Runtime(
        WorkerSettings(function="prw", kafka={"input_topic": "t"}, batch={"max_records": 10}),
        _Handler(handle),
        registry,
        clock=consumer.clock,
        jitter=lambda: 0.5,
        consumer=lambda _: consumer,
        producer=lambda _: producer,
        lineage=exporter,
    )
    consumer.on_poll(lambda c: runtime.stop() if kafka.committed_total() == len(values) else None)
    runtime.run()
    return exporter.recorded, producer


def _tp(context: SpanContext) -> list[tuple[str, bytes]]:
    return [(h.TRACEPARENT, make_traceparent(context))]


def _trees(spans: list[Span]) -> dict[bytes, list[Span]]:
    out: dict[bytes, list[Span]] = {}
    for span in spans:
        out.setdefault(span.trace_id, []).append(span)
    return out


def test_a_tree_in_the_trace_of_each_sampled_producer_batch_linked_to_it() -> None:
    first, second = new_context(0.0, force=True), new_context(0.0, force=True)
    unsampled = new_context(0.0)
    spans, _ = _run(
        [b"a", b"b", b"c"],
        {0: _tp(first), 1: _tp(unsampled), 2: _tp(second)},
        lambda batch: Delivered(),
    )
    trees = _trees(spans)
    assert set(trees) == {first.trace_id, second.trace_id}
    for context, offset in ((first, 0), (second, 2)):
        root, *children = trees[context.trace_id]
        assert root.name == "process t" and root.kind == "consumer"
        assert root.parent_span_id == b""  # a root in the producer's trace, not its child
        assert [link.context for link in root.links] == [context]  # linked instead
        assert root.attributes["messaging.batch.message_count"] == 3
        assert root.attributes["messaging.consumer.group.name"] == "ferryman-prw"
        assert root.attributes["messaging.kafka.offset"] == offset
        assert root.error is None
        assert [c.name for c in children] == ["deliver", "commit"]
        assert all(c.parent_span_id == root.span_id for c in children)
        assert children[0].attributes["ferryman.records.delivered"] == 3
        assert root.start_ns <= children[0].start_ns <= children[1].end_ns <= root.end_ns


def test_an_unsampled_batch_that_went_well_is_not_recorded() -> None:
    spans, _ = _run([b"a", b"b"], {0: _tp(new_context(0.0))}, lambda batch: Delivered())
    assert spans == []


def test_a_dead_lettered_batch_is_recorded_in_a_new_trace_linked_to_its_records() -> None:
    unsampled = new_context(0.0)

    def refuse(batch: Batch) -> Delivered:
        raise Permanent("not a remote-write message")

    spans, producer = _run([b"x", b"y"], {0: _tp(unsampled)}, refuse)
    assert len(producer.sent["ferryman.dlq"]) == 2
    (trace_id,) = _trees(spans)
    assert trace_id != unsampled.trace_id
    root, *children = spans
    assert root.error is not None and "dead-lettered" in root.error
    assert [link.context for link in root.links] == [unsampled]
    assert [c.name for c in children] == ["deliver", "dead-letter ferryman.dlq", "commit"]
    dead = children[1]
    assert dead.error == "not a remote-write message"
    assert dead.attributes["ferryman.records"] == 2


def test_retries_are_children_and_mark_the_batch() -> None:
    calls: list[int] = []

    def flaky(batch: Batch) -> Delivered:
        calls.append(len(batch))
        if len(calls) == 1:
            raise ConnectionError("backend down")
        return Delivered()

    spans, _ = _run([b"a"], {}, flaky)
    root, *children = spans
    assert [c.name for c in children] == ["deliver", "deliver", "commit"]
    assert children[0].error == "ConnectionError: backend down"
    assert children[1].error is None
    assert root.attributes["ferryman.attempts"] == 2


def test_lineage_records_are_never_traced() -> None:
    context = new_context(0.0, force=True)
    lineage: list[tuple[str, bytes]] = [(h.LINEAGE, b"1"), *_tp(context)]

    def refuse(batch: Batch) -> Delivered:
        raise Permanent("refused")

    spans, _ = _run([b"a", b"b"], {0: lineage, 1: [(h.LINEAGE, b"1")]}, refuse)
    assert spans == []


def test_batches_without_a_traceparent_are_sampled_by_the_workers_ratio() -> None:
    spans, _ = _run([b"a", b"b"], {}, lambda batch: Delivered(), ratio=1.0)
    root, *children = spans
    assert root.name == "process t" and root.links == [] and root.error is None
    assert [c.name for c in children] == ["deliver", "commit"]
    assert _run([b"a", b"b"], {}, lambda batch: Delivered(), ratio=0.0)[0] == []
    # a record with an unsampled traceparent was decided upstream: not sampled again
    unsampled = {0: _tp(new_context(0.0))}
    assert _run([b"a"], unsampled, lambda batch: Delivered(), ratio=1.0)[0] == []


def test_a_long_outage_keeps_the_first_attempts_and_the_last_step() -> None:
    exporter = _Recording(Registry(), 0.0)
    trace = BatchTrace(exporter, topic="t", group="g", function="prw", dead_letter_topic="d")
    for _ in range(150):
        trace.delivered(time.time_ns(), 1, exc=ConnectionError("down"))
    trace.delivered(time.time_ns(), 1, Delivered())
    trace.committed(time.time_ns())
    record = Record("t", 0, 7, None, b"a", tuple(_tp(new_context(0.0, force=True))))
    root, *children = trace.finish([record])
    assert len(children) == MAX_STEPS
    assert children[0].attributes["ferryman.attempt"] == 1
    assert children[-2].attributes["ferryman.attempt"] == MAX_STEPS - 1
    assert children[-1].name == "commit"
    assert root.attributes["ferryman.attempts"] == 151
    assert root.attributes["ferryman.steps.omitted"] == 152 - MAX_STEPS
    assert exporter.recorded == [root, *children]
