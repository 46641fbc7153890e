"""Structured metadata on Loki push entries (EntryAdapter field 3)."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from ferryman.wire.loki import Entry, Stream, decode_push_request, encode_push_request
from ferryman.wire.protobuf import LENGTH, bytes_field, fields, varint_field

pairs = st.lists(st.tuples(st.text(min_size=1, max_size=10), st.text(max_size=20)), max_size=4).map(
    tuple
)
entries = st.lists(
    st.builds(Entry, st.integers(min_value=0, max_value=2**62), st.text(max_size=30), pairs),
    max_size=4,
)


@given(st.lists(st.builds(Stream, st.just({"app": "a"}), entries), max_size=3))
def test_metadata_round_trips(streams: list[Stream]) -> None:
    decoded = decode_push_request(encode_push_request(streams))
    assert [list(s.entries) for s in decoded] == [list(s.entries) for s in streams]


def test_an_entry_without_metadata_encodes_as_before() -> None:
    # Timestamp {seconds=1, nanos=5}, line "hi": the bytes every earlier version wrote.
    stamp = varint_field(1, 1) + varint_field(2, 5)
    entry = bytes_field(1, stamp) + bytes_field(2, b"hi")
    stream = bytes_field(1, b'{a="b"}') + bytes_field(2, entry)
    assert encode_push_request([Stream({"a": "b"}, [Entry(1_000_000_005, "hi")])]) == bytes_field(
        1, stream
    )
    assert encode_push_request(
        [Stream({"a": "b"}, [Entry(1_000_000_005, "hi", ())])]
    ) == bytes_field(1, stream)


def test_metadata_is_field_3_of_the_entry_as_label_pairs() -> None:
    body = encode_push_request(
        [Stream({"a": "b"}, [Entry(7, "x", (("trace_id", "abc"), ("user", "é")))])]
    )
    [(_, _, stream)] = list(fields(body))
    assert isinstance(stream, memoryview)
    [entry] = [raw for number, _, raw in fields(stream) if number == 2]
    assert isinstance(entry, memoryview)
    pairs = [
        bytes(raw)
        for number, kind, raw in fields(entry)
        if number == 3 and kind == LENGTH and isinstance(raw, memoryview)
    ]
    assert pairs == [
        bytes_field(1, b"trace_id") + bytes_field(2, b"abc"),
        bytes_field(1, b"user") + bytes_field(2, "é".encode()),
    ]


def test_decoder_reads_metadata_written_by_others() -> None:
    # Field order within a pair and unknown fields must not matter.
    pair = bytes_field(2, b"v") + varint_field(9, 1) + bytes_field(1, b"k")
    entry = bytes_field(3, pair) + bytes_field(2, b"line") + bytes_field(1, varint_field(1, 2))
    body = bytes_field(1, bytes_field(1, b"{}") + bytes_field(2, entry))
    [stream] = decode_push_request(body)
    assert list(stream.entries) == [Entry(2_000_000_000, "line", (("k", "v"),))]
