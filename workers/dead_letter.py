"""The headers of a dead-lettered record: one definition for every producer and reader.

A record on a dead-letter topic keeps its own headers and gains three:

* ``ferryman.error``: why it was dead-lettered (UTF-8, at most 4096 bytes);
* ``ferryman.function``: the function that gave up on it;
* ``ferryman.source``: where it was consumed from, ``topic/partition/offset``.

``ferryman dlq replay`` strips those three and adds ``ferryman.replayed-from``
(``topic/partition/offset`` on the dead-letter topic).
"""

from __future__ import annotations

from ferryman import headers as h

from .records import Headers, Record

__all__ = [
    "DEAD_LETTER_HEADERS",
    "ERROR",
    "FUNCTION",
    "REPLAYED_FROM",
    "SOURCE",
    "dead_letter_headers",
    "format_source",
    "parse_source",
]

ERROR = h.DEAD_LETTER_ERROR
FUNCTION = h.DEAD_LETTER_FUNCTION
SOURCE = h.DEAD_LETTER_SOURCE
REPLAYED_FROM = h.REPLAYED_FROM
DEAD_LETTER_HEADERS = h.DEAD_LETTER

_MAX_REASON_BYTES = 4096


def format_source(topic: str, partition: int, offset: int) -> bytes:
    return f"{topic}/{partition}/{offset}".encode()


def parse_source(value: bytes) -> tuple[str, int, int]:
    """``b"topic/partition/offset"`` → its parts; raises ValueError when malformed.

    Topic names cannot hold ``/``, but the split is from the right all the same.
    """
    topic, partition, offset = value.decode("utf-8").rsplit("/", 2)
    if not topic:
        raise ValueError(f"no topic in {value!r}")
    return topic, int(partition), int(offset)


def dead_letter_headers(record: Record, reason: str, function: str) -> Headers:
    """The record's headers plus why, by whom and from where it was dead-lettered."""
    return (
        *record.headers,
        (ERROR, reason.encode("utf-8", "replace")[:_MAX_REASON_BYTES]),
        (FUNCTION, function.encode()),
        (SOURCE, format_source(record.topic, record.partition, record.offset)),
    )
