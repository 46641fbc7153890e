from __future__ import annotations

import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman.wire.protobuf import DecodeError, fields, varint
from ferryman.wire.remote_write import (
    Sample,
    TimeSeries,
    decode_write_request,
    encode_write_request,
    snappy_compress,
    snappy_decompress,
)

label_text = st.text(min_size=0, max_size=30)
labels = st.dictionaries(
    st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,20}", fullmatch=True), label_text, max_size=8
)
samples = st.lists(
    st.builds(
        Sample, st.floats(allow_nan=False), st.integers(min_value=-(2**63), max_value=2**63 - 1)
    ),
    max_size=5,
)
series = st.builds(lambda ls, ss: TimeSeries(tuple(sorted(ls.items())), tuple(ss)), labels, samples)


@given(st.lists(series, max_size=10))
def test_write_request_round_trips(batch: list[TimeSeries]) -> None:
    assert decode_write_request(encode_write_request(batch)) == batch


@given(st.lists(series, max_size=10))
def test_snappy_round_trips(batch: list[TimeSeries]) -> None:
    raw = encode_write_request(batch)
    assert snappy_decompress(snappy_compress(raw)) == raw


def test_known_bytes_match_the_spec() -> None:
    # TimeSeries{labels:[{name:"a", value:"b"}], samples:[{value:1.0, timestamp:2}]}
    request = encode_write_request([TimeSeries((("a", "b"),), (Sample(1.0, 2),))])
    assert request.hex() == (
        "0a15"  # field 1 (timeseries), 21 bytes
        "0a06"
        "0a0161"
        "120162"  # label {1:"a", 2:"b"}
        "120b"
        "09000000000000f03f"
        "1002"  # sample {1: 1.0 (fixed64), 2: 2 (varint)}
    )


def test_stale_marker_bits_survive() -> None:
    # Prometheus marks staleness with one particular NaN; its bits must pass unchanged.
    stale = struct.unpack("<d", (0x7FF0000000000002).to_bytes(8, "little"))[0]
    batch = [TimeSeries((("__name__", "x"),), (Sample(stale, 1),))]
    decoded = decode_write_request(encode_write_request(batch))[0].samples[0].value
    assert math.isnan(decoded)
    assert struct.pack("<d", decoded) == struct.pack("<d", stale)


def test_negative_timestamp_is_ten_byte_varint() -> None:
    assert len(varint(-1)) == 10
    assert (
        decode_write_request(encode_write_request([TimeSeries((), (Sample(0.0, -5),))]))[0]
        .samples[0]
        .timestamp_ms
        == -5
    )


@pytest.mark.parametrize(
    "garbage", [b"\x0a\xff", b"\x0a\x05\x01", b"\x07", b"\x00\x01", b"\x0a\x02\x0a\x80"]
)
def test_garbage_raises_decode_error(garbage: bytes) -> None:
    with pytest.raises(DecodeError):
        decode_write_request(garbage)


def test_non_snappy_raises_decode_error() -> None:
    with pytest.raises(DecodeError):
        snappy_decompress(b"\xff\xff\xff\xff\xff not snappy")


def test_unknown_fields_are_skipped() -> None:
    extra = b"\x18\x07"  # field 3 varint 7: metadata-ish noise a receiver must ignore
    request = extra + encode_write_request([TimeSeries((("a", "b"),), ())])
    assert decode_write_request(request) == [TimeSeries((("a", "b"),), ())]
    assert [n for n, _, _ in fields(request)] == [3, 1]


@given(st.lists(series, max_size=10))
def test_fast_and_careful_decoders_agree(batch: list[TimeSeries]) -> None:
    from ferryman.wire.remote_write import _decode_careful

    raw = encode_write_request(batch)
    assert decode_write_request(raw) == _decode_careful(raw) == batch


def test_zero_value_and_zero_timestamp_left_out_by_proto3_encoders() -> None:
    # Sample{} with both fields at their zero value is an empty message.
    raw = bytes.fromhex("0a0a0a060a01611201621200")
    assert decode_write_request(raw) == [TimeSeries((("a", "b"),), (Sample(0.0, 0),))]
