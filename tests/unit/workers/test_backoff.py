"""The delays between in-process attempts: exponential caps, full jitter below them, the
backend's delay as a floor, and the drain deadline ending the wait."""

from __future__ import annotations

import random

import pytest
from hypothesis import given
from hypothesis import strategies as st
from kafka import TopicPartition

from ferryman.telemetry import Registry
from tests.unit.workers.fakes import FakeClock, FakeConsumer, FakeKafka, FakeProducer
from workers.backoff import Backoff
from workers.errors import Throttled
from workers.records import Batch, Delivered
from workers.runtime import Runtime
from workers.settings import WorkerSettings

TP = TopicPartition("t", 0)


def test_delays_double_from_the_initial_to_the_maximum() -> None:
    backoff = Backoff(0.2, 3.0, rand=lambda: 1.0)
    assert [backoff.next_delay() for _ in range(7)] == pytest.approx(
        [0.2, 0.4, 0.8, 1.6, 3.0, 3.0, 3.0]
    )


def test_full_jitter_stays_below_each_cap_and_spreads() -> None:
    backoff = Backoff(0.2, 30.0, rand=random.Random(7).random)
    drawn = []
    for _ in range(200):
        cap = backoff.cap()
        delay = backoff.next_delay()
        assert 0.0 <= delay <= cap
        drawn.append(delay)
    assert len({round(d, 6) for d in drawn[-50:]}) > 40  # not one fixed delay
    assert max(drawn) <= 30.0


@given(
    initial=st.floats(0.001, 10),
    ratio=st.floats(1, 1000),
    draws=st.lists(st.floats(0, 1), min_size=1, max_size=80),
    floor=st.none() | st.floats(0, 1e5),
)
def test_a_delay_is_within_its_cap_and_never_under_the_floor(
    initial: float, ratio: float, draws: list[float], floor: float | None
) -> None:
    backoff = Backoff(initial, initial * ratio, rand=iter(draws).__next__)
    for _ in draws:
        cap = backoff.cap()
        delay = backoff.next_delay(floor)
        assert delay <= max(cap, floor or 0.0)
        if floor is not None:
            assert delay >= floor


def test_the_delay_the_backend_asked_for_is_a_floor_even_past_the_maximum() -> None:
    backoff = Backoff(0.2, 30.0, rand=lambda: 0.0)
    assert backoff.next_delay(12.5) == 12.5
    assert backoff.next_delay(120.0) == 120.0
    assert backoff.next_delay(None) == 0.0


def test_settings_refuse_an_initial_delay_above_the_maximum() -> None:
    with pytest.raises(ValueError, match="initial_backoff_s is greater"):
        WorkerSettings(
            function="loki",
            kafka={"input_topic": "t"},
            retry={"initial_backoff_s": 5, "max_backoff_s": 1},
        )


class _Throttling:
    """Asks for ``delay`` seconds ``times`` times, then takes the batch; notes when."""

    def __init__(self, clock: FakeClock, delay: float, times: int, partial: bool = False) -> None:
        self.clock = clock
        self.delay = delay
        self.times = times
        self.partial = partial
        self.at: list[float] = []

    def handle(self, batch: Batch) -> Delivered:
        self.at.append(self.clock())
        if len(self.at) <= self.times:
            if self.partial:
                return Delivered(retry=list(batch), retry_delay=self.delay)
            raise Throttled("HTTP 429", self.delay)
        return Delivered()

    def close(self) -> None:
        pass


def _run(
    handler_of: type[_Throttling], *args: object, **settings: object
) -> tuple[Runtime, FakeConsumer, _Throttling]:
    clock = FakeClock()
    kafka = FakeKafka({TP: [b"x"]})
    consumer = FakeConsumer(kafka, clock)
    handler = handler_of(clock, *args)
    runtime = Runtime(
        WorkerSettings(
            function="loki",
            kafka={"input_topic": "t"},
            retry={"initial_backoff_s": 0.2, "max_backoff_s": 1.0},
            **settings,
        ),
        handler,
        Registry(),
        clock=clock,
        jitter=lambda: 0.5,
        consumer=lambda _: consumer,
        producer=lambda _: FakeProducer(),
    )
    consumer.on_poll(lambda c: runtime.stop() if kafka.committed or c.polls > 5000 else None)
    runtime.run()
    return runtime, consumer, handler


@pytest.mark.parametrize("partial", [False, True], ids=["Throttled", "retry_delay"])
def test_the_runtime_waits_at_least_what_the_backend_asked(partial: bool) -> None:
    _runtime, consumer, handler = _run(_Throttling, 7.0, 2, partial)
    gaps = [b - a for a, b in zip(handler.at, handler.at[1:], strict=False)]
    assert len(gaps) == 2
    assert all(gap >= 7.0 for gap in gaps)  # not the 0.1-0.2 s the backoff alone draws
    assert consumer.commits == [{TP: 1}]


def test_a_wait_past_the_drain_deadline_ends_at_the_deadline_with_a_hand_back() -> None:
    clock = FakeClock()
    kafka = FakeKafka({TP: [b"x"]})
    consumer = FakeConsumer(kafka, clock)
    handler = _Throttling(clock, 3600.0, 99)
    runtime = Runtime(
        WorkerSettings(function="loki", kafka={"input_topic": "t"}, shutdown_deadline_s=10),
        handler,
        Registry(),
        clock=clock,
        consumer=lambda _: consumer,
        producer=lambda _: FakeProducer(),
    )
    consumer.on_poll(lambda c: runtime.stop() if len(handler.at) == 1 else None)
    runtime.run()
    assert len(handler.at) == 1
    assert runtime.stop_deadline is not None
    assert runtime.stop_deadline <= clock() < runtime.stop_deadline + 1  # not an hour later
    assert consumer.commits == []
    assert runtime.metrics.batches.value(function="loki", outcome="handed_back") == 1
