"""The runtime's metrics: declared once each, with their help text, read nowhere else.

``ferryman_records_received_total``, ``ferryman_records_sent_total``,
``ferryman_records_dead_lettered_total``, ``ferryman_records_handed_to_lane_total``,
``ferryman_batches_total{outcome}``, ``ferryman_errors_total{error_type,stage}``,
``ferryman_batches_widened_total``, ``ferryman_batch_duration_seconds``,
``ferryman_commits_total`` and ``ferryman_consumer_lag{topic,partition}``, each also
labelled ``function``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ferryman.telemetry import Registry

from .clients import Consumer

__all__ = ["RuntimeMetrics"]

log = logging.getLogger("ferryman.worker")

#: Seconds between two reads of the partitions' end offsets for the lag gauge.
LAG_INTERVAL_S = 5.0


class RuntimeMetrics:
    """What one worker process counts, labelled with its function."""

    def __init__(self, registry: Registry, function: str, clock: Callable[[], float]) -> None:
        self.function = function
        self.clock = clock
        self.received = registry.counter(
            "ferryman_records_received_total", "Records consumed from Kafka.", ["function"]
        )
        self.sent = registry.counter(
            "ferryman_records_sent_total", "Records delivered to the next hop.", ["function"]
        )
        self.dead = registry.counter(
            "ferryman_records_dead_lettered_total",
            "Records sent to the dead-letter topic.",
            ["function"],
        )
        self.batches = registry.counter(
            "ferryman_batches_total", "Batches finished, by outcome.", ["function", "outcome"]
        )
        self.errors = registry.counter(
            "ferryman_errors_total",
            "Errors by type and stage.",
            ["function", "error_type", "stage"],
        )
        self.latency = registry.histogram(
            "ferryman_batch_duration_seconds", "Time from batch start to commit.", ["function"]
        )
        self.lag = registry.gauge(
            "ferryman_consumer_lag",
            "Records behind the end of the partition.",
            ["function", "topic", "partition"],
        )
        self.commits = registry.counter(
            "ferryman_commits_total", "Offset commits after delivery.", ["function"]
        )
        self.handed = registry.counter(
            "ferryman_records_handed_to_lane_total",
            "Records refused for now handed to the retry lane (Redis acknowledged).",
            ["function"],
        )
        self.widened = registry.counter(
            "ferryman_batches_widened_total",
            "Times a batch whose records were refused past the poison bound took newer "
            "records of its partitions, to tell poison records from an outage.",
            ["function"],
        )
        self._lag_at: float | None = None

    def count_received(self, n: int) -> None:
        self.received.labels(function=self.function).inc(n)

    def count_sent(self, n: int) -> None:
        self.sent.labels(function=self.function).inc(n)

    def count_dead(self, n: int) -> None:
        self.dead.labels(function=self.function).inc(n)

    def count_handed(self, n: int) -> None:
        self.handed.labels(function=self.function).inc(n)

    def count_widened(self) -> None:
        self.widened.labels(function=self.function).inc()

    def count_batch(self, outcome: str) -> None:
        self.batches.labels(function=self.function, outcome=outcome).inc()

    def count_error(self, error_type: str, stage: str, n: int = 1) -> None:
        self.errors.labels(function=self.function, error_type=error_type, stage=stage).inc(n)

    def count_commit(self) -> None:
        self.commits.labels(function=self.function).inc()

    def observe_batch(self, seconds: float) -> None:
        self.latency.labels(function=self.function).observe(seconds)

    def update_lag(self, consumer: Consumer) -> None:
        """Refresh the lag of every assigned partition, at most every few seconds."""
        now = self.clock()
        if self._lag_at is not None and now - self._lag_at < LAG_INTERVAL_S:
            return
        self._lag_at = now
        assigned = list(consumer.assignment())
        if not assigned:
            return
        try:
            ends = consumer.end_offsets(assigned)
            positions = {tp: consumer.position(tp) for tp in assigned}
        except Exception as exc:  # lag is telemetry: never let it stop delivery
            log.debug("lag update failed: %s", exc)
            return
        for tp, position in positions.items():
            behind = max(0, ends.get(tp, 0) - (position or 0))
            self.lag.labels(
                function=self.function, topic=tp.topic, partition=str(tp.partition)
            ).set(behind)
