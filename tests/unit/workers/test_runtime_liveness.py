"""Ways a partition used to stop moving, driven through ``run()`` with in-memory
clients:

* a rebalance during the backoff sleep that kafka-python 3.0.12 left unfinished (the
  partition listed, never fetched again); one that gave a partition back still
  paused (the client keeps its state, paused flag included); a poll during the sleep
  that returned records nobody handled; a commit refused after a rebalance;
* a record the backend refuses for now every time, while it takes the records around
  it, was retried in process for ever.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from kafka import TopicPartition

from ferryman.telemetry import Registry
from tests.unit.workers.fakes import FakeClock, FakeConsumer, FakeKafka, FakeProducer
from workers.errors import Throttled
from workers.rebalance import Membership
from workers.records import Batch, Delivered, Record
from workers.retry_lane import LaneMessage, LaneUnavailable
from workers.runtime import Runtime
from workers.settings import WorkerSettings

TP0 = TopicPartition("t", 0)
TP1 = TopicPartition("t", 1)


class _Backend:
    """Takes what ``accepts`` allows; the rest is refused for now (``retry``), on
    evidence (``refused``) unless ``evidence`` is off."""

    def __init__(
        self, accepts: Callable[[Record], bool], reason: str = "", evidence: bool = True
    ) -> None:
        self.accepts = accepts
        self.reason = reason
        self.evidence = evidence
        self.taken: list[tuple[int, int]] = []
        self.calls = 0

    def handle(self, batch: Batch) -> Delivered:
        self.calls += 1
        refused = [r for r in batch if not self.accepts(r)]
        self.taken.extend((r.partition, r.offset) for r in batch if self.accepts(r))
        return Delivered(
            retry=refused,
            retry_reason=self.reason if refused else "",
            refused=[(r, self.reason) for r in refused] if self.evidence else (),
        )

    def close(self) -> None:
        pass


def _runtime(
    consumer: FakeConsumer,
    handler: Any,
    producer: FakeProducer | None = None,
    lane: Any = None,
    **settings: Any,
) -> Runtime:
    return Runtime(
        WorkerSettings(
            function="prw",
            kafka={"input_topic": "t"},
            retry={"initial_backoff_s": 0.2, "max_backoff_s": 2.0, **settings.pop("retry", {})},
            **settings,
        ),
        handler,
        Registry(),
        clock=consumer.clock,
        lane=lane,
        jitter=lambda: 0.5,
        consumer=lambda _: consumer,
        producer=lambda _: producer or FakeProducer(),
    )


def _stop_when(runtime: Runtime, consumer: FakeConsumer, done: Callable[[], bool]) -> None:
    consumer.on_poll(lambda c: runtime.stop() if done() or c.polls > 20_000 else None)


# ---- defect 1: nothing fetched after a rebalance under load -------------------------------


def test_a_partition_assigned_back_still_paused_is_fetched_again() -> None:
    """The rebalance starts during the backoff sleep (the partition paused) and ends
    after it: the client gives the partition back with its paused flag set."""
    clock = FakeClock()
    kafka = FakeKafka({TP0: [b"x"] * 3})
    consumer = FakeConsumer(kafka, clock)
    up = [False]
    backend = _Backend(lambda r: up[0])
    runtime = _runtime(consumer, backend)
    phase = ["refusing"]

    def rebalance(c: FakeConsumer) -> None:
        if phase[0] == "refusing" and c.paused():
            c.begin_rebalance()  # while sleeping: the partition paused, then revoked
            phase[0] = "joining"
        elif phase[0] == "joining" and runtime.metrics.batches.value(
            function="prw", outcome="handed_back"
        ):
            c.complete_rebalance([TP0])  # back to us, still paused
            assert c.paused() == {TP0}
            kafka.append(TP0, b"y", b"y")  # and more keeps coming
            up[0] = True
            phase[0] = "done"

    consumer.on_poll(rebalance)
    _stop_when(runtime, consumer, lambda: kafka.committed.get(TP0) == 5)
    runtime.run()
    assert phase[0] == "done"
    assert kafka.committed == {TP0: 5}
    assert sorted(backend.taken) == [(0, n) for n in range(5)]
    assert consumer.polls < 20_000


def test_partitions_assigned_during_the_sleep_are_paused_and_lose_nothing() -> None:
    """A rebalance inside a sleep's poll hands over a partition and fetches from it at
    once: those records are put back and delivered later, not dropped."""
    clock = FakeClock()
    kafka = FakeKafka({TP0: [b"x"] * 2, TP1: [b"y"] * 4})
    consumer = FakeConsumer(kafka, clock, assigned=[TP0])
    up = [False]
    backend = _Backend(lambda r: up[0])
    runtime = _runtime(consumer, backend)

    def hand_over(c: FakeConsumer) -> None:
        if not up[0] and c.paused():
            c.rebalance([TP0, TP1])  # TP1 is new to us: fetched within this very poll
            up[0] = True

    consumer.on_poll(hand_over)
    _stop_when(runtime, consumer, lambda: kafka.committed == {TP0: 2, TP1: 4})
    runtime.run()
    assert kafka.committed == {TP0: 2, TP1: 4}
    assert sorted(backend.taken) == [(0, 0), (0, 1), (1, 0), (1, 1), (1, 2), (1, 3)]


def test_the_main_loop_never_polls_with_a_paused_partition() -> None:
    clock = FakeClock()
    kafka = FakeKafka({TP0: [b"x"] * 2})
    consumer = FakeConsumer(kafka, clock)
    refusals = [3]

    def flaky(record: Record) -> bool:
        refusals[0] -= 1
        return refusals[0] < 0

    runtime = _runtime(consumer, _Backend(flaky))
    paused_at_main_polls: list[set[TopicPartition]] = []
    real_poll = consumer.poll

    def poll(timeout_ms: int = 0, max_records: int | None = None) -> Any:
        if max_records is not None:  # the main loop's polls pass max_records
            paused_at_main_polls.append(consumer.paused())
        return real_poll(timeout_ms, max_records)

    consumer.poll = poll  # type: ignore[method-assign]
    _stop_when(runtime, consumer, lambda: kafka.committed.get(TP0) == 2)
    runtime.run()
    assert kafka.committed == {TP0: 2}
    assert paused_at_main_polls and all(not p for p in paused_at_main_polls)


def _stalled_scene() -> tuple[Runtime, FakeConsumer, _Backend, FakeKafka]:
    """The rebalance starts during the backoff sleep and kafka-python leaves it
    unfinished: the partition listed, never fetched from again."""
    clock = FakeClock()
    kafka = FakeKafka({TP0: [b"x"] * 3})
    consumer = FakeConsumer(kafka, clock)
    up = [False]
    backend = _Backend(lambda r: up[0])
    runtime = _runtime(consumer, backend)

    def stall(c: FakeConsumer) -> None:
        if not up[0] and c.paused():
            c.begin_rebalance(stalled=[TP0])
            kafka.append(TP0, b"y", b"y")
            up[0] = True

    consumer.on_poll(stall)
    _stop_when(runtime, consumer, lambda: kafka.committed.get(TP0) == 5)
    return runtime, consumer, backend, kafka


def test_a_rebalance_the_client_left_unfinished_is_finished() -> None:
    runtime, consumer, backend, kafka = _stalled_scene()
    runtime.run()
    assert kafka.committed == {TP0: 5}
    assert sorted(set(backend.taken)) == [(0, n) for n in range(5)]
    assert (
        runtime.metrics.errors.value(
            function="prw", error_type="rebalance_unfinished", stage="consume"
        )
        == 1
    )
    assert consumer.polls < 1000


def test_without_the_clients_internals_the_watchdog_rejoins(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(Membership, "after_poll", lambda self: None)
    runtime, _, backend, kafka = _stalled_scene()
    runtime.run()
    assert kafka.committed == {TP0: 5}
    assert sorted(set(backend.taken)) == [(0, n) for n in range(5)]
    assert (
        runtime.metrics.errors.value(function="prw", error_type="unsettled", stage="consume") == 1
    )


def test_a_commit_the_broker_refuses_after_a_rebalance_does_not_stop_the_worker() -> None:
    clock = FakeClock()
    kafka = FakeKafka({TP0: [b"x"] * 3})
    consumer = FakeConsumer(kafka, clock, refuse_commits=1)
    backend = _Backend(lambda r: True)
    runtime = _runtime(consumer, backend, batch={"max_records": 3})

    def more(c: FakeConsumer) -> None:
        if c.refuse_commits == 0 and len(kafka.log[TP0]) == 3:
            kafka.append(TP0, b"y", b"y", b"y")

    consumer.on_poll(more)
    _stop_when(runtime, consumer, lambda: kafka.committed.get(TP0) == 6)
    runtime.run()
    assert kafka.committed == {TP0: 6}  # the next batch's commit covers the first
    assert sorted(backend.taken) == [(0, n) for n in range(6)]  # each delivered once
    assert (
        runtime.metrics.errors.value(function="prw", error_type="CommitFailedError", stage="commit")
        == 1
    )


# ---- defect 2: a poison record holds its partition for ever -------------------------------

POISON = 2
MORE = 40  # records in the partition once newer ones stopped coming


def _poison_scene(**settings: Any) -> tuple[Runtime, FakeKafka, FakeProducer, _Backend]:
    """Five records, the third refused on evidence every time; newer records keep
    coming (one per attempt) until the partition holds ``MORE``."""
    clock = FakeClock()
    kafka = FakeKafka({TP0: [b"m%d" % n for n in range(5)]})
    consumer = FakeConsumer(kafka, clock)
    producer = FakeProducer()
    backend = _Backend(
        lambda r: r.offset != POISON,
        reason=settings.pop("reason", "HTTP 500: duplicate label name"),
    )
    runtime = _runtime(consumer, backend, producer, **settings)
    seen = [0]

    def newer_records(c: FakeConsumer) -> None:
        if backend.calls > seen[0] and len(kafka.log[TP0]) < MORE:
            seen[0] = backend.calls
            kafka.append(TP0, b"n")

    consumer.on_poll(newer_records)
    _stop_when(runtime, consumer, lambda: kafka.committed.get(TP0) == MORE)
    runtime.run()
    return runtime, kafka, producer, backend


def test_a_record_refused_while_others_are_taken_is_dead_lettered_after_the_attempts() -> None:
    """Retried alone after the first attempt, the poison has nothing to be compared
    with until its attempts pass the bound: then its batch is widened with the newer
    records, and each attempt in which the backend takes some of them while refusing
    the poison on evidence counts, up to the bound."""
    runtime, kafka, producer, backend = _poison_scene()
    assert kafka.committed == {TP0: MORE}
    assert sorted(backend.taken) == [(0, n) for n in range(MORE) if n != POISON]
    [(_key, value, headers)] = producer.sent["ferryman.dlq"]
    assert value == b"m2"
    error = dict(headers)["ferryman.error"].decode()
    assert error.startswith("HTTP 500: duplicate label name")
    assert "refused 10 times while the backend took others of its batch" in error
    assert dict(headers)["ferryman.source"] == b"t/0/2"
    # 1 attempt with the batch, 9 alone (to the attempt bound), 9 more widened.
    assert backend.calls >= 19
    assert runtime.metrics.dead.value(function="prw") == 1
    assert runtime.metrics.sent.value(function="prw") == MORE - 1
    assert runtime.metrics.batches.value(function="prw", outcome="dead_lettered") == 1


def test_a_generic_reason_when_the_sink_gave_none() -> None:
    _, _, producer, _ = _poison_scene(reason="", retry={"partial_max_attempts": 3})
    [(_, _, headers)] = producer.sent["ferryman.dlq"]
    assert dict(headers)["ferryman.error"].decode().startswith("refused for now 3 times")


def test_the_age_bound_dead_letters_a_record_refused_for_long() -> None:
    _, kafka, producer, backend = _poison_scene(
        retry={"partial_max_attempts": None, "partial_max_age_s": 20, "max_backoff_s": 2.0}
    )
    assert kafka.committed == {TP0: MORE}
    assert len(producer.sent["ferryman.dlq"]) == 1
    assert backend.calls > 10  # attempts alone did not end it: 20 s of 1 s waits did


class _Down:
    """Nothing is delivered: refused as a whole, throttled or unreachable."""

    def __init__(self, clock: FakeClock, how: str, until: float) -> None:
        self.clock = clock
        self.how = how
        self.until = until
        self.calls = 0

    def handle(self, batch: Batch) -> Delivered:
        self.calls += 1
        if self.clock() < self.until:
            if self.how == "refused":
                return Delivered(retry=list(batch), retry_reason="HTTP 503")
            if self.how == "throttled":
                raise Throttled("HTTP 429", 1.0)
            raise httpx.ConnectError("connection refused")
        return Delivered()

    def close(self) -> None:
        pass


@pytest.mark.parametrize("how", ["refused", "throttled", "unreachable"])
def test_a_batch_of_which_nothing_is_delivered_holds_its_partition_past_the_bounds(
    how: str,
) -> None:
    clock = FakeClock()
    kafka = FakeKafka({TP0: [b"x"] * 4})
    consumer = FakeConsumer(kafka, clock)
    producer = FakeProducer()
    backend = _Down(clock, how, until=clock() + 900)  # past partial_max_age_s (600)
    runtime = _runtime(
        consumer, backend, producer, retry={"partial_max_attempts": 2, "partial_max_age_s": 600}
    )
    committed_early: list[dict[TopicPartition, int]] = []
    consumer.on_poll(
        lambda c: committed_early.append(dict(kafka.committed)) if clock() < backend.until else None
    )
    _stop_when(runtime, consumer, lambda: kafka.committed.get(TP0) == 4)
    runtime.run()
    assert backend.calls > 20
    assert all(not c for c in committed_early)  # held while the backend was down
    assert kafka.committed == {TP0: 4}
    assert "ferryman.dlq" not in producer.sent


class _Lane:
    """The runtime's side of a retry lane, in memory; ``up`` False is Redis away."""

    def __init__(self, up: bool = True) -> None:
        self.up = up
        self.sent: list[LaneMessage] = []

    def held(self) -> int:
        if not self.up:
            raise LaneUnavailable("Redis: connection refused")
        return len(self.sent)

    def send(self, message: LaneMessage, delay_s: float) -> None:
        if not self.up:
            raise LaneUnavailable("Redis: connection refused")
        self.sent.append(message)

    def describe(self) -> str:
        return "memory"

    def close(self) -> None:
        pass


