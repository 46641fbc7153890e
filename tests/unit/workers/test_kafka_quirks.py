"""The kafka-python work-arounds act on the state they know and leave any other client
alone (the real client's defects are reproduced in tests/integration/workers)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from kafka import TopicPartition

from workers.kafka_quirks import finish_unfinished_rebalance, release_parked_records

TP0 = TopicPartition("t", 0)
TP1 = TopicPartition("t", 1)


class _Coordinator:
    def __init__(self, rejoining: bool, needed: bool) -> None:
        self.rejoining = rejoining
        self.needed = needed

    def need_rejoin(self) -> bool:
        return self.needed

    def request_rejoin(self) -> None:
        self.needed = True


def test_only_a_rebalance_no_poll_drives_is_asked_to_finish() -> None:
    for rejoining, needed, asked in [
        (True, False, True),
        (True, True, False),
        (False, False, False),
    ]:
        coordinator = _Coordinator(rejoining, needed)
        assert finish_unfinished_rebalance(SimpleNamespace(_coordinator=coordinator)) is asked
        assert coordinator.needed is (needed or asked)


class _Parked:
    def __init__(self) -> None:
        self.drained = False

    def drain(self) -> None:
        self.drained = True


def test_records_parked_for_resumed_partitions_are_released_not_the_paused_ones() -> None:
    parked: dict[TopicPartition, Any] = {TP0: _Parked(), TP1: _Parked()}
    held = parked[TP0]
    fetcher = SimpleNamespace(
        _paused_partition_records=parked,
        _subscriptions=SimpleNamespace(is_paused=lambda tp: tp == TP1),
    )
    assert release_parked_records(SimpleNamespace(_fetcher=fetcher)) == [TP0]
    assert held.drained
    assert list(parked) == [TP1]


def test_another_client_is_left_alone() -> None:
    for client in (
        object(),
        SimpleNamespace(_coordinator=None, _fetcher=None),
        SimpleNamespace(_coordinator=SimpleNamespace(), _fetcher=SimpleNamespace()),
    ):
        assert finish_unfinished_rebalance(client) is False
        assert release_parked_records(client) == []
