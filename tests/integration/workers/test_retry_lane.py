"""The retry lane against the real Kafka, Redis and Elasticsearch.

The transient per-item refusal is real: an index carrying Elasticsearch's flood-stage
block (``read_only_allow_delete``) answers 429 for each of its documents inside an
otherwise successful ``_bulk``, which the real ``elasticsearch_metrics`` sink hands
back in ``Delivered.retry``. Records whose samples are from yesterday go to the blocked
index, today's records to an open one, so a batch is partly stored and partly refused.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis
from elasticsearch import Elasticsearch
from kafka import KafkaConsumer, KafkaProducer

from ferryman import headers as h
from tests.integration.pipeline import (
    Process,
    Worker,
    free_port,
    wait_for,
)
from tests.integration.workers.blocked import BlockedIndexScene
from workers.records import Record
from workers.retry_lane import Lane, LaneBroker, LaneMessage
from workers.settings import RetryLaneSettings

SERIES = 5  # documents per record


class RetryWorker(Process):
    """``ferryman worker NAME --retry-lane``."""

    def __init__(self, tmp: Path, name: str, settings: dict[str, Any]) -> None:
        super().__init__(tmp, ["worker", name, "--retry-lane"], settings)


@pytest.fixture
def lane_redis(stack, unique) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(stack("redis", "url"))
    yield client
    for key in client.scan_iter(match=f"{unique}:*"):
        client.delete(key)
    client.close()


class Scene(BlockedIndexScene):
    """One test's topic, indices and settings: yesterday's index is blocked."""

    def __init__(self, stack, unique: str, es: Elasticsearch) -> None:
        super().__init__(stack, unique, es)
        self.redis_url = stack("redis", "url")
        self.worker_port = free_port()
        self.retry_port = free_port()

    def settings(self, *, port: int, redis_url: str | None = None, **lane: Any) -> dict[str, Any]:
        return {
            "kafka": {
                "bootstrap_servers": self.bootstrap,
                "input_topic": self.topic,
                "group_id": self.group,
                "dead_letter_topic": self.dlq,
            },
            "batch": {"max_records": 100, "max_wait_s": 0.3},
            "retry": {"initial_backoff_s": 0.2, "max_backoff_s": 1.0},
            "http": {"listen": f"127.0.0.1:{port}"},
            "shutdown_deadline_s": 10,
            "retry_lane": {
                "redis_url": redis_url or self.redis_url,
                "namespace": self.unique,
                "budget_attempts": 2,
                "min_backoff_s": 0.3,
                "max_backoff_s": 1.0,
                "max_age_s": 600,
                **lane,
            },
            "config": self.config,
        }

    def produce(self, days: list[str], start: int = 0) -> None:
        """One record per entry: ``"y"`` for yesterday's samples (refused), ``"t"`` today."""
        producer = KafkaProducer(bootstrap_servers=self.bootstrap, acks="all")
        for m, day in enumerate(days, start):
            key, value, headers = self.record(m, day, SERIES)
            producer.send(self.topic, key=key, value=value, headers=headers)
        producer.flush(timeout=30)
        producer.close()


@pytest.fixture
def scene(stack, unique, es, lane_redis) -> Iterator[Scene]:
    made = Scene(stack, unique, es)
    yield made
    made.cleanup()


def _metric(port: int, name: str, **labels: str) -> float:
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.TransportError:  # still starting
        return 0.0
    want = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith(name + "{") and all(w in line for w in want)
    )


def _held(client: redis.Redis, namespace: str, queue: str) -> int:
    return int(client.hlen(f"{namespace}:{queue}.msgs")) + int(
        client.hlen(f"{namespace}:{queue}.DQ.msgs")
    )


def _dead_letters(bootstrap: str, dlq: str, expected: int) -> list[Any]:
    consumer = KafkaConsumer(
        dlq, bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=3000
    )
    try:
        got: list[Any] = []
        deadline = time.monotonic() + 60
        while len(got) < expected and time.monotonic() < deadline:
            got.extend(consumer)
        got.extend(consumer)  # and nothing more arrives
        return got
    finally:
        consumer.close()


QUEUE = "retry.elasticsearch_metrics"


def _five_in_the_lane(scene: Scene, tmp_path: Path, processes) -> Worker:
    """Ten records, every other one refused: a worker commits all ten and hands the
    five refused to the lane."""
    scene.produce(["y", "t"] * 5)
    worker = processes(
        Worker(tmp_path, "elasticsearch_metrics", scene.settings(port=scene.worker_port))
    )
    wait_for(lambda: scene.committed() == 10, 60, "the first 10 committed, 5 in the lane")
    return worker


