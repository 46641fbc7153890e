"""Records handed back in a rebalance are fetched again: at once when their partition
is still assigned, else when the rebalance assigns it back; never after it went to
another member (that one starts at the committed offset)."""

from __future__ import annotations

from typing import Any

from kafka import TopicPartition

from ferryman.telemetry import Registry
from workers.records import Delivered, Record
from workers.runtime import Runtime, _Rebalance
from workers.settings import WorkerSettings

TP = TopicPartition("t", 0)


class _Consumer:
    """The two calls the rewind makes, recorded (the bookkeeping is what is checked;
    the real rebalance runs in the integration tests)."""

    def __init__(self) -> None:
        self.assigned: set[TopicPartition] = set()
        self.seeks: list[tuple[TopicPartition, int]] = []

    def assignment(self) -> set[TopicPartition]:
        return self.assigned

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))


class _Refusing:
    def handle(self, batch: Any) -> Delivered:
        return Delivered(retry=list(batch))

    def close(self) -> None:
        pass


def _runtime() -> tuple[Runtime, _Consumer, _Rebalance]:
    runtime = Runtime(WorkerSettings(function="loki", kafka={"input_topic": "t"}),
                      _Refusing(), Registry())
    consumer = _Consumer()
    runtime.consumer = consumer  # type: ignore[assignment]
    return runtime, consumer, _Rebalance(runtime)


BATCH = [Record("t", 0, offset, None, b"x") for offset in (7, 5, 6)]


def test_still_assigned_rewinds_at_once() -> None:
    runtime, consumer, _ = _runtime()
    consumer.assigned = {TP}
    runtime._rewind(BATCH)
    assert consumer.seeks == [(TP, 5)]


def test_mid_rebalance_rewinds_when_the_partition_comes_back() -> None:
    runtime, consumer, listener = _runtime()
    listener.on_partitions_revoked([TP])
    runtime._rewind(BATCH)  # the join is not complete: nothing assigned yet
    assert consumer.seeks == []
    consumer.assigned = {TP}
    listener.on_partitions_assigned([TP])
    assert consumer.seeks == [(TP, 5)]
    listener.on_partitions_assigned([TP])  # a later rebalance: nothing pending
    assert consumer.seeks == [(TP, 5)]


def test_given_to_another_member_the_rewind_is_dropped() -> None:
    runtime, consumer, listener = _runtime()
    listener.on_partitions_revoked([TP])
    runtime._rewind(BATCH)
    listener.on_partitions_assigned([])
    listener.on_partitions_assigned([TP])  # back later: start at the committed offset
    assert consumer.seeks == []
