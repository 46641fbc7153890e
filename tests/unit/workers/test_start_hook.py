"""The start hook: what the entry point does when ``Handler.start`` fails. What the
Elasticsearch sinks do there (install their templates) is proven against the real
Elasticsearch in tests/integration/functions/test_elasticsearch_start.py."""

from __future__ import annotations

import httpx
import pytest

from workers.errors import DeliveryError, Permanent
from workers.main import start_handler
from workers.records import Batch, Delivered


class Flaky:
    def __init__(self, *failures: BaseException) -> None:
        self.failures = list(failures)
        self.calls = 0

    def start(self) -> None:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)

    def handle(self, batch: Batch) -> Delivered:
        return Delivered()

    def close(self) -> None:
        pass


class Clock:
    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def start(handler: Flaky, clock: Clock, patience_s: float = 300.0) -> bool:
    return start_handler(
        handler, "test", sleep=clock.sleep, clock=lambda: clock.now, patience_s=patience_s
    )


def test_transient_failures_are_retried_with_backoff() -> None:
    handler, clock = (
        Flaky(httpx.ConnectError("refused"), DeliveryError("503"), DeliveryError("503")),
        Clock(),
    )
    assert start(handler, clock)
    assert (handler.calls, clock.slept) == (4, [1.0, 2.0, 4.0])


def test_a_backend_down_for_longer_than_the_patience_gives_up(
    caplog: pytest.LogCaptureFixture,
) -> None:
    handler, clock = Flaky(*[httpx.ConnectError("refused")] * 100), Clock()
    assert not start(handler, clock, patience_s=60)
    # The next wait, 30 s (the cap), would end past the 60 s of patience.
    assert clock.slept == [1.0, 2.0, 4.0, 8.0, 16.0]
    assert "cannot start: its backend still fails after 6 attempts" in caplog.text


@pytest.mark.parametrize("failure", [Permanent("HTTP 401: who are you"), RuntimeError("a bug")])
def test_a_permanent_or_unexpected_failure_gives_up_at_once(
    failure: BaseException, caplog: pytest.LogCaptureFixture
) -> None:
    handler, clock = Flaky(failure), Clock()
    assert not start(handler, clock)
    assert (handler.calls, clock.slept) == (1, [])
    assert "worker test cannot start" in caplog.text
