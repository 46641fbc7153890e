"""Work-arounds for two kafka-python 3.0.12 defects that stop a partition for good.

Both reach into the client's private state, so each checks for what it needs and
does nothing when that is not there (another client, another kafka-python): the
rejoin watchdog of :mod:`.rebalance` remains as the general remedy. Drop them when
kafka-python fixes the defects.

* :func:`finish_unfinished_rebalance`. kafka-python drives a rebalance from inside
  ``poll``. When the group leader rejoins because its own metadata changed (as it
  does about a second after joining a new topic, or when partitions are added) and a
  poll's timeout cuts the join short after the leader computed the assignment,
  ``need_rejoin()`` turns false: no later poll awaits the join, the member stays
  ``REBALANCING`` and its partitions stay listed but pending revocation, never
  fetched again. The backoff sleep's short polls make that likely on a loaded box.
* :func:`release_parked_records`. Records fetched but not yet returned (``poll``
  returns at most ``max_records``) for a partition paused meanwhile are parked;
  once it is resumed the client gives them back only while its next-records slot is
  empty, which it seldom is once other partitions' records were returned, and it
  fetches nothing more for a partition with parked records.
"""

from __future__ import annotations

from typing import Any

from kafka import TopicPartition

__all__ = ["finish_unfinished_rebalance", "release_parked_records"]


def finish_unfinished_rebalance(consumer: Any) -> bool:
    """Ask the client to finish a rebalance it started and no poll drives any more;
    returns whether it had to. Call between polls only."""
    coordinator: Any = getattr(consumer, "_coordinator", None)
    try:
        stalled = bool(coordinator.rejoining) and not coordinator.need_rejoin()
        if stalled:
            coordinator.request_rejoin()  # the next poll awaits (or redoes) the join
    except AttributeError:
        return False
    return stalled


def release_parked_records(consumer: Any) -> list[TopicPartition]:
    """Drop the records the client parked for partitions no longer paused; returns
    those partitions. The position never moved past records not returned, so the
    next fetch brings them again. Call between polls only (the fetcher's buffers
    belong to the polling thread)."""
    fetcher: Any = getattr(consumer, "_fetcher", None)
    try:
        parked: dict[TopicPartition, Any] = fetcher._paused_partition_records
        released = [tp for tp in list(parked) if not fetcher._subscriptions.is_paused(tp)]
        for tp in released:
            parked.pop(tp).drain()
    except AttributeError:
        return []
    return released
