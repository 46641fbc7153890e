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

Entries without metadata are encoded a stream at a time rather than one by one: the
message is assembled as latin-1 text (one character per byte) from per-line pieces
looked up in small tables — varints of line lengths, of timestamps within a second —
and encoded once. :class:`Entries` holds a stream's entries by column, so the edge
shipper never builds an object per line; the bytes are the same either way.

:func:`decode_push_request_columns` reads a request laid out that way back into
:class:`Entries`, with no object per entry; anything else (structured metadata, other
layouts, bad bytes) goes to :func:`decode_push_request`, the reference, so results and
errors are the same.
"""

from __future__ import annotations

from bisect import bisect_left
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from itertools import chain, islice, repeat
from operator import attrgetter, le, sub
from typing import overload

from .protobuf import (
    LENGTH,
    VARINT,
    DecodeError,
    bytes_field,
    fields,
    key,
    sint_to_int64,
    varint,
    varint_at,
    varint_field,
)

__all__ = [
    "HEADERS",
    "Entries",
    "Entry",
    "Stream",
    "decode_push_request",
    "decode_push_request_columns",
    "encode_push_request",
    "format_labels",
    "parse_labels",
]

HEADERS = {"Content-Type": "application/x-protobuf", "Content-Encoding": "snappy"}


@dataclass(frozen=True, slots=True)
class Entry:
    """One log line; ``metadata`` is its structured metadata, in order (default none)."""

    timestamp_ns: int
    line: str
    metadata: tuple[tuple[str, str], ...] = ()


class Entries(Sequence[Entry]):
    """A stream's entries by column, ``timestamps[i]`` and ``lines[i]``, with no object
    per entry and no structured metadata. The lists are shared, not copied."""

    __slots__ = ("lines", "timestamps")

    def __init__(self, timestamps: list[int] | None = None, lines: list[str] | None = None) -> None:
        self.timestamps: list[int] = [] if timestamps is None else timestamps
        self.lines: list[str] = [] if lines is None else lines
        if len(self.timestamps) != len(self.lines):
            raise ValueError(f"{len(self.timestamps)} timestamps for {len(self.lines)} lines")

    @classmethod
    def of(cls, entries: Iterable[Entry]) -> Entries:
        """These entries by column (the same object when they already are); raises
        ValueError when one has structured metadata."""
        if isinstance(entries, Entries):
            return entries
        listed = list(entries)
        if any(map(_METADATA, listed)):
            raise ValueError("entries with structured metadata are not held by column")
        return cls(list(map(_TIMESTAMP, listed)), list(map(_LINE, listed)))

    def append(self, entry: Entry) -> None:
        if entry.metadata:
            raise ValueError("entries with structured metadata are not held by column")
        self.timestamps.append(entry.timestamp_ns)
        self.lines.append(entry.line)

    def extend_columns(self, timestamps: Sequence[int], lines: Sequence[str]) -> None:
        """Append lines with their timestamps (as many of each)."""
        if len(timestamps) != len(lines):
            raise ValueError(f"{len(timestamps)} timestamps for {len(lines)} lines")
        self.timestamps += timestamps
        self.lines += lines

    def __len__(self) -> int:
        return len(self.lines)

    @overload
    def __getitem__(self, index: int) -> Entry: ...

    @overload
    def __getitem__(self, index: slice) -> Entries: ...

    def __getitem__(self, index: int | slice) -> Entry | Entries:
        if isinstance(index, slice):
            return Entries(self.timestamps[index], self.lines[index])
        return Entry(self.timestamps[index], self.lines[index])

    def __iter__(self) -> Iterator[Entry]:
        return map(Entry, self.timestamps, self.lines)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Entries):
            return self.timestamps == other.timestamps and self.lines == other.lines
        if isinstance(other, Sequence) and not isinstance(other, str | bytes):
            return list(self) == list(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Entries({len(self)} entries)"


_TIMESTAMP = attrgetter("timestamp_ns")
_LINE = attrgetter("line")
_METADATA = attrgetter("metadata")


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
            for name, value in entry.metadata
        )
    return out


def encode_push_request(streams: Iterable[Stream]) -> bytes:
    """Serialise (uncompressed) a PushRequest."""
    out: list[str] = []
    for stream in streams:
        head = bytes_field(1, format_labels(stream.labels).encode())
        pieces, size = _encode_entries(stream.entries)
        out.append(_latin(key(1, LENGTH) + varint(len(head) + size) + head))
        out += pieces
    return "".join(out).encode("latin-1")


def _encode_entries(entries: Sequence[Entry]) -> tuple[list[str], int]:
    """A stream's entries, each as field 2: latin-1 pieces, and how many bytes."""
    if not isinstance(entries, Entries):
        if any(map(_METADATA, entries)):
            return _one_by_one(entries)
        entries = Entries(list(map(_TIMESTAMP, entries)), list(map(_LINE, entries)))
    stamps, lines = entries.timestamps, entries.lines
    if not stamps:
        return [], 0
    if stamps[0] < 0 or not all(map(le, stamps, islice(stamps, 1, None))):
        # Segments below need timestamps that never decrease; lines a stage
        # timestamped may not.
        return _one_by_one(entries)
    if all(map(str.isascii, lines)):
        sizes = list(map(len, lines))
    else:
        utf8 = list(map(str.encode, lines))
        sizes = list(map(len, utf8))
        lines = list(map(bytes.decode, utf8, repeat("latin-1")))
    pieces: list[str] = []
    total = 0
    start, count = 0, len(stamps)
    while start < count:
        seconds, nanos = divmod(stamps[start], 1_000_000_000)
        width = _varint_width(nanos)
        end = bisect_left(stamps, seconds * 1_000_000_000 + _WIDTH_END[width], start)
        whole = start == 0 and end == count
        segment, size = _encode_segment(
            seconds,
            width,
            stamps if whole else stamps[start:end],
            sizes if whole else sizes[start:end],
            lines if whole else lines[start:end],
        )
        pieces += segment
        total += size
        start = end
    return pieces, total


