"""Pure: a ``_bulk`` response → ok / retry / permanent, for the request and for each item
(the per-item rules live in :mod:`functions._elasticsearch`).

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

from collections.abc import Mapping

from functions._elasticsearch import FILTER_PATH, BulkResult, classify_bulk, classify_item
from workers.outcome import Outcome, classify_http

__all__ = ["FILTER_PATH", "BulkResult", "classify", "classify_bulk", "classify_item"]


def classify(status: int, headers: Mapping[str, str], body: str) -> Outcome:
    return classify_http(status, headers, body)
