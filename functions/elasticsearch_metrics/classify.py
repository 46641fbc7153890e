"""Pure: a ``_bulk`` response → ok / retry / permanent, for the request and for each item.

The request as a whole follows the usual HTTP rules (:func:`classify`). A 2xx bulk
response still judges every document on its own (:func:`classify_bulk`):

========================================  =========================================
item status                               outcome
========================================  =========================================
2xx                                       ok (created)
409 (``create`` of an existing ``_id``)   ok: already stored by an earlier attempt
429, 408, 5xx,                            retry: the node pushed back or was busy
``es_rejected_execution_exception``
any other 4xx (mapping errors, …)         permanent: dead-letter that document
========================================  =========================================
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from workers.outcome import Outcome, classify_http

__all__ = ["FILTER_PATH", "BulkResult", "classify", "classify_bulk", "classify_item"]

#: Asked of Elasticsearch so a clean response is tiny and starts with ``{"errors":false``.
FILTER_PATH = "errors,items.*.status,items.*.error.type,items.*.error.reason"
_CLEAN = b'{"errors":false'


def classify(status: int, headers: Mapping[str, str], body: str) -> Outcome:
    return classify_http(status, headers, body)


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
