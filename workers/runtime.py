"""The consume → deliver → commit loop around one function.

Guarantees (at-least-once):

* an offset is committed only after the function reported the records up to it
  delivered, dead-lettered (the dead-letter topic acknowledged) or produced to the
  output topic (acknowledged);
* records of a partition are handed to the function in offset order and a batch
  is finished (delivered or dead-lettered) before the next one starts;
* retryable failures are retried for as long as it takes, with exponential
  backoff and jitter; fetching is paused meanwhile but the group membership kept;
* with a retry lane configured (``retry_lane:``), records the backend refuses for now
  while it takes others of the same batch are handed to the lane once the in-process
  budget is spent, and the batch is committed only after Redis acknowledged every one
  of them (Redis unreachable or the lane full: retrying in process goes on). A batch
  of which nothing was delivered (backend down, pushing back as a whole, exceptions)
  never goes to the lane: it holds the partition, so an outage does not flood Redis;
* without a retry lane, a record is dead-lettered as poison only on evidence: in the
  attempt that refused it the backend took other records of that attempt, and the
  sink pinned the refusal on the record itself (``Delivered.refused``: sent, and
  answered with a status that is not backpressure or unavailability). It goes once it
  was refused so ``retry.partial_max_attempts`` times or ``retry.partial_max_age_s``
  after the first such refusal, in an attempt that refuses it so again, with the
  backend's reason. An outage or backpressure (408, 429, 502, 503, 504, transport
  errors, Throttled, per-item 429/503) never dead-letters anything, even when it
  starts after the backend took the first records of a batch, and neither do records
  a sink handed back without sending them: they hold the partition;
* without a retry lane, records handed back past the attempt bound (attempts, on
  evidence or not) widen their batch with the newer records of their partitions, up
  to ``batch.max_records`` or ``batch.max_bytes`` records not yet delivered
  (:mod:`.widening`): retried alone a record has nothing to be compared with, and the
  backend taking some newer records while refusing it on evidence tells poison from
  an outage, so a poison record alone in its batch does not hold its partition for
  ever either (once records arrive behind it). With a lane, a batch of which nothing
  was delivered is widened once the lane's budget is spent;
* on SIGTERM fetching stops, the batch in flight gets until the deadline, then
  the offsets are committed and the group is left. A batch not finished by the
  deadline is handed back uncommitted (the next owner delivers it again).

Not guaranteed: exactly-once. A crash after delivery and before the commit
re-delivers that batch, so sinks are written to tolerate replays.

The pieces: :mod:`.batching` (when a batch is due), :mod:`.backoff` (delays between
attempts), :mod:`.rebalance` (ownership, rewinds, pausing, rejoining) with
:mod:`.kafka_quirks` (two kafka-python defects worked around), :mod:`.handoff`
(records refused while others are taken: lane or dead letter), :mod:`.widening` (a
batch widened to tell poison from an outage), :mod:`.runtime_metrics`,
and :mod:`.clients` (the Kafka calls made, the real clients; :mod:`.testing` has
in-memory ones for tests). With a lineage exporter, :mod:`.lineage` records each
sampled or failed batch's path as spans (never a batch made only of lineage records).
"""

from __future__ import annotations

import logging
import random
import signal
import threading
import time
from collections.abc import Callable, Sequence

from kafka import TopicPartition
from kafka.errors import KafkaError
from kafka.structs import OffsetAndMetadata

from ferryman.lineage import LineageExporter
from ferryman.telemetry import Registry

from .backoff import Backoff
from .batching import Batcher, to_record
from .clients import (
    Consumer,
    ConsumerFactory,
    Producer,
    ProducerFactory,
    SendResult,
    connect_consumer,
    connect_producer,
    once_reachable,
)
from .dead_letter import dead_letter_headers
from .errors import Permanent, Throttled
from .function import Handler
from .handoff import LaneHandOff, Refusals
from .lineage import BatchTrace
from .rebalance import Membership, partition_of
from .records import Batch, Delivered, Record
from .retry_lane import Lane
from .runtime_metrics import RuntimeMetrics
from .settings import WorkerSettings
from .widening import Widening

