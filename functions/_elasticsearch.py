"""What the Elasticsearch sinks share: the connection and template configuration, the
template PUTs, bulk chunks, the judgement of a ``_bulk`` response item by item, and the
loop that folds those judgements into a :class:`~workers.records.Delivered`.

========================================  =========================================
item status                               outcome
========================================  =========================================
2xx                                       ok (created)
409 (``create`` of an existing ``_id``)   ok: already stored by an earlier attempt
429, 408, 5xx,                            retry: the node pushed back or was busy
``es_rejected_execution_exception``
any other 4xx (mapping errors, …)         permanent: dead-letter that document
========================================  =========================================

A document retried for an item status other than 408/429/502/503/504 (a 500 of its
own, say) is evidence against its record (``Delivered.refused``, see
:func:`functions._chunks.evidence`); items answered 429 (``es_rejected_execution_exception``,
an index block such as ``read_only_allow_delete``) or 503
(``unavailable_shards_exception``) are backpressure, as are whole requests refused for
now, unless such a request held a single record and was answered 500, 501, 505…;
records of chunks not sent are never evidence.

Guarantees of :meth:`BulkWriter.write`, per batch: a record is acknowledged only
when every one of its documents was stored or found stored (409); a record with a
document refused for now goes back in ``retry`` (re-sending its other documents just
yields 409s); documents refused for good are dead-lettered one by one, as JSON, once
the rest of their record is stored; a whole request refused for now (429, 5xx, no
connection) sends back every record not yet acknowledged.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ferryman import headers as h
from functions._chunks import evidence
from functions._http import Credentials, HttpAuthConfig
from workers.errors import DeliveryError, Permanent
from workers.function import Context
from workers.outcome import Outcome, classify_http
from workers.records import Batch, Delivered, Record

__all__ = [
    "DOC_SCHEMA",
    "FILTER_PATH",
    "BaseTemplateConfig",
    "BulkResult",
    "BulkWriter",
    "Chunk",
    "ElasticsearchConnection",
    "check_name",
    "classify_bulk",
    "classify_item",
    "document_record",
    "install_templates",
]

#: Asked of Elasticsearch so a clean response is tiny and starts with ``{"errors":false``.
FILTER_PATH = "errors,items.*.status,items.*.error.type,items.*.error.reason"
_CLEAN = b'{"errors":false'
#: Schema header of a dead-lettered document (the value is the JSON document).
DOC_SCHEMA = b"elasticsearch.doc.v1"


# ---- configuration ----------------------------------------------------------------------

_FORBIDDEN = re.compile(r'[\\/*?"<>| ,#:A-Z]')


def check_name(name: str, what: str) -> str:
    """``name`` if Elasticsearch accepts it as an index, data stream or template name."""
    if not name or _FORBIDDEN.search(name) or name.startswith(("-", "_", "+", ".")):
        raise ValueError(
            f"{what} {name!r} is not a valid Elasticsearch name (lowercase, "
            'no spaces or \\/*?"<>|,#:, not starting with -_+.)'
        )
    return name


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BaseTemplateConfig(_Frozen):
    """The index template installed (idempotently, by PUT) before the first write."""

    install: bool = Field(
        True,
        description="Install the component and index templates before "
        "the first write (default true). Turn off when "
        "the operator manages templates.",
    )
    name: str | None = Field(
        None,
        description="Index template name; default: the data "
        "stream's name (metrics: or the index "
        "pattern's fixed prefix). Its component "
        "template is <name>@ferryman.",
    )
    priority: int = Field(
        200,
        ge=0,
        description="Index template priority (default 200: above "
        "the built-in logs-*-* and metrics-*-* "
        "templates' 100).",
    )
    number_of_shards: int = Field(1, ge=1, description="Primary shards (default 1).")
    number_of_replicas: int = Field(0, ge=0, description="Replicas (default 0).")
    composed_of: tuple[str, ...] = Field(
        (),
        description="Extra component templates applied "
        "after ferryman's own (they win on "
        "conflicts): lifecycle policy, "
        "extra mappings. Must exist.",
    )

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str | None) -> str | None:
        return None if name is None else check_name(name, "template name")


class ElasticsearchConnection(HttpAuthConfig):
    """Where Elasticsearch is and how to talk to it."""

    auth_fields: ClassVar[tuple[str, ...]] = ("basic_auth", "api_key", "bearer_token")

    url: str = Field(description="Elasticsearch base URL, e.g. http://elasticsearch:9200.")
    cluster_label: str = Field(
        "cluster",
        description="Label holding the cluster (default "
        "`cluster`); when a series or stream "
        "lacks it, the message's `cluster` "
        "header is used.",
    )
    max_bulk_bytes: int = Field(
        5 * 2**20,
        ge=1024,
        le=100 * 2**20,
        description="Bulk bodies are cut at this size (default 5 MiB; "
        "at most Elasticsearch's default "
        "http.max_content_length, 100 MiB).",
    )
    api_key: str | None = Field(
        None, description="API key, the base64 `encoded` form Elasticsearch returns; default none."
    )

    def credentials(self) -> Credentials:
        if self.api_key is not None:
            return Credentials(authorization=f"ApiKey {self.api_key}")
        return super().credentials()


def install_templates(
    client: httpx.Client, url: str, puts: Sequence[tuple[str, dict[str, Any]]]
) -> None:
    """PUT each ``(path, body)`` in order (the component template, then the index
    template using it). Both are upserts that leave cluster state alone when nothing
    changed, so every worker does this at start. Raises DeliveryError when Elasticsearch
    cannot be reached or answers 408/429/5xx (worth trying again), Permanent for any
    other refusal (credentials, a missing ``composed_of`` template, a bad setting)."""
    for path, body in puts:
        try:
            response = client.put(f"{url}/{path}", json=body)
        except httpx.TransportError as exc:
            raise DeliveryError(f"PUT {path}: {type(exc).__name__}: {exc}") from exc
        outcome = classify_http(response.status_code, response.headers, response.text[:500])
        if outcome.kind == "retry":
            raise DeliveryError(f"PUT {path}: {outcome.reason}")
        if outcome.kind == "permanent":
            raise Permanent(f"PUT {path}: {outcome.reason}")


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
    return Record(
        record.topic,
        record.partition,
        record.offset,
        record.key,
        chunk.document(item).encode(),
        headers,
        record.timestamp_ms,
    )


# ---- classify ---------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class BulkResult:
    """Counts of stored documents, and the position and outcome of every other one."""

    created: int
    duplicates: int
    failed: tuple[tuple[int, Outcome], ...] = ()


#: Item errors of a node pushing back or of shards unavailable, whatever their status says.
_PUSHING_BACK = {"es_rejected_execution_exception": 429, "unavailable_shards_exception": 503}


def classify_item(status: int, error: Any) -> Outcome:
    """One document's answer: its ``status`` and the ``error`` object, if any. The
    outcome's ``status`` is the item's, or 429/503 for the error types of a node pushing
    back or shards unavailable (for :func:`functions._chunks.evidence`)."""
    if 200 <= status < 300 or status == 409:
        return Outcome("ok", "duplicate" if status == 409 else "", status=status)
    details: Mapping[str, Any] = error if isinstance(error, Mapping) else {}
    error_type = str(details.get("type", ""))
    reason = f"HTTP {status} {error_type}: {str(details.get('reason', ''))[:300]}"
    if status in (408, 429) or status >= 500 or status < 200 or error_type in _PUSHING_BACK:
        return Outcome("retry", reason, status=_PUSHING_BACK.get(error_type, status))
    return Outcome("permanent", reason, status=status)


def classify_bulk(body: bytes, items: int) -> BulkResult:
    """Judge each of the ``items`` documents of a 2xx bulk response ``body``.

    A body that cannot be read, or that answers for a different number of documents,
    makes every document retryable: re-sending is safe because a stored one answers 409.
    """
    if body.startswith(_CLEAN):
        return BulkResult(created=items, duplicates=0)
    try:
        answers = [
            (int(answer["status"]), answer.get("error"))
            for item in json.loads(body)["items"]
            for answer in item.values()
        ]
    except (ValueError, KeyError, TypeError, AttributeError):
        answers = []
    if len(answers) != items:
        unreadable = Outcome(
            "retry", f"unreadable bulk response for {items} documents: {body[:200]!r}"
        )
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
        self.refused: dict[int, str] = {}
        self.dead: dict[int, str] = {}
        self.dead_documents: dict[int, list[tuple[Record, str]]] = {}
        self.delay: float | None = None
        self.reason = ""

    def retry_chunks(self, chunks: list[Chunk], reason: str, delay: float | None = None) -> None:
        for chunk in chunks:
            self.retry.update(chunk.owners)
        self.delay = delay
        self.reason = reason

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
        return Delivered(
            dead=dead,
            retry=retry,
            retry_delay=self.delay if retry else None,
            retry_reason=self.reason if retry else "",
            refused=[
                (self.batch[p], why) for p, why in sorted(self.refused.items()) if p in self.retry
            ],
        )


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
            "ferryman_documents_total",
            "Documents sent, by what the backend answered (created, duplicate, retry, rejected).",
            ["function", "result"],
        )

    def write(
        self, batch: Batch, chunks: list[Chunk], undecodable: list[tuple[int, str]]
    ) -> Delivered:
        tally = _Tally(batch)
        for position, reason in undecodable:
            tally.dead[position] = reason
        for number, chunk in enumerate(chunks):
            try:
                response = self.post(chunk.body())
            except httpx.TransportError as exc:
                # The node is unreachable: everything not yet sent waits for it.
                tally.retry_chunks(chunks[number:], f"Elasticsearch unreachable: {exc!r}")
                break
            # A 2xx body is read item by item below, not as text.
            outcome = classify_http(
                response.status_code, response.headers, "" if response.is_success else response.text
            )
            if outcome.kind == "retry":
                reason = f"bulk request refused for now: {outcome.reason}"
                owners = set(chunk.owners)
                if evidence(response.status_code, records=len(owners)):
                    for position in owners:
                        tally.refused.setdefault(position, reason)
                tally.retry_chunks(chunks[number:], reason, outcome.delay)
                break
            if outcome.kind == "permanent":
                for position in chunk.owners:
                    tally.dead.setdefault(position, f"bulk request refused: {outcome.reason}")
                continue
            self._judge_items(chunk, response.content, tally)
        return tally.delivered()

    def _judge_items(self, chunk: Chunk, body: bytes, tally: _Tally) -> None:
        result = classify_bulk(body, len(chunk))
        self.m_documents.labels(function=self.function, result="created").inc(result.created)
        self.m_documents.labels(function=self.function, result="duplicate").inc(result.duplicates)
        refused = [outcome for _, outcome in result.failed if outcome.kind == "retry"]
        if refused:
            self.m_documents.labels(function=self.function, result="retry").inc(len(refused))
            self.log.warning(
                "Elasticsearch refused %d of %d documents for now; their records "
                "will be retried; first reason: %s",
                len(refused),
                len(chunk),
                refused[0].reason,
            )
            tally.reason = tally.reason or f"documents refused for now: {refused[0].reason}"
        for item, outcome in result.failed:
            position = chunk.owners[item]
            if outcome.kind == "retry":
                tally.retry.add(position)
                if evidence(200, item_status=outcome.status):
                    tally.refused.setdefault(position, outcome.reason)
            else:
                self.m_documents.labels(function=self.function, result="rejected").inc(1)
                tally.dead_documents.setdefault(position, []).append(
                    (document_record(tally.batch[position], chunk, item), outcome.reason)
                )
