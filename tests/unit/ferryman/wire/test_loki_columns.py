"""Decoding by column gives what decoding entry by entry gives.

``decode_push_request`` is the reference: whatever the bytes — laid out as our encoder
lays them out or not, with structured metadata, cut short or corrupted —
``decode_push_request_columns`` returns equal streams or raises the same error.
"""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ferryman.wire.loki import (
    Entries,
    Entry,
    Stream,
    decode_push_request,
    decode_push_request_columns,
    encode_push_request,
)
from ferryman.wire.protobuf import DecodeError, bytes_field, varint_field

NS = 1_000_000_000
BASE = 1_764_072_000 * NS

stamps = st.one_of(
    st.integers(BASE, BASE + 5 * NS),
    st.integers(-(1 << 62), 1 << 62),
    st.sampled_from(
        [
            0,
            1,
            NS - 1,
            NS,
            BASE,
            BASE + 127,
            BASE + 128,
            BASE + (1 << 14),
            BASE + (1 << 21),
            BASE + (1 << 28),
            -1,
            -NS,
        ]
    ),
)
lines = st.one_of(
    st.text(max_size=40),
    st.text("abc \n", max_size=300),
    st.sampled_from(["", "é", "日本", "\U0001f600", "x" * 200]),
)
entries = st.lists(st.tuples(stamps, lines), max_size=40)
labels = st.dictionaries(
    st.sampled_from(["job", "app", "filename", "a.b"]), st.text(max_size=10), max_size=3
)


def _outcome(decode: object, data: bytes) -> object:
    assert callable(decode)
    try:
        return decode(data)
    except DecodeError as exc:
        return ("error", str(exc))


def _columnar(streams: list[Stream]) -> bool:
    return all(isinstance(s.entries, Entries) for s in streams)


@settings(max_examples=300)
@given(st.lists(st.tuples(labels, entries, st.booleans()), max_size=4))
def test_our_requests_decode_the_same_and_by_column(
    spec: list[tuple[dict[str, str], list[tuple[int, str]], bool]],
) -> None:
    streams = [
        Stream(
            lab,
            Entries([ts for ts, _ in ents], [line for _, line in ents])
            if column
            else [Entry(ts, line) for ts, line in ents],
        )
        for lab, ents, column in spec
    ]
    data = encode_push_request(streams)
    got = decode_push_request_columns(data)
    assert got == decode_push_request(data)
    assert _columnar(got)


@settings(max_examples=300)
@given(st.lists(st.tuples(labels, entries), min_size=1, max_size=3), st.data())
def test_damaged_requests_decode_the_same_or_fail_the_same(
    spec: list[tuple[dict[str, str], list[tuple[int, str]]]], data: st.DataObject
) -> None:
    good = encode_push_request(
        Stream(lab, Entries([ts for ts, _ in e], [x for _, x in e])) for lab, e in spec
    )
    damaged = bytearray(good)
    for _ in range(data.draw(st.integers(1, 3))):
        if not damaged:
            break
        where = data.draw(st.integers(0, len(damaged) - 1))
        damaged[where] = data.draw(st.integers(0, 255))
    cut = data.draw(st.integers(0, len(damaged)))
    for sample in (bytes(damaged), bytes(damaged[:cut])):
        assert _outcome(decode_push_request_columns, sample) == _outcome(
            decode_push_request, sample
        )


def test_metadata_and_foreign_layouts_fall_back_to_entries_one_by_one() -> None:
    with_metadata = encode_push_request(
        [Stream({"a": "b"}, [Entry(BASE + 1, "x", (("trace_id", "1"),))])]
    )
    assert decode_push_request_columns(with_metadata) == decode_push_request(with_metadata)
    # Nanoseconds before seconds, and an explicit zero: valid, though not our layout.
    stamp = varint_field(2, 0) + varint_field(1, 7)
    entry = bytes_field(1, stamp) + bytes_field(2, b"line")
    foreign = bytes_field(1, bytes_field(1, b'{a="b"}') + bytes_field(2, entry))
    assert (
        decode_push_request_columns(foreign)
        == decode_push_request(foreign)
        == [Stream({"a": "b"}, [Entry(7 * NS, "line")])]
    )


def test_invalid_utf8_is_replaced_as_entry_by_entry() -> None:
    entry = bytes_field(1, varint_field(1, 7) + varint_field(2, 5)) + bytes_field(2, b"a\xffb")
    data = bytes_field(1, bytes_field(1, b'{a="b"}') + bytes_field(2, entry))
    [stream] = decode_push_request_columns(data)
    assert isinstance(stream.entries, Entries)
    assert stream.entries == [Entry(7 * NS + 5, "a\ufffdb")]
    assert decode_push_request(data) == [stream]


@pytest.mark.parametrize(
    "data", [b"\x0a\x05\x0a", b"\x0a", b"\x12\x00", b"\x08\x01", b"\x0a\x04\x12\x02\x0a\x00"]
)
def test_odd_bytes_decode_as_entry_by_entry(data: bytes) -> None:
    assert _outcome(decode_push_request_columns, data) == _outcome(decode_push_request, data)