def _one_by_one(entries: Iterable[Entry]) -> tuple[list[str], int]:
    encoded = b"".join(bytes_field(2, _encode_entry(e)) for e in entries)
    return [_latin(encoded)], len(encoded)


# A nanosecond field's varint is 0 (absent), 1, ... 5 bytes long up to these bounds.
_WIDTH_END = (1, 1 << 7, 1 << 14, 1 << 21, 1 << 28, 1_000_000_000)


def _varint_width(nanos: int) -> int:
    return bisect_left(_WIDTH_END, nanos + 1)


def _latin(data: bytes) -> str:
    return data.decode("latin-1")


@cache
def _small_varints() -> list[str]:
    """Varints of 0 … 2**14 - 1."""
    return [_latin(varint(value)) for value in range(1 << 14)]


@cache
def _low_varints() -> list[str]:
    """The first two bytes of the varint of a number of 2**14 or more, by its low 14 bits."""
    return [_latin(bytes(((low & 0x7F) | 0x80, (low >> 7) | 0x80))) for low in range(1 << 14)]


def _encode_segment(
    seconds: int, width: int, stamps: list[int], sizes: list[int], lines: list[str]
) -> tuple[list[str], int]:
    """Entries (latin-1 pieces, and how many bytes) whose timestamps share their
    second and the varint width of their nanoseconds: a line's pieces then depend on
    its size alone, but for the nanoseconds."""
    second = _latin(varint(seconds))
    stamp_len = 1 + len(second) + (1 + width if width else 0)
    stamp_head = "\x0a" + chr(stamp_len) + "\x08" + second + ("\x10" if width else "")
    heads: dict[int, str] = {}
    tails: dict[int, str] = {}
    lengths: dict[int, int] = {}  # bytes of an entry by its line's size
    for size in set(sizes):
        tail = tails[size] = "\x12" + _latin(varint(size))
        head = heads[size] = "\x12" + _latin(varint(2 + stamp_len + len(tail) + size)) + stamp_head
        lengths[size] = len(head) + width + len(tail) + size
    per_line = 3 if not width else 4 if width <= 2 else 5
    # Pieces placed by extended slice: far cheaper than zipping them per line.
    pieces = [""] * (per_line * len(lines))
    pieces[0::per_line] = map(heads.__getitem__, sizes)
    pieces[per_line - 2 :: per_line] = map(tails.__getitem__, sizes)
    pieces[per_line - 1 :: per_line] = lines
    base = seconds * 1_000_000_000
    if width and width <= 2:
        pieces[1::4] = map(_small_varints().__getitem__, map(sub, stamps, repeat(base)))
    elif width:
        pieces[1::5], pieces[2::5] = _nanos_from_14_bits(stamps, base)
    return pieces, sum(map(lengths.__getitem__, sizes))


def _nanos_from_14_bits(stamps: list[int], base: int) -> tuple[Iterable[str], Iterable[str]]:
    """The varints of nanoseconds of 2**14 or more, as two pieces each: the first
    two bytes (their low 14 bits) and the rest (the varint of the higher bits)."""
    low = _low_varints().__getitem__
    if (stamps[-1] - stamps[0]) >> 14 > len(stamps) >> 5:
        # Sparse: the higher bits differ from one line to the next.
        nanos = list(map(sub, stamps, repeat(base)))
        highs = list(map((14).__rrshift__, nanos))
        high_varints = {high: _latin(varint(high)) for high in set(highs)}
        return (map(low, map((0x3FFF).__and__, nanos)), map(high_varints.__getitem__, highs))
    # Dense (lines read together): runs of lines share their higher bits.
    bases: list[int] = []
    rests: list[str] = []
    counts: list[int] = []
    start, count = 0, len(stamps)
    while start < count:
        high = (stamps[start] - base) >> 14
        run_base = base + (high << 14)
        end = bisect_left(stamps, run_base + (1 << 14), start)
        bases.append(run_base)
        rests.append(_latin(varint(high)))
        counts.append(end - start)
        start = end
    lows = map(sub, stamps, chain.from_iterable(map(repeat, bases, counts)))
    return map(low, lows), chain.from_iterable(map(repeat, rests, counts))


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
            raise DecodeError(f"bad label set near {text[pos : pos + 30]!r}")
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


