"""The runtime's metrics: declared once each, with their help text, read nowhere else.

``ferryman_records_received_total``, ``ferryman_records_sent_total``,
``ferryman_records_dead_lettered_total``, ``ferryman_records_handed_to_lane_total``,
``ferryman_batches_total{outcome}``, ``ferryman_errors_total{error_type,stage}``,
``ferryman_batches_widened_total``, ``ferryman_batch_duration_seconds``,
``ferryman_commits_total``, ``ferryman_consumer_lag{topic,partition}``, ``ferryman_ready``
and ``ferryman_cluster_last_received_timestamp_seconds{cluster}``, each also labelled
``function``. The record counters start at 0 for the worker's function, so that the first
record dead-lettered after a scrape is an increase Prometheus sees (a series born at 1 has
no ``increase()``); the alert rules in ``infra/alerts`` rely on it.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

from ferryman import headers as h
from ferryman.telemetry import Registry

from .clients import Consumer
from .records import Record

__all__ = ["RuntimeMetrics"]

log = logging.getLogger("ferryman.worker")

#: Seconds between two reads of the partitions' end offsets for the lag gauge.
LAG_INTERVAL_S = 5.0
#: Distinct ``cluster`` header values with a last-received gauge of their own; records of
#: further clusters still flow, uncounted there (the header is the producer's to set, so
#: the series it makes are bounded).
MAX_CLUSTERS = 1000


class RuntimeMetrics:
    """What one worker process counts, labelled with its function."""

    def __init__(
        self,
        registry: Registry,
        function: str,
        clock: Callable[[], float],
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        """``clock`` is monotonic seconds (lag refresh), ``wall_clock`` Unix seconds (the
        last-received timestamps; default :func:`time.time`)."""
        self.function = function
        self.clock = clock
        self.wall_clock = wall_clock
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
        self.readiness = registry.gauge(
            "ferryman_ready",
            "1 while the worker consumes (partitions assigned; what /readyz answers), else 0.",
            ["function"],
        )
        self.last_received = registry.gauge(
            "ferryman_cluster_last_received_timestamp_seconds",
            "Unix time the worker last consumed a record whose cluster header names this cluster.",
            ["function", "cluster"],
        )
        self._clusters: set[str] = set()
        self._lag_at: float | None = None
        for counter in (self.received, self.sent, self.dead, self.handed):
            counter.labels(function=function)  # exposed at 0 from the start
        self.set_ready(False)

    def set_ready(self, ready: bool) -> None:
        self.readiness.labels(function=self.function).set(1.0 if ready else 0.0)

    def mark_clusters(self, records: Iterable[Record]) -> None:
        """Stamp now as the last time each ``cluster`` header among ``records`` was seen."""
        seen = {raw for r in records if (raw := r.header(h.CLUSTER))}
        if not seen:
            return
        now = self.wall_clock()
        for raw in seen:
            cluster = raw.decode("utf-8", "replace")
            if cluster not in self._clusters:
                if len(self._clusters) >= MAX_CLUSTERS:
                    continue
                self._clusters.add(cluster)
            self.last_received.labels(function=self.function, cluster=cluster).set(now)

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
