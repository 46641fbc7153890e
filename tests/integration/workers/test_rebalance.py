"""Rebalances under load while the backend refuses: nothing lost, nothing stuck.

A real ``ferryman worker elasticsearch_metrics`` consumes a topic while records keep
coming, the topic gains partitions twice (the group leader then rebalances on its own:
kafka-python 3.0.12 left such a rebalance unfinished when a short poll cut it, and the
worker fetched nothing more) and other members keep joining and leaving its group:
plain kafka-python consumers (which never commit) and a second worker, SIGTERMed after
a while. Meanwhile Elasticsearch refuses part of every batch (the flood-stage block,
``read_only_allow_delete``, on yesterday's index: a 429 per document, which the real
sink hands back in ``Delivered.retry``), so the worker spends its time in the backoff
sleep with its partitions paused: the moment a rebalance used to leave one paused for
good. Once the block is lifted every record must end up stored and committed.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from elasticsearch import Elasticsearch
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewPartitions
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.structs import MemberState

from tests.integration.pipeline import Worker, create_topics, free_port, wait_for
from tests.integration.workers.blocked import BlockedIndexScene
from workers.kafka_quirks import finish_unfinished_rebalance, release_parked_records

SERIES = 2  # documents per record
PARTITIONS = 4
PRODUCE_S = 30.0  # records keep coming this long
BLOCKED_S = 18.0  # Elasticsearch refuses yesterday's documents this long
RATE = 12  # records a second


class Scene(BlockedIndexScene):
    def __init__(self, stack, unique: str, es: Elasticsearch) -> None:
        super().__init__(stack, unique, es, partitions=PARTITIONS)

    def settings(self) -> dict[str, Any]:
        return {
            "kafka": {
                "bootstrap_servers": self.bootstrap,
                "input_topic": self.topic,
                "group_id": self.group,
                "dead_letter_topic": self.dlq,
                "session_timeout_ms": 6000,
            },
            "batch": {"max_records": 50, "max_wait_s": 0.3},
            # Refused records wait in process for as long as the block lasts.
            "retry": {
                "initial_backoff_s": 0.2,
                "max_backoff_s": 1.0,
                "partial_max_attempts": None,
                "partial_max_age_s": None,
            },
            "http": {"listen": f"127.0.0.1:{free_port()}"},
            "shutdown_deadline_s": 5,
            "config": self.config,
        }


@pytest.fixture
def scene(stack, unique, es) -> Iterator[Scene]:
    made = Scene(stack, unique, es)
    yield made
    made.cleanup()


class Producing(threading.Thread):
    """Produces RATE records a second for PRODUCE_S seconds; every third one carries
    yesterday's samples (refused while the block lasts)."""

    def __init__(self, scene: Scene) -> None:
        super().__init__(daemon=True)
        self.scene = scene
        self.days: list[str] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            producer = KafkaProducer(bootstrap_servers=self.scene.bootstrap, acks="all")
            end = time.monotonic() + PRODUCE_S
            m = 0
            while time.monotonic() < end:
                for _ in range(RATE):
                    day = "y" if m % 3 == 0 else "t"
                    key, value, headers = self.scene.record(m, day, SERIES)
                    producer.send(self.scene.topic, key=key, value=value, headers=headers)
                    self.days.append(day)
                    m += 1
                producer.flush(timeout=30)
                time.sleep(1.0)
            producer.close()
        except BaseException as exc:  # reported by the test
            self.error = exc


