"""A stuck batch widened with newer records of its partitions, to tell poison from an outage.

Without a retry lane, :mod:`.handoff` dead-letters a refused record only on evidence:
in the attempt that refused it, the backend took other records of that attempt. A
record retried alone has no such others, so a poison record alone in its batch (a
quiet topic), one left over once the rest of its batch was taken, or a batch of
poison records only would hold its partition for ever; so would an outage look like.

Once a record was handed back past the bound (``retry.partial_max_attempts`` attempts
/ ``partial_max_age_s``, on evidence or not; with a retry lane, the lane's budget, and
only while the backend took nothing of the batch), each backoff sleep fetches from the
batch's partitions again and appends what comes to the batch, which the next attempt
delivers together with the records still refused:

* the backend takes some newer records and refuses the old ones on evidence: that
  attempt counts against them, and they leave by the usual rule of :mod:`.handoff`
  once it counted often or long enough;
* it refuses everything, or pushes back: an outage; the batch keeps holding its
  partitions, and widening stops once ``batch.max_records`` records or
  ``batch.max_bytes`` bytes wait for delivery (one record more when they were that
  many already, and again after each attempt in which the backend took something, so
  that a full batch of poison records can be told from an outage too);
* nothing newer exists: the records are retried as before; a record at the end of
  its partition blocks nothing until a record arrives behind it, and that one widens
  its batch.

The caps count the records still to deliver, not those delivered already: an outage
holds at most ``batch.max_records`` records, or one more than the batch held when it
was full already, while a poison record on a busy partition keeps getting newer
records to be compared with. The widened batch grows by the records delivered
meanwhile (at most about ``max_records`` per attempt in which the backend took some)
until the poison leaves; on a quiet partition, records that arrive together count as
one attempt, so the poison leaves after ``partial_max_attempts`` such arrivals or, at
the next one, ``partial_max_age_s`` after its first refusal on evidence.

Guaranteed: the widened batch is committed as a whole, once each of its records is
delivered, dead-lettered or in the lane; records of a partition stay in offset order;
a batch is widened only after attempts the backend answered record by record
(``Delivered.retry``), never after an exception or :class:`~workers.errors.Throttled`
(the backend pushing back as a whole), and never while the worker drains.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence

from kafka import TopicPartition

from .batching import to_record
from .clients import Message
from .rebalance import partition_of
from .records import Record
from .settings import BatchSettings

__all__ = ["Widening"]


class Widening:
    """The batch in flight, as its backoff sleep widens it.

    ``batch`` is the runtime's list of the batch's records; :meth:`absorb` appends to
    it, so the batch committed or handed back is the widened one. The caps apply to
    the records still to deliver, which :meth:`settle` states before each sleep.
    """

    def __init__(self, batch: list[Record], settings: BatchSettings) -> None:
        self.batch = batch
        self.settings = settings
        self._held = len(batch)
        self._bytes = sum(len(r.value) for r in batch)
        self._last: dict[TopicPartition, int] = {}
        for record in batch:
            tp = partition_of(record)
            self._last[tp] = max(self._last.get(tp, -1), record.offset)
        self._added: list[Record] = []
        self._spare = True  # one record past the caps

    def settle(self, pending: Sequence[Record], progressed: bool) -> None:
        """The records still to deliver after an attempt, and whether the backend took
        some in it (which allows one record past the caps again)."""
        self._held = len(pending)
        self._bytes = sum(len(r.value) for r in pending)
        self._spare = self._spare or progressed

    def room(self) -> int:
        """How many more records the batch may take (0: widened to the cap)."""
        if self._spare:
            return max(1, self.settings.max_records - self._held)
        if self._bytes >= self.settings.max_bytes:
            return 0
        return max(0, self.settings.max_records - self._held)

    def partitions(self) -> set[TopicPartition]:
        """The partitions to fetch from while the batch has room."""
        return set(self._last) if self.room() else set()

    def absorb(
        self,
        polled: Mapping[TopicPartition, Sequence[Message]],
        fetching: Collection[TopicPartition],
    ) -> dict[TopicPartition, Sequence[Message]]:
        """Append what fits of the newer records of ``fetching`` (partitions of the
        batch still ours); returns the records to put back (other partitions', and
        whatever did not fit)."""
        rest: dict[TopicPartition, Sequence[Message]] = {}
        for tp, messages in polled.items():
            if tp not in self._last or tp not in fetching:
                rest[tp] = messages
                continue
            for n, message in enumerate(messages):
                if message.offset <= self._last[tp]:
                    continue  # in the batch already (the position went back meanwhile)
                if not self._fits(len(message.value or b"")):
                    rest[tp] = messages[n:]
                    break
                record = to_record(message)
                self.batch.append(record)
                self._added.append(record)
                self._spare = False
                self._held += 1
                self._bytes += len(record.value)
                self._last[tp] = record.offset
        return rest

    def _fits(self, size: int) -> bool:
        if self._spare:
            return True
        return (
            self._held < self.settings.max_records and self._bytes + size <= self.settings.max_bytes
        )

    def take_added(self) -> list[Record]:
        """The records appended since the last call."""
        added, self._added = self._added, []
        return added
