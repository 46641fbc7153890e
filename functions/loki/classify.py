"""Pure: a Loki push response → ok / retry / permanent.

* 2xx: stored.
* 429 (rate or stream limit), 5xx (ingesters unavailable) and 408: retry, honouring
  ``Retry-After``.
* 400: Loki refused some of the data (``entry too far behind``, ``timestamp too old``,
  ``greater than max age``, ``line too long``, ``stream limit``, invalid labels, ...).
  Loki stores the valid entries of such a request and names the others, so retrying
  cannot help: the sink sends the records of a refused multi-record request again one by
  one (Loki drops an entry equal to a stored one in time and line) and dead-letters just
  the records still refused, with Loki's reason. 413 (body too large) is handled alike.
* 401/403 (credentials), 404 (wrong ``push_path``) and other 4xx: permanent for every
  record of the request.
"""

from __future__ import annotations

from collections.abc import Mapping

from workers.outcome import Outcome, classify_http

__all__ = ["classify", "data_at_fault"]

_DATA_AT_FAULT = frozenset({400, 413})


def classify(status: int, headers: Mapping[str, str], body: str) -> Outcome:
    outcome = classify_http(status, headers, body)
    if outcome.kind == "ok":
        return outcome
    # Loki answers in plain text, one line per refused stream; keep the reason readable.
    message = " ".join(body.split())[:500]
    return Outcome(outcome.kind, f"HTTP {status}: {message}", outcome.delay)


def data_at_fault(status: int) -> bool:
    """Whether a permanent refusal is about the request's data (so a record sent alone may
    pass) rather than about where or how it was sent."""
    return status in _DATA_AT_FAULT
