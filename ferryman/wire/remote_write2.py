"""Prometheus remote write 2.0: ``io.prometheus.write.v2.Request``, read and turned
into remote write 1.0.

Field numbers from the specification's ``io.prometheus.write.v2`` definitions::

    Request    { repeated string symbols = 4; repeated TimeSeries timeseries = 5; }
    TimeSeries { repeated uint32 labels_refs = 1; repeated Sample samples = 2;
                 repeated Histogram histograms = 3; repeated Exemplar exemplars = 4;
                 Metadata metadata = 5; int64 created_timestamp = 6; }
    Exemplar   { repeated uint32 labels_refs = 1; double value = 2; int64 timestamp = 3; }
    Sample     { double value = 1; int64 timestamp = 2; }

    Metadata   { MetricType type = 1; uint32 help_ref = 3; uint32 unit_ref = 4; }

Labels are pairs of indices into ``symbols``. A 2.0 ``Histogram`` has the field
numbers of 1.0's, so its bytes are carried over as they are; exemplars become 1.0
exemplars (``TimeSeries`` field 3: ``{repeated Label labels = 1; double value = 2;
int64 timestamp = 3}``). A series' metadata becomes a 1.0 ``MetricMetadata``
(``WriteRequest`` field 3: ``{MetricType type = 1; string metric_family_name = 2;
string help = 4; string unit = 5}``, the same type numbers) named after the
series' ``__name__``, in :attr:`Request.metadata` beside the series (to travel in
the message of the series' cluster), once per cluster, name, type, help and unit
in a request; metadata of all defaults is left out. Created timestamps have no
place in 1.0 and are left out.

:func:`decode_request` converts natively (``ferryman_native.rw2_convert``,
``native/src/rw2.rs``) when the native module is built, :data:`NATIVE`; for bytes it
would refuse, and without the native module, :func:`decode_request_python` (the
reference the native path is held to, byte for byte) does the work and says what is
wrong.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from .protobuf import (
    FIXED64,
    LENGTH,
    VARINT,
    DecodeError,
    bytes_field,
    double_field,
    fields,
    varint,
    varint_field,
)
from .remote_write import Sample, TimeSeries
from .remote_write import _decode_sample as _sample  # one Sample message, as in 1.0

_Converted = tuple[list[TimeSeries], list[bytes], list[bytes], int, int, int]
_native_convert: Callable[[bytes, type[TimeSeries], type[Sample]], _Converted | None] | None
try:
    from ferryman_native import rw2_convert as _native_convert
except ImportError:  # an older build of the native module, or none: Python converts
    _native_convert = None

__all__ = [
    "NATIVE",
    "DecodeError",
    "Request",
    "decode_request",
    "decode_request_python",
    "encode_request",
]

#: Whether :func:`decode_request` converts natively.
NATIVE = _native_convert is not None


@dataclass
class Request:
    """A 2.0 request as 1.0 series: ``series[i]`` (its float samples),
    ``encoded[i]``, that series as one 1.0 ``WriteRequest.timeseries`` field (with its
    histograms and exemplars), and ``metadata[i]``, its metadata as a 1.0
    ``WriteRequest.metadata`` field (empty when it has none, or when an earlier
    series of its cluster carried the same)."""

    series: list[TimeSeries] = field(default_factory=list)
    encoded: list[bytes] = field(default_factory=list)
    metadata: list[bytes] = field(default_factory=list)
    samples: int = 0
    histograms: int = 0
    exemplars: int = 0

    def with_metadata(self) -> list[bytes]:
        """``encoded[i] + metadata[i]`` for each series: WriteRequest fields that keep
        every series' metadata in the message of its cluster."""
        return [one + meta for one, meta in zip(self.encoded, self.metadata, strict=True)]


def _refs(raw: int | float | memoryview, wire_type: int) -> list[int]:
    """A ``repeated uint32``: packed (LENGTH) or one value (VARINT)."""
    if wire_type == VARINT:
        return [int(raw)]
    if wire_type != LENGTH or not isinstance(raw, memoryview):
        raise DecodeError("labels_refs of a wrong wire type")
    out = []
    data = bytes(raw)
    pos = 0
    while pos < len(data):
        value = shift = 0
        while True:
            if pos >= len(data):
                raise DecodeError("truncated packed varint")
            byte = data[pos]
            pos += 1
            value |= (byte & 0x7F) << shift
            if byte < 0x80:
                break
            shift += 7
            if shift > 35:
                raise DecodeError("labels_refs value larger than a uint32")
        out.append(value)
    return out


def _labels(refs: list[int], symbols: list[str]) -> tuple[tuple[str, str], ...]:
    if len(refs) % 2:
        raise DecodeError("labels_refs has an odd length")
    try:
        pairs = [(symbols[refs[i]], symbols[refs[i + 1]]) for i in range(0, len(refs), 2)]
    except IndexError:
        raise DecodeError("labels_refs points past the symbols table") from None
    return tuple(sorted(pairs))


def _label_fields(labels: tuple[tuple[str, str], ...]) -> bytes:
    return b"".join(
        bytes_field(1, bytes_field(1, name.encode()) + bytes_field(2, value.encode()))
        for name, value in labels
    )


