"""The Kafka clients the runtime drives, as the calls it makes, and how it makes them.

:class:`Consumer` and :class:`Producer` name exactly what the runtime calls on
kafka-python's ``KafkaConsumer`` and ``KafkaProducer``; tests hand the runtime
in-memory fakes with the same calls (``Runtime(..., consumer=..., producer=...)``).
:func:`connect_consumer` and :func:`connect_producer` make the real ones, and
:func:`once_reachable` keeps trying one of them until Kafka answers.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from kafka import KafkaConsumer, TopicPartition
from kafka.errors import KafkaTimeoutError
from kafka.structs import OffsetAndMetadata

from ferryman.kafka import producer as kafka_producer

from .settings import WorkerSettings

__all__ = [
    "BOOTSTRAP_TIMEOUT_MS",
    "Consumer",
    "ConsumerFactory",
    "Message",
    "Producer",
    "ProducerFactory",
    "connect_consumer",
    "connect_producer",
    "once_reachable",
]

log = logging.getLogger("ferryman.worker")
T = TypeVar("T")


class Message(Protocol):
    """One consumed message as ``poll`` returns it (kafka-python's ``ConsumerRecord``)."""

    @property
    def topic(self) -> str: ...
    @property
    def partition(self) -> int: ...
    @property
    def offset(self) -> int: ...
    @property
    def key(self) -> bytes | None: ...
    @property
    def value(self) -> bytes | None: ...
    @property
    def headers(self) -> Sequence[tuple[str, bytes]] | None: ...
    @property
    def timestamp(self) -> int: ...


class Consumer(Protocol):
    """The calls the runtime makes on a group member."""

    def subscribe(self, topics: Sequence[str], *, listener: Any) -> None: ...
    def unsubscribe(self) -> None: ...
    def partitions_for_topic(self, topic: str) -> Collection[int] | None: ...
    def poll(
        self, timeout_ms: int = 0, max_records: int | None = None
    ) -> Mapping[TopicPartition, Sequence[Message]]: ...
    def assignment(self) -> set[TopicPartition]: ...
    def paused(self) -> set[TopicPartition]: ...
    def pause(self, *partitions: TopicPartition) -> None: ...
    def resume(self, *partitions: TopicPartition) -> None: ...
    def seek(self, partition: TopicPartition, offset: int) -> None: ...
    def commit(self, offsets: Mapping[TopicPartition, OffsetAndMetadata]) -> None: ...
    def end_offsets(self, partitions: Iterable[TopicPartition]) -> Mapping[TopicPartition, int]: ...
    def position(self, partition: TopicPartition) -> int | None: ...
    def close(self, autocommit: bool = True) -> None: ...
    def group_metadata(self) -> Any: ...


class SendResult(Protocol):
    def get(self, timeout: float | None = None) -> Any: ...


class Producer(Protocol):
    """The calls the runtime makes to dead-letter and to produce a transform's outputs."""

    def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> SendResult: ...
    def flush(self, timeout: float | None = None) -> None: ...
    def close(self, timeout: float | None = None) -> None: ...


ConsumerFactory = Callable[[WorkerSettings], Consumer]

#: How long one attempt to reach Kafka at start may take.
BOOTSTRAP_TIMEOUT_MS = 10_000
ProducerFactory = Callable[[WorkerSettings], Producer]


def connect_consumer(settings: WorkerSettings) -> Consumer:
    """The group member of ``settings``: commits only when told, starts at the earliest
    offset a new group has."""
    k = settings.kafka
    consumer: Consumer = KafkaConsumer(
        **k.credentials().kwargs(),
        bootstrap_servers=k.bootstrap_servers,
        group_id=settings.group_id,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_poll_records=k.max_poll_records,
        session_timeout_ms=k.session_timeout_ms,
        max_poll_interval_ms=k.max_poll_interval_ms,
        # A topic created after the worker started is seen within seconds.
        metadata_max_age_ms=10_000,
        # One bootstrap attempt; the runtime tries again until Kafka answers or it is
        # stopped, so a stop while Kafka is away waits for this at most.
        bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
        client_id=f"ferryman-{settings.function}",
    )
    return consumer


def connect_producer(settings: WorkerSettings) -> Producer:
    """The producer of dead letters and outputs (snappy, acks=all, idempotent)."""
    producer: Producer = kafka_producer(
        settings.kafka.bootstrap_servers,
        f"ferryman-{settings.function}-producer",
        compression="snappy",
        credentials=settings.kafka.credentials(),
    )
    return producer


def once_reachable(connect: Callable[[], T], bootstrap: str, stopping: threading.Event) -> T | None:
    """What ``connect`` makes, once Kafka answers it; None if ``stopping`` is set first.

    A worker started before its Kafka, or while Kafka is away, waits (not ready) and
    says so at each attempt, instead of exiting: one attempt lasts at most
    :data:`BOOTSTRAP_TIMEOUT_MS`, then a second passes before the next.
    """
    while True:
        try:
            return connect()
        except KafkaTimeoutError as exc:
            log.warning("cannot reach Kafka at %s (%s); trying again", bootstrap, exc)
        if stopping.wait(1.0):
            return None
