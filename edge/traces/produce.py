"""The receiver's one Kafka producer, and the synchronous produce of one request.

A request's messages are sent together and the request waits until Kafka acknowledged
every one of them (``acks=all``, :func:`ferryman.kafka.producer`) or its time is up;
only then may the receiver answer success. Until the producer has connected and seen
the topic's partitions, and whenever a produce fails or times out, a request gets
:class:`KafkaUnavailableError` (the caller answers 503 / UNAVAILABLE and the client
retries: a message Kafka took late is then written twice, never lost).

A thread connects (and reconnects after a failed start) in the background, so a
receiver started before Kafka serves 503s at once instead of blocking its clients.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence
from typing import Any

from kafka import KafkaProducer
from kafka.errors import KafkaError

from ferryman.kafka import producer as kafka_producer
from ferryman.kafkaconfig import KafkaCredentials
from ferryman.telemetry import Counter

__all__ = ["KafkaLink", "KafkaUnavailableError", "Outgoing"]

log = logging.getLogger("ferryman.edge.traces")

#: (key, value, headers) of one message
Outgoing = tuple[bytes, bytes, Sequence[tuple[str, bytes]]]


class KafkaUnavailableError(Exception):
    """Raised when Kafka did not acknowledge a request's messages in time (or is not
    connected yet); the message says why, for the client's error text."""


class KafkaLink:
    def __init__(
        self,
        *,
        bootstrap_servers: str,
        topic: str,
        credentials: KafkaCredentials,
        max_message_bytes: int,
        ack_timeout: float,
        errors: Counter,
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.credentials = credentials
        self.max_message_bytes = max_message_bytes
        self.ack_timeout = ack_timeout
        self._errors = errors
        self._producer: KafkaProducer | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._connect, name="ferryman-kafka", daemon=True)

    @property
    def ready(self) -> bool:
        """Whether the producer is connected and has seen the topic's partitions."""
        return self._producer is not None

    def start(self) -> None:
        self._thread.start()

    def close(self) -> None:
        self._stop.set()
        self._thread.join(timeout=10)
        if self._producer is not None:
            self._producer.close(timeout=5)

    def produce(self, messages: Sequence[Outgoing], timeout: float | None = None) -> None:
        """Send ``messages`` (partitioned by key) and wait until Kafka acknowledged all of
        them; raises KafkaUnavailableError otherwise."""
        producer = self._producer
        if producer is None:
            raise KafkaUnavailableError(f"Kafka at {self.bootstrap_servers} not connected yet")
        deadline = time.monotonic() + (timeout if timeout is not None else self.ack_timeout)
        try:
            futures: list[Any] = [
                producer.send(self.topic, value=value, key=key, headers=list(headers))
                for key, value, headers in messages
            ]
            for future in futures:
                future.get(timeout=max(0.0, deadline - time.monotonic()))
        except (KafkaError, OSError) as exc:
            self._errors.labels(error_type=type(exc).__name__, stage="produce").inc()
            raise KafkaUnavailableError(
                f"Kafka did not acknowledge in time ({type(exc).__name__})"
            ) from None

    def _connect(self) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            try:
                producer = kafka_producer(
                    self.bootstrap_servers,
                    "ferryman-edge-traces",
                    # Spans are protobuf: text-like, worth compressing.
                    compression="snappy",
                    max_request_size=self.max_message_bytes + 2**16,
                    request_timeout_ms=int(self.ack_timeout * 1000),
                    max_block_ms=int(self.ack_timeout * 1000),
                    linger_ms=2,
                    credentials=self.credentials,
                )
            except (KafkaError, OSError) as exc:
                self._errors.labels(error_type=type(exc).__name__, stage="connect").inc()
                log.warning(
                    "Kafka at %s unreachable (%s); answering 503 until it is",
                    self.bootstrap_servers,
                    type(exc).__name__,
                )
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            try:
                partitions = producer.partitions_for(self.topic)
            except (KafkaError, OSError) as exc:
                partitions = None
                log.warning("Kafka topic %s: no metadata (%s)", self.topic, type(exc).__name__)
            if not partitions:
                self._errors.labels(error_type="TopicMetadata", stage="connect").inc()
                producer.close(timeout=1)
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            self._producer = producer
            log.info(
                "Kafka reachable at %s, topic %s has %d partitions",
                self.bootstrap_servers,
                self.topic,
                len(partitions),
            )
            return
