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
* a retryable answer that is evidence against the chunk's records (:func:`evidence`:
  a 500, 501, 505… rather than backpressure) is pinned on the record when the chunk
  holds one, which is handed back as ``refused`` while the following chunks are sent;
  a chunk holding several is first sent again record by record to find out which;
* on any other retryable answer (backpressure: 408, 429, 502, 503, 504), or when the
  backend cannot be reached, the records of that chunk, of every chunk not sent yet
  and those blamed for now are handed back, with the delay the backend asked for and
  its reason; only the records refused on evidence before are ``refused``.

========================================  =================================
answer (the item's status when per item)  evidence against the record?
========================================  =================================
2xx                                       no (taken)
408, 429, 502, 503, 504                   no: backpressure, unavailable
transport error (unreachable, timeout)    no: nothing was answered
any other 5xx, request of 1 record        yes
any other 5xx, request of several         no (sent again record by record)
the record's own item, any other 4xx/5xx  yes (per-item answers)
not sent                                  no
========================================  =================================
"""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol, Self, TypeVar

import httpx

from workers.outcome import Outcome
from workers.records import Batch, Delivered

__all__ = [
    "BACKPRESSURE",
    "Blame",
    "HandBack",
    "OwnedChunk",
    "deliver_chunks",
    "delivered",
    "evidence",
]

#: Statuses of a backend that pushes back or is unavailable: they say nothing about the
#: records of the request (or of the item) they answer.
BACKPRESSURE = frozenset({408, 429, 502, 503, 504})


def evidence(status: int, *, records: int = 1, item_status: int | None = None) -> bool:
    """Whether an answer refusing records for now is evidence against them (the module
    docstring's table): the refusal is about these records, not the backend's state.

    ``status`` is the response's, ``records`` how many records the request held,
    ``item_status`` the status of one record's own item in a per-item answer (an
    Elasticsearch bulk item, an OpenTSDB datapoint): then it alone decides, whatever the
    request held. A refusal of a request holding several records pins nothing on any
    one of them."""
    if item_status is not None:
        return item_status >= 400 and item_status not in BACKPRESSURE
    return records == 1 and status >= 500 and status not in BACKPRESSURE


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
    """The records to retry, the delay the backend asked for, and its reason; ``refused``
    are those of ``retry`` refused on evidence (:func:`evidence`), with the reason."""

    retry: frozenset[int] = frozenset()
    delay: float | None = None
    reason: str = ""
    refused: Mapping[int, str] = field(default_factory=dict)


def deliver_chunks(
    chunks: Sequence[_C],
    send: Callable[[_C], httpx.Response],
    *,
    classify: Classify,
    dead: dict[int, str],
    backend: str,
    log: logging.Logger,
    data_at_fault: Callable[[int], bool] | None = None,
    blame: Blame[_C] | None = None,
) -> HandBack:
    """Send ``chunks`` in order (see the module docstring); ``dead`` collects the records
    dead-lettered, with the reason. ``send`` raises httpx.TransportError when the backend
    cannot be reached."""
    queue = deque(chunks)
    later: dict[int, str] = {}
    refused: dict[int, str] = {}
    while queue:
        current = queue.popleft()
        owners = current.owners
        if owners <= dead.keys():
            continue
        try:
            response = send(current)
        except httpx.TransportError as exc:
            return _hand_back(
                current,
                queue,
                dead,
                later,
                refused,
                backend,
                f"{backend} unreachable: {exc!r}",
                None,
                log,
            )
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
                    if evidence(
                        response.status_code, records=len(owners), item_status=verdict.status
                    ):
                        refused.setdefault(owner, verdict.reason)
            continue
        if outcome.kind == "retry" and evidence(response.status_code):
            if len(owners) > 1:
                # Evidence against a record sent alone: find out which one it is about.
                log.warning(
                    "%s refused a request holding %d records for now (%s); sending "
                    "them one by one to tell which",
                    backend,
                    len(owners),
                    outcome.reason,
                )
                queue.extendleft(reversed(current.by_owner()))
                continue
            # About this one record, not the backend's state: the next ones may pass.
            (owner,) = owners
            later.setdefault(owner, outcome.reason)
            refused.setdefault(owner, outcome.reason)
            continue
        if outcome.kind == "retry":
            return _hand_back(
                current, queue, dead, later, refused, backend, outcome.reason, outcome.delay, log
            )
        if data_at_fault is not None and data_at_fault(response.status_code) and len(owners) > 1:
            log.warning(
                "%s refused a request holding %d records (%s); sending them one by "
                "one to find the bad ones",
                backend,
                len(owners),
                outcome.reason,
            )
            queue.extendleft(reversed(current.by_owner()))
            continue
        for owner in owners:
            dead.setdefault(owner, outcome.reason)
    waiting = {owner: reason for owner, reason in later.items() if owner not in dead}
    if not waiting:
        return HandBack()
    reason = next(iter(waiting.values()))
    log.warning(
        "%d records wait for %s to store some of their data: %s", len(waiting), backend, reason
    )
    return HandBack(
        frozenset(waiting), None, reason, {o: why for o, why in refused.items() if o in waiting}
    )


def _hand_back(
    current: OwnedChunk,
    queue: deque[_C],
    dead: dict[int, str],
    later: Mapping[int, str],
    refused: Mapping[int, str],
    backend: str,
    reason: str,
    delay: float | None,
    log: logging.Logger,
) -> HandBack:
    retry = frozenset(current.owners.union(later, *(c.owners for c in queue)) - dead.keys())
    log.warning("%d records wait for %s: %s", len(retry), backend, reason)
    return HandBack(retry, delay, reason, {o: why for o, why in refused.items() if o in retry})


def delivered(batch: Batch, dead: Mapping[int, str], hand_back: HandBack) -> Delivered:
    """The :class:`Delivered` of ``batch`` once every record is decided; the records
    handed back carry the backend's reason (``retry_reason``)."""
    retry = [batch[i] for i in sorted(hand_back.retry)]
    return Delivered(
        dead=[(batch[i], reason) for i, reason in sorted(dead.items())],
        retry=retry,
        retry_delay=hand_back.delay if retry else None,
        retry_reason=hand_back.reason if retry else "",
        refused=[
            (batch[i], hand_back.refused[i])
            for i in sorted(hand_back.refused)
            if i in hand_back.retry
        ],
    )
