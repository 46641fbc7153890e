"""The ``prometheus_remote_write`` handler in process against the real Prometheus: the
label check before sending (pass-through and relabelled), and how it reports a 503 and a
500 to the runtime. The 503/500 answers come from the fault proxy in front of the real
Prometheus (tests/integration/faultproxy.py); everything else is Prometheus's own."""

from __future__ import annotations

import logging
import time
from typing import Any

import httpx
import pytest

from ferryman import headers as h
from ferryman.telemetry import Registry
from ferryman.wire.remote_write import Sample, TimeSeries, encode_write_request, snappy_compress
from functions.prometheus_remote_write import SPEC
from functions.prometheus_remote_write.config import RemoteWriteConfig
from tests.integration.pipeline import wait_for
from workers.function import Context
from workers.records import Record

WRITE = "/api/v1/write"


def record(offset: int, *series: TimeSeries) -> Record:
    body = snappy_compress(encode_write_request(series))
    return Record("metrics", 0, offset, b"k", body, ((h.SCHEMA, h.SCHEMA_REMOTE_WRITE),))


def up(name: str, job: str, *extra: tuple[str, str]) -> TimeSeries:
    labels = (("__name__", name), *extra, ("job", job))
    return TimeSeries(labels, (Sample(1.0, int(time.time() * 1000)),))


@pytest.fixture
def handler():
    """``handler(url, **config)``: a handler of the sink, closed at teardown."""
    made: list[Any] = []

    def create(url: str, **overrides: Any) -> Any:
        made.append(_create(url, **overrides))
        return made[-1]

    yield create
    for one in made:
        one.close()


def _create(url: str, **overrides: Any) -> Any:
    context = Context(
        "prometheus_remote_write",
        lambda **kw: httpx.Client(**kw),
        Registry(),
        logging.getLogger("test"),
    )
    config = RemoteWriteConfig.model_validate({"url": url + WRITE, **overrides})
    return SPEC.create(config, context)


def stored(prometheus: str, name: str) -> list[dict[str, str]]:
    answer = httpx.get(f"{prometheus}/api/v1/series", params={"match[]": name}, timeout=30)
    return list(answer.json()["data"])


@pytest.fixture
def prometheus(stack) -> str:
    return str(stack("prometheus", "http"))


def test_pass_through_stores_the_good_and_dead_letters_bad_labels(prometheus, unique, handler):
    name = f"{unique}_up"
    duplicate = TimeSeries(
        (("__name__", name), ("a", "1"), ("a", "2")), (Sample(1.0, int(time.time() * 1000)),)
    )
    result = handler(prometheus).handle(
        [record(0, up(name, "api")), record(1, duplicate), Record("metrics", 0, 2, None, b"")]
    )
    assert [(r.offset, why.split(":")[0]) for r, why in result.dead] == [
        (1, "refused before sending"),
        (2, "not a remote-write message"),
    ]
    assert "label 'a' twice" in result.dead[0][1]
    assert list(result.retry) == []
    assert wait_for(lambda: stored(prometheus, name), 30, "the good series")[0]["job"] == "api"


def test_relabelled_series_are_checked_before_sending(prometheus, unique, handler):
    name = f"{unique}_up"
    rules = [{"target_label": "tenant", "replacement": "team-a"}]
    nameless = TimeSeries((("job", "a"),), (Sample(1.0, int(time.time() * 1000)),))
    result = handler(prometheus, metric_relabel_configs=rules).handle(
        [record(0, up(name, "api")), record(1, nameless)]
    )
    assert [r.offset for r, _ in result.dead] == [1]
    [series] = wait_for(lambda: stored(prometheus, name), 30, "the relabelled series")
    assert series["tenant"] == "team-a"


def test_backpressure_hands_back_the_rest_unsent_and_pins_nothing(
    prometheus, unique, handler, fault_proxy
):
    proxy = fault_proxy(prometheus)
    proxy.pass_through(1, path=WRITE)
    proxy.fail(503, body=b"nope", path=WRITE)
    name = f"{unique}_up"
    batch = [record(i, up(name, f"j{i}")) for i in range(3)]
    result = handler(proxy.url).handle(batch)
    assert [r.offset for r in result.retry] == [1, 2]
    assert result.retry_reason == "HTTP 503: nope"
    assert list(result.refused) == [] and list(result.dead) == []
    assert [e.status for e in proxy.exchanges()] == [204, 503]
    assert [s["job"] for s in wait_for(lambda: stored(prometheus, name), 30, "j0")] == ["j0"]


def test_a_500_is_pinned_on_its_record_and_the_rest_is_sent(
    prometheus, unique, handler, fault_proxy
):
    proxy = fault_proxy(prometheus)
    proxy.pass_through(1, path=WRITE)
    proxy.fail(500, times=1, body=b"nope", path=WRITE)
    name = f"{unique}_up"
    batch = [record(i, up(name, f"j{i}")) for i in range(3)]
    result = handler(proxy.url).handle(batch)
    assert [r.offset for r in result.retry] == [1]
    assert [(r.offset, why) for r, why in result.refused] == [(1, "HTTP 500: nope")]
    assert list(result.dead) == []
    assert [e.status for e in proxy.exchanges()] == [204, 500, 204]
    wait_for(
        lambda: sorted(s["job"] for s in stored(prometheus, name)) == ["j0", "j2"],
        30,
        "j0 and j2 stored, j1 not",
    )
