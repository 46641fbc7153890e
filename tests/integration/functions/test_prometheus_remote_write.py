"""prometheus_remote_write against the real Kafka, Prometheus and VictoriaMetrics."""

from __future__ import annotations

import time

import httpx
import pytest

from tests.integration.pipeline import (
    PrivatePrometheus,
    create_topics,
    dead_letters,
    produce_series,
    series_ids,
    wait_for,
)

SINK = "prometheus_remote_write"


@pytest.mark.parametrize("backend", ["prometheus", "victoriametrics"])
def test_every_series_arrives_and_offsets_follow(stack, unique, worker, backend):
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (unique, 3))
    metric = f"rw_{unique}"
    sent = produce_series(bootstrap, unique, metric, messages=60, series_per_message=20)
    sent |= produce_series(
        bootstrap, unique, metric, messages=60, series_per_message=20, cluster="beta", start=60
    )
    running = worker(SINK, unique, {"url": stack(backend, "remote_write")})
    wait_for(lambda: running.committed() == 120, 60, "all 120 offsets committed")
    if backend == "victoriametrics":
        httpx.get(f"{stack(backend, 'http')}/internal/force_flush", timeout=10)
    got = wait_for(
        lambda: series_ids(stack(backend, "http"), metric) == sent or None,
        30,
        "all series queryable",
    )
    assert got is True or got == sent
    assert series_ids(stack(backend, "http"), metric) == sent
    assert running.terminate() == 0
    assert "worker stopped" in running.output()


def test_garbage_goes_to_dead_letter_and_the_rest_flows(stack, unique, worker):
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (unique, 1))
    metric = f"rw_{unique}"
    sent = produce_series(
        bootstrap,
        unique,
        metric,
        messages=5,
        series_per_message=3,
        extra=[(b"\x00\xffnot snappy at all", b"junk")],
    )
    sent |= produce_series(bootstrap, unique, metric, messages=5, series_per_message=3, start=5)
    running = worker(SINK, unique, {"url": stack("prometheus", "remote_write")})
    wait_for(lambda: running.committed() == 11, 60, "all 11 offsets committed")
    assert wait_for(
        lambda: series_ids(stack("prometheus", "http"), metric) == sent, 30, "the good series"
    )
    dead = dead_letters(bootstrap, running.dead_letter_topic)
    assert [d.value for d in dead] == [b"\x00\xffnot snappy at all"]
    headers = dict(dead[0].headers)
    assert headers["ferryman.error"].startswith(b"not a remote-write message: not snappy")
    assert headers["ferryman.function"] == b"prometheus_remote_write"
    assert headers["ferryman.source"] == f"{unique}/0/5".encode()


def test_kill_9_mid_stream_loses_nothing(stack, unique, worker):
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (unique, 2))
    metric = f"rw_{unique}"
    config = {"url": stack("prometheus", "remote_write")}
    sent = produce_series(bootstrap, unique, metric, messages=1500, series_per_message=20)
    first = worker(SINK, unique, config, batch={"max_records": 5})
    wait_for(lambda: first.committed() >= 50, 60, "some progress before the kill", interval=0.05)
    first.kill9()
    at_kill = first.committed()
    assert at_kill < 1500, "the worker finished before the kill; the test proves nothing"
    sent |= produce_series(
        bootstrap, unique, metric, messages=100, series_per_message=20, start=1500
    )
    second = worker(SINK, unique, config, batch={"max_records": 5})
    assert second.group == first.group
    wait_for(lambda: second.committed() == 1600, 120, "all 1600 offsets committed after restart")
    assert wait_for(
        lambda: series_ids(stack("prometheus", "http"), metric) == sent,
        30,
        "every series after kill -9",
    )


def test_sigterm_drains_and_leaves_the_group(stack, unique, worker):
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (unique, 1))
    metric = f"rw_{unique}"
    sent = produce_series(bootstrap, unique, metric, messages=30, series_per_message=5)
    running = worker(SINK, unique, {"url": stack("prometheus", "remote_write")})
    wait_for(lambda: running.committed() == 30, 60, "commits")
    started = time.monotonic()
    assert running.terminate(timeout=30) == 0
    assert time.monotonic() - started < 15
    assert series_ids(stack("prometheus", "http"), metric) == sent


def test_backend_down_60s_nothing_committed_then_everything_arrives(
    stack, unique, worker, tmp_path
):
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (unique, 2))
    metric = f"rw_{unique}"
    prometheus = PrivatePrometheus(tmp_path).start()
    try:
        sent = produce_series(bootstrap, unique, metric, messages=20, series_per_message=10)
        running = worker(SINK, unique, {"url": f"{prometheus.base}/api/v1/write"})
        wait_for(lambda: running.committed() == 20, 60, "first 20 committed")

        prometheus.stop()
        sent |= produce_series(
            bootstrap, unique, metric, messages=30, series_per_message=10, start=20
        )
        outage_end = time.monotonic() + 60
        while time.monotonic() < outage_end:
            assert running.committed() == 20, "an offset was committed while the backend was down"
            time.sleep(2)
        assert running.metric("ferryman_errors_total") > 0
        assert running.metric("ferryman_records_dead_lettered_total") == 0
        assert httpx.get(f"{running.api}/healthz", timeout=5).status_code == 200

        prometheus.start()
        wait_for(lambda: running.committed() == 50, 90, "all 50 committed after the outage")
        assert wait_for(
            lambda: series_ids(prometheus.base, metric) == sent, 30, "every series after the outage"
        )
    finally:
        prometheus.stop()
