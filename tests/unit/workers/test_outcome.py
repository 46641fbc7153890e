from __future__ import annotations

from workers.outcome import classify_http, retry_after_seconds


def test_retry_after_seconds_and_http_date() -> None:
    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


def test_408_is_retried() -> None:
    assert classify_http(408, {}).kind == "retry"
