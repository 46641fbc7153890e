"""A batch whose records are refused past the bound is widened to tell poison from an
outage.

A poison record alone in its batch (a quiet topic) looked like an outage and held its
partition for ever. Driven through ``run()`` with in-memory clients: the poison is
dead-lettered once the backend took newer records of its partition in ``BOUND``
attempts that refused it on evidence, a refusal without evidence (backpressure) is
held however many newer records are taken, an outage dead-letters nothing and holds at
most ``batch.max_records`` records, and a rebalance during the widening hands the
widened batch back whole.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from kafka import TopicPartition

from ferryman.telemetry import Registry
from tests.unit.workers.fakes import FakeClock, FakeConsumer, FakeKafka, FakeMessage, FakeProducer
from workers.errors import Throttled
from workers.records import Batch, Delivered, Record
from workers.retry_lane import LaneMessage
from workers.runtime import Runtime
from workers.settings import BatchSettings, WorkerSettings
from workers.widening import Widening

TP0 = TopicPartition("t", 0)
TP1 = TopicPartition("t", 1)
DLQ = "ferryman.dlq"
BOUND = 3


class _Backend:
    """Refuses ``b"poison"`` for now every time (on evidence, unless ``evidence`` is
    off) and, while ``down``, everything (record by record without evidence, or as a
    whole with ``how``); takes the rest."""

    def __init__(self, how: str = "refused", evidence: bool = True) -> None:
        self.how = how
        self.evidence = evidence
        self.cured = False
        self.down = False
        self.calls = 0
        self.sizes: list[int] = []
        self.sizes_down: list[int] = []
        self.taken: list[tuple[int, int]] = []

    def handle(self, batch: Batch) -> Delivered:
        self.calls += 1
        self.sizes.append(len(batch))
        if self.down:
            self.sizes_down.append(len(batch))
        if self.down and self.how == "throttled":
            raise Throttled("HTTP 429", 1.0)
        if self.down and self.how == "unreachable":
            raise httpx.ConnectError("connection refused")
        refused = [r for r in batch if self.down or (r.value == b"poison" and not self.cured)]
        self.taken.extend((r.partition, r.offset) for r in batch if r not in refused)
        if self.down:
            return Delivered(retry=refused, retry_reason="HTTP 503: unavailable")
        reason = "HTTP 500: out of bounds" if self.evidence else "HTTP 429: index read-only"
        return Delivered(
            retry=refused,
            retry_reason=reason if refused else "",
            refused=[(r, reason) for r in refused] if self.evidence else (),
        )

    def close(self) -> None:
        pass


def _runtime(
    consumer: FakeConsumer, backend: Any, producer: FakeProducer, lane: Any = None, **settings: Any
) -> Runtime:
    return Runtime(
        WorkerSettings(
            function="es",
            kafka={"input_topic": "t"},
            retry={
                "initial_backoff_s": 0.2,
                "max_backoff_s": 2.0,
                "partial_max_attempts": BOUND,
                **settings.pop("retry", {}),
            },
            **settings,
        ),
        backend,
        Registry(),
        clock=consumer.clock,
        lane=lane,
        jitter=lambda: 0.5,
        consumer=lambda _: consumer,
        producer=lambda _: producer,
    )


def _stop_when(runtime: Runtime, consumer: FakeConsumer, done: Callable[[], bool]) -> None:
    consumer.on_poll(lambda c: runtime.stop() if done() or c.polls > 20_000 else None)


def _widened(runtime: Runtime) -> float:
    return runtime.metrics.widened.value(function="es")


def _newer_records(
    kafka: FakeKafka, backend: _Backend, after: int, up_to: int, tp: TopicPartition = TP0
) -> Callable[[FakeConsumer], None]:
    """A poll hook: from call ``after`` of the backend on, one newer record per call,
    until ``tp`` holds ``up_to`` records."""
    seen = [0]

    def hook(c: FakeConsumer) -> None:
        if backend.calls >= after and backend.calls > seen[0] and len(kafka.log[tp]) < up_to:
            seen[0] = backend.calls
            kafka.append(tp, b"g")

    return hook


def test_a_lone_poison_record_is_dead_lettered_once_newer_records_are_taken() -> None:
    clock = FakeClock()
    kafka = FakeKafka({TP0: [b"poison"]})
    consumer = FakeConsumer(kafka, clock)
    producer = FakeProducer()
    backend = _Backend()
    runtime = _runtime(consumer, backend, producer)
    held: list[bool] = []

    def past_the_bound(c: FakeConsumer) -> None:
        if backend.calls == 2 * BOUND and not held:
            # Past the bound and alone: nothing dead-lettered, nothing committed yet.
            held.append(not kafka.committed and DLQ not in producer.sent)

    consumer.on_poll(past_the_bound)
    consumer.on_poll(_newer_records(kafka, backend, 2 * BOUND, 1 + BOUND))
    _stop_when(runtime, consumer, lambda: kafka.committed.get(TP0) == 1 + BOUND)
    runtime.run()
    assert held == [True]
    assert kafka.committed == {TP0: 1 + BOUND}
    # The widened batch, committed as a whole once the poison was refused on evidence
    # in BOUND attempts that each took a newer record.
    assert consumer.commits == [{TP0: 1 + BOUND}]
    assert sorted(backend.taken) == [(0, n) for n in range(1, 1 + BOUND)]
    [(_, value, headers)] = producer.sent[DLQ]
    assert value == b"poison"
    error = dict(headers)["ferryman.error"].decode()
    assert error.startswith("HTTP 500: out of bounds")
    assert f"refused {BOUND} times while the backend took others of its batch" in error
    assert dict(headers)["ferryman.source"] == b"t/0/0"
    assert _widened(runtime) == BOUND
    assert runtime.metrics.received.value(function="es") == 1 + BOUND
    assert runtime.metrics.sent.value(function="es") == BOUND
    assert runtime.metrics.dead.value(function="es") == 1
    assert runtime.metrics.batches.value(function="es", outcome="dead_lettered") == 1


def test_a_lone_record_refused_without_evidence_is_held_while_newer_ones_are_taken() -> None:
    """Refused with backpressure (an index block's per-item 429) while the records
    behind it are taken: held past both bounds, delivered once the backend takes it."""
    clock = FakeClock()
    kafka = FakeKafka({TP0: [b"poison"]})
    consumer = FakeConsumer(kafka, clock)
    producer = FakeProducer()
    backend = _Backend(evidence=False)
    runtime = _runtime(
        consumer, backend, producer, batch={"max_records": 5}, retry={"partial_max_age_s": 60}
    )
    consumer.on_poll(_newer_records(kafka, backend, 2 * BOUND, 30))

    def unblocked(c: FakeConsumer) -> None:
        if clock() > 1000 + 120 and not backend.cured:
            assert kafka.committed == {} and DLQ not in producer.sent
            backend.cured = True  # the block is lifted

    consumer.on_poll(unblocked)
    _stop_when(runtime, consumer, lambda: kafka.committed.get(TP0) == 30)
    runtime.run()
    assert clock() > 1000 + 60  # past both bounds
    assert DLQ not in producer.sent
    assert kafka.committed == {TP0: 30}
    assert (0, 0) in backend.taken
    assert _widened(runtime) >= 1


def test_a_batch_of_poison_records_only_is_told_from_an_outage() -> None:
    clock = FakeClock()
    kafka = FakeKafka({TP0: [b"poison"] * 3})
    consumer = FakeConsumer(kafka, clock)
    producer = FakeProducer()
    backend = _Backend()
    runtime = _runtime(consumer, backend, producer, batch={"max_records": 3})
    consumer.on_poll(_newer_records(kafka, backend, 2 * BOUND, 3 + BOUND))
    _stop_when(runtime, consumer, lambda: kafka.committed.get(TP0) == 3 + BOUND)
    runtime.run()
    assert kafka.committed == {TP0: 3 + BOUND}
    assert sorted(backend.taken) == [(0, n) for n in range(3, 3 + BOUND)]
    assert len(producer.sent[DLQ]) == 3
    # Full already: one record past the cap, again after each attempt that took one.
    assert max(backend.sizes) == 4


def test_a_lone_poison_record_at_the_end_of_its_partition_is_held() -> None:
    clock = FakeClock()
    kafka = FakeKafka({TP0: [b"poison"]})
    consumer = FakeConsumer(kafka, clock)
    producer = FakeProducer()
    backend = _Backend()
    runtime = _runtime(consumer, backend, producer, retry={"partial_max_age_s": 60})
    _stop_when(runtime, consumer, lambda: backend.calls >= 60)
    runtime.run()
    assert clock() > 1000 + 60  # past both bounds
    assert kafka.committed == {}
    assert DLQ not in producer.sent
    assert _widened(runtime) == 0
    assert set(backend.sizes) == {1}


@pytest.mark.parametrize("how", ["refused", "throttled", "unreachable"])
def test_an_outage_dead_letters_nothing_and_holds_a_bounded_batch(how: str) -> None:
    clock = FakeClock()
    kafka = FakeKafka({TP0: [b"a", b"b"]})
    consumer = FakeConsumer(kafka, clock)
    producer = FakeProducer()
    backend = _Backend(how)
    backend.down = True
    runtime = _runtime(consumer, backend, producer, batch={"max_records": 5})
    until = clock() + 300
    committed_early: list[dict[TopicPartition, int]] = []

    def keep_coming(c: FakeConsumer) -> None:
        if backend.calls and len(kafka.log[TP0]) < 40:
            kafka.append(TP0, b"x")
        if backend.down:
            committed_early.append(dict(kafka.committed))
            backend.down = clock() < until

    consumer.on_poll(keep_coming)
    _stop_when(runtime, consumer, lambda: kafka.committed.get(TP0) == 40)
    runtime.run()
    assert backend.calls > 20
    assert all(not c for c in committed_early)
    assert DLQ not in producer.sent
    assert kafka.committed == {TP0: 40}
    assert sorted(backend.taken) == [(0, n) for n in range(40)]  # each delivered once
    assert backend.sizes[0] == 2 and max(backend.sizes) == 5
    if how == "refused":  # refused record by record: widened past the bound, to the cap
        assert backend.sizes_down[:BOUND] == [2] * BOUND
        assert max(backend.sizes_down) == 5 and _widened(runtime) >= 1
    else:  # pushed back as a whole: never widened
        assert set(backend.sizes_down) == {2} and _widened(runtime) == 0


def test_a_rebalance_during_the_widening_hands_the_widened_batch_back() -> None:
    clock = FakeClock()
    kafka = FakeKafka({TP0: [b"poison"]})
    consumer = FakeConsumer(kafka, clock)
    producer = FakeProducer()
    backend = _Backend()
    runtime = _runtime(consumer, backend, producer)
    phase = ["alone"]

    def revoke_while_widening(c: FakeConsumer) -> None:
        if phase[0] == "alone" and backend.calls == 2 * BOUND:
            kafka.append(TP0, b"g1", b"g2")
            phase[0] = "more"
        elif phase[0] == "more" and c.position(TP0) == 3:
            # The sleep fetched the good records into the batch: now the partition goes.
            c.begin_rebalance()
            phase[0] = "revoked"
        elif phase[0] == "revoked" and runtime.metrics.batches.value(
            function="es", outcome="handed_back"
        ):
            assert kafka.committed == {} and DLQ not in producer.sent
            c.complete_rebalance([TP0])  # back to us, the position kept at 3
            phase[0] = "back"
            c.on_poll(_newer_records(kafka, backend, backend.calls, 20))

    consumer.on_poll(revoke_while_widening)
    _stop_when(runtime, consumer, lambda: kafka.committed.get(TP0) == 20)
    runtime.run()
    assert phase[0] == "back"
    assert (TP0, 0) in consumer.seeks  # the rewind: the next batch starts at the poison
    assert consumer.commits[0][TP0] > 3  # the widened batch, poison and all
    assert kafka.committed == {TP0: 20}
    # g1 and g2 were taken before the rebalance and again after it (a replay).
    assert sorted(set(backend.taken)) == [(0, n) for n in range(1, 20)]
    [(_, value, _)] = producer.sent[DLQ]
    assert value == b"poison"


def test_only_the_stuck_batchs_partitions_are_fetched_while_widening() -> None:
    """Another partition's records wait (paused) as before; only the stuck batch's
    partition is fetched from."""
    clock = FakeClock()
    kafka = FakeKafka({TP0: [b"poison"], TP1: []})
    consumer = FakeConsumer(kafka, clock)
    producer = FakeProducer()
    backend = _Backend()
    runtime = _runtime(consumer, backend, producer)

    def more(c: FakeConsumer) -> None:
        if backend.calls == 2 * BOUND and len(kafka.log[TP1]) == 0:
            kafka.append(TP1, b"o1", b"o2")

    consumer.on_poll(more)
    consumer.on_poll(_newer_records(kafka, backend, 2 * BOUND, 1 + BOUND))
    _stop_when(runtime, consumer, lambda: kafka.committed == {TP0: 1 + BOUND, TP1: 2})
    runtime.run()
    assert kafka.committed == {TP0: 1 + BOUND, TP1: 2}
    assert sorted(backend.taken) == [*((0, n) for n in range(1, 1 + BOUND)), (1, 0), (1, 1)]
    assert max(backend.sizes) == 2  # the poison and a newer one; TP1's came on their own


class _Lane:
    def __init__(self) -> None:
        self.sent: list[LaneMessage] = []

    def held(self) -> int:
        return len(self.sent)

    def send(self, message: LaneMessage, delay_s: float) -> None:
        self.sent.append(message)

    def describe(self) -> str:
        return "memory"

    def close(self) -> None:
        pass


def test_with_a_lane_a_lone_poison_record_goes_to_the_lane() -> None:
    clock = FakeClock()
    kafka = FakeKafka({TP0: [b"poison"]})
    consumer = FakeConsumer(kafka, clock)
    producer = FakeProducer()
    backend = _Backend()
    lane = _Lane()
    runtime = _runtime(
        consumer,
        backend,
        producer,
        lane=lane,
        retry_lane={
            "redis_url": "redis://127.0.0.1:1/0",
            "budget_attempts": BOUND,
            "budget_s": None,
        },
    )
    consumer.on_poll(
        lambda c: (
            kafka.append(TP0, b"g")
            if backend.calls == 2 * BOUND and len(kafka.log[TP0]) == 1
            else None
        )
    )
    _stop_when(runtime, consumer, lambda: kafka.committed.get(TP0) == 2)
    runtime.run()
    assert kafka.committed == {TP0: 2}
    assert [m.record.offset for m in lane.sent] == [0]
    assert DLQ not in producer.sent


# ---- the widening itself ---------------------------------------------------------------------


def _record(offset: int, value: bytes = b"v") -> Record:
    return Record("t", 0, offset, None, value)


def _polled(*offsets: int, value: bytes = b"v") -> dict[TopicPartition, list[FakeMessage]]:
    return {TP0: [FakeMessage("t", 0, n, None, value) for n in offsets]}


def test_widening_takes_newer_records_up_to_the_caps_and_puts_back_the_rest() -> None:
    batch = [_record(0), _record(1)]
    widening = Widening(batch, BatchSettings(max_records=4, max_bytes=10**6))
    assert widening.partitions() == {TP0} and widening.room() == 2
    rest = widening.absorb(_polled(1, 2, 3, 4), {TP0})  # 1 is in the batch already
    assert [r.offset for r in batch] == [0, 1, 2, 3]
    assert [m.offset for m in rest[TP0]] == [4]
    assert [r.offset for r in widening.take_added()] == [2, 3]
    assert widening.take_added() == []
    assert widening.room() == 0 and widening.partitions() == set()


def test_widening_keeps_to_the_byte_cap_after_its_first_record() -> None:
    batch = [_record(0, b"x" * 10)]
    widening = Widening(batch, BatchSettings(max_records=100, max_bytes=10))
    rest = widening.absorb(_polled(1, 2, value=b"y" * 10), {TP0})
    assert [r.offset for r in batch] == [0, 1]  # full already: one record all the same
    assert [m.offset for m in rest[TP0]] == [2]
    assert widening.room() == 0


def test_widening_puts_back_partitions_it_does_not_fetch() -> None:
    batch = [_record(0)]
    widening = Widening(batch, BatchSettings())
    polled = {**_polled(1), TP1: [FakeMessage("t", 1, 0, None, b"o")]}
    rest = widening.absorb(polled, set())  # TP0 revoked meanwhile
    assert set(rest) == {TP0, TP1} and len(batch) == 1
