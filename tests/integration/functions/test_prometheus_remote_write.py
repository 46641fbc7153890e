"""prometheus_remote_write against the real Kafka, Prometheus and VictoriaMetrics."""

from __future__ import annotations

import time

import httpx
import pytest
from kafka import KafkaConsumer

from tests.integration.pipeline import (
    PrivatePrometheus,
    Worker,
    committed_total,
    create_topics,
    free_port,
    produce_series,
    series_ids,
    wait_for,
)


@pytest.fixture
def workers(tmp_path):
    started: list[Worker] = []

    def make(settings):
        worker = Worker(tmp_path, "prometheus_remote_write", settings).start()
        started.append(worker)
        return worker

    yield make
    for worker in started:
        if worker.proc and worker.proc.poll() is None:
            worker.kill9()


def _settings(stack, topic, dlq, url):
    return {"kafka": {"bootstrap_servers": stack("kafka", "bootstrap"), "input_topic": topic,
                      "group_id": f"g-{topic}", "dead_letter_topic": dlq},
            "batch": {"max_records": 50, "max_wait_s": 0.2},
            "retry": {"initial_backoff_s": 0.2, "max_backoff_s": 2.0},
            "shutdown_deadline_s": 10,
            "config": {"url": url}}


@pytest.mark.parametrize("backend", ["prometheus", "victoriametrics"])
def test_every_series_arrives_and_offsets_follow(stack, unique, workers, backend):
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (unique, 3), (f"{unique}-dlq", 1))
    metric = f"rw_{unique}"
    sent = produce_series(bootstrap, unique, metric, messages=60, series_per_message=20)
    sent |= produce_series(bootstrap, unique, metric, messages=60, series_per_message=20,
                           cluster="beta", start=60)
    worker = workers(_settings(stack, unique, f"{unique}-dlq", stack(backend, "remote_write")))
    wait_for(lambda: committed_total(bootstrap, f"g-{unique}", unique) == 120, 60,
             "all 120 offsets committed")
    if backend == "victoriametrics":
        httpx.get(f"{stack(backend, 'http')}/internal/force_flush", timeout=10)
    got = wait_for(lambda: series_ids(stack(backend, "http"), metric) == sent or None, 30,
                   "all series queryable")
    assert got is True or got == sent
    assert series_ids(stack(backend, "http"), metric) == sent
    assert worker.terminate() == 0
    assert "worker stopped" in worker.output()


def test_garbage_goes_to_dead_letter_and_the_rest_flows(stack, unique, workers):
    bootstrap = stack("kafka", "bootstrap")
    dlq = f"{unique}-dlq"
    create_topics(bootstrap, (unique, 1), (dlq, 1))
    metric = f"rw_{unique}"
    sent = produce_series(bootstrap, unique, metric, messages=5, series_per_message=3,
                          extra=[(b"\x00\xffnot snappy at all", b"junk")])
    sent |= produce_series(bootstrap, unique, metric, messages=5, series_per_message=3, start=5)
    workers(_settings(stack, unique, dlq, stack("prometheus", "remote_write")))
    wait_for(lambda: committed_total(bootstrap, f"g-{unique}", unique) == 11, 60,
             "all 11 offsets committed")
    assert wait_for(lambda: series_ids(stack("prometheus", "http"), metric) == sent, 30,
                    "the good series")
    consumer = KafkaConsumer(dlq, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=5000)
    dead = list(consumer)
    consumer.close()
    assert [d.value for d in dead] == [b"\x00\xffnot snappy at all"]
    headers = dict(dead[0].headers)
    assert headers["ferryman.error"].startswith(b"HTTP 400")
    assert headers["ferryman.function"] == b"prometheus_remote_write"
    assert headers["ferryman.source"] == f"{unique}/0/5".encode()


def test_kill_9_mid_stream_loses_nothing(stack, unique, workers):
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (unique, 2), (f"{unique}-dlq", 1))
    metric = f"rw_{unique}"
    settings = _settings(stack, unique, f"{unique}-dlq", stack("prometheus", "remote_write"))
    settings["batch"]["max_records"] = 5
    sent = produce_series(bootstrap, unique, metric, messages=1500, series_per_message=20)
    worker = workers(settings)
    wait_for(lambda: committed_total(bootstrap, f"g-{unique}", unique) >= 50, 60,
             "some progress before the kill", interval=0.05)
    worker.kill9()
    at_kill = committed_total(bootstrap, f"g-{unique}", unique)
    assert at_kill < 1500, "the worker finished before the kill; the test proves nothing"
    sent |= produce_series(bootstrap, unique, metric, messages=100, series_per_message=20,
                           start=1500)
    workers(settings)
    wait_for(lambda: committed_total(bootstrap, f"g-{unique}", unique) == 1600, 120,
             "all 1600 offsets committed after restart")
    assert wait_for(lambda: series_ids(stack("prometheus", "http"), metric) == sent, 30,
                    "every series after kill -9")


def test_sigterm_drains_and_leaves_the_group(stack, unique, workers):
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (unique, 1), (f"{unique}-dlq", 1))
    metric = f"rw_{unique}"
    sent = produce_series(bootstrap, unique, metric, messages=30, series_per_message=5)
    worker = workers(_settings(stack, unique, f"{unique}-dlq",
                               stack("prometheus", "remote_write")))
    wait_for(lambda: committed_total(bootstrap, f"g-{unique}", unique) == 30, 60, "commits")
    started = time.monotonic()
    assert worker.terminate(timeout=30) == 0
    assert time.monotonic() - started < 15
    assert series_ids(stack("prometheus", "http"), metric) == sent


def _metric_value(base: str, name: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=5).text
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name))


def test_backend_down_60s_nothing_committed_then_everything_arrives(stack, unique, workers,
                                                                     tmp_path):
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (unique, 2), (f"{unique}-dlq", 1))
    metric = f"rw_{unique}"
    prometheus = PrivatePrometheus(tmp_path).start()
    try:
        port = free_port()
        settings = _settings(stack, unique, f"{unique}-dlq", f"{prometheus.base}/api/v1/write")
        settings["http"] = {"listen": f"127.0.0.1:{port}"}
        worker_api = f"http://127.0.0.1:{port}"
        sent = produce_series(bootstrap, unique, metric, messages=20, series_per_message=10)
        workers(settings)
        wait_for(lambda: committed_total(bootstrap, f"g-{unique}", unique) == 20, 60,
                 "first 20 committed")

        prometheus.stop()
        sent |= produce_series(bootstrap, unique, metric, messages=30, series_per_message=10,
                               start=20)
        outage_end = time.monotonic() + 60
        while time.monotonic() < outage_end:
            assert committed_total(bootstrap, f"g-{unique}", unique) == 20, \
                "an offset was committed while the backend was down"
            time.sleep(2)
        assert _metric_value(worker_api, "ferryman_errors_total") > 0
        assert _metric_value(worker_api, "ferryman_records_dead_lettered_total") == 0
        assert httpx.get(f"{worker_api}/healthz", timeout=5).status_code == 200

        prometheus.start()
        wait_for(lambda: committed_total(bootstrap, f"g-{unique}", unique) == 50, 90,
                 "all 50 committed after the outage")
        assert wait_for(lambda: series_ids(prometheus.base, metric) == sent, 30,
                        "every series after the outage")
    finally:
        prometheus.stop()
