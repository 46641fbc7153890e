"""``ferryman worker NAME --retry-lane``: retries the records waiting in the lane.

A dramatiq worker, run in process, consumes the function's lane queue. For each
message it calls ``handle([record])`` with the same function and configuration as
the main worker, then:

* delivered: the message is acknowledged;
* refused again (``retry``, :class:`~workers.errors.Throttled` or any other exception):
  enqueued again with the next backoff (never shorter than the delay the backend asked
  for) before the message is acknowledged; at ``max_age_s`` after the first refusal it
  is dead-lettered instead;
* permanent: dead-lettered with the headers the runtime sets (``ferryman.error``,
  ``ferryman.function``, ``ferryman.source`` of the original record).

Dead letters and a transform's outputs are acknowledged by Kafka before the message
is. If Kafka or Redis fail meanwhile, the message is not acknowledged and dramatiq
tries it again later (at-least-once: the sink sees a record again, never loses one).
``handle`` is called from one thread at a time, as functions expect.

``/metrics``: ``ferryman_records_retried_total``, ``ferryman_records_sent_total``,
``ferryman_records_dead_lettered_total``, ``ferryman_errors_total`` and
``ferryman_retry_lane_queue_length{state="ready"|"delayed"}`` — the lengths of the Redis
lists ``<namespace>:<queue>`` and ``<namespace>:<queue>.DQ`` that KEDA scales on.
"""

from __future__ import annotations

import logging
import random
import signal
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

import dramatiq
from dramatiq.middleware import Retries
from kafka import KafkaProducer

from ferryman.kafka import producer as kafka_producer
from ferryman.telemetry import Registry

from .clients import BOOTSTRAP_TIMEOUT_MS, once_reachable
from .dead_letter import dead_letter_headers
from .errors import Permanent, Throttled
from .function import Handler
from .records import Delivered, Record
from .retry_lane import ACTOR, Lane, LaneMessage, LaneUnavailable, make_broker, next_delay
from .settings import RetryLaneSettings, WorkerSettings

__all__ = ["RetryWorker"]

log = logging.getLogger("ferryman.retry_lane")