LANE = {"redis_url": "redis://127.0.0.1:1/0", "budget_attempts": 3, "budget_s": None}


def test_with_a_lane_the_refused_record_goes_to_the_lane_not_the_dead_letters() -> None:
    lane = _Lane()
    _, kafka, producer, _backend = _poison_scene(
        lane=lane, retry_lane=LANE, retry={"partial_max_attempts": 2}
    )
    assert kafka.committed == {TP0: MORE}
    assert [m.record.offset for m in lane.sent] == [POISON]
    assert lane.sent[0].last_error == "HTTP 500: duplicate label name"
    assert "ferryman.dlq" not in producer.sent


def test_with_the_lane_away_the_refused_record_waits_in_process() -> None:
    clock = FakeClock()
    kafka = FakeKafka({TP0: [b"m%d" % n for n in range(5)]})
    consumer = FakeConsumer(kafka, clock)
    producer = FakeProducer()
    lane = _Lane(up=False)
    backend = _Backend(lambda r: r.offset != POISON)
    runtime = _runtime(
        consumer, backend, producer, lane=lane, retry_lane=LANE, retry={"partial_max_attempts": 2}
    )

    def redis_back(c: FakeConsumer) -> None:
        if backend.calls >= 30:
            lane.up = True

    consumer.on_poll(redis_back)
    _stop_when(runtime, consumer, lambda: kafka.committed.get(TP0) == 5)
    runtime.run()
    assert backend.calls >= 30  # no dead letter meanwhile: the lane's rules apply
    assert "ferryman.dlq" not in producer.sent
    assert [m.record.offset for m in lane.sent] == [POISON]
    assert kafka.committed == {TP0: 5}
