"""A poison record alone in its batch, against the real Kafka and Elasticsearch.

The record's documents go to an index carrying Elasticsearch's flood-stage block
(``read_only_allow_delete``): each is refused with a per-item 429, for now, every
time, while documents for an open index are stored (see ``test_retry_lane.Scene``).
Produced alone, it looks like an outage until records arrive behind it: then the
worker widens its batch with them, the backend takes them, and the lone record is
dead-lettered with the backend's reason. No retry lane is configured.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from elasticsearch import Elasticsearch
from kafka import KafkaConsumer

from tests.integration.pipeline import Worker, wait_for
from tests.integration.workers.test_retry_lane import SERIES, Scene

BOUND = 3  # retry.partial_max_attempts


@pytest.fixture
def scene(stack, unique) -> Iterator[Scene]:
    client = Elasticsearch(stack("elasticsearch", "http"), request_timeout=30)
    made = Scene(stack, unique, client)
    yield made
    made.cleanup()
    client.close()


def _metric(worker: Worker, name: str, **labels: str) -> float:
    try:
        return worker.metric(name, **labels)
    except httpx.TransportError:  # still starting
        return 0.0


def _dead_letters(scene: Scene, expected: int) -> list[Any]:
    consumer = KafkaConsumer(scene.dlq, bootstrap_servers=scene.bootstrap,
                             auto_offset_reset="earliest", consumer_timeout_ms=3000)
    try:
        got: list[Any] = []
        deadline = time.monotonic() + 60
        while len(got) < expected and time.monotonic() < deadline:
            got.extend(consumer)
        got.extend(consumer)  # and nothing more arrives
        return got
    finally:
        consumer.close()


def test_a_lone_poison_record_holds_until_records_behind_it_are_stored(
        scene: Scene, tmp_path: Path, processes) -> None:
    settings = scene.settings(port=scene.worker_port)
    del settings["retry_lane"]
    settings["retry"] = {**settings["retry"], "partial_max_attempts": BOUND}
    scene.produce(["y"])  # alone on its partition
    worker = processes(Worker(tmp_path, "elasticsearch_metrics", settings))

    # Refused past the bound with nothing behind it: held, not dead-lettered.
    wait_for(lambda: _metric(worker, "ferryman_documents_total", result="retry")
             >= 2 * BOUND * SERIES, 90, f"{2 * BOUND} attempts refused")
    assert scene.committed() == 0
    assert _metric(worker, "ferryman_records_dead_lettered_total") == 0
    assert _metric(worker, "ferryman_batches_widened_total") == 0

    scene.produce(["t", "t"], start=1)  # good records arrive behind it
    wait_for(lambda: scene.committed() == 3, 90, "the good records stored, all 3 committed")
    [letter] = _dead_letters(scene, 1)
    assert letter.key == b"m0"
    headers = dict(letter.headers)
    assert b"429" in headers["ferryman.error"], headers
    assert b"while the backend took others of its batch" in headers["ferryman.error"]
    assert headers["ferryman.source"] == f"{scene.topic}/0/0".encode()
    assert scene.count(scene.open) == 2 * SERIES
    assert scene.count(scene.blocked) == 0
    assert _metric(worker, "ferryman_batches_widened_total") >= 1
    assert _metric(worker, "ferryman_records_dead_lettered_total") == 1
    assert worker.terminate() == 0
    assert "widened a batch the backend refused as a whole" in worker.output()