def test_refused_records_wait_in_redis_while_the_partition_moves_on(
    scene: Scene, lane_redis: redis.Redis, tmp_path: Path, processes
) -> None:
    worker = _five_in_the_lane(scene, tmp_path, processes)
    assert _held(lane_redis, scene.unique, QUEUE) == 5
    assert _metric(scene.worker_port, "ferryman_records_handed_to_lane_total") == 5
    # Later records flow while the refused ones wait in Redis.
    scene.produce(["t"] * 10, start=10)
    wait_for(lambda: scene.committed() == 20, 60, "the next 10 committed")
    assert scene.count(scene.open) == 15 * SERIES
    assert scene.count(scene.blocked) == 0
    assert _held(lane_redis, scene.unique, QUEUE) == 5

    retry = processes(
        RetryWorker(tmp_path, "elasticsearch_metrics", scene.settings(port=scene.retry_port))
    )
    wait_for(
        lambda: _metric(scene.retry_port, "ferryman_records_retried_total") >= 10,
        60,
        "the lane retrying the blocked records with backoff",
    )
    assert scene.count(scene.blocked) == 0
    assert _metric(scene.retry_port, "ferryman_retry_lane_queue_length", queue=QUEUE) >= 0
    assert httpx.get(f"http://127.0.0.1:{scene.retry_port}/healthz").status_code == 200
    assert httpx.get(f"http://127.0.0.1:{scene.retry_port}/readyz").status_code == 200
    # A retry worker stopped while it holds delayed messages puts them back in Redis.
    assert retry.terminate() == 0
    assert _held(lane_redis, scene.unique, QUEUE) == 5
    retry = processes(
        RetryWorker(tmp_path, "elasticsearch_metrics", scene.settings(port=scene.retry_port))
    )

    scene.block(False)  # the backend recovers
    wait_for(
        lambda: scene.count(scene.blocked) == 5 * SERIES,
        60,
        "the lane's records stored once the block was lifted",
    )
    wait_for(
        lambda: _metric(scene.retry_port, "ferryman_records_sent_total") == 5,
        30,
        "5 delivered by the retry worker",
    )
    wait_for(lambda: _held(lane_redis, scene.unique, QUEUE) == 0, 30, "the lane emptied")
    assert scene.count(scene.open) == 15 * SERIES
    assert _metric(scene.retry_port, "ferryman_records_dead_lettered_total") == 0
    assert _dead_letters(scene.bootstrap, scene.dlq, 0) == []
    assert retry.terminate() == 0
    assert worker.terminate() == 0
    assert "retry worker stopped" in retry.output()


def test_records_past_max_age_are_dead_lettered_with_the_reason(
    scene: Scene, lane_redis: redis.Redis, tmp_path: Path, processes
) -> None:
    scene.produce(["t", "y", "t", "y"])
    settings = scene.settings(port=scene.worker_port, max_age_s=4)
    processes(Worker(tmp_path, "elasticsearch_metrics", settings))
    wait_for(lambda: scene.committed() == 4, 60, "all 4 committed, 2 in the lane")
    processes(
        RetryWorker(
            tmp_path,
            "elasticsearch_metrics",
            {**settings, "http": {"listen": f"127.0.0.1:{scene.retry_port}"}},
        )
    )
    dead = _dead_letters(scene.bootstrap, scene.dlq, 2)
    assert sorted(d.key for d in dead) == [b"m1", b"m3"]
    for letter in dead:
        headers = dict(letter.headers)
        assert headers["ferryman.error"].startswith(b"retry lane: still refused"), headers
        assert b"max_age_s 4" in headers["ferryman.error"]
        assert headers["ferryman.function"] == b"elasticsearch_metrics"
        offset = int(letter.key[1:])
        assert headers["ferryman.source"] == f"{scene.topic}/0/{offset}".encode()
        assert headers[h.SCHEMA] == h.SCHEMA_REMOTE_WRITE  # the record's own headers stay
    wait_for(lambda: _held(lane_redis, scene.unique, QUEUE) == 0, 30, "the lane emptied")
    assert _metric(scene.retry_port, "ferryman_records_dead_lettered_total") == 2
    assert _metric(scene.retry_port, "ferryman_records_sent_total") == 0
    assert scene.count(scene.blocked) == 0


