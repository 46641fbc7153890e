"""Prometheus remote write 1.0: ``WriteRequest`` protobuf, snappy block compressed.

Field numbers from the published ``prompb`` definitions::

    WriteRequest { repeated TimeSeries timeseries = 1; repeated MetricMetadata metadata = 3; }
    TimeSeries   { repeated Label labels = 1; repeated Sample samples = 2; }
    Label        { string name = 1; string value = 2; }
    Sample       { double value = 1; int64 timestamp = 2; }   // timestamp in ms

HTTP headers a receiver expects are in :data:`HEADERS`.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

import cramjam

from .protobuf import (
    FIXED64,
    LENGTH,
    VARINT,
    DecodeError,
    bytes_field,
    double_field,
    fields,
    sint_to_int64,
    varint_at,
    varint_field,
)

_DOUBLE = struct.Struct("<d")

__all__ = [
    "HEADERS",
    "Sample",
    "TimeSeries",
    "decode_labels",
    "decode_write_request",
    "encode_write_request",
    "snappy_compress",
    "snappy_decompress",
    "sorted_labels",
]

HEADERS = {
    "Content-Type": "application/x-protobuf",
    "Content-Encoding": "snappy",
    "X-Prometheus-Remote-Write-Version": "0.1.0",
}


@dataclass(frozen=True, slots=True)
class Sample:
    value: float
    timestamp_ms: int


@dataclass(frozen=True, slots=True)
class TimeSeries:
    """One series: labels sorted by name (``__name__`` among them) and its samples."""

    labels: tuple[tuple[str, str], ...]
    samples: tuple[Sample, ...]

    def label(self, name: str) -> str | None:
        for key, value in self.labels:
            if key == name:
                return value
        return None


def _encode_series(series: TimeSeries) -> bytes:
    parts = []
    for name, value in series.labels:
        parts.append(bytes_field(1, bytes_field(1, name.encode()) + bytes_field(2, value.encode())))
    for sample in series.samples:
        parts.append(
            bytes_field(2, double_field(1, sample.value) + varint_field(2, sample.timestamp_ms))
        )
    return b"".join(parts)


def encode_write_request(series: Iterable[TimeSeries]) -> bytes:
    """Serialise (uncompressed) a WriteRequest holding ``series``."""
    return b"".join(bytes_field(1, _encode_series(s)) for s in series)


def _decode_label(buf: memoryview) -> tuple[str, str]:
    name = value = ""
    for number, wire_type, raw in fields(buf):
        if wire_type != LENGTH or not isinstance(raw, memoryview):
            continue
        try:
            text = bytes(raw).decode()
        except UnicodeDecodeError as exc:
            raise DecodeError(f"label is not UTF-8: {exc}") from exc
        if number == 1:
            name = text
        elif number == 2:
            value = text
    return name, value


def _decode_sample(buf: memoryview) -> Sample:
    value = 0.0
    timestamp = 0
    for number, wire_type, raw in fields(buf):
        if number == 1 and wire_type == FIXED64:
            value = float(raw)
        elif number == 2 and wire_type == VARINT:
            timestamp = sint_to_int64(int(raw))
    return Sample(value, timestamp)


def decode_labels(buf: bytes | memoryview) -> dict[str, str]:
    """The Label fields of one TimeSeries (and nothing else) as a dict."""
    labels = {}
    for number, wire_type, raw in fields(buf):
        if number == 1 and wire_type == LENGTH and isinstance(raw, memoryview):
            name, value = _decode_label(raw)
            labels[name] = value
    return labels


def _decode_careful(buf: bytes | memoryview) -> list[TimeSeries]:
    out = []
    for number, wire_type, raw in fields(buf):
        if number != 1 or wire_type != LENGTH or not isinstance(raw, memoryview):
            continue
        labels: list[tuple[str, str]] = []
        samples: list[Sample] = []
        for inner_number, inner_type, inner in fields(raw):
            if inner_type != LENGTH or not isinstance(inner, memoryview):
                continue
            if inner_number == 1:
                labels.append(_decode_label(inner))
            elif inner_number == 2:
                samples.append(_decode_sample(inner))
        out.append(TimeSeries(tuple(labels), tuple(samples)))
    return out


class _NotCommon(Exception):
    """Raised by the fast path on anything but the common shape; the careful path decides."""


# Label sets repeat every scrape: remember the decoded form of their raw bytes.
_LABELS: dict[bytes, tuple[tuple[str, str], ...]] = {}
_LABELS_MAX = 500_000
_unpack_double = _DOUBLE.unpack_from


def _decode_fast(data: bytes) -> list[TimeSeries]:
    out = []
    pos, end = 0, len(data)
    labels_cache = _LABELS
    while pos < end:
        if data[pos] != 0x0A:
            raise _NotCommon  # metadata or unknown fields
        length, pos = varint_at(data, pos + 1)
        stop = pos + length
        if stop > end:
            raise _NotCommon
        start = pos
        while pos < stop and data[pos] == 0x0A:
            n, pos = varint_at(data, pos + 1)
            pos += n
        if pos > stop:
            raise _NotCommon
        raw_labels = data[start:pos]
        labels = labels_cache.get(raw_labels)
        if labels is None:
            labels = tuple(
                _decode_label(memoryview(raw_labels)[s:e]) for s, e in _spans(raw_labels)
            )
            if len(labels_cache) >= _LABELS_MAX:
                labels_cache.clear()
            labels_cache[raw_labels] = labels
        samples = []
        while pos < stop:
            if data[pos] != 0x12:
                raise _NotCommon  # exemplars, histograms
            n, pos = varint_at(data, pos + 1)
            sample_end = pos + n
            if n >= 11 and data[pos] == 0x09 and data[pos + 9] == 0x10:
                timestamp, after = varint_at(data, pos + 10)
                if after != sample_end:
                    raise _NotCommon
                samples.append(Sample(_unpack_double(data, pos + 1)[0], sint_to_int64(timestamp)))
            else:  # zero values left out by proto3 encoders, and the like
                samples.append(_decode_sample(memoryview(data)[pos:sample_end]))
            pos = sample_end
        if pos != stop:
            raise _NotCommon
        out.append(TimeSeries(labels, tuple(samples)))
    return out


def _spans(raw_labels: bytes) -> list[tuple[int, int]]:
    spans = []
    pos = 0
    while pos < len(raw_labels):
        n, start = varint_at(raw_labels, pos + 1)
        spans.append((start, start + n))
        pos = start + n
    return spans


def decode_write_request(buf: bytes | memoryview) -> list[TimeSeries]:
    """Parse an uncompressed WriteRequest; raises :class:`DecodeError` on bad bytes.

    Common payloads (labels first, plain samples) take a fast path that caches
    decoded label sets; anything else, and every error, goes the careful way.
    """
    data = bytes(buf)
    try:
        return _decode_fast(data)
    except (_NotCommon, IndexError, UnicodeDecodeError, DecodeError):
        return _decode_careful(data)


def snappy_compress(data: bytes) -> bytes:
    """Snappy block format (not framed), as remote write and Loki push require."""
    return bytes(cramjam.snappy.compress_raw(data))


# A snappy copy element writes at most 64 bytes and takes at least 3: no honest block
# decompresses to more than 64/3 times its size.
_SNAPPY_MAX_RATIO = 22


def snappy_decompress(data: bytes | memoryview) -> bytes:
    """Undo :func:`snappy_compress`; raises :class:`DecodeError` on bad bytes."""
    raw = bytes(data)
    # The decoder allocates the length the block's header claims before reading on: a
    # few bytes claiming 4 GiB must not get that far.
    try:
        claimed, _ = varint_at(raw, 0)
    except (IndexError, DecodeError):
        raise DecodeError("not snappy block data: no length at its start") from None
    if claimed > _SNAPPY_MAX_RATIO * len(raw):
        raise DecodeError(f"not snappy block data: {len(raw)} bytes claim to hold {claimed}")
    try:
        return bytes(cramjam.snappy.decompress_raw(raw))
    except cramjam.DecompressionError as exc:
        raise DecodeError(f"not snappy block data: {exc}") from exc


def sorted_labels(labels: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """Labels in the order remote write requires: sorted by name."""
    return tuple(sorted(labels.items()))
