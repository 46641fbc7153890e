"""In-memory Kafka clients to drive :meth:`Runtime.run` in tests, with a clock they move.

    clock = FakeClock()
    kafka = FakeKafka({TopicPartition("t", 0): [b"a", b"b"]})
    consumer = FakeConsumer(kafka, clock)
    consumer.on_poll(lambda c: runtime.stop() if kafka.committed_total() == 2 else None)
    runtime = Runtime(settings, handler, Registry(), clock=clock,
                      consumer=lambda _: consumer, producer=lambda _: FakeProducer())
    runtime.run()

:class:`FakeConsumer` behaves like kafka-python's group member where the runtime can
tell: a poll returns records of assigned, unpaused partitions from their position
and, when it returns none, moves the clock by its timeout; a rebalance revokes and
assigns through the listener, and a partition assigned again keeps its state
(position and paused flag) as kafka-python 3's ``assign_from_subscribed`` does.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from kafka import TopicPartition
from kafka.errors import CommitFailedError
from kafka.structs import ConsumerGroupMetadata, MemberState, OffsetAndMetadata

__all__ = ["FakeClock", "FakeConsumer", "FakeKafka", "FakeMessage", "FakeProducer"]


class FakeClock:
    """Monotonic seconds that move only when told."""

    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@dataclass(frozen=True)
class FakeMessage:
    """What ``poll`` returns for one record (the fields of kafka-python's ConsumerRecord
    the runtime reads)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: Sequence[tuple[str, bytes]] = ()
    timestamp: int = 0


class FakeKafka:
    """Partitions holding values, and the group's committed offsets; ``headers`` gives
    records headers by (partition, offset) (default: none)."""

    def __init__(
        self,
        partitions: Mapping[TopicPartition, Iterable[bytes]],
        headers: Mapping[tuple[TopicPartition, int], Sequence[tuple[str, bytes]]] | None = None,
    ) -> None:
        self.log: dict[TopicPartition, list[bytes]] = {
            tp: list(values) for tp, values in partitions.items()
        }
        self.headers = dict(headers or {})
        self.committed: dict[TopicPartition, int] = {}

    def append(self, tp: TopicPartition, *values: bytes) -> None:
        self.log.setdefault(tp, []).extend(values)

    def committed_total(self) -> int:
        return sum(self.committed.values())


@dataclass
class _State:
    position: int
    paused: bool = False
    #: listed during a rebalance but not fetched from (kafka-python's pending revocation)
    pending: bool = False


@dataclass
class _Coordinator:
    """The parts of kafka-python's group coordinator the runtime reads: a rebalance
    started (``rejoining``) that polls no longer drive (``need_rejoin()`` false) until
    ``request_rejoin()``."""

    rejoining: bool = False
    rejoin_needed: bool = True
    #: what the rebalance assigns once it finishes
    assigning: list[TopicPartition] = field(default_factory=list)

    def need_rejoin(self) -> bool:
        return self.rejoin_needed

    def request_rejoin(self) -> None:
        self.rejoin_needed = True