class Churning(threading.Thread):
    """Plain consumers join the group, hold what they are given for a moment and leave
    without committing, over and over: a rebalance every second or two."""

    def __init__(self, scene: Scene, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.scene = scene
        self.stop = stop
        self.rounds = 0
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            while not self.stop.is_set():
                member = KafkaConsumer(
                    self.scene.topic,
                    bootstrap_servers=self.scene.bootstrap,
                    group_id=self.scene.group,
                    enable_auto_commit=False,
                    auto_offset_reset="earliest",
                    session_timeout_ms=6000,
                    max_poll_records=1,
                )
                end = time.monotonic() + 1.5
                while time.monotonic() < end:
                    member.poll(timeout_ms=300)
                member.close(autocommit=False)
                self.rounds += 1
                self.stop.wait(1.0)
        except BaseException as exc:  # reported by the test
            self.error = exc


def grow(bootstrap: str, topic: str, partitions: int) -> None:
    """Give the topic more partitions: the leader's metadata changes under it."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_partitions({topic: NewPartitions(total_count=partitions)})
    finally:
        admin.close()


def _dead_letters(bootstrap: str, dlq: str) -> list[Any]:
    consumer = KafkaConsumer(
        dlq, bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=3000
    )
    try:
        return list(consumer)
    finally:
        consumer.close()


def test_rebalances_under_load_lose_nothing_and_leave_nothing_paused(
    scene: Scene, tmp_path: Path, processes
) -> None:
    worker = processes(Worker(tmp_path, "elasticsearch_metrics", scene.settings()))
    started = time.monotonic()
    producing = Producing(scene)
    stop_churn = threading.Event()
    churning = Churning(scene, stop_churn)
    producing.start()
    churning.start()
    try:
        time.sleep(3)
        grow(scene.bootstrap, scene.topic, PARTITIONS + 2)
        time.sleep(3)
        second = processes(Worker(tmp_path, "elasticsearch_metrics", scene.settings()))
        time.sleep(3)
        grow(scene.bootstrap, scene.topic, PARTITIONS + 4)
        time.sleep(4)
        assert second.terminate() == 0, second.output()[-3000:]
        time.sleep(max(0.0, started + BLOCKED_S - time.monotonic()))
        scene.block(False)  # the backend takes everything from now on
        time.sleep(max(0.0, started + PRODUCE_S - 4 - time.monotonic()))
    finally:
        stop_churn.set()
        churning.join(30)
        producing.join(60)
    assert producing.error is None, producing.error
    assert churning.error is None, churning.error
    assert churning.rounds >= 5, "the group hardly rebalanced"
    produced = len(producing.days)
    assert produced >= RATE * PRODUCE_S * 0.5

    wait_for(
        lambda: scene.committed() == produced,
        60,
        f"all {produced} records committed",
    )
    yesterday = producing.days.count("y")
    assert scene.count(scene.blocked) == yesterday * SERIES
    assert scene.count(scene.open) == (produced - yesterday) * SERIES
    assert _dead_letters(scene.bootstrap, scene.dlq) == []
    output = worker.output()
    assert worker.terminate() == 0, output[-3000:]
    assert "Traceback" not in output, output[-3000:]


# ---- the two kafka-python 3.0.12 defects, on the real client -------------------------------


def _consumed(polled: dict[Any, list[Any]], got: dict[int, int]) -> None:
    for tp, records in polled.items():
        got[tp.partition] = got.get(tp.partition, 0) + len(records)


def test_records_held_back_over_a_pause_are_fetched_again(stack, unique) -> None:
    """A pause while the client holds fetched records not yet returned (poll returns at
    most max_records), the other partition consumed meanwhile: without the release
    the paused partition is never fetched again."""
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (unique, 2))
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    for n in range(20):
        producer.send(unique, b"x", partition=n % 2)
    producer.flush(timeout=30)
    producer.close()
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, enable_auto_commit=False, auto_offset_reset="earliest"
    )
    tps = [TopicPartition(unique, 0), TopicPartition(unique, 1)]
    consumer.assign(tps)
    try:
        got: dict[int, int] = {}
        wait_for(
            lambda: _consumed(consumer.poll(timeout_ms=200, max_records=2), got) or got,
            20,
            "the first records",
        )
        [first] = [tp for tp in tps if got.get(tp.partition)]
        consumer.pause(first)
        for _ in range(5):  # the other partition goes on meanwhile
            _consumed(consumer.poll(timeout_ms=300), got)
        consumer.resume(first)
        released: list[TopicPartition] = []

        def all_fetched() -> bool:
            _consumed(consumer.poll(timeout_ms=200, max_records=2), got)
            released.extend(release_parked_records(consumer))
            return got == {0: 10, 1: 10}

        wait_for(all_fetched, 20, "every record of both partitions")
        assert released == [first]
    finally:
        consumer.close()


def test_a_rebalance_cut_short_by_short_polls_is_finished(stack, unique) -> None:
    """The leader rebalances on its own after the topic gained a partition; polls of
    1 ms cut the join short and the client would never finish it."""
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (unique, 1))
    events: list[str] = []

    class Listener(ConsumerRebalanceListener):
        def on_partitions_revoked(self, revoked: Any) -> None:
            events.append("revoked")

        def on_partitions_assigned(self, assigned: Any) -> None:
            events.append(f"assigned {len(assigned)}")

    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=f"g-{unique}",
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        metadata_max_age_ms=1000,
    )
    try:
        wait_for(lambda: consumer.partitions_for_topic(unique), 20, "the topic known")
        consumer.subscribe([unique], listener=Listener())
        wait_for(
            lambda: consumer.poll(timeout_ms=1000) is not None and consumer.assignment(),
            30,
            "joined",
        )
        end = time.monotonic() + 3  # the rebalance a new member sees a second after joining
        while time.monotonic() < end:
            consumer.poll(timeout_ms=100)
        events.clear()
        grow(bootstrap, unique, 2)
        wait_for(
            lambda: consumer.poll(timeout_ms=1) is not None and "revoked" in events,
            20,
            "the leader's own rebalance under way",
            interval=0,
        )

        def assigned_both() -> bool:
            consumer.poll(timeout_ms=100)
            finish_unfinished_rebalance(consumer)  # without it: REBALANCING for ever
            return "assigned 2" in events

        wait_for(assigned_both, 30, "the rebalance finished with both partitions")
        assert consumer.group_metadata().state == MemberState.STABLE
    finally:
        consumer.close(autocommit=False)