# --- decoding by column --------------------------------------------------------------


class _Irregular(Exception):
    """Raised when bytes are not laid out as encode_push_request lays them out."""


def decode_push_request_columns(buf: bytes | memoryview) -> list[Stream]:
    """What :func:`decode_push_request` returns, but each stream's entries are
    :class:`Entries` (by column, no object per entry) when the request is laid out as
    :func:`encode_push_request` lays it out and has no structured metadata; any other
    request is decoded by :func:`decode_push_request` (so errors are the same)."""
    data = bytes(buf)
    try:
        return _decode_columns(data)
    except (_Irregular, IndexError, DecodeError):
        return decode_push_request(data)


# Continuation bits of a varint of 2 … 5 bytes, read little-endian as one int.
_CONTINUED = {
    size: int.from_bytes(b"\x80" * (size - 1) + b"\x00", "little") for size in range(2, 6)
}
_HIGH_BITS = 0x8080808080


def _decode_columns(data: bytes) -> list[Stream]:
    # Latin-1 text has one character per byte: an ASCII line is a slice of it.
    text = data.decode("latin-1")
    streams: list[Stream] = []
    size = len(data)
    pos = 0
    while pos < size:
        if data[pos] != 0x0A:
            raise _Irregular
        length, pos = varint_at(data, pos + 1)
        end = pos + length
        if end > size:
            raise _Irregular
        streams.append(_decode_stream(data, text, pos, end))
        pos = end
    return streams


def _decode_stream(data: bytes, text: str, pos: int, end: int) -> Stream:
    labels: dict[str, str] = {}
    stamps: list[int] = []
    lines: list[str] = []
    add_stamp, add_line = stamps.append, lines.append
    from_bytes = int.from_bytes
    continued, high_bits = _CONTINUED, _HIGH_BITS
    # "\x08" seconds "\x10" of the last timestamp, and its seconds in nanoseconds; at
    # first a character no latin-1 text holds, so the first timestamp is read in full.
    prefix, base = "\u0100", 0
    while pos < end:
        tag = data[pos]
        length = data[pos + 1]
        if length < 0x80:
            start = pos + 2
        else:
            length, start = varint_at(data, pos + 1)
        pos = start + length
        if pos > end:
            raise _Irregular
        if tag == 0x0A:
            labels = parse_labels(data[start:pos].decode("utf-8", "replace"))
            continue
        if tag != 0x12 or data[start] != 0x0A or data[start + 1] >= 0x80:
            raise _Irregular
        stamp_start = start + 2
        stamp_end = stamp_start + data[start + 1]
        if not text.startswith(prefix, stamp_start):
            prefix, base = _second(data, text, stamp_start, stamp_end)
        nanos_start = stamp_start + len(prefix)
        width = stamp_end - nanos_start
        if width == 1:
            nanos = data[nanos_start]
            if nanos >= 0x80:
                raise _Irregular
        elif 1 < width <= 5:
            value = from_bytes(data[nanos_start:stamp_end], "little")
            if value & high_bits != continued[width]:
                raise _Irregular
            nanos = (
                (value & 0x7F)
                | (value >> 1 & 0x3F80)
                | (value >> 2 & 0x1FC000)
                | (value >> 3 & 0xFE00000)
                | (value >> 4 & 0x7F0000000)
            )
        elif width == -1 and data[stamp_end - 1] < 0x80:
            nanos = 0  # no nanoseconds field: the prefix ends one byte after the stamp
        else:
            raise _Irregular
        if data[stamp_end] != 0x12:
            raise _Irregular
        line_length = data[stamp_end + 1]
        if line_length < 0x80:
            line_start = stamp_end + 2
        else:
            line_length, line_start = varint_at(data, stamp_end + 1)
        if line_start + line_length != pos:
            raise _Irregular  # structured metadata, or fields we do not lay out
        add_stamp(base + nanos)
        add_line(text[line_start:pos])
    if not all(map(str.isascii, lines)):
        lines = [
            line if line.isascii() else line.encode("latin-1").decode("utf-8", "replace")
            for line in lines
        ]
    return Stream(labels, Entries(stamps, lines))


def _second(data: bytes, text: str, start: int, end: int) -> tuple[str, int]:
    """The prefix ``"\\x08" seconds "\\x10"`` of the Timestamp at ``start``, and its
    seconds in nanoseconds."""
    if data[start] != 0x08:
        raise _Irregular
    seconds, pos = varint_at(data, start + 1)
    if pos > end or (pos < end and data[pos] != 0x10):
        raise _Irregular
    # Without nanoseconds the prefix ends one byte past the Timestamp (the reader sees it).
    return text[start:pos] + "\x10", sint_to_int64(seconds) * 1_000_000_000
