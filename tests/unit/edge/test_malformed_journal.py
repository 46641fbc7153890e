"""Whatever journalctl's pipe carries, the journal reader keeps going.

``parse_entry`` turns a line into an entry, None (no MESSAGE: skipped) or
MalformedEntry, never another exception: in the reader thread one would end the
journal source for good. An entry it returns is safe downstream: UTF-8 encodable
text, a timestamp an int64 holds, a cursor that either is a journald cursor or is
kept off journalctl's command line. Lines are random bytes, JSON objects of any
shape (non-string fields, byte arrays out of range, huge numbers, deep nesting,
escaped lone surrogates), and recorded entries truncated or with a byte flipped;
``cut_oversized`` and the reader's pump see the same.
"""

from __future__ import annotations

import io
import json
import os
import sys
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.logs.journal import (
    JournalConfig,
    JournalEntry,
    JournalSource,
    MalformedEntry,
    cursor_time,
    journalctl_command,
    parse_entry,
)
from edge.logs.journalcut import cut_oversized
from ferryman.wire.loki import Entry, Stream, encode_push_request, format_labels

CHECKS = settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
CURSOR = (
    "s=401170b4cf644c95b689817240d6974f;i=1;b=0123456789abcdef0123456789abcdef;"
    "m=1;t=6611f7b04ff28;x=f5ef55d813f90592"
)
RECORDED = (
    b'{"SYSLOG_IDENTIFIER":"app","_SYSTEMD_UNIT":"app.service","__CURSOR":"'
    + CURSOR.encode()
    + b'","_HOSTNAME":"h1","__REALTIME_TIMESTAMP":"1795637696069416",'
    b'"MESSAGE":"line 0 \\u001b[1m\xc3\xa9","PRIORITY":"6","__MONOTONIC_TIMESTAMP":"1"}'
)
BINARY = (
    b'{"PRIORITY":"6","MESSAGE":[98,105,110,0,255,254,111,107],'
    b'"__REALTIME_TIMESTAMP":"1795637698075159","__CURSOR":"' + CURSOR.encode() + b'"}'
)
OVERSIZED = json.dumps(
    {"__CURSOR": CURSOR, "__REALTIME_TIMESTAMP": "1", "MESSAGE": 'x\u00e9\\"' * 200, "_PID": "7"}
).encode()
CONFIGS = [JournalConfig(), JournalConfig(json=True, labels={"job": "j"})]


def safe(entry: JournalEntry, config: JournalConfig) -> None:
    """What an entry must be for the shipper: encodable, in range, its cursor harmless."""
    assert isinstance(entry, JournalEntry)
    assert isinstance(entry.line, str) and isinstance(entry.truncated, bool)
    assert 0 <= entry.timestamp_ns < 2**63
    assert all(isinstance(k, str) and isinstance(v, str) for k, v in entry.labels.items())
    entry.cursor.encode()
    encode_push_request([Stream(entry.labels, [Entry(entry.timestamp_ns, entry.line)])])
    format_labels(entry.labels).encode()
    if cursor_time(entry.cursor) is not None:  # it goes on journalctl's command line
        for arg in journalctl_command(config, entry.cursor, resuming=True):
            assert "\x00" not in arg
            os.fsencode(arg)


def check(raw: bytes | str, config: JournalConfig) -> None:
    try:
        entry = parse_entry(raw, config, max_line_bytes=64)
    except MalformedEntry:
        return
    if entry is not None:
        safe(entry, config)


# --- lines -------------------------------------------------------------------------------

json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=10)),
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=4), inner, max_size=3)
    ),
    max_leaves=12,
)
byte_arrays = st.lists(
    st.one_of(
        st.integers(0, 255), st.integers(-300, 300), st.sampled_from([2**64, True, None, "a"])
    ),
    max_size=8,
)
field_values = st.one_of(
    st.text(max_size=20),
    byte_arrays,
    json_values,
    st.lists(st.one_of(st.text(max_size=5), st.none(), byte_arrays), max_size=3),
)
# Raw JSON text, for what json.dumps would not write.
tokens = st.sampled_from(
    [
        "1e400",
        "-1e400",
        "NaN",
        "Infinity",
        "-Infinity",
        "1" * 5000,
        "-1",
        "1.5",
        "true",
        '"\\ud800"',
        '"\\udfff x"',
        '"\\ud83d\\ude00"',
        '"a\\u0000b"',
        '"1_000"',
        '"\\u0661"',
        '"\\u00b2"',
        '"06"',
        '"-7"',
        '"7"',
        '"9223372036854775807"',
        '"18446744073709551615"',
        '"' + "f" * 300 + '"',
        "[" * 3000 + "]" * 3000,
        "[" * 3000,
        '{"a":' * 500 + "1" + "}" * 500,
        "[[[[[[1]]]]]]",
        "[1,300]",
        "[]",
        "{}",
        '"s=1;t=' + "f" * 40 + '"',
        '"s=\\u0000;t=1"',
        '"s=\\ud800;t=1"',
        '"t=1\\nx"',
    ]
)
names = st.sampled_from(
    [
        "MESSAGE",
        "PRIORITY",
        "__CURSOR",
        "__REALTIME_TIMESTAMP",
        "_PID",
        "SYSLOG_IDENTIFIER",
        "",
        "\\ud800",
        "é",
        "__X",
    ]
)


