"""Oversized journal entries keep their head, the start of MESSAGE and every field
after it, read in chunks of any size."""

from __future__ import annotations

import json

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.logs.journalcut import cut_oversized
from edge.logs.tailer import TRUNCATION_MARKER


def _cut(line: bytes, limit: int, chunk: int) -> tuple[bytes | None, bytes]:
    """cut_oversized over ``line`` (which ends in a newline) read ``chunk`` bytes at a
    time after its head; and what is left unread."""
    head, rest = line[: limit + 1], line[limit + 1 :]
    pos = 0

    def more() -> bytes:
        nonlocal pos
        piece = rest[pos : pos + chunk]
        if b"\n" in piece:
            piece = piece[: piece.index(b"\n") + 1]
        pos += len(piece)
        return piece

    return cut_oversized(head, more, limit), rest[pos:]


def _line(fields: dict[str, object]) -> bytes:
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"


message_st = st.text(
    alphabet=st.characters(exclude_categories=("Cs",)), min_size=200, max_size=3000
)


@settings(max_examples=300, deadline=None)
@given(message_st, st.integers(min_value=1, max_value=97), st.booleans())
def test_message_cut_and_the_fields_around_it_kept(message, chunk, spaced):
    fields = {
        "__CURSOR": "s=1;i=2",
        "PRIORITY": "6",
        "MESSAGE": message,
        "_SYSTEMD_UNIT": "app.service",
        "__REALTIME_TIMESTAMP": "17",
    }
    line = _line(fields)
    if spaced:
        line = line.replace(b'"MESSAGE":"', b'"MESSAGE" : "', 1)
    limit = 180
    if len(line) <= limit + 1:
        return
    cut, left = _cut(line, limit, chunk)
    assert left == b""  # the line was read to its end
    assert cut is not None and cut.endswith(b"\n")
    assert len(cut) <= limit + 1
    got = json.loads(cut)
    assert {k: v for k, v in got.items() if k != "MESSAGE"} == {
        k: v for k, v in fields.items() if k != "MESSAGE"
    }
    assert got["MESSAGE"].endswith(TRUNCATION_MARKER)
    assert message.startswith(got["MESSAGE"][: -len(TRUNCATION_MARKER)])


def test_escapes_across_chunk_boundaries() -> None:
    message = 'say "hi" \\' * 100 + '\\"' * 50 + "\u0001é"
    line = _line({"MESSAGE": message, "_PID": "7", "__CURSOR": "c"})
    for chunk in range(1, 12):
        cut, _ = _cut(line, 60, chunk)
        assert cut is not None
        got = json.loads(cut)
        assert got["_PID"] == "7" and got["__CURSOR"] == "c"
        assert message.startswith(got["MESSAGE"][: -len(TRUNCATION_MARKER)])


def test_skipped_when_something_else_is_what_is_big() -> None:
    for fields in (
        {"MESSAGE": "short", "_CMDLINE": "x" * 5000, "__CURSOR": "c"},
        {"MESSAGE": list(range(2000)), "__CURSOR": "c"},  # a binary MESSAGE
        {"__CURSOR": "c", "OTHER": "y" * 5000},
    ):
        cut, left = _cut(_line(fields), 100, 64)
        assert cut is None
        assert left == b""


def test_a_line_ending_inside_message_is_not_an_entry() -> None:
    cut, _ = _cut(b'{"__CURSOR":"c","MESSAGE":"' + b"x" * 500, 100, 64)
    assert cut is None


def test_fields_after_message_too_big_are_skipped() -> None:
    line = _line({"MESSAGE": "m" * 500, "_CMDLINE": "z" * 500, "__CURSOR": "c"})
    cut, left = _cut(line, 100, 64)
    assert cut is None and left == b""
