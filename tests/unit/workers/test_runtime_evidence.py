"""Poison is dead-lettered only on evidence; an outage never dead-letters anything.

Driven through ``run()`` with in-memory clients and small handlers that report what a
sink would: records refused on evidence (``Delivered.refused``: sent, and refused
about themselves while the backend took others of the attempt), records refused as
backpressure, and records handed back without being sent.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from kafka import TopicPartition

from ferryman.telemetry import Registry
from tests.unit.workers.fakes import FakeClock, FakeConsumer, FakeKafka, FakeProducer
from workers.records import Batch, Delivered, Record
from workers.runtime import Runtime
from workers.settings import WorkerSettings

TP0 = TopicPartition("t", 0)
DLQ = "ferryman.dlq"
BOUND = 3


def _runtime(consumer: FakeConsumer, handler: Any, producer: FakeProducer, **retry: Any) -> Runtime:
    return Runtime(
        WorkerSettings(
            function="prw",
            kafka={"input_topic": "t"},
            batch={"max_records": 10},
            retry={
                "initial_backoff_s": 0.2,
                "max_backoff_s": 2.0,
                "partial_max_attempts": BOUND,
                "partial_max_age_s": 60,
                **retry,
            },
        ),
        handler,
        Registry(),
        clock=consumer.clock,
        jitter=lambda: 0.5,
        consumer=lambda _: consumer,
        producer=lambda _: producer,
    )


def _stop_when(runtime: Runtime, consumer: FakeConsumer, done: Callable[[], bool]) -> None:
    consumer.on_poll(lambda c: runtime.stop() if done() or c.polls > 50_000 else None)


class _MidBatchOutage:
    """A one-record-per-request sink: takes the first request of its first call, then,
    until ``until``, answers every request as ``how`` says:

    * ``backpressure``: the first request of a call refused with a 503, the rest of
      the call not sent (all handed back, nothing pinned);
    * ``unreachable``: likewise, the backend unreachable;
    * ``500``: every request answered 500 (each pinned on its record), none taken.
    """

    def __init__(self, clock: FakeClock, how: str, until: float) -> None:
        self.clock = clock
        self.how = how
        self.until = until
        self.calls = 0
        self.taken: list[int] = []

    def handle(self, batch: Batch) -> Delivered:
        self.calls += 1
        if self.calls == 1:
            self.taken.append(batch[0].offset)
            rest = list(batch[1:])
        elif self.clock() >= self.until:
            self.taken.extend(r.offset for r in batch)
            return Delivered()
        else:
            rest = list(batch)
        if self.how == "500":
            return Delivered(
                retry=rest,
                retry_reason="HTTP 500: internal error",
                refused=[(r, "HTTP 500: internal error") for r in rest],
            )
        reason = (
            "HTTP 503: unavailable" if self.how == "backpressure" else "unreachable: ConnectError"
        )
        return Delivered(retry=rest, retry_reason=reason)

    def close(self) -> None:
        pass


@pytest.mark.parametrize("how", ["backpressure", "unreachable", "500"])
def test_an_outage_that_starts_mid_batch_dead_letters_nothing(how: str) -> None:
    clock = FakeClock()
    kafka = FakeKafka({TP0: [b"r"] * 8})
    consumer = FakeConsumer(kafka, clock)
    producer = FakeProducer()
    backend = _MidBatchOutage(clock, how, until=clock() + 300)  # 5 x partial_max_age_s
    runtime = _runtime(consumer, backend, producer)
    committed_early: list[bool] = []

    def newer_records(c: FakeConsumer) -> None:
        # Records keep arriving: the widening gives the refused ones company.
        if backend.calls and len(kafka.log[TP0]) < 30:
            kafka.append(TP0, b"n")
        if clock() < backend.until:
            committed_early.append(bool(kafka.committed))

    consumer.on_poll(newer_records)
    _stop_when(runtime, consumer, lambda: kafka.committed.get(TP0) == 30)
    runtime.run()
    assert backend.calls > 10 * BOUND
    assert not any(committed_early)  # held while the backend was down
    assert DLQ not in producer.sent
    assert kafka.committed == {TP0: 30}
    assert sorted(backend.taken) == list(range(30))  # each delivered once
    assert runtime.metrics.dead.value(function="prw") == 0
    assert runtime.metrics.widened.value(function="prw") >= 1


class _Poison:
    """Takes everything but offset 2, which it refuses every time, on evidence or
    (``evidence`` off) as backpressure (an index block's per-item 429)."""

    def __init__(self, evidence: bool) -> None:
        self.evidence = evidence
        self.cured = False
        self.calls = 0
        self.taken: list[int] = []

    def handle(self, batch: Batch) -> Delivered:
        self.calls += 1
        bad = [r for r in batch if r.offset == 2 and not self.cured]
        self.taken.extend(r.offset for r in batch if r not in bad)
        if not bad:
            return Delivered()
        if self.evidence:
            return Delivered(
                retry=bad,
                retry_reason="HTTP 500: too old sample",
                refused=[(r, "HTTP 500: too old sample") for r in bad],
            )
        return Delivered(retry=bad, retry_reason="HTTP 429: index read-only")

    def close(self) -> None:
        pass


def _busy(kafka: FakeKafka, backend: Any, up_to: int) -> Callable[[FakeConsumer], None]:
    """One newer record per call of the backend, until the partition holds ``up_to``."""
    seen = [0]

    def hook(c: FakeConsumer) -> None:
        if backend.calls > seen[0] and len(kafka.log[TP0]) < up_to:
            seen[0] = backend.calls
            kafka.append(TP0, b"n")

    return hook


def test_poison_refused_on_evidence_is_dead_lettered_after_the_bound() -> None:
    clock = FakeClock()
    kafka = FakeKafka({TP0: [b"r"] * 5})
    consumer = FakeConsumer(kafka, clock)
    producer = FakeProducer()
    backend = _Poison(evidence=True)
    runtime = _runtime(consumer, backend, producer, partial_max_age_s=None)
    consumer.on_poll(_busy(kafka, backend, 20))
    _stop_when(runtime, consumer, lambda: kafka.committed.get(TP0) == 20)
    runtime.run()
    assert kafka.committed == {TP0: 20}
    [(_, _, headers)] = producer.sent[DLQ]
    assert dict(headers)["ferryman.source"] == b"t/0/2"
    error = dict(headers)["ferryman.error"].decode()
    assert error.startswith("HTTP 500: too old sample")  # the sink's reason
    assert f"refused {BOUND} times while the backend took others of its batch" in error
    assert sorted(backend.taken) == [n for n in range(20) if n != 2]


def test_refusals_without_evidence_are_held_past_the_age_bound() -> None:
    """Refused as backpressure while the backend takes every record around it, for
    longer than partial_max_age_s: held; delivered once the backend takes it."""
    clock = FakeClock()
    kafka = FakeKafka({TP0: [b"r"] * 5})
    consumer = FakeConsumer(kafka, clock)
    producer = FakeProducer()
    backend = _Poison(evidence=False)
    runtime = _runtime(consumer, backend, producer)
    consumer.on_poll(_busy(kafka, backend, 40))
    held: list[bool] = []

    def cure(c: FakeConsumer) -> None:
        if clock() > 1000 + 3 * 60 and not backend.cured:
            held.append(not kafka.committed and DLQ not in producer.sent)
            backend.cured = True

    consumer.on_poll(cure)
    _stop_when(runtime, consumer, lambda: kafka.committed.get(TP0) == 40)
    runtime.run()
    assert held == [True]
    assert DLQ not in producer.sent
    assert kafka.committed == {TP0: 40}
    assert sorted(set(backend.taken)) == list(range(40))


class _Mixed:
    """One record per request, offset 2 poison: refused on evidence (a 500) while the
    backend takes the others, until ``down_from``; from then on, every request is
    answered 503 and nothing after it is sent."""

    def __init__(self, clock: FakeClock, down_from: float) -> None:
        self.clock = clock
        self.down_from = down_from
        self.calls = 0
        self.taken: list[int] = []

    def handle(self, batch: Batch) -> Delivered:
        self.calls += 1
        if self.clock() >= self.down_from:
            return Delivered(retry=list(batch), retry_reason="HTTP 503: unavailable")
        bad: list[Record] = [r for r in batch if r.offset == 2]
        self.taken.extend(r.offset for r in batch if r.offset != 2)
        return Delivered(
            retry=bad,
            retry_reason="HTTP 500: bad" if bad else "",
            refused=[(r, "HTTP 500: bad") for r in bad],
        )

    def close(self) -> None:
        pass


def test_evidence_from_before_an_outage_does_not_dead_letter_during_it() -> None:
    """The poison was refused on evidence once, then the backend went down for five
    times partial_max_age_s: the age since its first evidence passes the bound, but no
    attempt during the outage has evidence, so it waits."""
    clock = FakeClock()
    kafka = FakeKafka({TP0: [b"r"] * 5})
    consumer = FakeConsumer(kafka, clock)
    producer = FakeProducer()
    backend = _Mixed(clock, down_from=clock() + 0.1)
    runtime = _runtime(consumer, backend, producer, partial_max_attempts=None)
    consumer.on_poll(lambda c: kafka.append(TP0, b"n") if len(kafka.log[TP0]) < 10 else None)
    _stop_when(runtime, consumer, lambda: clock() > 1000 + 300)
    runtime.run()
    assert backend.calls > 20
    assert DLQ not in producer.sent
    assert kafka.committed == {}
