"""Loki push API: ``PushRequest`` protobuf, snappy block compressed.

Field numbers from the published ``logproto`` definitions::

    PushRequest { repeated Stream streams = 1; }
    Stream      { string labels = 1; repeated Entry entries = 2; }   // labels: {a="b", ...}
    Entry       { Timestamp timestamp = 1; string line = 2; }
    Timestamp   { int64 seconds = 1; int32 nanos = 2; }
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .protobuf import bytes_field, varint_field

__all__ = ["HEADERS", "Entry", "Stream", "encode_push_request", "format_labels"]

HEADERS = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"}


@dataclass(frozen=True, slots=True)
class Entry:
    timestamp_ns: int
    line: str


@dataclass(frozen=True, slots=True)
class Stream:
    labels: Mapping[str, str]
    entries: Sequence[Entry]


def format_labels(labels: Mapping[str, str]) -> str:
    """Loki's label-set text: ``{a="b", c="d"}`` sorted by name, values escaped."""
    parts = []
    for name in sorted(labels):
        value = labels[name].replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")
        parts.append(f'{name}="{value}"')
    return "{" + ", ".join(parts) + "}"


def _encode_entry(entry: Entry) -> bytes:
    seconds, nanos = divmod(entry.timestamp_ns, 1_000_000_000)
    stamp = varint_field(1, seconds) + (varint_field(2, nanos) if nanos else b"")
    return bytes_field(1, stamp) + bytes_field(2, entry.line.encode())


def encode_push_request(streams: Iterable[Stream]) -> bytes:
    """Serialise (uncompressed) a PushRequest."""
    out = []
    for stream in streams:
        body = bytes_field(1, format_labels(stream.labels).encode())
        body += b"".join(bytes_field(2, _encode_entry(e)) for e in stream.entries)
        out.append(bytes_field(1, body))
    return b"".join(out)
