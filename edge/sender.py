"""Drain a DiskQueue into Kafka, in order, acknowledging only what Kafka acknowledged.

Runs in its own thread. When Kafka is unreachable the queue simply grows on disk
(bounded, oldest dropped and counted); when it returns, the backlog drains in
order. Position in the queue advances only after the broker acknowledged every
message up to it (acks=all).
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
from ferryman.kafkaconfig import PLAINTEXT_CREDENTIALS, KafkaCredentials
from ferryman.telemetry import Counter, Gauge

from .diskqueue import DiskQueue

__all__ = ["KafkaSender"]

log = logging.getLogger("ferryman.edge.sender")


class KafkaSender:
    def __init__(
        self,
        queue: DiskQueue,
        *,
        bootstrap_servers: str,
        topic: str,
        headers: Sequence[tuple[str, bytes]],
        ack_timeout: float,
        sent: Counter,
        errors: Counter,
        backlog: Gauge,
        window_records: int = 256,
        window_bytes: int = 8 * 2**20,
        credentials: KafkaCredentials = PLAINTEXT_CREDENTIALS,
    ) -> None:
        self.queue = queue
        self.bootstrap_servers = bootstrap_servers
        self.topic = topic
        self.headers = list(headers)
        self.ack_timeout = ack_timeout
        self.window_records = window_records
        self.window_bytes = window_bytes
        self.credentials = credentials
        self._sent = sent
        self._errors = errors
        self._backlog = backlog
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._producer: KafkaProducer | None = None
        self._partitions = 0
        self.connected = False
        self._thread = threading.Thread(target=self._run, name="ferryman-kafka-sender", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def stop(self, drain_timeout: float = 10.0) -> None:
        """Try to drain for ``drain_timeout`` seconds, then stop; the rest stays on disk."""
        deadline = time.monotonic() + drain_timeout
        while (
            self.queue.pending_bytes() > 0
            and time.monotonic() < deadline
            and self._thread.is_alive()
        ):
            self._wake.set()
            time.sleep(0.05)
        self._stop.set()
        self._wake.set()
        self._thread.join(timeout=drain_timeout + 5)
        if self._producer is not None:
            self._producer.close(timeout=5)

    # ---- the thread ---------------------------------------------------------------

    def _run(self) -> None:
        backoff = 0.2
        while not self._stop.is_set():
            self._backlog.set(self.queue.pending_bytes())
            try:
                sent = self._send_window()
            except (KafkaError, OSError, ValueError) as exc:
                self.queue.rewind()
                if self.connected:
                    log.warning(
                        "Kafka unavailable (%s: %s); buffering on disk", type(exc).__name__, exc
                    )
                self.connected = False
                self._errors.labels(error_type=type(exc).__name__, stage="produce").inc()
                self._discard_producer()
                self._stop.wait(backoff)
                backoff = min(backoff * 2, 10.0)
                continue
            backoff = 0.2
            if not sent:
                self._wake.wait(0.2)
                self._wake.clear()

    def _send_window(self) -> int:
        entries = self.queue.read(self.window_records, self.window_bytes)
        if not entries:
            return 0
        producer = self._ensure_producer()
        futures: list[Any] = [
            producer.send(
                self.topic,
                value=e.payload,
                partition=e.bucket % self._partitions,
                headers=self.headers,
            )
            for e in entries
        ]
        producer.flush(timeout=self.ack_timeout)
        for future in futures:
            future.get(timeout=self.ack_timeout)
        self.queue.ack(entries[-1].end)
        if not self.connected:
            log.info("Kafka reachable at %s; draining the disk buffer", self.bootstrap_servers)
            self.connected = True
        self._sent.inc(sum(e.samples for e in entries))
        return len(entries)

    def _ensure_producer(self) -> KafkaProducer:
        if self._producer is None:
            # Payloads are snappy'd remote-write already: no second compression.
            producer = kafka_producer(
                self.bootstrap_servers,
                "ferryman-edge",
                request_timeout_ms=int(self.ack_timeout * 1000),
                max_block_ms=int(self.ack_timeout * 1000),
                credentials=self.credentials,
            )
            partitions = producer.partitions_for(self.topic)
            if not partitions:
                producer.close(timeout=1)
                raise KafkaError(f"topic {self.topic} does not exist")
            self._partitions = len(partitions)
            self._producer = producer
        return self._producer

    def _discard_producer(self) -> None:
        if self._producer is not None:
            try:
                self._producer.close(timeout=1)
            except Exception as exc:  # closing a broken producer must not kill the thread
                log.debug("closing producer: %s", exc)
            self._producer = None