@st.composite
def entries(draw: st.DrawFn) -> str:
    """A JSON object with the fields an entry has, each possibly odd, as text."""
    fields: dict[str, str] = {
        "__CURSOR": json.dumps(CURSOR),
        "__REALTIME_TIMESTAMP": '"1795637696069416"',
    }
    for _ in range(draw(st.integers(1, 5))):
        value = draw(st.one_of(tokens, field_values.map(json.dumps)))
        fields[draw(names)] = value
    return "{" + ",".join(f'"{name}":{value}' for name, value in fields.items()) + "}"


@st.composite
def broken(draw: st.DrawFn) -> bytes:
    raw = draw(
        st.one_of(
            st.sampled_from([RECORDED, BINARY]),
            entries().map(lambda t: t.encode("utf-8", "surrogatepass")),
        )
    )
    if draw(st.booleans()):
        return raw[: draw(st.integers(0, len(raw)))]
    at = draw(st.integers(0, len(raw) - 1))
    return raw[:at] + bytes([raw[at] ^ draw(st.integers(1, 255))]) + raw[at + 1 :]


lines = st.one_of(
    entries().map(str.encode),
    entries(),
    broken(),
    st.binary(max_size=100),
    field_values.map(json.dumps).map(str.encode),
)


@CHECKS
@given(lines, st.sampled_from(CONFIGS))
def test_a_line_is_an_entry_a_skip_or_malformed(raw: bytes | str, config: JournalConfig) -> None:
    check(raw, config)


@CHECKS
@given(st.text(max_size=60))
def test_cursor_time_is_a_time_or_none(cursor: str) -> None:
    at = cursor_time(cursor)
    assert at is None or 0 <= at < 2**64 / 1e6
    assert all("\x00" not in a for a in journalctl_command(CONFIGS[0], cursor, 0.0))


# --- the oversized path and the reader ---------------------------------------------------


@CHECKS
@given(st.binary(max_size=300), st.lists(st.binary(max_size=40), max_size=8), st.integers(1, 200))
def test_cut_oversized_reads_to_the_end_and_returns_bytes_or_none(
    head: bytes, chunks: list[bytes], limit: int
) -> None:
    pieces = iter([*chunks, b"\n"])
    got = cut_oversized(head.replace(b"\n", b" "), lambda: next(pieces, b""), limit)
    assert got is None or isinstance(got, bytes)
    if got is not None:
        check(got, CONFIGS[0])


@settings(max_examples=60, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.lists(
        st.one_of(
            lines,
            st.sampled_from([RECORDED, b" ", OVERSIZED]),
            st.just(RECORDED[:40] + b'"MESSAGE":"' + b"x" * 400 + b'"}'),
            st.just(OVERSIZED).flatmap(lambda raw: st.integers(0, len(raw)).map(lambda n: raw[:n])),
        ),
        max_size=8,
    )
)
def test_the_reader_never_stops_on_a_bad_line(raws: list[bytes | str]) -> None:
    data = b"\n".join(r.encode("utf-8", "surrogatepass") if isinstance(r, str) else r for r in raws)
    source = JournalSource(JournalConfig(max_entry_bytes=300), max_line_bytes=64)
    buffered = source._pump(io.BytesIO(data))
    read = source.read(100)
    assert buffered == len(read)
    for entry in read:
        safe(entry, source.config)
    if source.last_cursor is not None:
        journalctl_command(source.config, source.last_cursor)


def test_the_reader_keeps_an_oversized_entry_among_bad_lines() -> None:
    data = b"\n".join([b"[" * 100_000, OVERSIZED, b"\xff", RECORDED, b"{}"]) + b"\n"
    source = JournalSource(JournalConfig(max_entry_bytes=1000), max_line_bytes=1000)
    assert source._pump(io.BytesIO(data)) == 2
    cut, recorded = source.read()
    assert cut.truncated and cut.labels["__journal__pid"] == "7"
    assert recorded.line == "line 0 \x1b[1m\u00e9" and not recorded.truncated
    assert source.errors == {"malformed_entry": 2, "oversized_entry": 2}


# --- what was broken ---------------------------------------------------------------------


def entry_of(**fields: str) -> bytes:
    base = {
        "__CURSOR": json.dumps(CURSOR),
        "__REALTIME_TIMESTAMP": '"1795637696069416"',
        "MESSAGE": '"m"',
    }
    return ("{" + ",".join(f'"{k}":{v}' for k, v in {**base, **fields}.items()) + "}").encode()


