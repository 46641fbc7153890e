"""Pure: a ``_bulk`` response → ok / retry / permanent, for the request (usual HTTP
rules) and for each document (the rules shared with ``elasticsearch_metrics``, in
:mod:`functions._elasticsearch`)."""

from __future__ import annotations

from collections.abc import Mapping

from functions._elasticsearch import FILTER_PATH, BulkResult, classify_bulk, classify_item
from workers.outcome import Outcome, classify_http

__all__ = ["FILTER_PATH", "BulkResult", "classify", "classify_bulk", "classify_item"]


def classify(status: int, headers: Mapping[str, str], body: str) -> Outcome:
    return classify_http(status, headers, body)
