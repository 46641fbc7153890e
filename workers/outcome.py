"""What a sink's ``classify`` step returns for one response: ok, retry or permanent."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

__all__ = ["Outcome", "classify_http", "retry_after_seconds"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """``status``: the status the backend gave this one item of a per-item answer, when
    a sink reads one (None: the outcome is the request's)."""

    kind: Literal["ok", "retry", "permanent"]
    reason: str = ""
    delay: float | None = None
    status: int | None = None


def retry_after_seconds(value: str | None, now: float | None = None) -> float | None:
    """Parse ``Retry-After`` (delta seconds or an HTTP date) into seconds, or None."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


def classify_http(status: int, headers: Mapping[str, str], body: str = "") -> Outcome:
    """The usual HTTP rules: 2xx ok; 429 and 5xx retry (honouring Retry-After);
    408 retry; any other 4xx permanent (the same request will never succeed)."""
    snippet = body[:300].strip()
    if 200 <= status < 300:
        return Outcome("ok")
    if status == 429 or status == 408 or status >= 500:
        return Outcome(
            "retry", f"HTTP {status}: {snippet}", retry_after_seconds(headers.get("retry-after"))
        )
    return Outcome("permanent", f"HTTP {status}: {snippet}")
