"""Pure: an InfluxDB write response → ok / retry / permanent.

* 2xx: written.
* 429, 5xx (InfluxDB 1.x answers 500 ``timeout`` or ``cache maximum memory size
  exceeded`` when it is overloaded) and 408: retry, honouring ``Retry-After``.
* 400 ``partial write: ...`` (field type conflict, points beyond the retention policy,
  max-values-per-tag, an invalid tag or field name): InfluxDB stored the good points of
  the request and dropped the bad ones. Retrying cannot change that, so it is permanent
  for the request: the sink sends the records of a refused multi-record request again
  one by one (rewriting a point is idempotent in InfluxDB) and dead-letters just the
  records whose own request is refused, with InfluxDB's reason. Their good points are
  already stored; replaying them from the dead-letter topic after a fix is harmless.
* 400 ``unable to parse``, 413 (body too large), 422 (InfluxDB 2.x: outside retention):
  the data is at fault, handled like the partial write.
* 401/403 (credentials), 404 (``database not found``, unknown bucket) and other 4xx:
  permanent.
"""

from __future__ import annotations

import json
from collections.abc import Mapping

from workers.outcome import Outcome, classify_http

__all__ = ["classify", "data_at_fault", "error_message"]

_DATA_AT_FAULT = frozenset({400, 413, 422})


def error_message(body: str) -> str:
    """InfluxDB's error text: ``{"error": ...}`` (1.x) or ``{"message": ...}`` (2.x), else
    the body itself."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return body.strip()
    if isinstance(parsed, dict):
        for key in ("error", "message"):
            if isinstance(parsed.get(key), str):
                return str(parsed[key]).strip()
    return body.strip()


def classify(status: int, headers: Mapping[str, str], body: str) -> Outcome:
    outcome = classify_http(status, headers, body)
    if outcome.kind == "ok":
        return outcome
    message = error_message(body)[:500]
    if status == 400 and message.startswith("partial write"):
        message += " (InfluxDB stored the other points of the request)"
    return Outcome(outcome.kind, f"HTTP {status}: {message}", outcome.delay)


def data_at_fault(status: int) -> bool:
    """Whether a permanent refusal is about the request's data (so a record sent alone may
    pass) rather than about where or how it was sent."""
    return status in _DATA_AT_FAULT