@pytest.mark.parametrize(
    "raw",
    [
        b"[" * 100_000,  # was RecursionError, from json.loads
        entry_of(__REALTIME_TIMESTAMP="1e400"),  # was OverflowError: int(inf)
        entry_of(__REALTIME_TIMESTAMP="Infinity"),
        entry_of(__REALTIME_TIMESTAMP="NaN"),
        entry_of(__REALTIME_TIMESTAMP='"18446744073709551615"'),  # ns beyond int64
        entry_of(__REALTIME_TIMESTAMP="-1"),
        entry_of(__REALTIME_TIMESTAMP="1" * 5000),
        entry_of(MESSAGE="[1,300]"),
        entry_of(MESSAGE="[1,-1]"),
        b'{"__CURSOR":"c","__REALTIME_TIMESTAMP":"1","MESSAGE":"\xff"}',  # not UTF-8
        b'{"__CURSOR":"c","__REALTIME_TIMESTAMP":"1","MESSAGE":"\xed\xa0\x80"}',  # a surrogate
        b"\xef\xbb\xbf" + entry_of(),  # a byte order mark
        b"",
        b"null",
        b'"MESSAGE"',
    ],
)
def test_malformed(raw: bytes) -> None:
    with pytest.raises(MalformedEntry):
        parse_entry(raw, JournalConfig())


def _at_depth(frames: int, call: Callable[[], object]) -> object:
    return call() if frames <= 0 else _at_depth(frames - 1, call)


def _depth() -> int:
    frame, depth = sys._getframe(), 0
    while frame is not None:
        frame, depth = frame.f_back, depth + 1  # type: ignore[assignment]
    return depth


def test_deep_fields_near_the_recursion_limit() -> None:
    # json.loads reads as deep as the stack allows and raised RecursionError beyond
    # (not a ValueError); reading the fields then recurses as deep again. Whatever
    # room the caller leaves, the outcome is an entry or MalformedEntry.
    deep = entry_of(
        MESSAGE="[" * 200 + '"m"' + "]" * 200,
        X='{"a":' * 200 + "[1]" + "}" * 200,
        Y="[" * 200 + "[1,2]" + "]" * 200,
    )
    room = sys.getrecursionlimit() - _depth()
    outcomes = set()
    for spare in range(30, 500, 3):
        try:
            _at_depth(room - spare, lambda: parse_entry(deep, JournalConfig()))
            outcomes.add("entry")
        except MalformedEntry:
            outcomes.add("malformed")
    assert outcomes == {"entry", "malformed"}


def test_a_priority_that_is_a_digit_but_not_a_level() -> None:
    # "²".isdigit(), but int("²") was ValueError.
    for priority in ('"\\u00b2"', '"\\u0661"', '"' + "7" * 5000 + '"', '"06"'):
        entry = parse_entry(entry_of(PRIORITY=priority), JournalConfig())
        assert entry is not None and "__journal_priority_keyword" not in entry.labels
    entry = parse_entry(entry_of(PRIORITY='"3"'), JournalConfig())
    assert entry is not None and entry.labels["__journal_priority_keyword"] == "error"


def test_escaped_lone_surrogates_are_replaced() -> None:
    # They were kept, and the Loki encoder raised UnicodeEncodeError on the line.
    raw = entry_of(**{"MESSAGE": '"a\\ud800b"', "X_\u00e9": '"\\udfff"', "__CURSOR": '"c\\ud800"'})
    for config in CONFIGS:
        entry = parse_entry(raw, config)
        assert entry is not None
        safe(entry, config)
        assert entry.cursor == "c\ufffd"
        assert entry.labels["__journal_x_\u00e9"] == "\ufffd"
    entry = parse_entry(raw, CONFIGS[0])
    assert entry is not None and entry.line == "a\ufffdb"
    pair = parse_entry(entry_of(MESSAGE='"\\ud83d\\ude00"'), CONFIGS[0])
    assert pair is not None and pair.line == "\U0001f600"


@pytest.mark.parametrize(
    "cursor",
    [
        "s=1;t=" + "f" * 300,  # was OverflowError: int too large to convert to float
        "s=\x00;t=1",  # would have gone to journalctl's command line: ValueError from exec
        "s=\ud800;t=1",  # UnicodeEncodeError from exec
        "s=1;t=-5",
        "s=1;t= 5",
        "s=1;t=0x5",
        "s=1;t=5_0",
        "t=",
    ],
)
def test_not_a_cursor(cursor: str) -> None:
    assert cursor_time(cursor) is None
    assert not any(
        a.startswith("--after-cursor") for a in journalctl_command(JournalConfig(), cursor, 0.0)
    )


def test_recorded_entries_still_parse() -> None:
    entry = parse_entry(RECORDED, JournalConfig())
    assert entry is not None and entry.line == "line 0 \x1b[1m\u00e9"
    assert entry.timestamp_ns == 1795637696069416000
    assert entry.labels["__journal_priority_keyword"] == "info"
    assert cursor_time(entry.cursor) == int("6611f7b04ff28", 16) / 1e6
    binary = parse_entry(BINARY, JournalConfig())
    assert binary is not None and binary.line == "bin\x00\ufffd\ufffdok"