class RetryWorker:
    """Retries ``settings.function``'s lane until :meth:`stop`."""

    def __init__(
        self,
        settings: WorkerSettings,
        handler: Handler,
        registry: Registry,
        *,
        wall: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        if settings.retry_lane is None:
            raise ValueError("the retry worker needs a retry_lane section")
        self.settings = settings
        self.lane_settings: RetryLaneSettings = settings.retry_lane
        self.handler = handler
        self.wall = wall
        self.jitter = jitter
        self.stopping = threading.Event()
        self.ready = False
        self.redis_ok_at = 0.0
        self._handle_lock = threading.Lock()
        ls = self.lane_settings
        # Retries only covers our own failures (Kafka or Redis away while finishing a
        # message): it puts the same message back, forever, with dramatiq's backoff.
        self.broker = make_broker(
            ls,
            [
                Retries(
                    retry_when=lambda _retries, _exc: True,
                    min_backoff=int(ls.min_backoff_s * 1000),
                    max_backoff=int(ls.max_backoff_s * 1000),
                )
            ],
        )
        self.lane = Lane(ls, settings.function, broker=self.broker)
        dramatiq.actor(broker=self.broker, actor_name=ACTOR, queue_name=self.lane.queue)(
            self._process
        )
        self.producer: KafkaProducer | None = None
        self.worker: dramatiq.Worker | None = None
        labels = ["function"]
        self._function = settings.function
        self.m_retried = registry.counter(
            "ferryman_records_retried_total",
            "Lane records refused again and put back with a delay.",
            labels,
        )
        self.m_sent = registry.counter(
            "ferryman_records_sent_total", "Records delivered to the next hop.", labels
        )
        self.m_dead = registry.counter(
            "ferryman_records_dead_lettered_total", "Records sent to the dead-letter topic.", labels
        )
        self.m_errors = registry.counter(
            "ferryman_errors_total",
            "Errors by type and stage.",
            ["function", "error_type", "stage"],
        )
        self.m_queue = registry.gauge(
            "ferryman_retry_lane_queue_length",
            "Message ids in the lane's Redis lists (ready: due now; delayed: waiting).",
            ["function", "queue", "state"],
        )
        for counter in (self.m_retried, self.m_sent, self.m_dead):
            counter.labels(function=self._function)  # at 0 from the start, for increase()

    # ---- lifecycle ---------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self.stop())
        signal.signal(signal.SIGINT, lambda *_: self.stop())

    def stop(self) -> None:
        if not self.stopping.is_set():
            log.info(
                "stop requested; finishing the messages in hand within %.0fs",
                self.settings.shutdown_deadline_s,
            )
            self.stopping.set()

    def checks(self) -> Mapping[str, Callable[[], bool]]:
        """``/healthz``: Redis answered within a minute; ``/readyz``: consuming."""
        return {
            "/healthz": lambda: time.monotonic() - self.redis_ok_at < 60,
            "/readyz": lambda: self.ready,
        }

    def run(self) -> None:
        """Consume the lane until :meth:`stop`; returns once the worker has stopped."""
        k = self.settings.kafka
        self.producer = once_reachable(
            lambda: kafka_producer(
                k.bootstrap_servers,
                f"ferryman-{self.settings.function}-retry-lane",
                compression="snappy",
                credentials=k.credentials(),
                bootstrap_timeout_ms=BOOTSTRAP_TIMEOUT_MS,
            ),
            k.bootstrap_servers,
            self.stopping,
        )
        if self.producer is None:  # stopped before Kafka answered
            self.lane.close()
            self.handler.close()
            return
        self.redis_ok_at = time.monotonic()
        self.worker = dramatiq.Worker(self.broker, worker_threads=1, worker_timeout=500)
        self.worker.start()
        self.ready = True
        log.info("retry lane %s: consuming", self.lane.describe())
        try:
            while not self.stopping.is_set():
                self._refresh_gauge()
                self.stopping.wait(2.0)
        finally:
            self.ready = False
            self.worker.stop(timeout=int(self.settings.shutdown_deadline_s * 1000))
            self.producer.flush(timeout=5)
            self.producer.close(timeout=5)
            self.lane.close()
            self.handler.close()
            log.info("retry worker stopped")

    def _refresh_gauge(self) -> None:
        """The queue-length gauges; and maintenance, so messages a killed retry worker
        held come back once its heartbeat has timed out."""
        try:
            self.lane.maintain()
            ready, delayed = self.lane.lengths()
        except LaneUnavailable as exc:
            self.m_errors.labels(
                function=self._function, error_type="LaneUnavailable", stage="queue_length"
            ).inc()
            log.warning("cannot read the lane's length: %s", exc)
            return
        self.redis_ok_at = time.monotonic()
        self.m_queue.labels(function=self._function, queue=self.lane.queue, state="ready").set(
            ready
        )
        self.m_queue.labels(function=self._function, queue=self.lane.queue, state="delayed").set(
            delayed
        )

    # ---- one message -------------------------------------------------------------------

    def _process(self, payload: Any) -> None:
        try:
            message = LaneMessage.from_payload(payload)
        except ValueError as exc:
            # Nothing to deliver or dead-letter: say so loudly and let the message go.
            self.m_errors.labels(
                function=self._function, error_type="malformed", stage="retry_lane"
            ).inc()
            log.error("dropped a malformed lane message: %s", exc)
            return
        record = message.record
        error = "refused for now"
        hint: float | None = None
        with self._handle_lock:
            try:
                result = self.handler.handle([record])
                hint = result.retry_delay
            except Permanent as exc:
                result = Delivered(dead=[(record, exc.reason)])
            except Throttled as exc:
                result, hint, error = Delivered(retry=[record]), exc.delay, exc.reason
            except Exception as exc:  # a function's bug or a backend away: try later
                result, error = Delivered(retry=[record]), f"{type(exc).__name__}: {exc}"
        self._produce(result)
        if result.retry:
            self._again(message, error, hint)
        elif not result.dead:
            self.m_sent.labels(function=self._function).inc()
            log.debug(
                "delivered %s/%d/%d after %d attempts",
                record.topic,
                record.partition,
                record.offset,
                message.attempts + 1,
            )

    def _again(self, message: LaneMessage, error: str, hint: float | None) -> None:
        now = self.wall()
        updated = replace(
            message,
            attempts=message.attempts + 1,
            lane_attempts=message.lane_attempts + 1,
            last_error=error,
        )
        delay = next_delay(updated, now, self.lane_settings, hint, self.jitter())
        if delay is not None:
            self.lane.send(updated, delay)  # raises for dramatiq's Retries when Redis is away
            self.m_retried.labels(function=self._function).inc()
            return
        record = message.record
        reason = (
            f"retry lane: still refused {now - message.first_failure:.0f}s after the "
            f"first refusal (max_age_s {self.lane_settings.max_age_s:g}), "
            f"{updated.attempts} attempts; last error: {error}"
        )
        self._produce(Delivered(dead=[(record, reason)]))
        log.warning(
            "gave up on %s/%d/%d after %d attempts: dead-lettered",
            record.topic,
            record.partition,
            record.offset,
            updated.attempts,
        )

    def _produce(self, result: Delivered) -> None:
        """Dead-letter and produce what the function handed back; waits for Kafka's acks."""
        assert self.producer is not None
        k = self.settings.kafka
        timeout = self.settings.retry.delivery_timeout_s
        futures = [self._dead_letter(record, reason) for record, reason in result.dead]
        if result.outputs:
            if k.output_topic is None:
                raise Permanent("function produced outputs but kafka.output_topic is not set")
            futures += [
                self.producer.send(
                    k.output_topic, value=o.value, key=o.key, headers=list(o.headers)
                )
                for o in result.outputs
            ]
        if not futures:
            return
        self.producer.flush(timeout=timeout)
        for future in futures:
            future.get(timeout=timeout)
        if result.dead:
            self.m_dead.labels(function=self._function).inc(len(result.dead))
            log.error(
                "dead-lettered %d records to %s; first reason: %s",
                len(result.dead),
                k.dead_letter_topic,
                result.dead[0][1],
            )

    def _dead_letter(self, record: Record, reason: str) -> Any:
        assert self.producer is not None
        return self.producer.send(
            self.settings.kafka.dead_letter_topic,
            value=record.value,
            key=record.key,
            headers=list(dead_letter_headers(record, reason, self.settings.function)),
        )
