from __future__ import annotations

from ferryman.telemetry import Registry
from workers.outcome import classify_http, retry_after_seconds


def test_retry_after_seconds_and_http_date() -> None:
    assert retry_after_seconds("120") == 120.0
    assert retry_after_seconds("Wed, 21 Oct 2015 07:28:00 GMT", now=1445412470.0) == 10.0
    assert retry_after_seconds("soon") is None
    assert retry_after_seconds(None) is None


def test_408_is_retried() -> None:
    assert classify_http(408, {}).kind == "retry"


def test_registry_renders_exposition() -> None:
    registry = Registry()
    sent = registry.counter("ferryman_records_sent_total", "Sent.", ["function"])
    hist = registry.histogram("ferryman_batch_duration_seconds", "Time.", ["function"],
                              buckets=(0.1, 1.0))
    sent.inc(3, "prw")
    hist.observe(0.05, "prw")
    hist.observe(5.0, "prw")
    assert registry.render().splitlines() == [
        "# HELP ferryman_records_sent_total Sent.",
        "# TYPE ferryman_records_sent_total counter",
        'ferryman_records_sent_total{function="prw"} 3',
        "# HELP ferryman_batch_duration_seconds Time.",
        "# TYPE ferryman_batch_duration_seconds histogram",
        'ferryman_batch_duration_seconds_bucket{function="prw",le="0.1"} 1',
        'ferryman_batch_duration_seconds_bucket{function="prw",le="1"} 1',
        'ferryman_batch_duration_seconds_bucket{function="prw",le="+Inf"} 2',
        'ferryman_batch_duration_seconds_sum{function="prw"} 5.05',
        'ferryman_batch_duration_seconds_count{function="prw"} 2',
    ]
