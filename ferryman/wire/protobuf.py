"""The protobuf wire format, just what our messages need.

Only the encodings used by remote write, Loki push and OTLP: varint (wire type 0),
64-bit (1) and length-delimited (2). Unknown fields are skipped when decoding, as
the spec requires.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator

__all__ = [
    "DecodeError",
    "bytes_field",
    "double_field",
    "fields",
    "key",
    "sint_to_int64",
    "varint",
    "varint_at",
    "varint_field",
]

VARINT, FIXED64, LENGTH, FIXED32 = 0, 1, 2, 5

_double = struct.Struct("<d")


class DecodeError(ValueError):
    """Raised when bytes are not a well-formed protobuf message."""


def varint(value: int) -> bytes:
    """Encode a non-negative int, or a negative int64 as its two's complement."""
    if value < 0:
        value += 1 << 64
    if value < 0x80:
        return bytes((value,))
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def key(number: int, wire_type: int) -> bytes:
    return varint((number << 3) | wire_type)


def bytes_field(number: int, payload: bytes) -> bytes:
    return key(number, LENGTH) + varint(len(payload)) + payload


def varint_field(number: int, value: int) -> bytes:
    return key(number, VARINT) + varint(value)


def double_field(number: int, value: float) -> bytes:
    return key(number, FIXED64) + _double.pack(value)


def sint_to_int64(value: int) -> int:
    """Reinterpret a decoded uint64 varint as int64."""
    return value - (1 << 64) if value >= 1 << 63 else value


def varint_at(data: bytes, pos: int) -> tuple[int, int]:
    """The varint at ``pos`` and the position after it, without bounds checks, for
    fast paths that fall back to a careful decoder: IndexError when ``data`` ends
    inside it, DecodeError when it runs past ten bytes. The value is a uint64, as
    :func:`fields` reads it."""
    result = shift = 0
    while True:
        byte = data[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift == 63:
            return _tenth_byte(data[pos], result), pos + 1


def _read_varint(buf: bytes | memoryview, pos: int, end: int) -> tuple[int, int]:
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise DecodeError("truncated varint")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if byte < 0x80:
            return result, pos
        shift += 7
        if shift == 63:
            if pos >= end:
                raise DecodeError("truncated varint")
            return _tenth_byte(buf[pos], result), pos + 1


def _tenth_byte(byte: int, result: int) -> int:
    """The value of a varint whose first nine bytes gave ``result``.

    Only the lowest bit of a tenth byte fits in 64 bits; like Go's protobuf decoders
    (which Prometheus and Loki use) we drop the rest, so that every value read is a
    uint64 and ``sint_to_int64`` an int64.
    """
    if byte >= 0x80:
        raise DecodeError("varint longer than 10 bytes")
    return result | (byte & 1) << 63


def fields(
    buf: bytes | memoryview, start: int = 0, end: int | None = None
) -> Iterator[tuple[int, int, int | float | memoryview]]:
    """Yield ``(field_number, wire_type, value)``; length-delimited values as memoryviews.

    FIXED64 values are returned as the raw little-endian double (the only 64-bit
    type we read); FIXED32 as an int.
    """
    view = memoryview(buf)
    end = len(view) if end is None else min(end, len(view))
    pos = start
    while pos < end:
        tag, pos = _read_varint(view, pos, end)
        number, wire_type = tag >> 3, tag & 7
        if number == 0:
            raise DecodeError("field number 0")
        if wire_type == VARINT:
            value, pos = _read_varint(view, pos, end)
            yield number, wire_type, value
        elif wire_type == LENGTH:
            length, pos = _read_varint(view, pos, end)
            if pos + length > end:
                raise DecodeError("length-delimited field runs past the end")
            yield number, wire_type, view[pos : pos + length]
            pos += length
        elif wire_type == FIXED64:
            if pos + 8 > end:
                raise DecodeError("truncated 64-bit field")
            yield number, wire_type, _double.unpack_from(view, pos)[0]
            pos += 8
        elif wire_type == FIXED32:
            if pos + 4 > end:
                raise DecodeError("truncated 32-bit field")
            yield number, wire_type, int.from_bytes(view[pos : pos + 4], "little")
            pos += 4
        else:
            raise DecodeError(f"unsupported wire type {wire_type}")
