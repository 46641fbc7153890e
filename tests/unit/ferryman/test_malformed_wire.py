"""Malformed wire bytes raise DecodeError and nothing else.

Any other exception out of a decoder is taken as retryable by the runtime and holds
its partition for ever; a length prefix must never be trusted with an allocation.
Payloads are random bytes, and valid ones (from the repo's own encoders) truncated,
with a byte flipped, with a length prefix rewritten to claim more than there is (up
to 2**64 - 1), or with a varint stretched past ten bytes. Each decoder either returns
a value of its type or raises DecodeError; the fast paths agree with the careful
decoders they fall back to, result for result and error for error.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ferryman.prom.relabel import RelabelConfig, compile_rules
from ferryman.prom.rewrite import Rewriter, RewriteResult
from ferryman.wire import loki, remote_write
from ferryman.wire.loki import (
    Entries,
    Entry,
    Stream,
    decode_push_request,
    decode_push_request_columns,
    encode_push_request,
    parse_labels,
)
from ferryman.wire.protobuf import (
    LENGTH,
    DecodeError,
    bytes_field,
    double_field,
    fields,
    varint,
    varint_at,
)
from ferryman.wire.remote_write import (
    Sample,
    TimeSeries,
    decode_labels,
    decode_write_request,
    encode_write_request,
    snappy_compress,
    snappy_decompress,
)

T = TypeVar("T")

CHECKS = settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
INT64 = (-(2**63), 2**63 - 1)


def outcome(decode: Callable[[bytes], T], data: bytes) -> T | DecodeError:
    """What ``decode`` made of ``data``: its value, or the DecodeError it raised (any
    other exception fails the test)."""
    try:
        return decode(data)
    except DecodeError as exc:
        return exc


# --- valid payloads ------------------------------------------------------------------

names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,12}", fullmatch=True)
texts = st.text(max_size=12)
series = st.builds(
    lambda labels, samples: TimeSeries(tuple(sorted(labels.items())), tuple(samples)),
    st.dictionaries(names, texts, max_size=4),
    st.lists(st.builds(Sample, st.floats(), st.integers(*INT64)), max_size=3),
)
write_requests = st.lists(series, max_size=4).map(encode_write_request)


@st.composite
def wide_timestamps(draw: st.DrawFn) -> bytes:
    """A WriteRequest whose sample timestamps are ten-byte varints, the last byte
    anything up to 0x7f (only its lowest bit fits in 64 bits)."""
    out = b""
    for labels in draw(st.lists(st.dictionaries(names, texts, max_size=2), max_size=3)):
        body = encode_write_request([TimeSeries(tuple(sorted(labels.items())), ())])[2:]
        for value, low, top in draw(
            st.lists(
                st.tuples(st.floats(), st.integers(0, 2**63 - 1), st.integers(0, 0x7F)), max_size=3
            )
        ):
            stamp = bytes(((low >> (7 * i)) & 0x7F) | 0x80 for i in range(9)) + bytes([top])
            body += bytes_field(2, double_field(1, value) + b"\x10" + stamp)
        out += bytes_field(1, body)
    return out


stamps = st.one_of(
    st.integers(0, 2**63 - 1),
    st.integers(-(10**18), 10**18),
    st.sampled_from([0, 1, 999_999_999, 1_000_000_000, 1_700_000_000_123_456_789]),
)
entries = st.builds(Entry, stamps, texts, st.lists(st.tuples(names, texts), max_size=2).map(tuple))
plain_entries = st.builds(Entry, stamps, texts)
streams = st.builds(
    Stream,
    st.dictionaries(names, texts, max_size=3),
    st.one_of(
        st.lists(entries, max_size=4),
        st.lists(plain_entries, max_size=6).map(Entries.of),
        # What the edge shipper sends: timestamps in order, by column.
        st.lists(plain_entries, max_size=6).map(
            lambda es: Entries.of(sorted(es, key=lambda e: abs(e.timestamp_ns)))
        ),
    ),
)
push_requests = st.lists(streams, max_size=3).map(encode_push_request)
valid = st.one_of(write_requests, push_requests)


# --- ways to break them --------------------------------------------------------------


def length_prefixes(data: bytes) -> list[tuple[int, int]]:
    """(start, end) of every length varint in ``data``, looking inside each
    length-delimited field that itself parses as a message."""
    found: list[tuple[int, int]] = []

    def walk(start: int, end: int, depth: int) -> None:
        pos = start
        try:
            while pos < end:
                tag, pos = varint_at(data, pos)
                if tag & 7 == LENGTH:
                    length, after = varint_at(data, pos)
                    found.append((pos, after))
                    if depth < 4:
                        walk(after, after + length, depth + 1)
                    pos = after + length
                elif tag & 7 == 0:
                    _, pos = varint_at(data, pos)
                else:
                    pos += {1: 8, 5: 4}.get(tag & 7, end)
        except (IndexError, DecodeError):
            return

    walk(0, len(data), 0)
    return found


CLAIMS = [
    1,
    2,
    127,
    128,
    2**14,
    2**31 - 1,
    2**31,
    2**32 - 1,
    2**32,
    2**62,
    2**63 - 1,
    2**63,
    2**64 - 1,
]


@st.composite
def overclaimed(draw: st.DrawFn, payloads: st.SearchStrategy[bytes] = valid) -> bytes:
    """A valid payload with one length prefix claiming more bytes than remain."""
    data = draw(payloads.filter(bool))
    prefixes = length_prefixes(data)
    if not prefixes:
        return data + varint(draw(st.sampled_from(CLAIMS)))
    start, end = draw(st.sampled_from(prefixes))
    extra = draw(st.sampled_from(CLAIMS))
    claim = min(len(data) - end + extra, 2**64 - 1)
    return data[:start] + varint(claim) + data[end:]


@st.composite
def overlong_varint(draw: st.DrawFn, payloads: st.SearchStrategy[bytes] = valid) -> bytes:
    """A valid payload with a varint (a tag, a length, or in the middle of anything)
    stretched past ten bytes, or to ten bytes whose last one spills past 64 bits."""
    data = draw(payloads)
    at = draw(st.integers(0, len(data)))
    width = draw(st.integers(10, 20))
    last = draw(st.integers(1, 0x7F) if width == 10 else st.integers(0, 0x7F))
    stretched = b"\xff" * (width - 1) + bytes([last])
    keep = draw(st.integers(0, 3))
    return data[:at] + stretched + data[at + keep :]


@st.composite
def truncated(draw: st.DrawFn, payloads: st.SearchStrategy[bytes] = valid) -> bytes:
    data = draw(payloads)
    return data[: draw(st.integers(0, len(data)))]


@st.composite
def flipped(draw: st.DrawFn, payloads: st.SearchStrategy[bytes] = valid) -> bytes:
    data = draw(payloads.filter(bool))
    at = draw(st.integers(0, len(data) - 1))
    return data[:at] + bytes([data[at] ^ draw(st.integers(1, 255))]) + data[at + 1 :]


def malformed(payloads: st.SearchStrategy[bytes]) -> st.SearchStrategy[bytes]:
    return st.one_of(
        st.binary(max_size=200),
        truncated(payloads),
        flipped(payloads),
        overclaimed(payloads),
        overlong_varint(payloads),
    )


anything = st.one_of(valid, malformed(valid), wide_timestamps())


# --- remote write ----------------------------------------------------------------------


def _series_list(value: object) -> bool:
    return isinstance(value, list) and all(
        isinstance(s, TimeSeries)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in s.labels)
        and all(
            isinstance(x.value, float) and INT64[0] <= x.timestamp_ms <= INT64[1] for x in s.samples
        )
        for s in value
    )


@CHECKS
@given(st.one_of(malformed(write_requests), wide_timestamps()))
def test_write_request_decodes_or_raises_decode_error(data: bytes) -> None:
    got = outcome(decode_write_request, data)
    assert isinstance(got, DecodeError) or _series_list(got)


@CHECKS
@given(anything)
def test_write_request_fast_path_agrees_with_the_careful_one(data: bytes) -> None:
    fast = outcome(decode_write_request, data)
    careful = outcome(remote_write._decode_careful, data)
    if isinstance(careful, DecodeError):
        assert isinstance(fast, DecodeError)
    else:
        assert repr(fast) == repr(careful)  # NaN samples are not equal to themselves


@CHECKS
@given(
    st.one_of(
        st.binary(max_size=120),
        malformed(
            st.lists(st.tuples(names, texts), max_size=4).map(
                lambda pairs: encode_write_request([TimeSeries(tuple(pairs), ())])[2:]
            )
        ),
    )
)
def test_labels_decode_or_raise_decode_error(data: bytes) -> None:
    got = outcome(decode_labels, data)
    assert isinstance(got, DecodeError) or (
        isinstance(got, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in got.items())
    )


@CHECKS
@given(anything)
def test_fields_yield_or_raise_decode_error(data: bytes) -> None:
    got = outcome(lambda d: list(fields(d)), data)
    if not isinstance(got, DecodeError):
        for number, wire_type, value in got:
            assert number > 0
            assert wire_type in (0, 1, 2, 5)
            assert not isinstance(value, int) or 0 <= value < 2**64


@CHECKS
@given(anything)
def test_varint_at_raises_only_what_it_documents(data: bytes) -> None:
    pos = 0
    while pos < len(data):
        try:
            value, after = varint_at(data, pos)
        except (IndexError, DecodeError):
            return
        assert 0 <= value < 2**64 and pos < after <= pos + 10
        pos = after


# --- snappy ----------------------------------------------------------------------------

compressed = write_requests.map(snappy_compress)


@st.composite
def huge_claims(draw: st.DrawFn) -> bytes:
    """A snappy block whose header claims far more than its body can hold."""
    body = draw(st.one_of(st.binary(max_size=40), compressed.map(lambda c: c[1:])))
    claim = draw(st.one_of(st.sampled_from(CLAIMS), st.integers(0, 2**64 - 1)))
    return varint(claim) + body


@CHECKS
@given(st.one_of(malformed(compressed), huge_claims()))
def test_snappy_decompresses_or_raises_decode_error(data: bytes) -> None:
    got = outcome(snappy_decompress, data)
    assert isinstance(got, DecodeError | bytes)


@CHECKS
@given(st.binary(max_size=3000))
def test_snappy_still_takes_whatever_it_compressed(raw: bytes) -> None:
    assert snappy_decompress(snappy_compress(raw)) == raw
    assert snappy_decompress(snappy_compress(raw * 50)) == raw * 50


def _refuse(data: bytes) -> bytes:
    raise AssertionError("snappy was asked to allocate what the header claims")


@pytest.mark.parametrize("claim", [2**32 - 1, 2**31, 10**9, 2**20])
def test_a_huge_claim_is_refused_before_snappy_allocates_it(
    claim: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    # It was: snappy allocated the claimed 4 GiB (VmPeak +4 GiB), then found the body short.
    monkeypatch.setattr(remote_write.cramjam.snappy, "decompress_raw", _refuse)
    with pytest.raises(DecodeError):
        snappy_decompress(varint(claim) + b"\x00" * 16)


# --- Loki push -------------------------------------------------------------------------


def _streams(value: object) -> bool:
    return isinstance(value, list) and all(
        isinstance(s, Stream)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in s.labels.items())
        and all(
            isinstance(e, Entry)
            and isinstance(e.timestamp_ns, int)
            and isinstance(e.line, str)
            and all(isinstance(k, str) and isinstance(v, str) for k, v in e.metadata)
            for e in s.entries
        )
        for s in value
    )


@CHECKS
@given(malformed(push_requests))
def test_push_request_decodes_or_raises_decode_error(data: bytes) -> None:
    got = outcome(decode_push_request, data)
    assert isinstance(got, DecodeError) or _streams(got)


@CHECKS
@given(st.one_of(push_requests, malformed(push_requests)))
def test_push_request_by_column_agrees_with_the_reference(data: bytes) -> None:
    by_column = outcome(decode_push_request_columns, data)
    reference = outcome(decode_push_request, data)
    if isinstance(reference, DecodeError):
        assert isinstance(by_column, DecodeError)
    else:
        assert _streams(by_column)
        assert by_column == reference


label_texts = st.one_of(
    st.text(max_size=40),
    st.text(alphabet='{}=", \\abn\n', max_size=30),
    st.dictionaries(names, st.text(max_size=8), max_size=3)
    .map(loki.format_labels)
    .flatmap(lambda text: st.integers(0, len(text)).map(lambda cut: text[:cut])),
)


@CHECKS
@given(label_texts)
def test_label_text_parses_or_raises_decode_error(text: str) -> None:
    got = outcome(parse_labels, text)  # type: ignore[arg-type]
    assert isinstance(got, DecodeError) or (
        isinstance(got, dict)
        and all(isinstance(k, str) and isinstance(v, str) for k, v in got.items())
    )


# --- remote-write rewrite --------------------------------------------------------------

REWRITER = Rewriter(
    compile_rules(
        [
            RelabelConfig(source_labels=("job",), regex="drop.*", action="drop"),
            RelabelConfig(
                source_labels=("__name__", "job"), target_label="shard", modulus=4, action="hashmod"
            ),
            RelabelConfig(action="labelmap", regex="(.+)_x", replacement="${1}"),
        ]
    )
)


@CHECKS
@given(malformed(write_requests))
def test_rewrite_rewrites_or_raises_decode_error(data: bytes) -> None:
    got = outcome(REWRITER.rewrite, data)
    assert isinstance(got, DecodeError | RewriteResult)


# --- what was broken -------------------------------------------------------------------

TEN_BYTES_PAST_64_BITS = b"\xff" * 9 + b"\x7f"


def test_a_ten_byte_varint_is_read_as_uint64() -> None:
    # It was: 2**70 - 1, which sint_to_int64 left far outside int64.
    assert varint_at(TEN_BYTES_PAST_64_BITS, 0) == (2**64 - 1, 10)
    assert list(fields(b"\x08" + TEN_BYTES_PAST_64_BITS)) == [(1, 0, 2**64 - 1)]
    with pytest.raises(DecodeError):
        varint_at(b"\xff" * 10 + b"\x01", 0)
    with pytest.raises(DecodeError):
        list(fields(b"\x08" + b"\x80" * 11))


def test_a_timestamp_past_64_bits_stays_an_int64() -> None:
    sample = b"\x09" + b"\x00" * 8 + b"\x10" + TEN_BYTES_PAST_64_BITS
    payload = b"\x0a" + varint(len(sample) + 2) + b"\x12" + varint(len(sample)) + sample
    for decode in (decode_write_request, remote_write._decode_careful):
        [series] = decode(payload)
        assert series.samples == (Sample(0.0, -1),)


def test_fields_stop_at_the_end_of_the_buffer() -> None:
    assert list(fields(b"\x08\x01", 0, 100)) == [(1, 0, 1)]


@pytest.mark.parametrize(
    "payload",
    [
        b"\x0a\xff\xff\xff\xff\xff\xff\xff\xff\x7f",  # a length of 2**63 - 1
        b"\x0a\x05\x0a\x03\x0a\x01",  # a label runs past its series
        b"\x0a" + b"\x80" * 11 + b"\x01",
        b"\x0a\x03\x0a\x01",
    ],
)
def test_broken_write_requests(payload: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_write_request(payload)
    with pytest.raises(DecodeError):
        REWRITER.rewrite(payload)


def test_rewrite_passes_samples_on_unread() -> None:
    # Only labels are read; what follows them is copied, broken or not (the sink's
    # decoder or the store says so).
    payload = b"\x0a\x02\x12\xff"  # a sample's length cut short
    with pytest.raises(DecodeError):
        decode_write_request(payload)
    result = REWRITER.rewrite(payload)
    assert result.series_out == 1 and result.payload.endswith(b"\x12\xff")


def test_label_values_that_are_not_utf8_are_an_error_in_both_paths() -> None:
    bad = TimeSeries((("a", "b"),), (Sample(1.0, 2),))
    payload = encode_write_request([bad]).replace(b"b", b"\xff", 1)
    with pytest.raises(DecodeError):
        decode_write_request(payload)
    with pytest.raises(DecodeError):
        remote_write._decode_careful(payload)
    with pytest.raises(DecodeError):
        decode_labels(payload[2:])


def test_loki_lines_that_are_not_utf8_are_replaced_in_both_paths() -> None:
    payload = encode_push_request([Stream({"a": "b"}, Entries([5], ["x\u00e9"]))])
    broken = payload.replace("\u00e9".encode(), b"\xff\xfe")
    expected = [Stream({"a": "b"}, [Entry(5, "x\ufffd\ufffd")])]
    assert decode_push_request(broken) == expected
    assert decode_push_request_columns(broken) == expected


def test_the_recursion_limit_is_not_involved() -> None:
    # Messages nest to a fixed depth here: a deep payload is just a long one.
    deep = b""
    for _ in range(sys.getrecursionlimit() + 10):
        deep = b"\x0a" + varint(len(deep)) + deep
    assert isinstance(outcome(decode_push_request, deep), DecodeError | list)
    assert isinstance(outcome(decode_write_request, deep), DecodeError | list)
