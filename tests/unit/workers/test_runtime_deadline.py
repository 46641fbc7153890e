"""The drain deadline turns a batch still failing into a hand-back, whatever error the
last attempt raised (tenacity re-raises it when its stop condition fires)."""

from __future__ import annotations

import httpx
import pytest

from ferryman.telemetry import Registry
from workers.records import Batch, Delivered, Record
from workers.runtime import Abandoned, Runtime
from workers.settings import WorkerSettings


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class _SlowFailure:
    """A backend call that fails after the deadline has passed during it."""

    def __init__(self, clock: _Clock, error: Exception | None) -> None:
        self.clock = clock
        self.error = error
        self.calls = 0

    def handle(self, batch: Batch) -> Delivered:
        self.calls += 1
        self.clock.now += 60.0
        if self.error is not None:
            raise self.error
        return Delivered(retry=list(batch))  # everything refused for now

    def close(self) -> None:
        pass


@pytest.mark.parametrize("error", [httpx.ConnectError("refused"), None])
def test_a_batch_failing_past_the_deadline_is_handed_back(error: Exception | None) -> None:
    settings = WorkerSettings(function="loki", kafka={"input_topic": "t"},
                              shutdown_deadline_s=10)
    clock = _Clock()
    handler = _SlowFailure(clock, error)
    runtime = Runtime(settings, handler, Registry(), clock=clock)
    runtime.stop()
    with pytest.raises(Abandoned):
        runtime._process([Record("t", 0, 5, None, b"x")])
    assert handler.calls == 1
