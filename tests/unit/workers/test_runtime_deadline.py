"""The drain deadline turns a batch still failing into a hand-back, whatever the last
attempt did; and the backoff between attempts stops at the deadline."""

from __future__ import annotations

import httpx
import pytest
from kafka import TopicPartition

from ferryman.telemetry import Registry
from tests.unit.workers.fakes import FakeClock, FakeConsumer, FakeKafka, FakeProducer
from workers.records import Batch, Delivered
from workers.runtime import Runtime
from workers.settings import WorkerSettings

TP = TopicPartition("t", 0)


class _StoppedDuringDelivery:
    """A backend call during which SIGTERM arrives and the deadline passes."""

    def __init__(
        self, runtime: list[Runtime], clock: FakeClock, error: Exception | None, takes: float
    ) -> None:
        self.runtime = runtime
        self.clock = clock
        self.error = error
        self.takes = takes
        self.calls = 0

    def handle(self, batch: Batch) -> Delivered:
        self.calls += 1
        self.runtime[0].stop()
        self.clock.advance(self.takes)
        if self.error is not None:
            raise self.error
        return Delivered(retry=list(batch))  # everything refused for now

    def close(self) -> None:
        pass


def _run(
    error: Exception | None, takes: float
) -> tuple[Runtime, FakeConsumer, _StoppedDuringDelivery]:
    settings = WorkerSettings(function="loki", kafka={"input_topic": "t"}, shutdown_deadline_s=10)
    clock = FakeClock()
    consumer = FakeConsumer(FakeKafka({TP: [b"x"] * 6}), clock)
    holder: list[Runtime] = []
    handler = _StoppedDuringDelivery(holder, clock, error, takes)
    runtime = Runtime(
        settings,
        handler,
        Registry(),
        clock=clock,
        consumer=lambda _: consumer,
        producer=lambda _: FakeProducer(),
    )
    holder.append(runtime)
    runtime.run()
    return runtime, consumer, handler


@pytest.mark.parametrize("error", [httpx.ConnectError("refused"), None])
def test_a_batch_failing_past_the_deadline_is_handed_back(error: Exception | None) -> None:
    runtime, consumer, handler = _run(error, takes=60.0)
    assert handler.calls == 1
    assert consumer.commits == []
    assert consumer.seeks == [(TP, 0)]  # fetched again by whoever owns it next
    assert runtime.metrics.batches.value(function="loki", outcome="handed_back") == 1
    assert consumer.closed


@pytest.mark.parametrize("error", [httpx.ConnectError("refused"), None])
def test_retries_go_on_until_the_deadline_then_hand_back(error: Exception | None) -> None:
    runtime, consumer, handler = _run(error, takes=0.5)
    # 0.2 s doubling to 30 s, with jitter: several attempts fit in the 10 s, none after.
    assert handler.calls > 2
    assert consumer.commits == []
    assert runtime.metrics.batches.value(function="loki", outcome="handed_back") == 1
    assert runtime.stop_deadline is not None
    assert runtime.clock() >= runtime.stop_deadline
