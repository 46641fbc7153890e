"""Loki push API: ``PushRequest`` protobuf, snappy block compressed.

Field numbers from the published ``logproto`` definitions::

    PushRequest { repeated Stream streams = 1; }
    Stream      { string labels = 1; repeated Entry entries = 2; }   // labels: {a="b", ...}
    Entry       { Timestamp timestamp = 1; string line = 2;
                  repeated LabelPair structuredMetadata = 3; }
    LabelPair   { string name = 1; string value = 2; }
    Timestamp   { int64 seconds = 1; int32 nanos = 2; }

Structured metadata (Loki 3) are name/value pairs that travel with one entry without
becoming stream labels; an entry without any encodes exactly as before.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from .protobuf import LENGTH, VARINT, DecodeError, bytes_field, fields, sint_to_int64, varint_field

__all__ = ["HEADERS", "Entry", "Stream", "decode_push_request", "encode_push_request",
           "format_labels", "parse_labels"]

HEADERS = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"}


@dataclass(frozen=True, slots=True)
class Entry:
    """One log line; ``metadata`` is its structured metadata, in order (default none)."""

    timestamp_ns: int
    line: str
    metadata: tuple[tuple[str, str], ...] = ()


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
    out = bytes_field(1, stamp) + bytes_field(2, entry.line.encode())
    if entry.metadata:
        out += b"".join(
            bytes_field(3, bytes_field(1, name.encode()) + bytes_field(2, value.encode()))
            for name, value in entry.metadata)
    return out


def encode_push_request(streams: Iterable[Stream]) -> bytes:
    """Serialise (uncompressed) a PushRequest."""
    out = []
    for stream in streams:
        body = bytes_field(1, format_labels(stream.labels).encode())
        body += b"".join(bytes_field(2, _encode_entry(e)) for e in stream.entries)
        out.append(bytes_field(1, body))
    return b"".join(out)


def parse_labels(text: str) -> dict[str, str]:
    """Parse Loki's label-set text ``{a="b", c="d"}`` (the inverse of format_labels)."""
    text = text.strip()
    if not (text.startswith("{") and text.endswith("}")):
        raise DecodeError(f"not a label set: {text[:60]!r}")
    labels: dict[str, str] = {}
    pos, end = 1, len(text) - 1
    while pos < end:
        while pos < end and text[pos] in " ,":
            pos += 1
        if pos >= end:
            break
        eq = text.find("=", pos)
        if eq < 0 or eq + 1 >= end or text[eq + 1] != '"':
            raise DecodeError(f"bad label set near {text[pos:pos + 30]!r}")
        name = text[pos:eq].strip()
        value, pos = _quoted(text, eq + 2)
        labels[name] = value
    return labels


def _quoted(text: str, pos: int) -> tuple[str, int]:
    out = []
    while pos < len(text):
        char = text[pos]
        if char == "\\" and pos + 1 < len(text):
            nxt = text[pos + 1]
            out.append({"n": "\n", "t": "\t"}.get(nxt, nxt))
            pos += 2
        elif char == '"':
            return "".join(out), pos + 1
        else:
            out.append(char)
            pos += 1
    raise DecodeError("unterminated label value")


def decode_push_request(buf: bytes | memoryview) -> list[Stream]:
    """Parse an uncompressed PushRequest; raises DecodeError on bad bytes.

    Lines are decoded as UTF-8 with invalid bytes replaced (U+FFFD), as Loki does.
    """
    streams = []
    for number, wire_type, raw in fields(buf):
        if number != 1 or wire_type != LENGTH or not isinstance(raw, memoryview):
            continue
        labels: dict[str, str] = {}
        entries: list[Entry] = []
        for inner_number, inner_type, inner in fields(raw):
            if inner_type != LENGTH or not isinstance(inner, memoryview):
                continue
            if inner_number == 1:
                labels = parse_labels(bytes(inner).decode("utf-8", "replace"))
            elif inner_number == 2:
                entries.append(_decode_entry(inner))
        streams.append(Stream(labels, entries))
    return streams


def _decode_entry(buf: memoryview) -> Entry:
    seconds = nanos = 0
    line = ""
    metadata: list[tuple[str, str]] | None = None  # most entries have none: no list
    for number, wire_type, raw in fields(buf):
        if number == 1 and wire_type == LENGTH and isinstance(raw, memoryview):
            for ts_number, ts_type, ts_value in fields(raw):
                if ts_number == 1 and ts_type == VARINT:
                    seconds = sint_to_int64(int(ts_value))
                elif ts_number == 2 and ts_type == VARINT:
                    nanos = int(ts_value)
        elif number == 2 and wire_type == LENGTH and isinstance(raw, memoryview):
            line = bytes(raw).decode("utf-8", "replace")
        elif number == 3 and wire_type == LENGTH and isinstance(raw, memoryview):
            if metadata is None:
                metadata = []
            metadata.append(_decode_pair(raw))
    return Entry(seconds * 1_000_000_000 + nanos, line, tuple(metadata) if metadata else ())


def _decode_pair(buf: memoryview) -> tuple[str, str]:
    name = value = ""
    for number, wire_type, raw in fields(buf):
        if wire_type != LENGTH or not isinstance(raw, memoryview):
            continue
        if number == 1:
            name = bytes(raw).decode("utf-8", "replace")
        elif number == 2:
            value = bytes(raw).decode("utf-8", "replace")
    return name, value
