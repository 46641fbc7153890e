"""The native remote write 2.0 conversion (``ferryman_native.rw2_convert``, what
``remote_write2.decode_request`` uses) against the Python one, its oracle
(``decode_request_python``): on generated requests the same ``Request`` (series with
their labels and samples bit for bit, encoded series, metadata fields, counts), and
the native path declines exactly the bytes the oracle refuses (so that
``decode_request`` raises the oracle's ``DecodeError``). The requests hold unsorted
labels, duplicate names, empty symbols, references past the table, odd reference
counts, non-UTF-8 symbols, single (unpacked) and over-long references, histograms,
exemplars, metadata (repeated, defaulted, past the table), unknown fields of every
wire type, fields in any order, and are sometimes truncated or have a byte changed."""

from __future__ import annotations

import struct
from typing import Any

from ferryman_native import rw2_convert
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ferryman.wire import remote_write2
from ferryman.wire.protobuf import DecodeError
from ferryman.wire.remote_write import Sample, TimeSeries

SYMBOLS = ["", "__name__", "up", "cluster", "a", "b", "job", "x", "é", "\U0001f600", "aa"]


def _varint(value: int) -> bytes:
    out = bytearray()
    while value >= 0x80:
        out.append((value & 0x7F) | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def _key(number: int, wire: int) -> bytes:
    return _varint(number << 3 | wire)


def _length(number: int, payload: bytes) -> bytes:
    return _key(number, 2) + _varint(len(payload)) + payload


ref = st.integers(0, len(SYMBOLS) + 2) | st.integers(0, 2**40)


@st.composite
def unknown(draw: st.DrawFn, numbers: st.SearchStrategy[int]) -> bytes:
    """A field of a number the message does not use, of any wire type (3 and 4, groups,
    are refused)."""
    number = draw(numbers)
    wire = draw(st.sampled_from([0, 1, 2, 5] * 3 + [3]))
    if wire == 0:
        return _key(number, 0) + _varint(draw(st.integers(0, 2**64 - 1)))
    if wire == 1:
        return _key(number, 1) + draw(st.binary(min_size=8, max_size=8))
    if wire == 5:
        return _key(number, 5) + draw(st.binary(min_size=4, max_size=4))
    if wire == 2:
        return _length(number, draw(st.binary(max_size=6)))
    return _key(number, wire)


@st.composite
def refs_field(draw: st.DrawFn, number: int = 1) -> bytes:
    values = draw(st.lists(ref, max_size=8))
    shape = draw(st.sampled_from(["packed", "packed", "packed", "one", "long", "wrong"]))
    if shape == "one":
        return _key(number, 0) + _varint(draw(ref))
    if shape == "long":  # a six-byte zero is still a reference; seven bytes are not
        return _length(number, b"\x80" * draw(st.integers(1, 6)) + b"\x00")
    if shape == "wrong":
        return _key(number, 1) + bytes(8)
    return _length(number, b"".join(_varint(v) for v in values))


def _sorted_pairs(draw: st.DrawFn) -> bytes:
    """Valid references, the common shape: pairs of names and values in the table."""
    count = draw(st.integers(0, 6))
    values = [draw(st.integers(0, len(SYMBOLS) - 1)) for _ in range(count * 2)]
    return _length(1, b"".join(_varint(v) for v in values))


@st.composite
def sample(draw: st.DrawFn) -> bytes:
    parts = []
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["value", "stamp", "other"]))
        if kind == "value":
            parts.append(_key(1, 1) + draw(st.binary(min_size=8, max_size=8)))
        elif kind == "stamp":
            parts.append(_key(2, 0) + _varint(draw(st.integers(0, 2**64 - 1))))
        else:
            parts.append(draw(unknown(st.integers(1, 9))))
    return _length(2, b"".join(parts))


@st.composite
def exemplar(draw: st.DrawFn) -> bytes:
    parts = [draw(refs_field()) if draw(st.booleans()) else _sorted_pairs(draw)]
    for _ in range(draw(st.integers(0, 3))):
        kind = draw(st.sampled_from(["value", "stamp", "other"]))
        if kind == "value":
            parts.append(_key(2, 1) + draw(st.binary(min_size=8, max_size=8)))
        elif kind == "stamp":
            parts.append(_key(3, 0) + _varint(draw(st.integers(0, 2**64 - 1))))
        else:
            parts.append(draw(unknown(st.integers(2, 9))))
    draw(st.randoms()).shuffle(parts)
    return _length(4, b"".join(parts))


@st.composite
def metadata(draw: st.DrawFn) -> bytes:
    parts = []
    for _ in range(draw(st.integers(0, 4))):
        number = draw(st.sampled_from([1, 2, 3, 4, 7]))
        parts.append(_key(number, 0) + _varint(draw(st.integers(0, len(SYMBOLS)) | ref)))
    return _length(5, b"".join(parts))


def _typical(draw: st.DrawFn) -> list[bytes]:
    """``up`` of cluster ``a`` or ``b`` (pairs in either order), often with metadata:
    series whose metadata is left out when an earlier one of its cluster had it."""
    pairs = [(1, 2), (3, draw(st.sampled_from([4, 5])))]
    draw(st.randoms()).shuffle(pairs)
    parts = [_length(1, b"".join(_varint(n) + _varint(v) for n, v in pairs))]
    if draw(st.integers(0, 3)):
        meta = _key(1, 0) + _varint(draw(st.integers(0, 2))) + _key(3, 0) + _varint(7)
        parts.append(_length(5, meta))
    return parts


