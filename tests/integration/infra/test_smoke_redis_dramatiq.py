"""Smoke test: a dramatiq actor round trip on the real Redis broker."""

from __future__ import annotations

import time

import dramatiq
import redis
from dramatiq.brokers.redis import RedisBroker


def test_dramatiq_actor_round_trip(stack, unique):
    url = stack("redis", "url")
    broker = RedisBroker(url=url, namespace=f"ferryman-smoke-{unique}")
    client = redis.Redis.from_url(url)

    @dramatiq.actor(broker=broker, queue_name=unique, max_retries=0)
    def record(value: str) -> None:
        client.rpush(f"{unique}:done", value)

    for i in range(5):
        record.send(f"item-{i}")
    worker = dramatiq.Worker(broker, worker_threads=2, worker_timeout=100)
    worker.start()
    try:
        deadline = time.monotonic() + 20
        while client.llen(f"{unique}:done") < 5 and time.monotonic() < deadline:
            time.sleep(0.1)
    finally:
        worker.stop()
        broker.close()
    done = sorted(v.decode() for v in client.lrange(f"{unique}:done", 0, -1))
    client.delete(f"{unique}:done")
    client.close()
    assert done == [f"item-{i}" for i in range(5)]
