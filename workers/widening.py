"""A stuck batch widened with newer records of its partitions, to tell poison from an outage.

A batch of which the backend took nothing looks the same whether the backend is down
or its records are poison (refused for now every time while the backend takes
others): :mod:`.handoff` dead-letters or hands off refused records only once the
backend took others of their batch. A poison record alone in its batch (a quiet
topic), or a batch of poison records only, would so hold its partition for ever.

Once such a batch was refused past the bound (``retry.partial_max_attempts`` /
``partial_max_age_s``, or the lane's budget when a retry lane is configured), the
backoff sleep fetches from the batch's partitions again and appends what comes to the
batch, which the next attempt delivers as a whole:

* the backend takes some newer records and refuses the old ones: they are poison,
  and leave by the usual rule of :mod:`.handoff`;
* it refuses everything: an outage; the batch keeps holding its partitions, and
  widening stops at ``batch.max_records`` records or ``batch.max_bytes`` bytes (one
  record more when the batch was full already, so that a full batch of poison
  records can be told from an outage too);
* nothing newer exists: the batch is retried as before; a record at the end of its
  partition blocks nothing until a record arrives behind it, and that one widens it.

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
    it, so the batch committed or handed back is the widened one.
    """

    def __init__(self, batch: list[Record], settings: BatchSettings) -> None:
        self.batch = batch
        self.settings = settings
        self._bytes = sum(len(r.value) for r in batch)
        self._last: dict[TopicPartition, int] = {}
        for record in batch:
            tp = partition_of(record)
            self._last[tp] = max(self._last.get(tp, -1), record.offset)
        self._added: list[Record] = []
        self._any_added = False

    def room(self) -> int:
        """How many more records the batch may take (0: widened to the cap)."""
        if not self._any_added:
            return max(1, self.settings.max_records - len(self.batch))
        if self._bytes >= self.settings.max_bytes:
            return 0
        return max(0, self.settings.max_records - len(self.batch))

    def partitions(self) -> set[TopicPartition]:
        """The partitions to fetch from while the batch has room."""
        return set(self._last) if self.room() else set()

    def absorb(self, polled: Mapping[TopicPartition, Sequence[Message]],
               fetching: Collection[TopicPartition]
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
                self._any_added = True
                self._bytes += len(record.value)
                self._last[tp] = record.offset
        return rest

    def _fits(self, size: int) -> bool:
        if not self._any_added:
            return True
        return (len(self.batch) < self.settings.max_records
                and self._bytes + size <= self.settings.max_bytes)

    def take_added(self) -> list[Record]:
        """The records appended since the last call."""
        added, self._added = self._added, []
        return added
