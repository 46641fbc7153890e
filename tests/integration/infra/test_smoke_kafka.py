"""Smoke test: kafka-python against the real broker, the way workers will use it."""

from __future__ import annotations

import pytest
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic
from kafka.errors import KafkaTimeoutError
from kafka.structs import OffsetAndMetadata

from infra.local import KAFKA_TOPICS


@pytest.fixture
def topic(stack, unique):
    admin = KafkaAdminClient(bootstrap_servers=stack("kafka", "bootstrap"))
    admin.create_topics([NewTopic(unique, 2, 1)])
    yield unique
    admin.delete_topics([unique])
    admin.close()


def _consumer(bootstrap: str, topic: str, group: str) -> KafkaConsumer:
    return KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        consumer_timeout_ms=5000,
    )


def test_stack_created_the_pipeline_topics(stack):
    admin = KafkaAdminClient(bootstrap_servers=stack("kafka", "bootstrap"))
    try:
        assert set(KAFKA_TOPICS) <= set(admin.list_topics())
    finally:
        admin.close()


def test_snappy_produce_then_group_consume_with_manual_commit(stack, topic, unique):
    bootstrap = stack("kafka", "bootstrap")
    producer = KafkaProducer(bootstrap_servers=bootstrap, compression_type="snappy", acks="all")
    for i in range(200):
        producer.send(
            topic,
            key=f"series-{i % 7}".encode(),
            value=b"x" * 100 + str(i).encode(),
            headers=[("cluster", b"alpha"), ("schema", b"prw1")],
        )
    producer.flush(timeout=30)
    producer.close()

    # First consumer reads half, commits exactly what it read, and leaves.
    first = _consumer(bootstrap, topic, unique)
    seen = []
    for record in first:
        seen.append(record)
        if len(seen) == 100:
            break
    assert dict(seen[0].headers) == {"cluster": b"alpha", "schema": b"prw1"}
    last = {}
    for record in seen:
        last[record.partition] = record.offset
    first.commit(
        {TopicPartition(topic, p): OffsetAndMetadata(o + 1, "", -1) for p, o in last.items()}
    )
    committed = {p: first.committed(TopicPartition(topic, p)) for p in last}
    assert committed == {p: o + 1 for p, o in last.items()}
    first.close()

    # The same group resumes after the commit: the rest arrives, nothing twice.
    second = _consumer(bootstrap, topic, unique)
    rest = list(second)
    second.close()
    values = sorted(r.value for r in seen + rest)
    assert values == sorted(b"x" * 100 + str(i).encode() for i in range(200))


def test_uncommitted_records_are_delivered_again(stack, topic, unique):
    bootstrap = stack("kafka", "bootstrap")
    producer = KafkaProducer(bootstrap_servers=bootstrap, compression_type="snappy")
    for i in range(10):
        producer.send(topic, value=str(i).encode())
    producer.flush(timeout=30)
    producer.close()
    for _ in range(2):  # no commit: the group sees everything both times
        consumer = _consumer(bootstrap, topic, unique)
        assert sorted(r.value for r in consumer) == sorted(str(i).encode() for i in range(10))
        consumer.close()


def test_topics_are_not_auto_created(stack, unique):
    producer = KafkaProducer(bootstrap_servers=stack("kafka", "bootstrap"), max_block_ms=2000)
    with pytest.raises(KafkaTimeoutError):
        producer.send(f"never-created-{unique}", value=b"x").get(timeout=5)
    producer.close()
