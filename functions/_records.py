"""Reading a record's payload: one decoder per schema, one error for every record that
cannot be read.

A record names its payload in the ``schema`` header (none: the function's own schema
is assumed). Whatever the bytes — a wrong schema header, not snappy, truncated or
garbage protobuf, invalid UTF-8 — a decoder raises :class:`UnsupportedRecord` and
nothing else, so every function dead-letters such a record instead of blocking its
partition. The wire decoders raise ``ferryman.wire.protobuf.DecodeError`` for malformed
input; other ``ValueError``\\ s are caught too, in case one slips through.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TypeVar

from ferryman import headers as h
from ferryman.wire.loki import Stream, decode_push_request, decode_push_request_columns
from ferryman.wire.protobuf import DecodeError
from ferryman.wire.remote_write import TimeSeries, decode_write_request, snappy_decompress
from workers.records import Record

__all__ = [
    "STALE_MARKER",
    "UnsupportedRecord",
    "check_schema",
    "decode_series",
    "decode_stream_columns",
    "decode_streams",
    "loki_push_payload",
    "remote_write_payload",
    "skip_reason",
    "unreadable",
]

_T = TypeVar("_T")


class UnsupportedRecord(ValueError):
    """Raised when a record cannot be read as the schema a function expects: another
    schema header, or a payload that does not decode (the reason says which)."""


@contextmanager
def unreadable(what: str) -> Iterator[None]:
    """Turn any decode error inside the block into :class:`UnsupportedRecord`
    ("not a ``what``: ...")."""
    try:
        yield
    except UnsupportedRecord:
        raise
    except (DecodeError, ValueError) as exc:  # DecodeError is one; ValueError defensively
        raise UnsupportedRecord(f"not a {what}: {exc}") from exc


def check_schema(record: Record, expected: bytes) -> None:
    """Raise :class:`UnsupportedRecord` when ``record`` names a schema other than
    ``expected`` (a record naming none is taken as ``expected``)."""
    schema = record.header(h.SCHEMA)
    if schema is not None and schema != expected:
        raise UnsupportedRecord(f"schema {schema!r} is not {expected!r}")


def _decode(record: Record, schema: bytes, what: str, decode: Callable[[bytes], _T]) -> _T:
    check_schema(record, schema)
    with unreadable(what):
        decoded = decode(snappy_decompress(record.value))
    return decoded


# --- remote write ------------------------------------------------------------------

_REMOTE_WRITE = "remote-write message"


def remote_write_payload(record: Record) -> bytes:
    """The uncompressed ``WriteRequest`` of a metrics record, not parsed."""
    return _decode(record, h.SCHEMA_REMOTE_WRITE, _REMOTE_WRITE, bytes)


def decode_series(record: Record) -> list[TimeSeries]:
    """The series of a metrics record."""
    return _decode(record, h.SCHEMA_REMOTE_WRITE, _REMOTE_WRITE, decode_write_request)


#: Bits of the NaN Prometheus writes as a staleness marker.
STALE_MARKER = 0x7FF0000000000002
_double = struct.Struct("<d")
_u64 = struct.Struct("<Q")


def skip_reason(value: float) -> str | None:
    """Why a sample value cannot be written to a store without NaN/Inf (None: it can)."""
    if math.isfinite(value):
        return None
    if math.isinf(value):
        return "inf"
    return "stale_marker" if _u64.unpack(_double.pack(value))[0] == STALE_MARKER else "nan"


# --- Loki push -----------------------------------------------------------------------

_LOKI_PUSH = "Loki push message"


def loki_push_payload(record: Record) -> bytes:
    """The uncompressed ``PushRequest`` of a logs record, not parsed."""
    return _decode(record, h.SCHEMA_LOKI_PUSH, _LOKI_PUSH, bytes)


def decode_streams(record: Record) -> list[Stream]:
    """The streams of a logs record, one :class:`~ferryman.wire.loki.Entry` per line."""
    return _decode(record, h.SCHEMA_LOKI_PUSH, _LOKI_PUSH, decode_push_request)


def decode_stream_columns(record: Record) -> list[Stream]:
    """:func:`decode_streams`, but entries without structured metadata come by column
    (:class:`~ferryman.wire.loki.Entries`)."""
    return _decode(record, h.SCHEMA_LOKI_PUSH, _LOKI_PUSH, decode_push_request_columns)