def decode_request(buf: bytes | memoryview) -> Request:
    """Parse an uncompressed 2.0 Request; raises :class:`DecodeError` on bad bytes.

    Natively when :data:`NATIVE` (the same :class:`Request` as
    :func:`decode_request_python`), else, and for bytes the native path declines, in
    Python."""
    if _native_convert is not None:
        converted = _native_convert(bytes(buf), TimeSeries, Sample)
        if converted is not None:
            return Request(*converted)
    return decode_request_python(buf)


def decode_request_python(buf: bytes | memoryview) -> Request:
    """:func:`decode_request` in Python: the reference for the native path."""
    symbols: list[str] = []
    raw_series: list[memoryview] = []
    for number, wire_type, raw in fields(buf):
        if wire_type != LENGTH or not isinstance(raw, memoryview):
            continue
        if number == 4:
            try:
                symbols.append(bytes(raw).decode())
            except UnicodeDecodeError as exc:
                raise DecodeError(f"a symbol is not UTF-8: {exc}") from None
        elif number == 5:
            raw_series.append(raw)
    out = Request()
    metadata_seen: set[tuple[str, str, bytes]] = set()
    for raw in raw_series:
        refs: list[int] = []
        samples: list[Sample] = []
        histograms: list[bytes] = []
        exemplars: list[bytes] = []
        metadata = b""
        for number, wire_type, value in fields(raw):
            if number == 1:
                refs += _refs(value, wire_type)
            elif number == 2 and isinstance(value, memoryview):
                samples.append(_sample(value))
            elif number == 3 and isinstance(value, memoryview):
                histograms.append(bytes(value))
            elif number == 4 and isinstance(value, memoryview):
                exemplars.append(_exemplar(value, symbols))
            elif number == 5 and isinstance(value, memoryview):
                metadata = _metadata(value, symbols)
        labels = _labels(refs, symbols)
        series = TimeSeries(labels, tuple(samples))
        body = _label_fields(labels)
        body += b"".join(
            bytes_field(2, double_field(1, s.value) + varint_field(2, s.timestamp_ms))
            for s in samples
        )
        body += b"".join(bytes_field(3, e) for e in exemplars)
        body += b"".join(bytes_field(4, h) for h in histograms)
        name = series.label("__name__") or ""
        seen = (series.label("cluster") or "", name, metadata)
        if metadata and seen not in metadata_seen:
            metadata_seen.add(seen)
            out.metadata.append(bytes_field(3, bytes_field(2, name.encode()) + metadata))
        else:
            out.metadata.append(b"")
        out.series.append(series)
        out.encoded.append(bytes_field(1, body))
        out.samples += len(samples)
        out.histograms += len(histograms)
        out.exemplars += len(exemplars)
    return out


def _symbol(ref: int, symbols: list[str]) -> str:
    try:
        return symbols[ref]
    except IndexError:
        raise DecodeError("a metadata reference points past the symbols table") from None


def _metadata(buf: memoryview, symbols: list[str]) -> bytes:
    """A 2.0 series' metadata as the fields of a 1.0 ``MetricMetadata`` but its name
    (empty when every field has its default)."""
    kind = 0
    help_text = unit = ""
    for number, wire_type, raw in fields(buf):
        if wire_type != VARINT:
            continue
        if number == 1:
            kind = int(raw)
        elif number == 3:
            help_text = _symbol(int(raw), symbols)
        elif number == 4:
            unit = _symbol(int(raw), symbols)
    out = varint_field(1, kind) if kind else b""
    out += bytes_field(4, help_text.encode()) if help_text else b""
    out += bytes_field(5, unit.encode()) if unit else b""
    return out


def _exemplar(buf: memoryview, symbols: list[str]) -> bytes:
    """A 2.0 exemplar as the body of a 1.0 one."""
    refs: list[int] = []
    rest = b""
    for number, wire_type, raw in fields(buf):
        if number == 1:
            refs += _refs(raw, wire_type)
        elif number == 2 and wire_type == FIXED64:
            rest += double_field(2, float(raw))
        elif number == 3 and wire_type == VARINT:
            rest += varint_field(3, int(raw))
    return _label_fields(_labels(refs, symbols)) + rest


def encode_request(series: list[TimeSeries]) -> bytes:
    """Serialise (uncompressed) a 2.0 Request of float series (for tests and senders)."""
    symbols: dict[str, int] = {"": 0}

    def ref(text: str) -> int:
        return symbols.setdefault(text, len(symbols))

    parts = []
    for one in series:
        refs = [ref(x) for pair in one.labels for x in pair]
        packed = b"".join(varint(r) for r in refs)
        body = bytes_field(1, packed) if refs else b""
        body += b"".join(
            bytes_field(2, double_field(1, s.value) + varint_field(2, s.timestamp_ms))
            for s in one.samples
        )
        parts.append(bytes_field(5, body))
    head = b"".join(bytes_field(4, text.encode()) for text in symbols)
    return head + b"".join(parts)
