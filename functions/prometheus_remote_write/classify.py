"""Pure: a remote-write response → ok / retry / permanent.

Receivers answer 2xx when stored, 429 or 5xx when they may take it later, and 4xx
when the request is malformed (bad snappy, bad protobuf, out of bounds): those
are dead-lettered.
"""

from __future__ import annotations

from collections.abc import Mapping

from workers.outcome import Outcome, classify_http

__all__ = ["classify"]


def classify(status: int, headers: Mapping[str, str], body: str) -> Outcome:
    return classify_http(status, headers, body)
