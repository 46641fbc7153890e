"""The native encoder of the ``ferryman.lines`` offsets writes the bytes the Python
one does (its oracle), and declines what it does not handle."""

from __future__ import annotations

from ferryman_native import lines_deltas
from hypothesis import given
from hypothesis import strategies as st

from ferryman.wire.lines import decode_lines, encode_lines

SOURCE = bytes(range(16))
offsets = st.lists(st.integers(min_value=0, max_value=2**63 - 1), min_size=1, max_size=200)


@given(offsets)
def test_the_same_bytes_as_python(ends: list[int]) -> None:
    native = encode_lines([[(SOURCE, ends)]], lines_deltas)
    assert native == encode_lines([[(SOURCE, ends)]])
    assert [o for _, o in decode_lines(native, [len(ends)])[0]] == ends  # type: ignore[misc]


def test_a_negative_offset_is_declined() -> None:
    assert lines_deltas([3, -1]) is None
