"""Encoding a stream at a time gives the bytes that encoding entry by entry gave.

``_reference`` is the PushRequest encoder as it was before streams were encoded by
column: the bytes the fast one must produce, whatever the timestamps (across second
and varint-width bounds, dense or sparse, decreasing, negative), lines (ASCII or
not, of any size) and structured metadata.
"""

from __future__ import annotations

from collections.abc import Iterable
from itertools import accumulate

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ferryman.wire.loki import (
    Entries,
    Entry,
    Stream,
    decode_push_request,
    encode_push_request,
    format_labels,
)
from ferryman.wire.protobuf import bytes_field, varint_field


def _reference_entry(entry: Entry) -> bytes:
    seconds, nanos = divmod(entry.timestamp_ns, 1_000_000_000)
    stamp = varint_field(1, seconds) + (varint_field(2, nanos) if nanos else b"")
    out = bytes_field(1, stamp) + bytes_field(2, entry.line.encode())
    if entry.metadata:
        out += b"".join(
            bytes_field(3, bytes_field(1, name.encode()) + bytes_field(2, value.encode()))
            for name, value in entry.metadata
        )
    return out


def _reference(streams: Iterable[Stream]) -> bytes:
    out = []
    for stream in streams:
        body = bytes_field(1, format_labels(stream.labels).encode())
        body += b"".join(bytes_field(2, _reference_entry(e)) for e in stream.entries)
        out.append(bytes_field(1, body))
    return b"".join(out)


names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,15}", fullmatch=True)
label_sets = st.dictionaries(names, st.text(max_size=20), min_size=1, max_size=4)
# Nanoseconds at and around the bounds where their varint grows a byte, and the second's.
EDGES = [0, 1, 127, 128, 16_383, 16_384, 2**21 - 1, 2**21, 2**28 - 1, 2**28, 999_999_999]
texts = st.one_of(
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=130),
    st.text(max_size=40),
    st.builds(
        lambda char, count: char * count, st.sampled_from(["x", "é", "€"]), st.integers(100, 17_000)
    ),
)
metadata = st.lists(st.tuples(names, st.text(max_size=8)), max_size=2).map(tuple)


@st.composite
def rising_stamps(draw: st.DrawFn, count: int) -> list[int]:
    second = draw(st.sampled_from([0, 1, 1_700_000_000, 2**40]))
    first = second * 1_000_000_000 + draw(st.sampled_from(EDGES)) - draw(st.integers(0, 300))
    steps = draw(
        st.lists(
            st.sampled_from([0, 1, 2, 97, 113, 300, 16_384, 2**21, 10**9]),
            min_size=count,
            max_size=count,
        )
    )
    return list(accumulate(steps, initial=max(first, 0)))[1:]


@st.composite
def entry_lists(draw: st.DrawFn) -> list[Entry]:
    lines = draw(st.lists(texts, max_size=80))
    if draw(st.booleans()):
        stamps = draw(rising_stamps(len(lines)))
    else:
        stamps = draw(
            st.lists(st.integers(-2 * 10**9, 2**62), min_size=len(lines), max_size=len(lines))
        )
    with_metadata = draw(st.integers(0, 9)) == 0
    return [
        Entry(stamp, line, draw(metadata) if with_metadata else ())
        for stamp, line in zip(stamps, lines, strict=True)
    ]


@settings(max_examples=400, deadline=None)
@given(st.lists(st.tuples(label_sets, entry_lists()), max_size=3))
def test_same_bytes_as_entry_by_entry(streams: list[tuple[dict[str, str], list[Entry]]]) -> None:
    as_lists = [Stream(labels, entries) for labels, entries in streams]
    expected = _reference(as_lists)
    assert encode_push_request(as_lists) == expected
    if not any(e.metadata for _, entries in streams for e in entries):
        by_column = [Stream(labels, Entries.of(entries)) for labels, entries in streams]
        assert encode_push_request(by_column) == expected


@settings(max_examples=100, deadline=None)
@given(
    st.integers(0, 2**40),
    st.lists(st.integers(0, 400), min_size=1, max_size=3000),
    st.sampled_from(["plain ascii line", "ünïcode ✓"]),
)
def test_long_dense_runs_as_the_shipper_makes(start: int, steps: list[int], text: str) -> None:
    stamps = list(accumulate(steps, initial=start))[1:]
    lines = [f"{text} {i}" for i in range(len(stamps))]
    entries = Entries(stamps, lines)
    expected = _reference([Stream({"job": "x"}, list(entries))])
    assert encode_push_request([Stream({"job": "x"}, entries)]) == expected


def test_entries_by_column() -> None:
    entries = Entries.of([Entry(1, "a"), Entry(2, "b")])
    entries.append(Entry(3, "c"))
    entries.extend_columns([4, 5], ["d", "e"])
    assert len(entries) == 5 and entries[0] == Entry(1, "a") and entries[-1] == Entry(5, "e")
    assert entries[1:3] == Entries([2, 3], ["b", "c"])
    assert entries == [Entry(i + 1, c) for i, c in enumerate("abcde")]
    assert [Entry(i + 1, c) for i, c in enumerate("abcde")] == entries
    assert Entries.of(entries) is entries
    decoded = decode_push_request(encode_push_request([Stream({"a": "b"}, entries)]))
    assert list(decoded[0].entries) == list(entries)
    with pytest.raises(ValueError, match="metadata"):
        entries.append(Entry(6, "f", (("k", "v"),)))
    with pytest.raises(ValueError, match="metadata"):
        Entries.of([Entry(6, "f", (("k", "v"),))])
    with pytest.raises(ValueError):
        Entries([1], [])
    with pytest.raises(ValueError):
        entries.extend_columns([1], [])
