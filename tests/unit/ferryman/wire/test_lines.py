"""The ``ferryman.lines`` header: round trips, the exact bytes, and every way a value
can fail to match its message (DecodeError, nothing else)."""

from __future__ import annotations

import contextlib
import hashlib

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman.wire.lines import (
    NO_SOURCE,
    decode_lines,
    decode_runs,
    encode_lines,
    source_id,
)
from ferryman.wire.protobuf import DecodeError, varint

A = source_id("node-1", 2049, 131_074, 0xDEADBEEF)
B = source_id("node-1", 2049, 131_075, 0xDEADBEEF)

sources = st.one_of(st.just(NO_SOURCE), st.binary(min_size=16, max_size=16))
offsets = st.lists(st.integers(min_value=0, max_value=2**63 - 1), min_size=1, max_size=20)
# Offsets as a file gives them: increasing by a line's length.
growing = st.lists(st.integers(min_value=1, max_value=70_000), min_size=1, max_size=20).map(
    lambda sizes: [sum(sizes[: i + 1]) for i in range(len(sizes))]
)
runs = st.lists(st.tuples(sources, st.one_of(offsets, growing)), max_size=5)
messages = st.lists(runs, max_size=5)


def counts(message: list[list[tuple[bytes, list[int]]]]) -> list[int]:
    return [sum(len(o) for _, o in stream) for stream in message]


@given(messages)
def test_runs_round_trip(message: list[list[tuple[bytes, list[int]]]]) -> None:
    assert decode_runs(encode_lines(message), counts(message)) == message


@given(messages)
def test_entries_get_their_source_and_offset_or_none(
    message: list[list[tuple[bytes, list[int]]]],
) -> None:
    expected = [
        [None if source == NO_SOURCE else (source, o) for source, run in stream for o in run]
        for stream in message
    ]
    assert decode_lines(encode_lines(message), counts(message)) == expected


def test_the_bytes_are_the_documented_ones() -> None:
    value = encode_lines([[(A, [100, 250, 240]), (NO_SOURCE, [0])], [], [(B, [5])]])
    assert value == (
        b"\x01"
        + b"\x02"  # two runs in the first stream
        + A
        + b"\x03"
        + varint(200)  # zigzag(100)
        + varint(300)  # zigzag(150)
        + b"\x13"  # zigzag(-10)
        + NO_SOURCE
        + b"\x01\x00"
        + b"\x00"  # the second stream: no entries, no runs
        + b"\x01"
        + B
        + b"\x01\x0a"
    )
    assert decode_lines(value, [4, 0, 1]) == [
        [(A, 100), (A, 250), (A, 240), None],
        [],
        [(B, 5)],
    ]


def test_runs_without_offsets_are_left_out() -> None:
    assert encode_lines([[(A, []), (B, [7])]]) == encode_lines([[(B, [7])]])


def test_source_id_is_blake2b_of_an_unambiguous_encoding() -> None:
    data = b"\x06node-1" + varint(2049) + varint(131_074) + varint(0xDEADBEEF)
    assert hashlib.blake2b(data, digest_size=16, person=b"ferryman.source").digest() == A
    assert (
        len(
            {
                A,
                B,
                source_id("node-1", 2049, 131_074, 1),
                source_id("node-2", 2049, 131_074, 0xDEADBEEF),
            }
        )
        == 4
    )
    # The length prefix keeps the host from running into the numbers.
    assert source_id("a\x01", 2, 3, 4) != source_id("a", 1, 2, 3)
    assert source_id("\udcff", 0, 0, 0) != source_id("", 0, 0, 0)  # never raises


@pytest.mark.parametrize(
    ("runs", "error"),
    [
        ([[(b"short", [1])]], "a source is 16 bytes, not 5"),
        ([[(A, [-1])]], "end offsets"),
        ([[(A, [2**63])]], "end offsets"),
    ],
)
def test_encoding_refuses_what_it_cannot_write(
    runs: list[list[tuple[bytes, list[int]]]], error: str
) -> None:
    with pytest.raises(ValueError, match=error):
        encode_lines(runs)
    with pytest.raises(ValueError, match="non-negative"):
        source_id("h", -1, 0, 0)


VALID = encode_lines([[(A, [10, 20]), (B, [5])], [(NO_SOURCE, [0, 0])]])


@pytest.mark.parametrize(
    ("value", "entry_counts", "error"),
    [
        (b"", [3, 2], "not a version 1"),
        (b"\x02" + VALID[1:], [3, 2], "not a version 1"),
        (VALID, [3, 2, 0], "truncated"),  # a stream more than the header
        (VALID, [3], "longer than"),  # a stream fewer
        (VALID, [3, 3], "runs for 2 of 3"),  # an entry more
        (VALID, [2, 2], "a run of 1 entries where 0 are left"),  # an entry fewer
        (VALID, [1, 2], "2 runs for 1 entries"),
        (VALID + b"\x00", [3, 2], "longer than"),
        (b"\x01\x01" + A + b"\x00", [1], "a run of 0 entries"),
        (b"\x01\x01" + A + b"\x01\x01", [1], "outside"),  # offset -1
        (b"\x01\x01" + A + b"\x01" + b"\xff" * 10 + b"\x01", [1], "longer than 10 bytes"),
        (b"\x01\x01" + A[:10], [1], "truncated"),
        (b"\x01\x01" + A + b"\x02\x02", [2], "truncated"),
        (b"\x01\x01" + A + b"\x01\x80", [1], "truncated"),
        (b"\x01\x01" + A + b"\x01\x80\x80", [1], "truncated"),
        (b"\x01" + b"\xff" * 9 + b"\x01", [5], "runs for 5 entries"),
    ],
)
def test_a_value_that_does_not_match_its_message_is_refused(
    value: bytes, entry_counts: list[int], error: str
) -> None:
    with pytest.raises(DecodeError, match=error):
        decode_runs(value, entry_counts)
    with pytest.raises(DecodeError, match=error):
        decode_lines(value, entry_counts)


@given(st.binary(max_size=80), st.lists(st.integers(min_value=0, max_value=10), max_size=4))
def test_any_bytes_decode_or_raise_decode_error(value: bytes, entry_counts: list[int]) -> None:
    try:
        runs = decode_runs(value, entry_counts)
    except DecodeError:
        return
    assert counts(runs) == entry_counts


@given(messages, st.data())
def test_a_damaged_value_decodes_or_raises_decode_error(
    message: list[list[tuple[bytes, list[int]]]], data: st.DataObject
) -> None:
    value = bytearray(encode_lines(message))
    position = data.draw(st.integers(min_value=0, max_value=len(value) - 1))
    if data.draw(st.booleans()):
        value[position] ^= data.draw(st.integers(min_value=1, max_value=255))
    else:
        del value[position:]
    with contextlib.suppress(DecodeError):
        decode_runs(bytes(value), counts(message))