__all__ = ["Abandoned", "Runtime"]

log = logging.getLogger("ferryman.worker")


class Abandoned(Exception):
    """Raised inside the loop when an in-flight batch must be handed back uncommitted."""


class Runtime:
    """Runs ``handler`` over ``settings.kafka.input_topic`` until stopped.

    ``consumer`` and ``producer`` make the Kafka clients from the settings (default:
    :func:`~workers.clients.connect_consumer`, :func:`~workers.clients.connect_producer`);
    ``clock`` is monotonic seconds and ``jitter`` draws the backoff's jitter in [0, 1);
    ``lineage`` (default none) receives the spans of sampled and failed batches.
    """

    def __init__(
        self,
        settings: WorkerSettings,
        handler: Handler,
        registry: Registry,
        *,
        clock: Callable[[], float] = time.monotonic,
        lane: Lane | None = None,
        consumer: ConsumerFactory = connect_consumer,
        producer: ProducerFactory = connect_producer,
        jitter: Callable[[], float] = random.random,
        lineage: LineageExporter | None = None,
    ) -> None:
        self.settings = settings
        self.handler = handler
        self.clock = clock
        self.jitter = jitter
        if lane is None and settings.retry_lane is not None:
            lane = Lane(settings.retry_lane, settings.function)
        self.lane = lane
        self.metrics = RuntimeMetrics(registry, settings.function, clock)
        self.handoff = (
            LaneHandOff(lane, settings.retry_lane, settings.function, clock, self.metrics)
            if lane is not None and settings.retry_lane is not None
            else None
        )
        self.lineage = lineage
        self._trace: BatchTrace | None = None
        self._make_consumer = consumer
        self._make_producer = producer
        self.stopping = threading.Event()
        self.stop_deadline: float | None = None
        self.consumer: Consumer | None = None
        self.producer: Producer | None = None
        self.membership: Membership | None = None
        self.last_loop = clock()
        self._ready = False

    @property
    def ready(self) -> bool:
        """Partitions assigned: what ``/readyz`` answers and ``ferryman_ready`` shows."""
        return self._ready

    @ready.setter
    def ready(self, value: bool) -> None:
        self._ready = value
        self.metrics.set_ready(value)

    # ---- lifecycle -------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self.stop())
        signal.signal(signal.SIGINT, lambda *_: self.stop())

    def stop(self) -> None:
        if not self.stopping.is_set():
            self.stop_deadline = self.clock() + self.settings.shutdown_deadline_s
            self.stopping.set()
            log.info("stop requested; draining within %.0fs", self.settings.shutdown_deadline_s)

    def run(self) -> None:
        """Consume until :meth:`stop`; returns after the group was left."""
        if self.lineage is not None:
            self.lineage.start()
        connected = self._connect()
        if connected is None:  # stopped before Kafka answered
            self._close()
            return
        consumer, membership = connected
        batcher = Batcher(self.settings.batch, self.clock)
        max_records = self.settings.batch.max_records
        try:
            while not self.stopping.is_set():
                self.last_loop = self.clock()
                membership.release()
                # While joining, poll long enough for the join to complete inside one
                # call: short polls can leave kafka-python joined but unassigned (see
                # kafka_quirks, which finishes such joins).
                polled = consumer.poll(
                    timeout_ms=100 if consumer.assignment() else 1000, max_records=max_records
                )
                membership.after_poll()
                self.ready = bool(consumer.assignment())
                membership.watch()
                for messages in polled.values():
                    for message in messages:
                        batcher.add(to_record(message))
                self.metrics.update_lag(consumer)
                if batcher.due():
                    self._process_or_hand_back(batcher.take())
            if len(batcher):
                self._process_or_hand_back(batcher.take())
        finally:
            self._close()

    def _connect(self) -> tuple[Consumer, Membership] | None:
        consumer = once_reachable(
            lambda: self._make_consumer(self.settings),
            self.settings.kafka.bootstrap_servers,
            self.stopping,
        )
        if consumer is None:
            return None
        self.consumer = consumer
        self.membership = membership = Membership(
            consumer,
            self.settings.kafka.input_topic,
            self.settings.group_id,
            self.clock,
            self.metrics,
        )
        self._wait_for_topic(consumer)
        membership.subscribe()
        self.producer = self._make_producer(self.settings)
        return consumer, membership

    def _wait_for_topic(self, consumer: Consumer) -> None:
        """Join the group only once the topic's partitions are known: a member that joins
        without them is assigned nothing until the next rebalance."""
        topic = self.settings.kafka.input_topic
        waited = 0.0
        while not self.stopping.is_set():
            if consumer.partitions_for_topic(topic):
                return
            if waited % 10 == 0:
                log.warning("topic %s has no partitions yet (does it exist?); waiting", topic)
            self.stopping.wait(0.5)
            waited += 0.5

    def _close(self) -> None:
        if self.producer is not None:
            self.producer.flush(timeout=5)
            self.producer.close(timeout=5)
        if self.consumer is not None:
            self.consumer.close(autocommit=False)  # leaves the group
        if self.lane is not None:
            self.lane.close()
        if self.lineage is not None:
            self.lineage.close()
        self.handler.close()
        log.info("worker stopped")

    # ---- one batch -------------------------------------------------------------------

    def _process_or_hand_back(self, batch: list[Record]) -> None:
        assert self.membership is not None
        self._trace = self._new_trace()
        try:
            self._process(batch)
        except Abandoned:
            reason = "the drain deadline passed" if self._past_deadline() else "a rebalance"
            log.warning("handed back %d in-flight records uncommitted after %s", len(batch), reason)
            if self._trace is not None:
                self._trace.handed_back(reason)
            self.metrics.count_batch("handed_back")
            self.membership.rewind(batch)
        finally:
            self.membership.batch_done()
            trace, self._trace = self._trace, None
            if trace is not None:
                try:
                    trace.finish(batch)
                except Exception:  # lineage describes the data; it never stops it
                    log.exception("could not record the lineage of a batch")

    def _new_trace(self) -> BatchTrace | None:
        if self.lineage is None:
            return None
        return BatchTrace(
            self.lineage,
            topic=self.settings.kafka.input_topic,
            group=self.settings.group_id,
            function=self.settings.function,
            dead_letter_topic=self.settings.kafka.dead_letter_topic,
        )

    def _process(self, batch: list[Record]) -> None:
        started = self.clock()
        self.metrics.count_received(len(batch))
        self.metrics.mark_clusters(batch)
        dead, refusals = self._deliver(batch, started)
        if self._past_deadline():
            raise Abandoned
        self._commit(batch)
        self.metrics.count_sent(len(batch) - len(dead) - len(refusals.handed))
        self.metrics.count_batch(
            "dead_lettered" if dead else "handed_to_lane" if refusals.handed else "delivered"
        )
        self.metrics.observe_batch(self.clock() - started)

    def _deliver(
        self, batch: list[Record], started: float
    ) -> tuple[list[tuple[Record, str]], Refusals]:
        """Attempt ``batch`` until every record is delivered, dead-lettered or in the lane;
        returns the dead letters and what the refusals told. A batch whose records are
        refused past the bound is widened: newer records are appended to ``batch``. Raises
        :class:`Abandoned` when the batch is no longer ours to finish (revoked, or the
        drain deadline)."""
        pending: Sequence[Record] = batch
        dead: list[tuple[Record, str]] = []
        refusals = Refusals(self.clock)
        backoff = Backoff(
            self.settings.retry.initial_backoff_s,
            self.settings.retry.max_backoff_s,
            rand=self.jitter,
        )
        attempt = 0
        widening: Widening | None = None
        while True:
            attempt += 1
            self._check_owned(batch)
            floor: float | None
            widen: Widening | None = None
            try:
                pending, floor = self._attempt(pending, dead, refusals, attempt, started)
            except Permanent:  # from _finish: outputs without an output topic
                raise
            except Exception as exc:  # anything else may succeed when tried again
                floor = exc.delay if isinstance(exc, Throttled) else None
                kind, detail = type(exc).__name__, str(exc)
            else:
                if not pending:
                    return dead, refusals
                kind, detail = "retry_partial", f"{len(pending)} records refused for now"
                if self._stuck(refusals, pending, attempt, started):
                    widen = widening = widening or Widening(batch, self.settings.batch)
                    widen.settle(pending, refusals.progressed)
            delay = backoff.next_delay(floor)
            self.metrics.count_error(kind, "deliver")
            log.warning(
                "delivery attempt %d failed (%s: %s); retrying in %.1fs",
                attempt,
                kind,
                detail,
                delay,
            )
            self._sleep_polling(delay, widen)
            if widen is not None:
                pending = self._widened(pending, widen, attempt)

    def _stuck(
        self, refusals: Refusals, refused: Sequence[Record], attempt: int, started: float
    ) -> bool:
        """Whether the records refused, answered record by record, need newer records to
        be compared with (see :mod:`.widening`): without a lane, once one was handed
        back past the attempt bound (retried alone, it has no others in its attempt to
        tell poison from an outage); with a lane, once the budget is spent and the
        backend took nothing of the batch (else the lane takes them)."""
        if self.stopping.is_set():
            return False
        if self.handoff is not None:
            return not refusals.progress and self.handoff.budget_spent(attempt, started)
        return refusals.any_past_bound(refused, self.settings.retry)

    def _widened(
        self, pending: Sequence[Record], widening: Widening, attempt: int
    ) -> Sequence[Record]:
        """``pending`` with the records the sleep appended to the batch."""
        added = widening.take_added()
        if not added:
            return pending
        self.metrics.count_received(len(added))
        self.metrics.mark_clusters(added)
        self.metrics.count_widened()
        log.info(
            "widened a batch whose records were refused for %d attempts with %d "
            "newer records of %s (%d records now), to tell poison records from an "
            "outage",
            attempt,
            len(added),
            ", ".join(sorted({f"{r.topic}/{r.partition}" for r in added})),
            len(widening.batch),
        )
        return [*pending, *added]

    def _attempt(
        self,
        pending: Sequence[Record],
        dead: list[tuple[Record, str]],
        refusals: Refusals,
        attempt: int,
        started: float,
    ) -> tuple[Sequence[Record], float | None]:
        """One call of the function; returns the records to try again and the delay the
        backend asked for."""
        trace = self._trace
        started_ns = time.time_ns()
        try:
            result = self.handler.handle(pending)
        except Permanent as exc:
            result = Delivered(dead=[(r, exc.reason) for r in pending])
        except Exception as exc:
            if trace is not None:
                trace.delivered(started_ns, len(pending), exc=exc)
            raise
        if trace is not None:
            trace.delivered(started_ns, len(pending), result)
        self._finish(result, dead)
        if not result.retry:
            return (), None
        refusals.note(pending, result)
        left: Sequence[Record] = result.retry
        if self.handoff is not None:
            if self.handoff.due(refusals, attempt, started):
                offered, handing_ns = len(left), time.time_ns()
                left = self.handoff.send(refusals, left, result.retry_delay, attempt)
                if trace is not None and len(left) < offered:
                    trace.handed_to_lane(handing_ns, offered, len(left))
        else:
            overdue = refusals.overdue(left, self.settings.retry)
            if overdue:
                self._finish(Delivered(dead=overdue), dead)
                gone = {id(record) for record, _ in overdue}
                left = [r for r in left if id(r) not in gone]
        return left, result.retry_delay

    def _finish(self, result: Delivered, dead: list[tuple[Record, str]]) -> None:
        """Dead-letter and produce what the function handed back; both must be acked."""
        assert self.producer is not None
        futures = [self._dead_letter(record, reason) for record, reason in result.dead]
        if result.outputs:
            output_topic = self.settings.kafka.output_topic
            if output_topic is None:
                raise Permanent("function produced outputs but kafka.output_topic is not set")
            futures += [
                self.producer.send(output_topic, value=o.value, key=o.key, headers=list(o.headers))
                for o in result.outputs
            ]
        if not futures:
            return
        started_ns = time.time_ns()
        self.producer.flush(timeout=self.settings.retry.delivery_timeout_s)
        for future in futures:
            future.get(timeout=self.settings.retry.delivery_timeout_s)
        if result.dead and self._trace is not None:
            self._trace.dead_lettered(started_ns, result.dead)
        dead.extend(result.dead)
        if result.dead:
            self.metrics.count_dead(len(result.dead))
            self.metrics.count_error("permanent", "deliver", len(result.dead))
            log.error(
                "dead-lettered %d records to %s; first reason: %s",
                len(result.dead),
                self.settings.kafka.dead_letter_topic,
                result.dead[0][1],
            )

    def _dead_letter(self, record: Record, reason: str) -> SendResult:
        assert self.producer is not None
        headers = dead_letter_headers(record, reason, self.settings.function)
        return self.producer.send(
            self.settings.kafka.dead_letter_topic,
            value=record.value,
            key=record.key,
            headers=list(headers),
        )

    def _commit(self, batch: Batch) -> None:
        assert self.consumer is not None
        last: dict[TopicPartition, int] = {}
        for record in batch:
            tp = partition_of(record)
            last[tp] = max(last.get(tp, -1), record.offset)
        self._check_owned(batch)
        started_ns = time.time_ns()
        try:
            self.consumer.commit(
                {tp: OffsetAndMetadata(offset + 1, "", -1) for tp, offset in last.items()}
            )
        except KafkaError as exc:
            if self._trace is not None:
                self._trace.committed(started_ns, f"{type(exc).__name__}: {exc}")
            # The group rebalanced under us (the broker refuses commits of a stale
            # generation). The records are delivered: the next commit of a partition
            # that stays ours covers them, another owner delivers them again.
            self.metrics.count_error(type(exc).__name__, "commit")
            log.warning(
                "could not commit %d delivered records (%s); a partition that "
                "stays ours is committed with its next batch",
                len(batch),
                exc,
            )
            return
        if self._trace is not None:
            self._trace.committed(started_ns)
        self.metrics.count_commit()

    # ---- waiting while a backend pushes back -----------------------------------------

    def _sleep_polling(self, seconds: float, widening: Widening | None = None) -> None:
        """Sleep without fetching, but keep polling so the group keeps us; stops at the
        drain deadline. With ``widening``, the batch's partitions still ours are
        fetched from, and what comes is appended to the batch while it has room."""
        assert self.consumer is not None and self.membership is not None
        until = self.clock() + seconds
        while True:
            now = self.clock()
            if now >= until or self._past_deadline():
                return
            self.last_loop = now
            fetching = (
                widening.partitions() - self.membership.revoked
                if widening is not None and not self.stopping.is_set()
                else set()
            )
            self.membership.hold(fetching)
            room = widening.room() if widening is not None and fetching else None
            polled = self.consumer.poll(
                timeout_ms=min(200, max(1, int((until - now) * 1000))), max_records=room
            )
            self.membership.after_poll()
            if polled and widening is not None and fetching:
                # A rebalance inside the poll may have taken a partition meanwhile.
                polled = widening.absorb(polled, fetching - self.membership.revoked)
            if polled:
                self.membership.put_back(polled)

    def _past_deadline(self) -> bool:
        return self.stop_deadline is not None and self.clock() >= self.stop_deadline

    def _check_owned(self, batch: Batch) -> None:
        assert self.membership is not None
        if self._past_deadline():
            raise Abandoned
        if not self.membership.owns(batch):
            # Another member owns these partitions now and will deliver them again.
            raise Abandoned