class PrivateRedis:
    """A redis-server of the test's own on a free port, started when the test says."""

    def __init__(self, tmp: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.dir = tmp / "redis"
        self.dir.mkdir()
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PrivateRedis:
        self.proc = subprocess.Popen(
            [
                "/usr/bin/redis-server",
                "--bind",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--dir",
                str(self.dir),
                "--save",
                "",
                "--appendonly",
                "no",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self._up, 20, "private redis up", interval=0.1)
        return self

    def _up(self) -> bool:
        client = redis.Redis.from_url(self.url)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)


def test_nothing_is_committed_until_redis_acknowledged_the_hand_off(
    scene: Scene, tmp_path: Path, processes
) -> None:
    private = PrivateRedis(tmp_path)  # not started yet: nothing listens there
    scene.produce(["y", "t", "y", "t"])
    worker = processes(
        Worker(
            tmp_path,
            "elasticsearch_metrics",
            scene.settings(port=scene.worker_port, redis_url=private.url),
        )
    )
    try:
        wait_for(
            lambda: (
                _metric(
                    scene.worker_port,
                    "ferryman_errors_total",
                    error_type="LaneUnavailable",
                    stage="hand_off",
                )
                >= 3
            ),
            60,
            "hand-offs failing while Redis is down",
        )
        assert scene.count(scene.open) == 2 * SERIES  # the backend took what it could
        end = time.monotonic() + 4
        while time.monotonic() < end:
            assert scene.committed() == 0, "committed without Redis acknowledging the lane"
            time.sleep(0.5)
        private.start()
        wait_for(lambda: scene.committed() == 4, 60, "committed once Redis took the records")
        client = redis.Redis.from_url(private.url)
        assert _held(client, scene.unique, QUEUE) == 2
        client.close()
        assert _metric(scene.worker_port, "ferryman_records_handed_to_lane_total") == 2
        assert worker.terminate() == 0
    finally:
        private.stop()


def test_a_batch_of_which_nothing_was_delivered_stays_in_process(
    scene: Scene, lane_redis: redis.Redis, tmp_path: Path, processes
) -> None:
    """Everything refused looks like a backend down or pushing back as a whole: the
    partition is held (no commit) and Redis is not flooded."""
    scene.produce(["y", "y", "y"])
    worker = processes(
        Worker(tmp_path, "elasticsearch_metrics", scene.settings(port=scene.worker_port))
    )
    wait_for(
        lambda: (
            _metric(scene.worker_port, "ferryman_documents_total", result="retry") >= 4 * 3 * SERIES
        ),
        60,
        "4 attempts refused",
    )
    assert scene.committed() == 0
    assert _held(lane_redis, scene.unique, QUEUE) == 0
    scene.block(False)
    wait_for(lambda: scene.committed() == 3, 60, "delivered in process once unblocked")
    assert scene.count(scene.blocked) == 3 * SERIES
    assert _held(lane_redis, scene.unique, QUEUE) == 0
    assert worker.terminate() == 0


def test_a_full_lane_keeps_the_records_in_process(
    scene: Scene, lane_redis: redis.Redis, tmp_path: Path, processes
) -> None:
    scene.produce(["y", "t"] * 3)
    worker = processes(
        Worker(
            tmp_path,
            "elasticsearch_metrics",
            scene.settings(port=scene.worker_port, max_in_flight=2),
        )
    )
    wait_for(
        lambda: (
            _metric(
                scene.worker_port, "ferryman_errors_total", error_type="LaneFull", stage="hand_off"
            )
            >= 2
        ),
        60,
        "hand-offs refused: 3 records do not fit in a lane of 2",
    )
    assert scene.committed() == 0
    assert _held(lane_redis, scene.unique, QUEUE) == 0
    scene.block(False)
    wait_for(lambda: scene.committed() == 6, 60, "delivered in process once unblocked")
    assert scene.count(scene.blocked) == 3 * SERIES
    assert worker.terminate() == 0


def _acked_by_workers(client: redis.Redis, namespace: str) -> int:
    """Messages retry workers took from the lane and have not acknowledged yet."""
    return sum(int(client.scard(key)) for key in client.scan_iter(match=f"{namespace}:__acks__.*"))


def test_messages_a_killed_retry_worker_held_go_back_to_the_lane(
    scene: Scene, lane_redis: redis.Redis, tmp_path: Path, processes
) -> None:
    worker = _five_in_the_lane(scene, tmp_path, processes)
    settings = scene.settings(port=scene.retry_port, heartbeat_timeout_s=5)
    retry = processes(RetryWorker(tmp_path, "elasticsearch_metrics", settings))
    wait_for(
        lambda: _metric(scene.retry_port, "ferryman_records_retried_total") >= 5,
        60,
        "the retry worker refused and delayed each record once",
    )
    wait_for(
        lambda: _acked_by_workers(lane_redis, scene.unique) >= 1,
        30,
        "the retry worker holding lane messages",
    )
    retry.kill9()
    held_by_the_dead = _acked_by_workers(lane_redis, scene.unique)
    assert held_by_the_dead >= 1
    assert _held(lane_redis, scene.unique, QUEUE) == 5  # nothing acknowledged, nothing lost

    scene.block(False)
    successor = processes(RetryWorker(tmp_path, "elasticsearch_metrics", settings))
    # Within the 5 s heartbeat timeout and a maintenance round, not at random.
    wait_for(
        lambda: scene.count(scene.blocked) == 5 * SERIES,
        40,
        "the dead worker's messages delivered by its successor",
    )
    wait_for(lambda: _held(lane_redis, scene.unique, QUEUE) == 0, 30, "the lane emptied")
    assert _acked_by_workers(lane_redis, scene.unique) == 0
    assert _metric(scene.retry_port, "ferryman_records_sent_total") == 5
    assert _dead_letters(scene.bootstrap, scene.dlq, 0) == []
    assert successor.terminate() == 0
    assert worker.terminate() == 0


def test_maintain_hands_back_what_a_silent_worker_held(stack, unique, lane_redis) -> None:
    """Forced maintenance alone (random maintenance off) puts back a message a worker
    took and never acknowledged once its heartbeat is older than the timeout."""
    settings = RetryLaneSettings(
        redis_url=stack("redis", "url"), namespace=unique, heartbeat_timeout_s=5
    )
    ours = Lane(
        settings,
        "elasticsearch_metrics",
        broker=LaneBroker(
            client=lane_redis, namespace=unique, maintenance_chance=0, heartbeat_timeout=5000
        ),
    )
    ours.send(
        LaneMessage(Record("t", 0, 7, None, b"v"), "elasticsearch_metrics", time.time(), 1), 0
    )
    silent = LaneBroker(
        client=lane_redis, namespace=unique, maintenance_chance=0, heartbeat_timeout=5000
    )
    consumer = silent.consume(ours.queue, prefetch=1, timeout=100)
    taken = next(message for message in consumer if message is not None)
    assert taken.message_id
    assert _acked_by_workers(lane_redis, unique) == 1 and ours.lengths() == (0, 0)
    ours.maintain()  # its heartbeat is fresh: it keeps what it holds
    assert _acked_by_workers(lane_redis, unique) == 1
    time.sleep(5.5)
    ours.maintain()
    assert ours.lengths() == (1, 0)
    assert _acked_by_workers(lane_redis, unique) == 0


def test_without_a_lane_per_item_backpressure_is_held(
    scene: Scene, tmp_path: Path, processes
) -> None:
    """An index block answers 429 per document: backpressure, not evidence against the
    records. Without a lane they are held past retry.partial_max_attempts while the
    records around them, and newer ones the widening takes, are stored; once the block
    is lifted everything is delivered and nothing was dead-lettered. (A poison record
    refused on evidence: ``test_poison``.)"""
    bound = 3
    settings = scene.settings(port=scene.worker_port)
    del settings["retry_lane"]
    settings["retry"] = {**settings["retry"], "partial_max_attempts": bound}
    scene.produce(["t", "y"] * 3)
    worker = processes(Worker(tmp_path, "elasticsearch_metrics", settings))
    wait_for(lambda: scene.count(scene.open) == 3 * SERIES, 60, "today's records stored")
    scene.produce(["t"] * 3, start=6)
    wait_for(
        lambda: (
            _metric(scene.worker_port, "ferryman_documents_total", result="retry")
            >= 2 * bound * 3 * SERIES
        ),
        90,
        "the blocked records refused past the bound",
    )
    wait_for(lambda: scene.count(scene.open) == 6 * SERIES, 60, "the newer records stored")
    assert _metric(scene.worker_port, "ferryman_records_dead_lettered_total") == 0
    assert scene.committed() == 0
    scene.block(False)
    wait_for(lambda: scene.committed() == 9, 60, "every record committed once unblocked")
    assert scene.count(scene.blocked) == 3 * SERIES
    assert _metric(scene.worker_port, "ferryman_records_dead_lettered_total") == 0
    assert _dead_letters(scene.bootstrap, scene.dlq, 0) == []
    assert worker.terminate() == 0
