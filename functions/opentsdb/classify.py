"""Pure: an OpenTSDB ``/api/put?details`` response → ok / retry / permanent.

OpenTSDB processes every datapoint on its own: it stores the good ones of a request and,
with ``details``, lists each refused datapoint with its error. So:

* 204, or 200 whose summary has no ``failed`` or ``timeouts``: stored.
* 200 with failures (with ``sync``, storage errors are counted but still answered 200)
  and 400 with a details list: decided per datapoint (:func:`blame`). Storage trouble
  (``Storage exception``, ``Please throttle``, ``Timeout exception``, ``Write timedout``,
  ``Unexpected exception``) is retried; anything else (``Invalid tag value``, ``Unable to
  parse value to a number``, ``Missing tags``, ``Too many tags``, ``Unknown metric``...)
  is permanent, so the record holding that datapoint is dead-lettered with the error and
  the records whose datapoints all went in are done. A datapoint retried for a storage
  error of its own (``Storage exception``, ``Unexpected exception``) is evidence against
  its record (``Delivered.refused``); ``Please throttle`` and the timeouts are not.
* 400 without details (the body did not parse): permanent for the request; the sink then
  sends the records one by one to find the bad one.
* 429, 5xx and 408: retry, honouring ``Retry-After``; 401/403/404 and other 4xx:
  permanent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, Literal

from workers.outcome import Outcome, classify_http

from .encode import Chunk

__all__ = ["TRANSIENT_ERRORS", "blame", "classify", "data_at_fault", "item_status", "transient"]

#: How OpenTSDB's per-datapoint errors about storage (not about the datapoint) begin.
TRANSIENT_ERRORS = (
    "Storage exception",
    "Please throttle",
    "Timeout exception",
    "Write timedout",
    "Unexpected exception",
)

_DATA_AT_FAULT = frozenset({400, 413})
Kind = Literal["retry", "permanent"]
DatapointKey = tuple[str, int, tuple[tuple[str, str], ...]]


def _summary(body: str) -> dict[str, Any] | None:
    """The ``{"success", "failed", "errors"...}`` answer of summary/details, else None."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return None
    if isinstance(parsed, dict) and ("failed" in parsed or "errors" in parsed):
        return parsed
    return None


def _count(value: object) -> int:
    return value if isinstance(value, int) else 0


def _message(body: str) -> str:
    """OpenTSDB's error text: ``{"error": {"message", "details"}}``, else the body."""
    try:
        error = json.loads(body).get("error")
    except (ValueError, AttributeError):
        return body.strip()[:300]
    if isinstance(error, dict):
        parts = [str(error.get(k)) for k in ("message", "details") if error.get(k)]
        return ": ".join(parts)[:300]
    return body.strip()[:300]


def _errors(answer: Mapping[str, Any]) -> list[tuple[Any, str]]:
    errors = answer.get("errors")
    if not isinstance(errors, list):
        return []
    return [(e.get("datapoint"), str(e.get("error", ""))) for e in errors if isinstance(e, dict)]


def _describe(datapoint: Any, message: str) -> str:
    if isinstance(datapoint, dict):
        return (
            f"{message} ({datapoint.get('metric')} {datapoint.get('tags')} "
            f"at {datapoint.get('timestamp')})"
        )
    return message


def transient(message: str) -> bool:
    return message.startswith(TRANSIENT_ERRORS)


def item_status(message: str) -> int:
    """The HTTP status a datapoint's error amounts to, for
    :func:`functions._chunks.evidence`: OpenTSDB pushing back (``Please throttle``: 429)
    or timing out (``Timeout exception``, ``Write timedout``: 504) says nothing about the
    datapoint; any other storage error of this one datapoint is pinned on it (500); the
    rest is a refusal of the datapoint itself (400)."""
    if message.startswith("Please throttle"):
        return 429
    if message.startswith(("Timeout exception", "Write timedout")):
        return 504
    return 500 if transient(message) else 400


def classify(status: int, headers: Mapping[str, str], body: str) -> Outcome:
    answer = _summary(body)
    if 200 <= status < 300:
        if answer is None:
            return Outcome("ok")
        failed = _count(answer.get("failed")) + _count(answer.get("timeouts"))
        if not failed:
            return Outcome("ok")
        errors = _errors(answer)
        first = f"; first: {_describe(*errors[0])}" if errors else ""
        return Outcome("retry", f"HTTP {status}: OpenTSDB did not store {failed} datapoints{first}")
    outcome = classify_http(status, headers, body)
    if status == 400 and answer is not None:
        errors = _errors(answer)
        failed = _count(answer.get("failed")) + _count(answer.get("timeouts"))
        kind: Kind = "retry" if errors and all(transient(m) for _, m in errors) else "permanent"
        first = f"; first: {_describe(*errors[0])}" if errors else ""
        return Outcome(kind, f"HTTP 400: OpenTSDB refused {failed} datapoints{first}")
    return Outcome(outcome.kind, f"HTTP {status}: {_message(body)}", outcome.delay)


def _key(datapoint: Any) -> DatapointKey | None:
    if not isinstance(datapoint, dict) or not isinstance(datapoint.get("tags"), dict):
        return None
    try:
        timestamp = int(datapoint["timestamp"])
    except (KeyError, TypeError, ValueError):
        return None
    tags = tuple(sorted((str(k), str(v)) for k, v in datapoint["tags"].items()))
    return str(datapoint.get("metric")), timestamp, tags


def blame(status: int, body: str, chunk: Chunk) -> dict[int, Outcome] | None:
    """Per record of ``chunk`` (by batch index), the outcome of its refused datapoints,
    read from a ``?details`` answer. Records missing from the result were stored. None
    when the answer cannot be pinned on datapoints of the chunk (no details, fewer
    errors listed than failures counted, or an unknown datapoint)."""
    answer = _summary(body)
    if answer is None:
        return None
    errors = _errors(answer)
    failed = _count(answer.get("failed")) + _count(answer.get("timeouts"))
    if not errors or failed > len(errors):
        return None
    owners_of: dict[DatapointKey | None, set[int]] = {}
    for owner, unit in chunk.units:
        owners_of.setdefault(_key(json.loads(unit)), set()).add(owner)
    verdicts: dict[int, Outcome] = {}
    for datapoint, message in errors:
        key = _key(datapoint)
        owners = owners_of.get(key) if key is not None else None
        if not owners:
            return None
        kind: Kind = "retry" if transient(message) else "permanent"
        reason = f"HTTP {status}: OpenTSDB refused a datapoint: {_describe(datapoint, message)}"
        for owner in owners:
            if owner not in verdicts or (kind == "permanent" and verdicts[owner].kind == "retry"):
                verdicts[owner] = Outcome(kind, reason, status=item_status(message))
    return verdicts


def data_at_fault(status: int) -> bool:
    """Whether a permanent refusal is about the request's data (so a record sent alone may
    pass) rather than about where or how it was sent."""
    return status in _DATA_AT_FAULT
