"""Sending request bodies that mix records, and deciding the fate of every record in
them: the one delivery loop of the sinks that cut a batch into chunks.

What :func:`deliver_chunks` guarantees, per batch:

* a record whose every chunk was answered ok is delivered (in neither ``dead`` nor
  the hand-back);
* a refusal of the data (``data_at_fault``) of a chunk holding several records is
  narrowed down by sending that chunk's records one by one; only the records still
  refused are dead-lettered, with the backend's reason; other permanent answers
  dead-letter the chunk's records;
* when the backend names the refused parts of a chunk (``blame``: OpenTSDB's
  per-datapoint details), each verdict is pinned on its record: permanent ones
  dead-letter it, the others hand it back for retry, and the chunk's other records are
  delivered;
* on a retryable answer, or when the backend cannot be reached, the records of that
  chunk, of every chunk not sent yet and those blamed for now are handed back, with
  the delay the backend asked for and its reason.
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, Self, TypeVar

import httpx

from workers.outcome import Outcome
from workers.records import Batch, Delivered

__all__ = ["Blame", "HandBack", "OwnedChunk", "deliver_chunks", "delivered"]


class OwnedChunk(Protocol):
    """A request body built from several records (``owners``: their batch indexes)."""

    @property
    def owners(self) -> frozenset[int]: ...

    def by_owner(self) -> Sequence[Self]: ...


_C = TypeVar("_C", bound=OwnedChunk)

Classify = Callable[[int, Mapping[str, str], str], Outcome]
Blame = Callable[[int, str, _C], Mapping[int, Outcome] | None]
"""Per record of a refused chunk (by batch index), the outcome of its refused parts,
read from the answer (status, body); records left out were stored. None when the
answer cannot be pinned on the chunk's records."""


@dataclass(frozen=True, slots=True)
class HandBack:
    """The records to retry, the delay the backend asked for, and its reason."""

    retry: frozenset[int] = frozenset()
    delay: float | None = None
    reason: str = ""


def deliver_chunks(chunks: Sequence[_C], send: Callable[[_C], httpx.Response], *,
                   classify: Classify, dead: dict[int, str], backend: str,
                   log: logging.Logger, data_at_fault: Callable[[int], bool] | None = None,
                   blame: Blame[_C] | None = None) -> HandBack:
    """Send ``chunks`` in order (see the module docstring); ``dead`` collects the records
    dead-lettered, with the reason. ``send`` raises httpx.TransportError when the backend
    cannot be reached."""
    queue = deque(chunks)
    later: dict[int, str] = {}
    while queue:
        current = queue.popleft()
        owners = current.owners
        if owners <= dead.keys():
            continue
        try:
            response = send(current)
        except httpx.TransportError as exc:
            return _hand_back(current, queue, dead, later, backend,
                              f"{backend} unreachable: {exc!r}", None, log)
        outcome = classify(response.status_code, response.headers, response.text)
        if outcome.kind == "ok":
            continue
        verdicts = blame(response.status_code, response.text, current) if blame else None
        if verdicts is not None:
            for owner, verdict in verdicts.items():
                if verdict.kind == "permanent":
                    dead.setdefault(owner, verdict.reason)
                else:
                    later.setdefault(owner, verdict.reason)
            continue
        if outcome.kind == "retry":
            return _hand_back(current, queue, dead, later, backend, outcome.reason,
                              outcome.delay, log)
        if data_at_fault is not None and data_at_fault(response.status_code) \
                and len(owners) > 1:
            log.warning("%s refused a request holding %d records (%s); sending them one by "
                        "one to find the bad ones", backend, len(owners), outcome.reason)
            queue.extendleft(reversed(current.by_owner()))
            continue
        for owner in owners:
            dead.setdefault(owner, outcome.reason)
    waiting = {owner: reason for owner, reason in later.items() if owner not in dead}
    if not waiting:
        return HandBack()
    reason = next(iter(waiting.values()))
    log.warning("%d records wait for %s to store some of their data: %s", len(waiting),
                backend, reason)
    return HandBack(frozenset(waiting), None, reason)


def _hand_back(current: OwnedChunk, queue: deque[_C], dead: dict[int, str],
               later: Mapping[int, str], backend: str, reason: str, delay: float | None,
               log: logging.Logger) -> HandBack:
    retry = frozenset(current.owners.union(later, *(c.owners for c in queue))
                      - dead.keys())
    log.warning("%d records wait for %s: %s", len(retry), backend, reason)
    return HandBack(retry, delay, reason)


def delivered(batch: Batch, dead: Mapping[int, str], hand_back: HandBack) -> Delivered:
    """The :class:`Delivered` of ``batch`` once every record is decided; the records
    handed back carry the backend's reason (``retry_reason``)."""
    retry = [batch[i] for i in sorted(hand_back.retry)]
    return Delivered(dead=[(batch[i], reason) for i, reason in sorted(dead.items())],
                     retry=retry, retry_delay=hand_back.delay if retry else None,
                     retry_reason=hand_back.reason if retry else "")
