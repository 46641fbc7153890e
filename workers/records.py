"""Records, batches and delivery results: the values that pass between runtime and function."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["Batch", "Delivered", "Output", "Record"]

Headers = tuple[tuple[str, bytes], ...]


@dataclass(frozen=True, slots=True)
class Record:
    """One Kafka message as consumed. ``value`` is the raw payload (still compressed)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes
    headers: Headers = ()
    timestamp_ms: int = 0

    def header(self, name: str) -> bytes | None:
        for key, value in self.headers:
            if key == name:
                return value
        return None


@dataclass(frozen=True, slots=True)
class Output:
    """A message a transform wants produced to its output topic."""

    value: bytes
    key: bytes | None = None
    headers: Headers = ()


@dataclass(frozen=True, slots=True)
class Delivered:
    """What a function reports for a batch it handled.

    The runtime commits the batch once this is returned. ``dead`` lists records that
    can never be delivered, with the reason (dead-lettered before the commit);
    ``retry`` lists records the backend refused for now (retried alone, with backoff,
    before the commit), ``retry_delay`` the wait the backend asked for (None: the
    runtime's backoff decides) and ``retry_reason`` what the backend said about them
    (empty when it said nothing usable; it becomes the dead-letter reason of a record
    refused past ``retry.partial_max_attempts``/``partial_max_age_s``); ``outputs`` are
    produced and acknowledged before the commit.
    """

    dead: Sequence[tuple[Record, str]] = ()
    retry: Sequence[Record] = ()
    retry_delay: float | None = None
    retry_reason: str = ""
    outputs: Sequence[Output] = field(default_factory=tuple)


Batch = Sequence[Record]