@st.composite
def series(draw: st.DrawFn, clean: bool) -> bytes:
    """A series; ``clean``, one of valid labels and samples (as senders write them)."""
    start = draw(st.integers(1, 2) if clean else st.integers(0, 2))
    parts = [[], [_sorted_pairs(draw)], _typical(draw)][start]
    kinds = ["refs", "refs", "sample", "sample", "hist", "ex", "meta", "other"]
    for _ in range(draw(st.integers(0, 5))):
        kind = draw(st.sampled_from(["value"] if clean else kinds))
        if kind == "value":
            stamp = draw(st.integers(0, 2**64 - 1))
            value = draw(st.binary(min_size=8, max_size=8))
            parts.append(_length(2, _key(1, 1) + value + _key(2, 0) + _varint(stamp)))
        elif kind == "refs":
            parts.append(draw(refs_field()) if draw(st.booleans()) else _sorted_pairs(draw))
        elif kind == "sample":
            parts.append(draw(sample()))
        elif kind == "hist":
            parts.append(_length(3, draw(st.binary(max_size=10))))
        elif kind == "ex":
            parts.append(draw(exemplar()))
        elif kind == "meta":
            parts.append(draw(metadata()))
        else:
            parts.append(draw(unknown(st.integers(2, 20))))
    return _length(5, b"".join(parts))


@st.composite
def requests(draw: st.DrawFn) -> bytes:
    clean = draw(st.integers(0, 2)) == 0
    symbols = [text.encode() for text in SYMBOLS]
    if draw(st.integers(0, 9)) == 0 and not clean:
        symbols.append(draw(st.sampled_from([b"\xff", b"\xed\xa0\x80", b"\xc0\x80", b"a\x80"])))
    parts = [_length(4, one) for one in symbols]
    parts += [draw(series(clean)) for _ in range(draw(st.integers(0, 4)))]
    if not clean:
        parts += [draw(unknown(st.integers(1, 9))) for _ in range(draw(st.integers(0, 2)))]
    if draw(st.booleans()):
        draw(st.randoms()).shuffle(parts)
    body = b"".join(parts)
    if clean:
        return body
    change = draw(st.integers(0, 9))
    if body and change == 0:
        body = body[: draw(st.integers(0, len(body) - 1))]
    elif body and change == 1:
        at = draw(st.integers(0, len(body) - 1))
        body = body[:at] + bytes([draw(st.integers(0, 255))]) + body[at + 1 :]
    return body


def _bits(request: remote_write2.Request) -> tuple[Any, ...]:
    """A request with every float as its bits (NaN compares equal to itself)."""
    return (
        [
            (one.labels, [(struct.pack("<d", s.value), s.timestamp_ms) for s in one.samples])
            for one in request.series
        ],
        request.encoded,
        request.metadata,
        request.samples,
        request.histograms,
        request.exemplars,
    )


def _oracle(body: bytes) -> remote_write2.Request | None:
    try:
        return remote_write2.decode_request_python(body)
    except DecodeError:
        return None


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(requests())
def test_the_native_conversion_is_the_python_one(body: bytes) -> None:
    want = _oracle(body)
    converted = rw2_convert(body, TimeSeries, Sample)
    assert (converted is None) == (want is None)
    try:
        got = remote_write2.decode_request(body)
    except DecodeError:
        assert want is None
    else:
        assert want is not None
        assert _bits(got) == _bits(want)
        assert all(type(one) is TimeSeries for one in got.series)
        assert all(type(s) is Sample for one in got.series for s in one.samples)


def test_decode_request_converts_natively() -> None:
    assert remote_write2.NATIVE
    series = [
        TimeSeries((("__name__", "up"), ("job", "a")), (Sample(1.0, 5),)),
        TimeSeries((("__name__", "up"), ("job", "b")), (Sample(float("nan"), -1),)),
    ]
    body = remote_write2.encode_request(series)
    assert rw2_convert(body, TimeSeries, Sample) is not None
    got = remote_write2.decode_request(memoryview(body))
    assert _bits(got) == _bits(remote_write2.decode_request_python(body))
    assert got.series[0] == series[0]


def test_metadata_is_sent_once_per_cluster_and_name() -> None:
    symbols = b"".join(_length(4, one.encode()) for one in SYMBOLS)
    meta = _length(5, _key(1, 0) + _varint(1) + _key(3, 0) + _varint(7))

    def up(cluster: int) -> bytes:  # up{cluster="a" or "b"}, a gauge with help "x"
        return _length(5, _length(1, bytes([3, cluster, 1, 2])) + meta)

    body = symbols + up(4) + up(5) + up(4)
    assert rw2_convert(body, TimeSeries, Sample) is not None
    got = remote_write2.decode_request(body)
    assert got.metadata == [b'\x1a\t\x12\x02up\x08\x01"\x01x'] * 2 + [b""]
    assert _bits(got) == _bits(remote_write2.decode_request_python(body))
