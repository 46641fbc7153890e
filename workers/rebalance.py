"""This worker's place in its consumer group, as the runtime needs to know it.

* Ownership: a partition a rebalance revoked while its batch was in flight belongs
  to another member now; the batch is handed back uncommitted (:meth:`Membership.owns`).
* Rewinds: records handed back are fetched again where their partition stays ours.
  kafka-python keeps a partition's position (and its paused flag) across a rebalance
  that assigns it back to the same member, so without a seek the next batch would be
  committed past them. A rewind waits for the assignment when the partition is not
  assigned at the time; a partition given to another member starts at the committed
  offset there, so its rewind is dropped.
* Holding: while a backend pushes back the worker keeps polling, to stay in the
  group, with every assigned partition paused (:meth:`Membership.hold`, again before
  each poll, so partitions a rebalance hands over meanwhile are paused too), except
  the partitions of a stuck batch being widened (:mod:`.widening`). Records such a
  poll returns all the same are put back (:meth:`Membership.put_back`).
  The main loop never wants a paused partition: :meth:`Membership.release` resumes
  whatever is paused before each of its polls, so no rebalance can leave one paused.
* Client defects: after every poll :meth:`Membership.after_poll` works around two
  kafka-python 3.0.12 defects that leave a partition never fetched again (see
  :mod:`.kafka_quirks`): a rebalance left unfinished, and records parked for a
  partition paused while they waited to be returned.
* Rejoining: a member left without partitions, or in a rebalance that does not
  finish, for long rejoins (30 s, doubling to 5 min): KEDA keeps replicas at or below
  the partition count, so such a member is stuck, not idle by design.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from typing import Any

from kafka import TopicPartition
from kafka.consumer.subscription_state import ConsumerRebalanceListener
from kafka.structs import MemberState

from .clients import Consumer, Message
from .kafka_quirks import finish_unfinished_rebalance, release_parked_records
from .records import Batch
from .runtime_metrics import RuntimeMetrics

__all__ = ["Membership"]

log = logging.getLogger("ferryman.worker")

REJOIN_FIRST_S = 30.0
REJOIN_MAX_S = 300.0


def partition_of(record: Any) -> TopicPartition:
    return TopicPartition(record.topic, record.partition)


def first_offsets(records: Iterable[Any]) -> dict[TopicPartition, int]:
    """The lowest offset of ``records`` in each of their partitions."""
    first: dict[TopicPartition, int] = {}
    for record in records:
        tp = partition_of(record)
        first[tp] = min(first.get(tp, record.offset), record.offset)
    return first


class _Listener(ConsumerRebalanceListener):  # type: ignore[misc]
    def __init__(self, membership: Membership) -> None:
        self.membership = membership

    def on_partitions_revoked(self, revoked: Any) -> None:
        self.membership.revoked.update(revoked)

    def on_partitions_assigned(self, assigned: Any) -> None:
        self.membership.revoked.difference_update(assigned)
        self.membership.apply_rewinds(assigned)


class Membership:
    """The group membership of ``consumer`` on ``topic``: see the module docstring."""

    def __init__(
        self,
        consumer: Consumer,
        topic: str,
        group_id: str,
        clock: Callable[[], float],
        metrics: RuntimeMetrics,
    ) -> None:
        self.consumer = consumer
        self.topic = topic
        self.group_id = group_id
        self.clock = clock
        self.metrics = metrics
        #: partitions revoked since the batch in flight started
        self.revoked: set[TopicPartition] = set()
        #: first offsets of records handed back while their partition was unassigned
        self.rewinds: dict[TopicPartition, int] = {}
        self._unassigned_since: float | None = None
        self._rejoin_after = REJOIN_FIRST_S

    def subscribe(self) -> None:
        self.consumer.subscribe([self.topic], listener=_Listener(self))

    # ---- the batch in flight -------------------------------------------------------

    def owns(self, batch: Batch) -> bool:
        """Whether no partition of ``batch`` was revoked since it started."""
        return not (self.revoked and any(partition_of(r) in self.revoked for r in batch))

    def batch_done(self) -> None:
        self.revoked.clear()

    def rewind(self, batch: Batch) -> None:
        """Fetch handed-back records again where their partition is ours (at once when it
        is assigned, else when a rebalance assigns it back)."""
        assigned = self.consumer.assignment()
        for tp, offset in first_offsets(batch).items():
            if tp in assigned:
                self._seek(tp, offset)
            else:
                self.rewinds[tp] = min(self.rewinds.get(tp, offset), offset)

    def apply_rewinds(self, assigned: Iterable[TopicPartition]) -> None:
        """Rewinds waiting for this assignment: those of partitions assigned to us again
        are applied; the others were given to another member, which starts at the
        committed offset."""
        for tp in assigned:
            if tp in self.rewinds:
                self._seek(tp, self.rewinds[tp])
        self.rewinds.clear()

    def _seek(self, tp: TopicPartition, offset: int) -> None:
        try:
            self.consumer.seek(tp, offset)
        except Exception as exc:  # lost it meanwhile: the next owner starts there
            log.debug("could not rewind %s to %d: %s", tp, offset, exc)

    # ---- fetching or not -----------------------------------------------------------

    def hold(self, fetching: Collection[TopicPartition] = ()) -> None:
        """Pause every assigned partition not paused yet, except those of ``fetching``
        (the partitions of a batch being widened), which are resumed."""
        assigned, paused = self.consumer.assignment(), self.consumer.paused()
        to_pause = assigned - paused - set(fetching)
        if to_pause:
            self.consumer.pause(*to_pause)
        to_resume = paused & assigned & set(fetching)
        if to_resume:
            self.consumer.resume(*to_resume)

    def release(self) -> None:
        """Resume every paused partition."""
        paused = self.consumer.paused()
        if paused:
            self.consumer.resume(*paused)

    def put_back(self, polled: Mapping[TopicPartition, Sequence[Message]]) -> None:
        """Records a poll returned that will not be handled now: fetch them again later.

        A rebalance inside a poll can assign a partition and fetch from it before
        :meth:`hold` pauses it; dropping what came would move the position past records
        never delivered."""
        firsts = first_offsets(m for messages in polled.values() for m in messages)
        for tp, offset in firsts.items():
            self._seek(tp, offset)
        if firsts:
            log.debug("put back records of %s fetched while holding", sorted(firsts))

    # ---- rebalances that do not finish ---------------------------------------------

    def after_poll(self) -> None:
        """Work around the client's defects (see :mod:`.kafka_quirks`)."""
        if finish_unfinished_rebalance(self.consumer):
            log.warning(
                "the client left a rebalance of group %s unfinished; finishing it", self.group_id
            )
            self.metrics.count_error("rebalance_unfinished", "consume")
        released = release_parked_records(self.consumer)
        if released:
            log.info(
                "fetching %s again: the client held back records fetched before a pause",
                sorted(released),
            )

    def _stable(self) -> bool:
        state = getattr(self.consumer.group_metadata(), "state", MemberState.STABLE)
        return bool(state == MemberState.STABLE)

    def watch(self) -> None:
        """Rejoin the group when left without partitions, or in a rebalance, too long."""
        now = self.clock()
        assigned = bool(self.consumer.assignment())
        if assigned and self._stable():
            self._unassigned_since = None
            self._rejoin_after = REJOIN_FIRST_S
            return
        if self._unassigned_since is None:
            self._unassigned_since = now
            return
        if now - self._unassigned_since < self._rejoin_after:
            return
        log.warning(
            "%s for %.0fs; rejoining group %s",
            "a rebalance unfinished" if assigned else "no partitions assigned",
            now - self._unassigned_since,
            self.group_id,
        )
        self.metrics.count_error("unassigned" if not assigned else "unsettled", "consume")
        self.consumer.unsubscribe()
        self.subscribe()
        self._unassigned_since = now
        self._rejoin_after = min(self._rejoin_after * 2, REJOIN_MAX_S)
