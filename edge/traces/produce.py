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

from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import ConfigResource, ConfigResourceType
from kafka.errors import KafkaError

from ferryman.kafka import producer as kafka_producer
from ferryman.kafkaconfig import KafkaCredentials
from ferryman.telemetry import Counter

from .config import MESSAGE_HEADROOM

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
        client_id: str = "ferryman-edge-traces",
        compression: str | None = "snappy",
    ) -> None:
        self.bootstrap_servers = bootstrap_servers
        #: The Kafka client id, and the producer's compression: None for values that are
        #: compressed already (snappy'd remote write and Loki pushes); spans are plain
        #: protobuf, worth compressing (the default).
        self.client_id = client_id
        self.compression = compression
        self.topic = topic
        self.credentials = credentials
        self.max_message_bytes = max_message_bytes
        self.ack_timeout = ack_timeout
        self._errors = errors
        self._producer: KafkaProducer | None = None
        #: The topic's ``max.message.bytes`` once read (None: not known)
        self.topic_max_message_bytes: int | None = None
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

    def _topic_limit(self) -> int | None:
        """The topic's ``max.message.bytes`` (its own or the broker's default), or None
        when Kafka does not say."""
        try:
            admin = KafkaAdminClient(
                bootstrap_servers=self.bootstrap_servers,
                client_id=self.client_id,
                request_timeout_ms=int(self.ack_timeout * 1000),
                **self.credentials.kwargs(),
            )
        except (KafkaError, OSError) as exc:
            log.warning("cannot read the topic's max.message.bytes: %s", type(exc).__name__)
            return None
        try:
            found = admin.describe_configs(
                [ConfigResource(ConfigResourceType.TOPIC, self.topic, ["max.message.bytes"])],
                config_filter="all",
            )
            value = found["topic"][self.topic]["max.message.bytes"]["value"]
            return int(value)
        except (KafkaError, OSError, KeyError, TypeError, ValueError) as exc:
            log.warning("cannot read the topic's max.message.bytes: %s", type(exc).__name__)
            return None
        finally:
            admin.close()

    def _batch_size(self, topic_limit: int | None) -> int:
        """Bytes a record batch may take before it is closed: as much as a message may
        (the topic's limit less the headroom, when smaller), at least the client's
        default of 16 KiB. Requests' messages batch together while one produce is in
        flight; with that default a batch held three of the bench's traces, and the
        client's per-batch work cost more CPU than the spans did."""
        largest = self.max_message_bytes
        if topic_limit is not None:
            largest = min(largest, topic_limit - MESSAGE_HEADROOM)
        return max(16 * 2**10, largest)

    def _connect(self) -> None:
        backoff = 0.2
        batch_size = self._batch_size(None)
        while not self._stop.is_set():
            try:
                producer = kafka_producer(
                    self.bootstrap_servers,
                    self.client_id,
                    compression=self.compression,
                    max_request_size=self.max_message_bytes + 2**16,
                    request_timeout_ms=int(self.ack_timeout * 1000),
                    max_block_ms=int(self.ack_timeout * 1000),
                    linger_ms=2,
                    batch_size=batch_size,
                    # The client's own sensors: nobody reads them, they cost CPU per record.
                    metrics_enabled=False,
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
            self.topic_max_message_bytes = self._topic_limit()
            if self._batch_size(self.topic_max_message_bytes) < batch_size:
                # The topic takes smaller batches than this producer makes: a new one.
                batch_size = self._batch_size(self.topic_max_message_bytes)
                producer.close(timeout=1)
                continue
            self._producer = producer
            log.info(
                "Kafka reachable at %s, topic %s has %d partitions, max.message.bytes %s",
                self.bootstrap_servers,
                self.topic,
                len(partitions),
                self.topic_max_message_bytes,
            )
            if (
                self.topic_max_message_bytes is not None
                and self.max_message_bytes > self.topic_max_message_bytes - MESSAGE_HEADROOM
            ):
                log.warning(
                    "kafka.max_message_bytes (%d) does not fit the topic's max.message.bytes "
                    "(%d) with headroom: messages are cut below %d bytes instead",
                    self.max_message_bytes,
                    self.topic_max_message_bytes,
                    self.topic_max_message_bytes - MESSAGE_HEADROOM,
                )
            return
