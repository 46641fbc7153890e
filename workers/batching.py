"""Consumed records wait here until they make a batch.

A batch is due once ``batch.max_records`` records or ``batch.max_bytes`` payload bytes
are held, or the oldest held record has waited ``batch.max_wait_s``.
"""

from __future__ import annotations

from collections.abc import Callable

from .clients import Message
from .records import Record
from .settings import BatchSettings

__all__ = ["Batcher", "to_record"]


def to_record(message: Message) -> Record:
    """The runtime's record of one consumed message."""
    return Record(
        message.topic,
        message.partition,
        message.offset,
        message.key,
        message.value or b"",
        tuple(message.headers or ()),
        message.timestamp,
    )


class Batcher:
    """Records held for the next batch, in the order they were consumed."""

    def __init__(self, settings: BatchSettings, clock: Callable[[], float]) -> None:
        self.settings = settings
        self.clock = clock
        self._held: list[Record] = []
        self._bytes = 0
        self._oldest = 0.0

    def __len__(self) -> int:
        return len(self._held)

    def add(self, record: Record) -> None:
        if not self._held:
            self._oldest = self.clock()
        self._held.append(record)
        self._bytes += len(record.value)

    def due(self) -> bool:
        """Whether the records held make a batch now."""
        s = self.settings
        return bool(self._held) and (
            len(self._held) >= s.max_records
            or self._bytes >= s.max_bytes
            or self.clock() - self._oldest >= s.max_wait_s
        )

    def take(self) -> list[Record]:
        """The records held, which are held no more."""
        batch, self._held, self._bytes = self._held, [], 0
        return batch
