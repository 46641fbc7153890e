"""The start hook: what the entry point does when ``Handler.start`` fails, and what the
Elasticsearch sinks do there (install their templates).

(Its entry-point half, ``workers.main.start_handler``, belongs in tests/unit/workers; it
lives here with the hook's other users until that directory is free to edit.)
"""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from ferryman.telemetry import Registry
from functions import registry
from workers.errors import DeliveryError, Permanent
from workers.function import Context
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


class Elasticsearch:
    def __init__(self, status: int = 200) -> None:
        self.status = status
        self.requests: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(f"{request.method} {request.url.path}")
        return httpx.Response(self.status, json={"acknowledged": True})


def es_sink(name: str, backend: Elasticsearch, **overrides: Any) -> Any:
    spec = registry.load(name)
    transport = httpx.MockTransport(backend)
    context = Context(
        name,
        lambda **kw: httpx.Client(transport=transport, **kw),
        Registry(),
        logging.getLogger("test"),
    )
    return spec.create(
        spec.config_model.model_validate({"url": "http://es:9200", **overrides}), context
    )


@pytest.mark.parametrize(
    ("name", "stream"),
    [
        ("elasticsearch_logs", "logs-ferryman-default"),
        ("elasticsearch_metrics", "metrics-ferryman-default"),
    ],
)
def test_elasticsearch_sinks_install_templates_at_start_only(name: str, stream: str) -> None:
    backend = Elasticsearch()
    handler = es_sink(name, backend)
    assert backend.requests == []
    handler.start()
    assert backend.requests == [
        f"PUT /_component_template/{stream}@ferryman",
        f"PUT /_index_template/{stream}",
    ]
    handler.handle([])
    assert len(backend.requests) == 2


@pytest.mark.parametrize("name", ["elasticsearch_logs", "elasticsearch_metrics"])
def test_elasticsearch_template_failures_say_whether_to_retry(name: str) -> None:
    with pytest.raises(Permanent, match="HTTP 401"):
        es_sink(name, Elasticsearch(401)).start()
    with pytest.raises(DeliveryError, match="HTTP 503") as raised:
        es_sink(name, Elasticsearch(503)).start()
    assert not isinstance(raised.value, Permanent)
    backend = Elasticsearch()
    es_sink(name, backend, template={"install": False}).start()
    assert backend.requests == []
