"""The dead-letter headers shared by the runtime, the retry worker and ``dlq replay``."""

from __future__ import annotations

import pytest

from workers.dead_letter import dead_letter_headers, format_source, parse_source
from workers.records import Record


def test_dead_letter_headers_keep_the_records_own_and_add_why_who_and_where() -> None:
    record = Record("logs.in", 3, 1234, b"k", b"v", (("schema", b"loki.push.v1"),))
    assert dead_letter_headers(record, "HTTP 400: bad", "loki") == (
        ("schema", b"loki.push.v1"),
        ("ferryman.error", b"HTTP 400: bad"),
        ("ferryman.function", b"loki"),
        ("ferryman.source", b"logs.in/3/1234"),
    )


def test_a_long_or_odd_reason_is_cut_to_4096_bytes_of_utf8() -> None:
    headers = dict(dead_letter_headers(Record("t", 0, 0, None, b""), "é" * 5000 + "\udc80", "f"))
    assert len(headers["ferryman.error"]) == 4096
    assert headers["ferryman.error"].startswith("é".encode() * 10)


def test_source_round_trips_and_malformed_sources_are_refused() -> None:
    assert parse_source(format_source("a.b-c", 7, 99)) == ("a.b-c", 7, 99)
    for bad in (b"", b"t/0", b"t/x/1", b"/0/1", b"\xff/0/1"):
        with pytest.raises(ValueError):
            parse_source(bad)
