"""What the Elasticsearch sinks share: bulk chunks, the judgement of a ``_bulk``
response item by item, and the loop that folds those judgements into a
:class:`~workers.records.Delivered`.

========================================  =========================================
item status                               outcome
========================================  =========================================
2xx                                       ok (created)
409 (``create`` of an existing ``_id``)   ok: already stored by an earlier attempt
429, 408, 5xx,                            retry: the node pushed back or was busy
``es_rejected_execution_exception``
any other 4xx (mapping errors, …)         permanent: dead-letter that document
========================================  =========================================

Guarantees of :meth:`BulkWriter.write`, per batch: a record is acknowledged only
when every one of its documents was stored or found stored (409); a record with a
document refused for now goes back in ``retry`` (re-sending its other documents just
yields 409s); documents refused for good are dead-lettered one by one, as JSON, once
the rest of their record is stored; a whole request refused for now (429, 5xx, no
connection) sends back every record not yet acknowledged.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import httpx

from ferryman import headers as h
from workers.function import Context
from workers.outcome import Outcome, classify_http
from workers.records import Batch, Delivered, Record

__all__ = ["DOC_SCHEMA", "FILTER_PATH", "BulkResult", "BulkWriter", "Chunk", "classify_bulk",
           "classify_item", "document_record"]

#: Asked of Elasticsearch so a clean response is tiny and starts with ``{"errors":false``.
FILTER_PATH = "errors,items.*.status,items.*.error.type,items.*.error.reason"
_CLEAN = b'{"errors":false'
#: Schema header of a dead-lettered document (the value is the JSON document).
DOC_SCHEMA = b"elasticsearch.doc.v1"


# ---- chunks -----------------------------------------------------------------------------

@dataclass(slots=True)
class Chunk:
    """One ``_bulk`` body: ``lines`` alternate action and document (each ending in a
    newline); ``owners[i]`` is the batch position of the record document ``i`` came from."""

    lines: list[str] = field(default_factory=list)
    owners: list[int] = field(default_factory=list)
    size: int = 0

    def __len__(self) -> int:
        return len(self.owners)

    def body(self) -> bytes:
        return "".join(self.lines).encode()

    def document(self, item: int) -> str:
        return self.lines[2 * item + 1].rstrip("\n")

    def action(self, item: int) -> dict[str, str]:
        """The ``create`` action of document ``item``: its ``_id`` and maybe ``_index``."""
        action: dict[str, str] = json.loads(self.lines[2 * item])["create"]
        return action


def document_record(record: Record, chunk: Chunk, item: int) -> Record:
    """Document ``item`` of ``chunk`` as a record of its own, for the dead-letter topic:
    the value is the JSON document; the headers are the source record's with ``schema``
    replaced and the target's ``_index``/``_id`` added, so it can be re-indexed as is."""
    action = chunk.action(item)
    headers = tuple((k, v) for k, v in record.headers if k != h.SCHEMA)
    headers += ((h.SCHEMA, DOC_SCHEMA), ("elasticsearch.id", action["_id"].encode()))
    if "_index" in action:
        headers += (("elasticsearch.index", action["_index"].encode()),)
    return Record(record.topic, record.partition, record.offset, record.key,
                  chunk.document(item).encode(), headers, record.timestamp_ms)


# ---- classify ---------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class BulkResult:
    """Counts of stored documents, and the position and outcome of every other one."""

    created: int
    duplicates: int
    failed: tuple[tuple[int, Outcome], ...] = ()


def classify_item(status: int, error: Any) -> Outcome:
    """One document's answer: its ``status`` and the ``error`` object, if any."""
    if 200 <= status < 300 or status == 409:
        return Outcome("ok", "duplicate" if status == 409 else "")
    details: Mapping[str, Any] = error if isinstance(error, Mapping) else {}
    error_type = str(details.get("type", ""))
    reason = f"HTTP {status} {error_type}: {str(details.get('reason', ''))[:300]}"
    if status in (408, 429) or status >= 500 or status < 200 \
            or error_type == "es_rejected_execution_exception":
        return Outcome("retry", reason)
    return Outcome("permanent", reason)


