"""Records handed back in a rebalance are fetched again: at once when their partition
is still assigned, else when the rebalance assigns it back; never after it went to
another member (that one starts at the committed offset). Driven through ``run()``
with an in-memory consumer; the real rebalance runs in the integration tests."""

from __future__ import annotations

from collections.abc import Callable

from kafka import TopicPartition

from ferryman.telemetry import Registry
from tests.unit.workers.fakes import FakeClock, FakeConsumer, FakeKafka, FakeProducer
from workers.records import Batch, Delivered
from workers.runtime import Runtime
from workers.settings import WorkerSettings

TP = TopicPartition("t", 0)


class _Backend:
    """Refuses everything until told to take it; records what it took."""

    def __init__(self) -> None:
        self.up = False
        self.calls = 0
        self.taken: list[int] = []
        self.during_call: Callable[[], None] | None = None

    def handle(self, batch: Batch) -> Delivered:
        self.calls += 1
        if self.during_call is not None:
            hook, self.during_call = self.during_call, None
            hook()
        if not self.up:
            return Delivered(retry=list(batch))
        self.taken.extend(r.offset for r in batch)
        return Delivered()

    def close(self) -> None:
        pass


def _scene() -> tuple[Runtime, FakeConsumer, _Backend, FakeKafka]:
    clock = FakeClock()
    kafka = FakeKafka({TP: [b"x"] * 3})
    consumer = FakeConsumer(kafka, clock)
    backend = _Backend()
    settings = WorkerSettings(
        function="loki",
        kafka={"input_topic": "t"},
        retry={"initial_backoff_s": 0.2, "max_backoff_s": 1.0},
    )
    runtime = Runtime(
        settings,
        backend,
        Registry(),
        clock=clock,
        consumer=lambda _: consumer,
        producer=lambda _: FakeProducer(),
    )

    def stop_when_done(c: FakeConsumer) -> None:
        if kafka.committed.get(TP) == 3 or c.polls > 2000:
            runtime.stop()

    consumer.on_poll(stop_when_done)
    return runtime, consumer, backend, kafka


def test_still_assigned_rewinds_at_once() -> None:
    """kafka-python 3 lists the partitions under the eager protocol until the join
    completes: the hand-back seeks then, and the completed join keeps that position."""
    runtime, consumer, backend, kafka = _scene()
    backend.during_call = lambda: consumer.begin_rebalance(listed=True)

    def complete_later(c: FakeConsumer) -> None:
        if runtime.metrics.batches.value(function="loki", outcome="handed_back") and not backend.up:
            backend.up = True
            c.complete_rebalance([TP])

    consumer.on_poll(complete_later)
    runtime.run()
    assert consumer.seeks[0] == (TP, 0)
    assert backend.taken == [0, 1, 2]
    assert kafka.committed == {TP: 3}
    assert runtime.metrics.batches.value(function="loki", outcome="handed_back") == 1


def test_assigned_back_within_the_attempt_the_batch_stays_ours() -> None:
    runtime, consumer, backend, kafka = _scene()

    def revoked_then_assigned_back() -> None:
        consumer.rebalance([TP])
        backend.up = True

    backend.during_call = revoked_then_assigned_back
    runtime.run()
    assert backend.taken == [0, 1, 2]
    assert kafka.committed == {TP: 3}
    assert runtime.metrics.batches.value(function="loki", outcome="handed_back") == 0


def test_mid_rebalance_rewinds_when_the_partition_comes_back() -> None:
    runtime, consumer, backend, kafka = _scene()
    backend.during_call = consumer.begin_rebalance  # not complete: nothing assigned yet

    def complete_later(c: FakeConsumer) -> None:
        if not c.assignment() and runtime.metrics.batches.value(
            function="loki", outcome="handed_back"
        ):
            backend.up = True
            c.complete_rebalance([TP])

    consumer.on_poll(complete_later)
    runtime.run()
    assert consumer.seeks == [(TP, 0)]  # applied when the partition came back
    assert backend.taken == [0, 1, 2]
    assert kafka.committed == {TP: 3}


def test_given_to_another_member_the_rewind_is_dropped() -> None:
    runtime, consumer, backend, kafka = _scene()
    backend.during_call = consumer.begin_rebalance

    def given_away_then_back(c: FakeConsumer) -> None:
        if not c.assignment() and runtime.metrics.batches.value(
            function="loki", outcome="handed_back"
        ):
            c.complete_rebalance([])
            kafka.committed[TP] = 2  # the other member delivered two of them
            c.rebalance([TP])  # back later: start at the committed offset
            backend.up = True

    consumer.on_poll(given_away_then_back)
    runtime.run()
    assert consumer.seeks == []
    assert backend.taken == [2]
    assert kafka.committed == {TP: 3}
