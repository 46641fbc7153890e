"""The native Loki push encoder (``ferryman_native``) against the Python one: the same
bytes for the same entries, and parts that fit their budget and lose nothing; the split
says truly how many entries each part holds."""

from __future__ import annotations

import pytest
from ferryman_native import loki_push_parts, loki_push_request, loki_push_split
from hypothesis import given, settings
from hypothesis import strategies as st

from ferryman.wire import loki
from ferryman.wire.remote_write import snappy_decompress

LABELS = loki.format_labels({"job": "app", "filename": "/var/log/app.log", "cluster": "zürich"})
OVERHEAD = 32

stamps_st = st.integers(min_value=0, max_value=2**63 - 1)
lines_st = st.text(alphabet=st.characters(exclude_categories=("Cs",)), max_size=300)
entries_st = st.lists(st.tuples(stamps_st, lines_st), max_size=60)


def _python(labels: str, stamps: list[int], lines: list[str]) -> bytes:
    return loki.encode_push_request(
        [loki.Stream(loki.parse_labels(labels), loki.Entries(stamps, lines))]
    )


@settings(max_examples=300, deadline=None)
@given(entries_st)
def test_the_same_bytes_as_the_python_encoder(entries):
    stamps = [s for s, _ in entries]
    lines = [line for _, line in entries]
    assert loki_push_request(LABELS, stamps, lines) == _python(LABELS, stamps, lines)


@settings(max_examples=300, deadline=None)
@given(entries_st, st.integers(min_value=OVERHEAD + 1200, max_value=20_000))
def test_parts_fit_their_budget_and_carry_every_entry_in_order(entries, budget):
    stamps = [s for s, _ in entries]
    lines = [line for _, line in entries]
    parts = loki_push_parts(LABELS, stamps, lines, budget)
    assert parts is not None
    got_stamps: list[int] = []
    got_lines: list[str] = []
    for part in parts:
        streams = loki.decode_push_request(snappy_decompress(part))
        assert [loki.format_labels(s.labels) for s in streams] == [LABELS]
        part_lines = [e.line for e in streams[0].entries]
        assert part_lines, "an empty part"
        assert sum(len(line.encode()) + OVERHEAD for line in part_lines) <= budget
        assert snappy_decompress(part) == _python(
            LABELS, [e.timestamp_ns for e in streams[0].entries], part_lines
        )
        got_stamps += [e.timestamp_ns for e in streams[0].entries]
        got_lines += part_lines
    assert got_stamps == stamps
    assert got_lines == lines
    # Greedy: each part but the last would have overflowed with the next entry.
    ends = [0]
    for part in parts:
        ends.append(ends[-1] + len(loki.decode_push_request(snappy_decompress(part))[0].entries))
    for end in ends[1:-1]:
        start = ends[ends.index(end) - 1]
        assert sum(len(line.encode()) + OVERHEAD for line in lines[start : end + 1]) > budget


def test_declines_what_the_python_path_handles():
    assert loki_push_parts(LABELS, [1, 2], ["short", "x" * 100], 100) is None  # too big
    assert loki_push_parts(LABELS, [1, -1], ["a", "b"], 10_000) is None  # before 1970
    assert loki_push_parts(LABELS, [1, 2**64], ["a", "b"], 10_000) is None  # past 2262
    assert loki_push_parts(LABELS, [], [], 10_000) == []


def test_rejects_columns_of_different_lengths_and_non_text():
    with pytest.raises(ValueError, match="2 timestamps for 1 lines"):
        loki_push_parts(LABELS, [1, 2], ["a"], 10_000)
    with pytest.raises(TypeError):
        loki_push_parts(LABELS, [1], [b"bytes"], 10_000)  # type: ignore[list-item]


@settings(max_examples=300, deadline=None)
@given(entries_st, st.integers(min_value=OVERHEAD + 1200, max_value=20_000))
def test_the_split_gives_the_same_parts_and_their_entry_counts(entries, budget):
    stamps = [s for s, _ in entries]
    lines = [line for _, line in entries]
    split = loki_push_split(LABELS, stamps, lines, budget)
    assert split is not None
    parts, counts = split
    assert parts == loki_push_parts(LABELS, stamps, lines, budget)
    assert sum(counts) == len(entries)
    assert counts == [
        len(loki.decode_push_request(snappy_decompress(part))[0].entries) for part in parts
    ]


def test_the_split_declines_and_refuses_as_the_parts_do():
    assert loki_push_split(LABELS, [1, 2], ["short", "x" * 100], 100) is None
    assert loki_push_split(LABELS, [1, -1], ["a", "b"], 10_000) is None
    assert loki_push_split(LABELS, [], [], 10_000) == ([], [])
    assert loki_push_split(LABELS, [1, 2, 3], ["a" * 40, "b" * 40, "c"], 150) == (
        loki_push_parts(LABELS, [1, 2, 3], ["a" * 40, "b" * 40, "c"], 150),
        [2, 1],
    )
    with pytest.raises(ValueError, match="2 timestamps for 1 lines"):
        loki_push_split(LABELS, [1, 2], ["a"], 10_000)