def classify_bulk(body: bytes, items: int) -> BulkResult:
    """Judge each of the ``items`` documents of a 2xx bulk response ``body``.

    A body that cannot be read, or that answers for a different number of documents,
    makes every document retryable: re-sending is safe because a stored one answers 409.
    """
    if body.startswith(_CLEAN):
        return BulkResult(created=items, duplicates=0)
    try:
        answers = [(int(answer["status"]), answer.get("error"))
                   for item in json.loads(body)["items"]
                   for answer in item.values()]
    except (ValueError, KeyError, TypeError, AttributeError):
        answers = []
    if len(answers) != items:
        unreadable = Outcome("retry", f"unreadable bulk response for {items} documents: "
                                      f"{body[:200]!r}")
        return BulkResult(0, 0, tuple((i, unreadable) for i in range(items)))
    created = duplicates = 0
    failed: list[tuple[int, Outcome]] = []
    for position, (status, error) in enumerate(answers):
        if 200 <= status < 300:
            created += 1
        elif status == 409:
            duplicates += 1
        else:
            failed.append((position, classify_item(status, error)))
    return BulkResult(created, duplicates, tuple(failed))


# ---- delivery ---------------------------------------------------------------------------

class _Tally:
    """What became of each record of one batch; retry beats dead beats ok."""

    def __init__(self, batch: Batch) -> None:
        self.batch = batch
        self.retry: set[int] = set()
        self.dead: dict[int, str] = {}
        self.dead_documents: dict[int, list[tuple[Record, str]]] = {}
        self.delay: float | None = None

    def retry_chunks(self, chunks: list[Chunk], delay: float | None = None) -> None:
        for chunk in chunks:
            self.retry.update(chunk.owners)
        self.delay = delay

    def delivered(self) -> Delivered:
        dead: list[tuple[Record, str]] = []
        retry: list[Record] = []
        for position, record in enumerate(self.batch):
            if position in self.retry:
                # Its rejected documents will be rejected again and dead-lettered then,
                # once: dead-lettering them now too would do it twice.
                retry.append(record)
            elif position in self.dead:
                dead.append((record, self.dead[position]))
            else:
                dead.extend(self.dead_documents.get(position, ()))
        return Delivered(dead=dead, retry=retry, retry_delay=self.delay if retry else None)


class BulkWriter:
    """Sends a batch's chunks through ``post`` (one ``_bulk`` POST, raising
    httpx.TransportError when the node is unreachable) and reports per record.

    Counts documents in ``ferryman_documents_total{function,result}``.
    """

    def __init__(self, post: Callable[[bytes], httpx.Response], context: Context) -> None:
        self.post = post
        self.log = context.log
        self.function = context.function
        self.m_documents = context.registry.counter(
            "ferryman_documents_total", "Documents sent, by what the backend answered "
            "(created, duplicate, retry, rejected).", ["function", "result"])

    def write(self, batch: Batch, chunks: list[Chunk],
              undecodable: list[tuple[int, str]]) -> Delivered:
        tally = _Tally(batch)
        for position, reason in undecodable:
            tally.dead[position] = reason
        for number, chunk in enumerate(chunks):
            try:
                response = self.post(chunk.body())
            except httpx.TransportError:
                # The node is unreachable: everything not yet sent waits for it.
                tally.retry_chunks(chunks[number:])
                break
            # A 2xx body is read item by item below, not as text.
            outcome = classify_http(response.status_code, response.headers,
                                    "" if response.is_success else response.text)
            if outcome.kind == "retry":
                tally.retry_chunks(chunks[number:], outcome.delay)
                break
            if outcome.kind == "permanent":
                for position in chunk.owners:
                    tally.dead.setdefault(position, f"bulk request refused: {outcome.reason}")
                continue
            self._judge_items(chunk, response.content, tally)
        return tally.delivered()

    def _judge_items(self, chunk: Chunk, body: bytes, tally: _Tally) -> None:
        result = classify_bulk(body, len(chunk))
        self.m_documents.inc(result.created, self.function, "created")
        self.m_documents.inc(result.duplicates, self.function, "duplicate")
        refused = [outcome for _, outcome in result.failed if outcome.kind == "retry"]
        if refused:
            self.m_documents.inc(len(refused), self.function, "retry")
            self.log.warning("Elasticsearch refused %d of %d documents for now; their records "
                             "will be retried; first reason: %s", len(refused), len(chunk),
                             refused[0].reason)
        for item, outcome in result.failed:
            position = chunk.owners[item]
            if outcome.kind == "retry":
                tally.retry.add(position)
            else:
                self.m_documents.inc(1, self.function, "rejected")
                tally.dead_documents.setdefault(position, []).append(
                    (document_record(tally.batch[position], chunk, item), outcome.reason))
