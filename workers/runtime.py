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
* on SIGTERM fetching stops, the batch in flight gets until the deadline, then
  the offsets are committed and the group is left. A batch not finished by the
  deadline is handed back uncommitted (the next owner delivers it again).

Not guaranteed: exactly-once. A crash after delivery and before the commit
re-delivers that batch, so sinks are written to tolerate replays.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from kafka import KafkaConsumer, KafkaProducer, TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.structs import OffsetAndMetadata
from tenacity import RetryCallState, Retrying, retry_if_exception, wait_random_exponential

from ferryman.kafka import producer as kafka_producer
from ferryman.telemetry import Registry

from .dead_letter import dead_letter_headers
from .errors import Permanent, Throttled
from .function import Handler
from .records import Batch, Delivered, Record
from .retry_lane import Lane, LaneFull, LaneMessage, LaneUnavailable, backoff_delay
from .settings import WorkerSettings

__all__ = ["Abandoned", "Runtime"]

log = logging.getLogger("ferryman.worker")


class Abandoned(Exception):
    """Raised inside the loop when an in-flight batch must be handed back uncommitted."""


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.runtime.revoked.update(revoked)

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.runtime.revoked.difference_update(assigned)
        self.runtime.apply_rewinds(assigned)


class Runtime:
    """Runs ``handler`` over ``settings.kafka.input_topic`` until stopped."""

    def __init__(self, settings: WorkerSettings, handler: Handler, registry: Registry,
                 *, clock: Callable[[], float] = time.monotonic,
                 lane: Lane | None = None) -> None:
        self.settings = settings
        self.handler = handler
        self.clock = clock
        if lane is None and settings.retry_lane is not None:
            lane = Lane(settings.retry_lane, settings.function)
        self.lane = lane
        self.stopping = threading.Event()
        self.stop_deadline: float | None = None
        self.revoked: set[TopicPartition] = set()
        #: first offsets of records handed back while their partition was unassigned
        self._rewinds: dict[TopicPartition, int] = {}
        self.consumer: KafkaConsumer | None = None
        self.producer: KafkaProducer | None = None
        self.last_loop = clock()
        self.ready = False
        name = settings.function
        self.m_received = registry.counter(
            "ferryman_records_received_total", "Records consumed from Kafka.", ["function"])
        self.m_sent = registry.counter(
            "ferryman_records_sent_total", "Records delivered to the next hop.", ["function"])
        self.m_dead = registry.counter(
            "ferryman_records_dead_lettered_total", "Records sent to the dead-letter topic.",
            ["function"])
        self.m_batches = registry.counter(
            "ferryman_batches_total", "Batches finished, by outcome.", ["function", "outcome"])
        self.m_errors = registry.counter(
            "ferryman_errors_total", "Errors by type and stage.",
            ["function", "error_type", "stage"])
        self.m_latency = registry.histogram(
            "ferryman_batch_duration_seconds", "Time from batch start to commit.", ["function"])
        self.m_lag = registry.gauge(
            "ferryman_consumer_lag", "Records behind the end of the partition.",
            ["function", "topic", "partition"])
        self.m_commits = registry.counter(
            "ferryman_commits_total", "Offset commits after delivery.", ["function"])
        self.m_handed = registry.counter(
            "ferryman_records_handed_to_lane_total",
            "Records refused for now handed to the retry lane (Redis acknowledged).",
            ["function"])
        self._labels = (name,)
        self._lag_at = 0.0
        self._unassigned_since: float | None = None
        self._rejoin_after = 30.0

    # ---- lifecycle -------------------------------------------------------------------

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGTERM, lambda *_: self.stop())
        signal.signal(signal.SIGINT, lambda *_: self.stop())

    def stop(self) -> None:
        if not self.stopping.is_set():
            self.stop_deadline = self.clock() + self.settings.shutdown_deadline_s
            self.stopping.set()
            log.info("stop requested; draining within %.0fs", self.settings.shutdown_deadline_s)

    def _connect(self) -> None:
        k = self.settings.kafka
        self.consumer = KafkaConsumer(
            bootstrap_servers=k.bootstrap_servers, group_id=self.settings.group_id,
            enable_auto_commit=False, auto_offset_reset="earliest",
            max_poll_records=k.max_poll_records, session_timeout_ms=k.session_timeout_ms,
            max_poll_interval_ms=k.max_poll_interval_ms,
            # A topic created after the worker started is seen within seconds.
            metadata_max_age_ms=10_000,
            client_id=f"ferryman-{self.settings.function}",
        )
        self._wait_for_topic()
        self.consumer.subscribe([k.input_topic], listener=_Rebalance(self))
        self.producer = kafka_producer(k.bootstrap_servers,
                                       f"ferryman-{self.settings.function}-producer",
                                       compression="snappy")

    def _wait_for_topic(self) -> None:
        """Join the group only once the topic's partitions are known: a member that joins
        without them is assigned nothing until the next rebalance."""
        assert self.consumer is not None
        topic = self.settings.kafka.input_topic
        waited = 0.0
        while not self.stopping.is_set():
            if self.consumer.partitions_for_topic(topic):
                return
            if waited % 10 == 0:
                log.warning("topic %s has no partitions yet (does it exist?); waiting", topic)
            self.stopping.wait(0.5)
            waited += 0.5

    def run(self) -> None:
        """Consume until :meth:`stop`; returns after the group was left."""
        self._connect()
        assert self.consumer is not None
        held: list[Record] = []
        held_bytes = 0
        oldest = 0.0
        b = self.settings.batch
        try:
            while not self.stopping.is_set():
                self.last_loop = self.clock()
                assigned = bool(self.consumer.assignment())
                # While joining, poll long enough for the join to complete inside one
                # call: short polls can leave kafka-python joined but unassigned.
                polled = self.consumer.poll(timeout_ms=100 if assigned else 1000,
                                            max_records=b.max_records)
                self.ready = bool(self.consumer.assignment())
                self._watch_assignment()
                for tp_records in polled.values():
                    for m in tp_records:
                        if not held:
                            oldest = self.clock()
                        held.append(Record(m.topic, m.partition, m.offset, m.key,
                                           m.value or b"", tuple(m.headers or ()),
                                           m.timestamp))
                        held_bytes += len(m.value or b"")
                self._update_lag()
                if held and (len(held) >= b.max_records or held_bytes >= b.max_bytes
                             or self.clock() - oldest >= b.max_wait_s):
                    self._process_or_hand_back(held)
                    held, held_bytes = [], 0
            if held:
                self._process_or_hand_back(held)
        finally:
            self._close()

    def _watch_assignment(self) -> None:
        """Rejoin the group when left without partitions for too long.

        KEDA keeps replicas at or below the partition count, so a member with no
        partitions is stuck (a join whose assignment the client never applied), not
        idle by design. Rejoins back off from 30 s to 5 min.
        """
        assert self.consumer is not None
        now = self.clock()
        if self.ready:
            self._unassigned_since = None
            self._rejoin_after = 30.0
            return
        if self._unassigned_since is None:
            self._unassigned_since = now
            return
        if now - self._unassigned_since < self._rejoin_after:
            return
        log.warning("no partitions assigned for %.0fs; rejoining group %s",
                    now - self._unassigned_since, self.settings.group_id)
        self.m_errors.inc(1, *self._labels, "unassigned", "consume")
        self.consumer.unsubscribe()
        self.consumer.subscribe([self.settings.kafka.input_topic], listener=_Rebalance(self))
        self._unassigned_since = now
        self._rejoin_after = min(self._rejoin_after * 2, 300.0)

    def _process_or_hand_back(self, batch: list[Record]) -> None:
        try:
            self._process(batch)
        except Abandoned:
            reason = "the drain deadline passed" if self._past_deadline() else "a rebalance"
            log.warning("handed back %d in-flight records uncommitted after %s",
                        len(batch), reason)
            self.m_batches.inc(1, *self._labels, "handed_back")
            self._rewind(batch)
        finally:
            self.revoked.clear()

    def _rewind(self, batch: Batch) -> None:
        """Fetch handed-back records again where their partition is ours.

        kafka-python keeps a partition's position across a rebalance that assigns it
        back to the same member; without this the next batch of that partition would
        be committed past the records handed back, and they would never be delivered.
        When the rebalance has not assigned the partition yet, the seek waits for it
        (:meth:`apply_rewinds`).
        """
        assert self.consumer is not None
        first: dict[TopicPartition, int] = {}
        for record in batch:
            tp = TopicPartition(record.topic, record.partition)
            first[tp] = min(first.get(tp, record.offset), record.offset)
        assigned = self.consumer.assignment()
        for tp, offset in first.items():
            if tp in assigned:
                self._seek(tp, offset)
            else:  # the rebalance is still under way: seek when it assigns the partition
                self._rewinds[tp] = min(self._rewinds.get(tp, offset), offset)

    def apply_rewinds(self, assigned: Any) -> None:
        """Rewinds waiting for this assignment: those of partitions assigned to us again
        are applied; the others were given to another member, which starts at the
        committed offset."""
        for tp in assigned:
            if tp in self._rewinds:
                self._seek(tp, self._rewinds[tp])
        self._rewinds.clear()

    def _seek(self, tp: TopicPartition, offset: int) -> None:
        assert self.consumer is not None
        try:
            self.consumer.seek(tp, offset)
        except Exception as exc:  # lost it meanwhile: the next owner starts there
            log.debug("could not rewind %s to %d: %s", tp, offset, exc)

    def _close(self) -> None:
        if self.producer is not None:
            self.producer.flush(timeout=5)
            self.producer.close(timeout=5)
        if self.consumer is not None:
            self.consumer.close(autocommit=False)  # leaves the group
        if self.lane is not None:
            self.lane.close()
        self.handler.close()
        log.info("worker stopped")

    # ---- one batch -------------------------------------------------------------------

    def _process(self, batch: list[Record]) -> None:
        started = self.clock()
        self.m_received.inc(len(batch), *self._labels)
        pending: Sequence[Record] = batch
        delay_hint: list[float | None] = [None]

        def wait(state: RetryCallState) -> float:
            hint = delay_hint[0]
            computed: float = wait_random_exponential(
                multiplier=self.settings.retry.initial_backoff_s,
                max=self.settings.retry.max_backoff_s)(state)
            return max(hint, computed) if hint is not None else computed

        def note(state: RetryCallState) -> None:
            outcome = state.outcome
            exc = outcome.exception() if outcome is not None else None
            kind = type(exc).__name__ if exc is not None else "retry_partial"
            self.m_errors.inc(1, *self._labels, kind, "deliver")
            log.warning("delivery attempt %d failed (%s: %s); retrying in %.1fs",
                        state.attempt_number, kind, exc,
                        state.next_action.sleep if state.next_action else 0.0)

        retrying = Retrying(
            wait=wait, sleep=self._sleep_polling, before_sleep=note, reraise=True,
            stop=lambda _: self._past_deadline(),
            retry=retry_if_exception(lambda e: not isinstance(e, Permanent | Abandoned)),
        )
        dead: list[tuple[Record, str]] = []
        handoff = _HandOff()
        try:
            for attempt in retrying:
                with attempt:
                    self._check_owned(batch)
                    delay_hint[0] = None
                    try:
                        result = self.handler.handle(pending)
                    except Permanent as exc:
                        result = Delivered(dead=[(r, exc.reason) for r in pending])
                    except Throttled as exc:
                        delay_hint[0] = exc.delay
                        raise
                    self._finish(result, dead)
                    if result.retry:
                        handoff.note(pending, result)
                        pending = result.retry
                        delay_hint[0] = result.retry_delay
                        if self._lane_due(handoff, attempt.retry_state.attempt_number, started):
                            pending = self._hand_off(handoff, pending, result.retry_delay,
                                                     attempt.retry_state.attempt_number)
                        if pending:
                            raise _RetryPartial(f"{len(pending)} records refused for now")
        except Exception as exc:
            # The drain deadline stops tenacity, which re-raises the last attempt's
            # error: that is a hand-back, not a failure of the worker.
            if self._past_deadline() and not isinstance(exc, Abandoned):
                raise Abandoned from exc
            raise
        if self._past_deadline():
            raise Abandoned
        self._commit(batch)
        self.m_sent.inc(len(batch) - len(dead) - len(handoff.handed), *self._labels)
        outcome = ("dead_lettered" if dead else "handed_to_lane" if handoff.handed
                   else "delivered")
        self.m_batches.inc(1, *self._labels, outcome)
        self.m_latency.observe(self.clock() - started, *self._labels)

    # ---- the retry lane --------------------------------------------------------------

    def _lane_due(self, handoff: _HandOff, attempts: int, started: float) -> bool:
        """Whether the records refused now should leave for the lane: it is configured,
        the backend took some of this batch, and the in-process budget is spent."""
        lane = self.settings.retry_lane
        if self.lane is None or lane is None or not handoff.progress:
            return False
        return ((lane.budget_attempts is not None and attempts >= lane.budget_attempts)
                or (lane.budget_s is not None and self.clock() - started >= lane.budget_s))

    def _hand_off(self, handoff: _HandOff, refused: Sequence[Record], hint: float | None,
                  attempts: int) -> Sequence[Record]:
        """Enqueue ``refused`` on the lane; returns the records still to retry in process
        (none once Redis acknowledged them all)."""
        assert self.lane is not None and self.settings.retry_lane is not None
        lane = self.settings.retry_lane
        delay = backoff_delay(0, lane, hint)
        left = list(refused)
        try:
            if self.lane.held() + len(left) > lane.max_in_flight:
                raise LaneFull(f"the lane holds {lane.max_in_flight} records or more")
            while left:
                record = left[0]
                self.lane.send(LaneMessage(record, self.settings.function,
                                           handoff.first_failure, attempts,
                                           last_error="refused for now in process"), delay)
                handoff.handed.append(left.pop(0))
                self.m_handed.inc(1, *self._labels)
        except (LaneUnavailable, LaneFull) as exc:
            self.m_errors.inc(1, *self._labels, type(exc).__name__, "hand_off")
            log.warning("could not hand %d refused records to the retry lane %s (%s); "
                        "retrying them in process", len(left), self.lane.describe(), exc)
            return left
        log.info("handed %d records refused for now to the retry lane %s after %d attempts",
                 len(refused), self.lane.describe(), attempts)
        return left

    def _finish(self, result: Delivered, dead: list[tuple[Record, str]]) -> None:
        """Dead-letter and produce what the function handed back; both must be acked."""
        assert self.producer is not None
        futures = [self._dead_letter(record, reason) for record, reason in result.dead]
        output_topic = self.settings.kafka.output_topic
        if result.outputs and output_topic is None:
            raise Permanent("function produced outputs but kafka.output_topic is not set")
        futures += [self.producer.send(output_topic, value=o.value, key=o.key,
                                       headers=list(o.headers)) for o in result.outputs]
        self.producer.flush(timeout=self.settings.retry.delivery_timeout_s)
        for future in futures:
            future.get(timeout=self.settings.retry.delivery_timeout_s)
        dead.extend(result.dead)
        if result.dead:
            self.m_dead.inc(len(result.dead), *self._labels)
            self.m_errors.inc(len(result.dead), *self._labels, "permanent", "deliver")
            log.error("dead-lettered %d records to %s; first reason: %s", len(result.dead),
                      self.settings.kafka.dead_letter_topic, result.dead[0][1])

    def _dead_letter(self, record: Record, reason: str) -> Any:
        assert self.producer is not None
        headers = dead_letter_headers(record, reason, self.settings.function)
        return self.producer.send(self.settings.kafka.dead_letter_topic, value=record.value,
                                  key=record.key, headers=list(headers))

    def _commit(self, batch: Batch) -> None:
        assert self.consumer is not None
        last: dict[TopicPartition, int] = {}
        for record in batch:
            tp = TopicPartition(record.topic, record.partition)
            last[tp] = max(last.get(tp, -1), record.offset)
        self._check_owned(batch)
        self.consumer.commit({tp: OffsetAndMetadata(offset + 1, "", -1)
                              for tp, offset in last.items()})
        self.m_commits.inc(1, *self._labels)

    # ---- waiting while a backend pushes back -----------------------------------------

    def _sleep_polling(self, seconds: float) -> None:
        """Sleep without fetching, but keep polling so the group keeps us."""
        assert self.consumer is not None
        until = self.clock() + seconds
        assigned = self.consumer.assignment()
        self.consumer.pause(*assigned)
        try:
            while self.clock() < until and not self._past_deadline():
                self.last_loop = self.clock()
                self.consumer.poll(timeout_ms=min(200, max(1, int((until - self.clock()) * 1000))))
        finally:
            self.consumer.resume(*[tp for tp in assigned if tp in self.consumer.assignment()])

    def _past_deadline(self) -> bool:
        return self.stop_deadline is not None and self.clock() >= self.stop_deadline

    def _check_owned(self, batch: Batch) -> None:
        if self._past_deadline():
            raise Abandoned
        if self.revoked and any(TopicPartition(r.topic, r.partition) in self.revoked
                                for r in batch):
            # Another member owns these partitions now and will deliver them again.
            raise Abandoned

    def _update_lag(self) -> None:
        assert self.consumer is not None
        now = self.clock()
        if now - self._lag_at < 5.0:
            return
        self._lag_at = now
        assigned = list(self.consumer.assignment())
        if not assigned:
            return
        try:
            ends = self.consumer.end_offsets(assigned)
        except Exception as exc:  # lag is telemetry: never let it stop delivery
            log.debug("lag update failed: %s", exc)
            return
        for tp in assigned:
            position = self.consumer.position(tp)
            self.m_lag.set(max(0, ends.get(tp, 0) - (position or 0)), *self._labels,
                           tp.topic, str(tp.partition))


class _HandOff:
    """What one batch's attempts tell about the lane: whether the backend took any of
    its records, when it first refused some, and which records Redis holds now."""

    def __init__(self) -> None:
        self.progress = False
        self.first_failure = 0.0
        self.handed: list[Record] = []

    def note(self, pending: Sequence[Record], result: Delivered) -> None:
        if not self.first_failure:
            self.first_failure = time.time()
        unfinished = {(r.topic, r.partition, r.offset)
                      for r in (*result.retry, *(d for d, _ in result.dead))}
        if any((r.topic, r.partition, r.offset) not in unfinished for r in pending):
            self.progress = True


class _RetryPartial(Exception):
    """Raised to make tenacity retry the records a function handed back as retryable."""