@dataclass
class FakeConsumer:
    """A group member on a :class:`FakeKafka`; starts with every partition assigned
    (``assigned`` narrows that) once ``subscribe`` is called."""

    kafka: FakeKafka
    clock: FakeClock
    assigned: Collection[TopicPartition] | None = None
    #: polls after which the test is taken to hang
    max_polls: int = 100_000
    polls: int = 0
    seeks: list[tuple[TopicPartition, int]] = field(default_factory=list)
    commits: list[dict[TopicPartition, int]] = field(default_factory=list)
    listener: Any = None
    closed: bool = False
    #: commits to refuse first, as a broker does after the group rebalanced
    refuse_commits: int = 0
    _states: dict[TopicPartition, _State] = field(default_factory=dict)
    #: states kept aside while a rebalance is under way (see :meth:`begin_rebalance`)
    _aside: dict[TopicPartition, _State] = field(default_factory=dict)
    _hooks: list[Callable[[FakeConsumer], None]] = field(default_factory=list)
    _coordinator: _Coordinator = field(default_factory=_Coordinator)

    def on_poll(self, hook: Callable[[FakeConsumer], None]) -> None:
        """Call ``hook(consumer)`` at the start of every poll (the runtime's or the
        sleep's): rebalances and stops happen there, as they do inside a real poll."""
        self._hooks.append(hook)

    # ---- rebalances ------------------------------------------------------------------

    def begin_rebalance(
        self, *, listed: bool = False, stalled: Iterable[TopicPartition] | None = None
    ) -> None:
        """The first half of a rebalance: the listener hears every partition revoked.

        Until :meth:`complete_rebalance` the member lists none (their state kept aside);
        with ``listed`` it lists them still, unfetched, as kafka-python 3 does under the
        eager protocol until the join completes. ``stalled`` is kafka-python 3.0.12's
        unfinished rebalance: listed, and completed with ``stalled`` assigned only once
        the client is asked to (``_coordinator.request_rejoin()``)."""
        revoked = set(self._states)
        if stalled is not None:
            listed = True
            self._coordinator.rejoining = True
            self._coordinator.rejoin_needed = False
            self._coordinator.assigning = list(stalled)
        if listed:
            for state in self._states.values():
                state.pending = True
        else:
            self._aside.update(self._states)
            self._states.clear()
        if self.listener is not None:
            self.listener.on_partitions_revoked(revoked)

    def complete_rebalance(self, assigned: Iterable[TopicPartition]) -> None:
        """The second half: ``assigned`` are ours; those we held before keep their state
        (position, paused flag), the others start at the committed offset."""
        wanted = set(assigned)
        kept = {**self._aside, **self._states}
        for state in kept.values():
            state.pending = False
        self._coordinator.rejoining = False
        self._states = {
            tp: kept[tp] if tp in kept else _State(self.kafka.committed.get(tp, 0)) for tp in wanted
        }
        self._aside.clear()
        if self.listener is not None:
            self.listener.on_partitions_assigned(set(self._states))

    def rebalance(self, assigned: Iterable[TopicPartition]) -> None:
        self.begin_rebalance()
        self.complete_rebalance(assigned)

    # ---- the Consumer calls ---------------------------------------------------------

    def subscribe(self, topics: Sequence[str], *, listener: Any) -> None:
        self.listener = listener
        wanted = (
            self.assigned
            if self.assigned is not None
            else [tp for tp in self.kafka.log if tp.topic in topics]
        )
        self.complete_rebalance(wanted)

    def unsubscribe(self) -> None:
        self._states.clear()
        self.listener = None

    def partitions_for_topic(self, topic: str) -> set[int] | None:
        return {tp.partition for tp in self.kafka.log if tp.topic == topic} or None

    def poll(
        self, timeout_ms: int = 0, max_records: int | None = None
    ) -> dict[TopicPartition, list[FakeMessage]]:
        self.polls += 1
        if self.polls > self.max_polls:
            raise AssertionError(f"still polling after {self.max_polls} polls")
        for hook in list(self._hooks):
            hook(self)
        if self._coordinator.rejoining and self._coordinator.rejoin_needed:
            self.complete_rebalance(self._coordinator.assigning)
        left = max_records if max_records is not None else 500
        out: dict[TopicPartition, list[FakeMessage]] = {}
        for tp, state in self._states.items():
            if state.paused or state.pending or left <= 0:
                continue
            values = self.kafka.log.get(tp, [])[state.position : state.position + left]
            if values:
                out[tp] = [
                    FakeMessage(
                        tp.topic,
                        tp.partition,
                        state.position + i,
                        None,
                        value,
                        self.kafka.headers.get((tp, state.position + i), ()),
                    )
                    for i, value in enumerate(values)
                ]
                state.position += len(values)
                left -= len(values)
        if not out:
            self.clock.advance(timeout_ms / 1000)
        return out

    def assignment(self) -> set[TopicPartition]:
        return set(self._states)

    def paused(self) -> set[TopicPartition]:
        return {tp for tp, state in self._states.items() if state.paused}

    def pause(self, *partitions: TopicPartition) -> None:
        for tp in partitions:
            self._states[tp].paused = True  # KeyError when not assigned, as kafka-python

    def resume(self, *partitions: TopicPartition) -> None:
        for tp in partitions:
            self._states[tp].paused = False

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self._states[partition].position = offset
        self.seeks.append((partition, offset))

    def commit(self, offsets: Mapping[TopicPartition, OffsetAndMetadata]) -> None:
        if self.refuse_commits > 0:
            self.refuse_commits -= 1
            raise CommitFailedError()
        done = {tp: meta.offset for tp, meta in offsets.items()}
        self.commits.append(done)
        self.kafka.committed.update(done)

    def end_offsets(self, partitions: Iterable[TopicPartition]) -> dict[TopicPartition, int]:
        return {tp: len(self.kafka.log.get(tp, [])) for tp in partitions}

    def position(self, partition: TopicPartition) -> int | None:
        return self._states[partition].position

    def close(self, autocommit: bool = True) -> None:
        self.closed = True

    def group_metadata(self) -> ConsumerGroupMetadata:
        rebalancing = self._coordinator.rejoining or bool(self._aside)
        return ConsumerGroupMetadata(
            group_id="fake",
            state=MemberState.REBALANCING
            if rebalancing
            else MemberState.STABLE
            if self._states
            else MemberState.UNJOINED,
        )


class _Sent:
    def __init__(self, error: Exception | None) -> None:
        self.error = error

    def get(self, timeout: float | None = None) -> None:
        if self.error is not None:
            raise self.error


@dataclass
class FakeProducer:
    """Keeps what was sent, by topic; ``fail_with`` makes every send fail."""

    sent: dict[str, list[tuple[bytes | None, bytes | None, list[tuple[str, bytes]]]]] = field(
        default_factory=dict
    )
    fail_with: Exception | None = None
    closed: bool = False

    def send(
        self,
        topic: str,
        value: bytes | None = None,
        key: bytes | None = None,
        headers: list[tuple[str, bytes]] | None = None,
    ) -> _Sent:
        if self.fail_with is None:
            self.sent.setdefault(topic, []).append((key, value, list(headers or ())))
        return _Sent(self.fail_with)

    def flush(self, timeout: float | None = None) -> None:
        pass

    def close(self, timeout: float | None = None) -> None:
        self.closed = True

    def headers_of(self, topic: str) -> list[dict[str, bytes]]:
        return [dict(headers) for _, _, headers in self.sent.get(topic, [])]
