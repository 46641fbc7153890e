"""The Elasticsearch sinks install their templates in ``start()``, against the real
Elasticsearch: before it nothing exists, after it both templates do, and ``handle`` does
not install them again. How a refusal reads (401: permanent, 503: try again) comes from
the fault proxy in front of the real Elasticsearch (tests/integration/faultproxy.py)."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest

from ferryman.telemetry import Registry
from functions import registry
from workers.errors import DeliveryError, Permanent
from workers.function import Context

SINKS = [("elasticsearch_logs", "logs"), ("elasticsearch_metrics", "metrics")]


@pytest.fixture
def sink():
    """``sink(name, url, **config)``: a handler of that sink, closed at teardown."""
    made: list[Any] = []

    def create(name: str, url: str, **overrides: Any) -> Any:
        made.append(_create(name, url, **overrides))
        return made[-1]

    yield create
    for handler in made:
        handler.close()


def _create(name: str, url: str, **overrides: Any) -> Any:
    spec = registry.load(name)
    context = Context(name, lambda **kw: httpx.Client(**kw), Registry(), logging.getLogger("test"))
    return spec.create(spec.config_model.model_validate({"url": url, **overrides}), context)


def templates(es: str, stream: str) -> tuple[int, int]:
    return (
        httpx.get(f"{es}/_component_template/{stream}@ferryman", timeout=30).status_code,
        httpx.get(f"{es}/_index_template/{stream}", timeout=30).status_code,
    )


@pytest.mark.parametrize(("name", "kind"), SINKS)
def test_templates_are_installed_at_start_only(stack, unique, fault_proxy, sink, name, kind):
    es = stack("elasticsearch", "http")
    stream = f"{kind}-{unique}-default"
    proxy = fault_proxy(es)
    handler = sink(name, proxy.url, data_stream=stream)
    try:
        assert templates(es, stream) == (404, 404)
        assert proxy.exchanges() == []
        handler.start()
        assert templates(es, stream) == (200, 200)
        puts = [(e.method, e.path) for e in proxy.exchanges()]
        assert puts == [
            ("PUT", f"/_component_template/{stream}@ferryman"),
            ("PUT", f"/_index_template/{stream}"),
        ]
        handler.handle([])
        assert len(proxy.exchanges()) == 2
    finally:
        httpx.delete(f"{es}/_index_template/{stream}", timeout=30)
        httpx.delete(f"{es}/_component_template/{stream}@ferryman", timeout=30)


@pytest.mark.parametrize(("name", "kind"), SINKS)
def test_template_failures_say_whether_to_retry(stack, unique, fault_proxy, sink, name, kind):
    es = stack("elasticsearch", "http")
    stream = f"{kind}-{unique}-default"
    proxy = fault_proxy(es)
    proxy.fail(401, times=1, body='{"error":"unauthorized"}')
    with pytest.raises(Permanent, match="HTTP 401"):
        sink(name, proxy.url, data_stream=stream).start()
    proxy.fail(503, times=1, body='{"error":"unavailable"}')
    with pytest.raises(DeliveryError, match="HTTP 503") as raised:
        sink(name, proxy.url, data_stream=stream).start()
    assert not isinstance(raised.value, Permanent)
    before = len(proxy.exchanges())
    sink(name, proxy.url, data_stream=stream, template={"install": False}).start()
    assert len(proxy.exchanges()) == before
    assert templates(es, stream) == (404, 404)
