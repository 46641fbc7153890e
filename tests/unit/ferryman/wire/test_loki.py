from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman.wire.loki import (
    Entry,
    Stream,
    decode_push_request,
    encode_push_request,
    format_labels,
    parse_labels,
)
from ferryman.wire.protobuf import DecodeError

names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,15}", fullmatch=True)
label_sets = st.dictionaries(names, st.text(max_size=20), min_size=1, max_size=6)
entries = st.lists(
    st.builds(Entry, st.integers(min_value=0, max_value=2**62), st.text(max_size=50)), max_size=5
)


@given(label_sets)
def test_label_text_round_trips(labels: dict[str, str]) -> None:
    assert parse_labels(format_labels(labels)) == labels


@given(st.lists(st.builds(Stream, label_sets, entries), max_size=4))
def test_push_request_round_trips(streams: list[Stream]) -> None:
    decoded = decode_push_request(encode_push_request(streams))
    assert [(dict(s.labels), list(s.entries)) for s in decoded] == [
        (dict(s.labels), list(s.entries)) for s in streams
    ]


@pytest.mark.parametrize("bad", ['a="b"', "{a=b}", '{a="b}'])
def test_bad_label_text(bad: str) -> None:
    with pytest.raises(DecodeError):
        parse_labels(bad)
