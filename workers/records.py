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
    ``retry`` lists records to try again (retried, with backoff, before the commit):
    those the backend refused for now and those not sent at all because the backend
    pushed back or could not be reached first; ``retry_delay`` is the wait the backend
    asked for (None: the runtime's backoff decides) and ``retry_reason`` what the
    backend said (empty when it said nothing usable); ``outputs`` are produced and
    acknowledged before the commit.

    ``refused`` is the part of ``retry`` the sink can pin on the records themselves,
    each with the backend's reason: the record was sent, and the answer about it was a
    refusal for now that is not backpressure or unavailability. That is a 5xx other
    than 502/503/504 (500, 501, 505, …) to a request holding only this record, or the
    record's own item in a per-item answer (an Elasticsearch bulk item, an OpenTSDB
    ``details`` datapoint) refused for now with anything but 408/429/502/503/504.
    Never in ``refused``: records handed back without being sent (the rest of a batch
    after a failed request), records of a request refused as a whole while it held
    several, and refusals that are 408, 429, 502, 503, 504, transport errors
    (unreachable, timeouts) or per-item backpressure (Elasticsearch
    ``es_rejected_execution_exception``, ``unavailable_shards_exception``, index blocks
    answering 429). Without a retry lane only ``refused`` records can be dead-lettered
    as poison (see :mod:`workers.handoff`); everything else in ``retry`` is held.
    """

    dead: Sequence[tuple[Record, str]] = ()
    retry: Sequence[Record] = ()
    retry_delay: float | None = None
    retry_reason: str = ""
    outputs: Sequence[Output] = field(default_factory=tuple)
    refused: Sequence[tuple[Record, str]] = ()


Batch = Sequence[Record]
