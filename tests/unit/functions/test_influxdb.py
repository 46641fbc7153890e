"""influxdb sink: line protocol mapping, escaping, chunking and classification (pure)."""

from __future__ import annotations

import gzip
import math
import struct

import pytest
from hypothesis import given
from hypothesis import strategies as st

from ferryman import headers as h
from ferryman.wire.remote_write import Sample, TimeSeries, encode_write_request, snappy_compress
from functions._http import Credentials
from functions._records import UnsupportedRecord, skip_reason
from functions._records import decode_series as decode_record
from functions.influxdb.classify import classify, data_at_fault, error_message
from functions.influxdb.config import InfluxDBConfig
from functions.influxdb.encode import (
    Chunk,
    LineEncoder,
    Tally,
    chunk,
    request_body,
    write_target,
)
from workers.records import Record

STALE = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]
TS = 1_700_000_000_123


def config(**overrides: object) -> InfluxDBConfig:
    return InfluxDBConfig.model_validate(
        {"url": "http://influx:8086", "database": "db", **overrides}
    )


def series(labels: dict[str, str], *values: float, ts: int = TS) -> TimeSeries:
    return TimeSeries(
        tuple(sorted(labels.items())), tuple(Sample(v, ts + i) for i, v in enumerate(values))
    )


def encode(s: TimeSeries, cluster: str | None = None, **overrides: object) -> list[str]:
    return [line.decode() for line in LineEncoder(config(**overrides)).lines(s, cluster, Tally())]


# ---- a small line-protocol parser, written from the spec --------------------------------


def _token(text: str, pos: int, stops: str, specials: str, doubled: bool) -> tuple[str, int]:
    """Read up to an unescaped char of ``stops``. A backslash escapes a char of
    ``specials`` (and, when ``doubled``, another backslash); any other is literal."""
    out = []
    while pos < len(text):
        char = text[pos]
        if (
            char == "\\"
            and pos + 1 < len(text)
            and (text[pos + 1] in specials or (doubled and text[pos + 1] == "\\"))
        ):
            out.append(text[pos + 1])
            pos += 2
            continue
        if char in stops:
            break
        out.append(char)
        pos += 1
    return "".join(out), pos


def _string(text: str, pos: int) -> tuple[str, int]:
    assert text[pos] == '"'
    out = []
    pos += 1
    while text[pos] != '"':
        if text[pos] == "\\" and text[pos + 1] in '"\\':
            pos += 1
        out.append(text[pos])
        pos += 1
    return "".join(out), pos + 1


def parse(
    line: str, doubled: bool = False
) -> tuple[str, dict[str, str], dict[str, float | str], int]:
    """measurement, tags, fields, timestamp of one line."""
    assert "\n" not in line
    measurement, pos = _token(line, 0, ", ", ", ", doubled)
    tags: dict[str, str] = {}
    while line[pos] == ",":
        key, pos = _token(line, pos + 1, "=, ", ",= ", doubled)
        assert line[pos] == "=", line
        value, pos = _token(line, pos + 1, ", =", ",= ", doubled)
        assert key not in tags
        tags[key] = value
    assert line[pos] == " ", line
    fields: dict[str, float | str] = {}
    while line[pos] in ", ":
        key, pos = _token(line, pos + 1, "= ,", ",= ", doubled)
        assert line[pos] == "="
        if line[pos + 1] == '"':
            fields[key], pos = _string(line, pos + 1)
        else:
            end = pos + 1
            while line[end] not in ", ":
                end += 1
            fields[key] = float(line[pos + 1 : end])
            pos = end
        if line[pos] == " ":
            break
    return measurement, tags, fields, int(line[pos + 1 :])


# ---- mapping ---------------------------------------------------------------------------


def test_default_layout_is_measurement_per_metric_with_a_value_field() -> None:
    [line] = encode(series({"__name__": "node_load1", "cluster": "alpha", "job": "node"}, 0.5))
    assert line == f"node_load1,cluster=alpha,job=node value=0.5 {TS * 1_000_000}"


def test_tags_are_sorted_by_key_and_empty_values_dropped() -> None:
    [line] = encode(
        series({"__name__": "m", "zeta": "1", "alpha": "2", "empty": "", "Mid": "3"}, 1)
    )
    assert parse(line)[1] == {"Mid": "3", "alpha": "2", "zeta": "1"}
    assert line.startswith("m,Mid=3,alpha=2,zeta=1 ")


def test_cluster_comes_from_the_header_only_when_the_series_lacks_it() -> None:
    assert parse(encode(series({"__name__": "m"}, 1), "beta")[0])[1] == {"cluster": "beta"}
    assert parse(encode(series({"__name__": "m", "cluster": "a"}, 1), "beta")[0])[1] == {
        "cluster": "a"
    }
    assert (
        parse(encode(series({"__name__": "m"}, 1), "beta", cluster_from_header=False)[0])[1] == {}
    )


def test_fixed_measurement_puts_the_metric_name_in_the_field_key() -> None:
    [line] = encode(series({"__name__": "up", "job": "x"}, 1), measurement="prometheus")
    assert parse(line) == ("prometheus", {"job": "x"}, {"up": 1.0}, TS * 1_000_000)


def test_string_fields_take_labels_out_of_the_tags() -> None:
    [line] = encode(
        series({"__name__": "req", "trace": 'id "7" \\ x', "job": "api"}, 3),
        string_fields=["trace"],
    )
    assert parse(line) == (
        "req",
        {"job": "api"},
        {"value": 3.0, "trace": 'id "7" \\ x'},
        TS * 1_000_000,
    )


@pytest.mark.parametrize(
    ("precision", "expected"),
    [("ns", TS * 1_000_000), ("us", TS * 1000), ("ms", TS), ("s", TS // 1000)],
)
def test_timestamps_in_the_configured_precision(precision: str, expected: int) -> None:
    [line] = encode(series({"__name__": "m"}, 1), precision=precision)
    assert parse(line)[3] == expected


@pytest.mark.parametrize(
    "value",
    [0.0, -0.0, 1.0, 0.1, 1e16, -1e-300, 5e-324, 1.7976931348623157e308, 123456789.123456789],
)
def test_values_are_floats_that_parse_back_exactly(value: float) -> None:
    [line] = encode(series({"__name__": "m"}, value))
    assert "i" not in line.split(" ")[1]
    parsed = parse(line)[2]["value"]
    assert parsed == value and math.copysign(1, float(parsed)) == math.copysign(1, value)


def test_nan_inf_and_stale_markers_are_skipped_and_counted() -> None:
    tally = Tally()
    lines = LineEncoder(config()).lines(
        series({"__name__": "m"}, 1.0, math.nan, STALE, math.inf, -math.inf, 2.0), None, tally
    )
    assert [parse(line.decode())[2]["value"] for line in lines] == [1.0, 2.0]
    assert tally.skipped == {"nan": 1, "stale_marker": 1, "inf": 2}
    assert skip_reason(1.0) is None


def test_series_without_a_name_is_skipped_and_counted() -> None:
    tally = Tally()
    assert LineEncoder(config()).lines(series({"job": "x"}, 1, 2), None, tally) == []
    assert tally.skipped == {"no_name": 2}


def test_reserved_time_key_is_renamed_and_counted() -> None:
    tally = Tally()
    [line] = LineEncoder(config()).lines(series({"__name__": "m", "time": "noon"}, 1), None, tally)
    assert parse(line.decode())[1] == {"time_": "noon"}
    assert tally.sanitized == {"tag_key": 1}


def test_the_line_head_is_cached_but_rewrites_are_counted_every_time() -> None:
    encoder = LineEncoder(config())
    tally = Tally()
    s = series({"__name__": "m", "path": "a\nb"}, 1)
    first = encoder.lines(s, None, tally)
    assert encoder.lines(s, None, tally) == first
    assert tally.sanitized == {"tag_value": 2}


# ---- escaping --------------------------------------------------------------------------


def test_escaping_of_each_part_per_the_spec() -> None:
    [line] = encode(
        series({"__name__": "cpu load,x=1", "host name": "a,b=c d", "quote": 'say "hi"'}, 1)
    )
    assert line.startswith('cpu\\ load\\,x=1,host\\ name=a\\,b\\=c\\ d,quote=say\\ "hi" ')
    assert parse(line)[:2] == ("cpu load,x=1", {"host name": "a,b=c d", "quote": 'say "hi"'})


def test_newlines_become_backslash_n_and_are_counted() -> None:
    tally = Tally()
    [line] = LineEncoder(config()).lines(series({"__name__": "m", "msg": "a\nb"}, 1), None, tally)
    assert parse(line.decode())[1] == {"msg": "a\\nb"}
    assert tally.sanitized == {"tag_value": 1}


@pytest.mark.parametrize(
    ("value", "stored", "lossy"),
    [
        ("C:\\Program Files\\x", "C:\\Program Files\\x", False),
        ("C:\\", "C:", True),
        ("a\\,b", "a,b", True),
        ("a\\\\ b", "a b", True),
        ("\\\\", None, True),
    ],
)
def test_backslashes_read_literally_drop_only_what_influxdb_would_misread(
    value: str, stored: str | None, lossy: bool
) -> None:
    tally = Tally()
    [line] = LineEncoder(config()).lines(series({"__name__": "m", "v": value}, 1), None, tally)
    assert parse(line.decode())[1].get("v") == stored
    assert bool(tally.sanitized) is lossy


def test_escape_backslashes_doubles_every_backslash() -> None:
    [line] = encode(
        series({"__name__": "m", "v": "C:\\", "w": "a\\,b"}, 1), escape_backslashes=True
    )
    assert line.startswith("m,v=C:\\\\,w=a\\\\\\,b ")
    assert parse(line, doubled=True)[1] == {"v": "C:\\", "w": "a\\,b"}


SPECIAL = st.text(
    alphabet=st.sampled_from(list(', ="\\=,\t#é☃\U0001f600ab\r'))
    | st.characters(blacklist_categories=("Cs",)),
    min_size=1,
    max_size=20,
)


@given(name=SPECIAL, key=SPECIAL, value=SPECIAL)
def test_text_without_backslashes_or_newlines_round_trips_exactly(
    name: str, key: str, value: str
) -> None:
    name, key, value = (t.replace("\\", "").replace("\n", "") or "x" for t in (name, key, value))
    if key in {"__name__", "time"}:
        key = "k"
    [line] = encode(series({"__name__": name, key: value}, 2.5))
    assert parse(line) == (name, {key: value}, {"value": 2.5}, TS * 1_000_000)


@given(name=SPECIAL, key=SPECIAL, value=SPECIAL)
def test_any_text_round_trips_exactly_with_escaped_backslashes(
    name: str, key: str, value: str
) -> None:
    name, key, value = (t.replace("\n", "") or "x" for t in (name, key, value))
    if key in {"__name__", "time"}:
        key = "k"
    [line] = encode(series({"__name__": name, key: value}, 2.5), escape_backslashes=True)
    assert parse(line, doubled=True) == (name, {key: value}, {"value": 2.5}, TS * 1_000_000)


@given(labels=st.dictionaries(SPECIAL, SPECIAL, max_size=6), name=SPECIAL)
def test_any_text_keeps_the_line_structure_with_literal_backslashes(
    labels: dict[str, str], name: str
) -> None:
    labels.pop("__name__", None)
    tally = Tally()
    lines = LineEncoder(config(cluster_from_header=False)).lines(
        series({"__name__": name, **labels}, 7.0), None, tally
    )
    if not lines:  # the name was nothing but backslashes
        assert tally.skipped == {"no_name": 1}
        return
    measurement, tags, fields, _ = parse(lines[0].decode())
    assert fields == {"value": 7.0}
    assert len(tags) <= len(labels)
    if not tally.sanitized:
        assert measurement == name
        assert tags == {("time_" if k == "time" else k): v for k, v in labels.items()}


# ---- chunks and requests ---------------------------------------------------------------


def test_chunks_respect_max_lines_and_max_bytes_in_order() -> None:
    lines = [(i // 3, f"m value={i} 1".encode()) for i in range(10)]
    by_lines = chunk(lines, max_lines=4, max_bytes=10_000)
    assert [len(c.lines) for c in by_lines] == [4, 4, 2]
    by_bytes = chunk(lines, max_lines=100, max_bytes=30)
    assert all(len(c.body()) <= 30 for c in by_bytes)
    assert [u for c in by_bytes for u in c.lines] == lines
    assert by_lines[0].owners == {0, 1}


def test_a_line_longer_than_max_bytes_travels_alone() -> None:
    big = (0, b"m value=1 " + b"9" * 100)
    chunks = chunk([(0, b"a value=1"), big, (1, b"b value=2")], 100, 50)
    assert [c.lines for c in chunks] == [((0, b"a value=1"),), (big,), ((1, b"b value=2"),)]


@given(
    st.lists(st.tuples(st.integers(0, 5), st.binary(min_size=1, max_size=40)), max_size=60),
    st.integers(1, 10),
    st.integers(41, 200),
)
def test_chunking_keeps_every_line_once_within_limits(
    lines: list[tuple[int, bytes]], max_lines: int, max_bytes: int
) -> None:
    chunks = chunk(lines, max_lines, max_bytes)
    assert [u for c in chunks for u in c.lines] == lines
    assert all(0 < len(c.lines) <= max_lines and len(c.body()) <= max_bytes for c in chunks)


def test_by_owner_splits_a_chunk_per_record_in_order() -> None:
    c = Chunk(((2, b"a"), (0, b"b"), (2, b"c")))
    assert c.by_owner() == [Chunk(((0, b"b"),)), Chunk(((2, b"a"), (2, b"c")))]


def test_gzip_body_decompresses_to_the_lines() -> None:
    c = Chunk(((0, b"m value=1 1"), (0, b"m value=2 2")))
    assert gzip.decompress(request_body(c, True)) == b"m value=1 1\nm value=2 2\n"
    assert request_body(c, False) == b"m value=1 1\nm value=2 2\n"


def test_v1_target() -> None:
    target = write_target(config(retention_policy="short", precision="ms", gzip=True))
    assert target.url == "http://influx:8086/write"
    assert target.params == {"db": "db", "rp": "short", "precision": "ms"}
    assert target.headers["Content-Encoding"] == "gzip"
    assert "Authorization" not in target.headers


def test_v2_target_and_the_token() -> None:
    v2 = InfluxDBConfig(
        url="http://influx:8086/", api="v2", org="o", bucket="b", token="s3cret", precision="us"
    )
    target = write_target(v2)
    assert target.url == "http://influx:8086/api/v2/write"
    assert target.params == {"org": "o", "bucket": "b", "precision": "us"}
    assert v2.credentials() == Credentials(authorization="Token s3cret")
    v1 = config(username="u", password="p")
    assert v1.credentials() == Credentials(basic=("u", "p"))


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"api": "v1"}, "api v1 needs database"),
        ({"api": "v2", "org": "o"}, "api v2 needs org and bucket"),
        ({"api": "v1", "database": "d", "token": "t"}, "token apply to the other api"),
        ({"api": "v2", "org": "o", "bucket": "b", "database": "d"}, "database apply"),
        ({"database": "d", "username": "u"}, "username and password together"),
        ({"database": "d", "measurement": "#m"}, "comment"),
        ({"database": "d", "measurement": "m", "field": "f"}, "field applies"),
        ({"database": "d", "field": "time"}, "reserved"),
        ({"url": "influx:8086", "database": "d"}, "http://"),
    ],
)
def test_config_errors(settings: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        InfluxDBConfig.model_validate({"url": "http://influx:8086", **settings})


# ---- records ---------------------------------------------------------------------------


def test_decode_record_refuses_garbage_and_other_schemas() -> None:
    good = snappy_compress(encode_write_request([series({"__name__": "m"}, 1)]))
    assert decode_record(Record("t", 0, 0, None, good))[0].label("__name__") == "m"
    with pytest.raises(UnsupportedRecord, match="not a remote-write message"):
        decode_record(Record("t", 0, 1, None, b"\x00\xffnot snappy"))
    with pytest.raises(UnsupportedRecord, match="schema"):
        decode_record(Record("t", 0, 2, None, good, ((h.SCHEMA, h.SCHEMA_LOKI_PUSH),)))


# ---- classification of what InfluxDB answers -----------------------------------------


def test_partial_write_is_permanent_with_influxdbs_reason() -> None:
    body = (
        '{"error":"partial write: field type conflict: input field \\"value\\" on '
        'measurement \\"m3\\" is type float, already exists as type integer dropped=1"}\n'
    )
    outcome = classify(400, {"content-type": "application/json"}, body)
    assert outcome.kind == "permanent"
    assert outcome.reason.startswith(
        'HTTP 400: partial write: field type conflict: input field "value" on measurement "m3"'
    )
    assert outcome.reason.endswith("(InfluxDB stored the other points of the request)")
    assert data_at_fault(400)


def test_unparsable_line_is_permanent_and_the_data_is_at_fault() -> None:
    body = '{"error":"unable to parse \'m,case=t1,v=a\\\\ value=1\': invalid tag format"}'
    outcome = classify(400, {}, body)
    assert (outcome.kind, outcome.reason) == (
        "permanent",
        "HTTP 400: unable to parse 'm,case=t1,v=a\\ value=1': invalid tag format",
    )


@pytest.mark.parametrize(
    ("status", "body", "reason"),
    [
        (404, '{"error":"database not found: \\"nope\\""}', 'HTTP 404: database not found: "nope"'),
        (401, '{"error":"authorization failed"}', "HTTP 401: authorization failed"),
        (
            403,
            '{"error":"\\"bob\\" user is not authorized to write to database \\"db\\""}',
            'HTTP 403: "bob" user is not authorized to write to database "db"',
        ),
        (
            401,
            '{"code":"unauthorized","message":"unauthorized access"}',
            "HTTP 401: unauthorized access",
        ),
        (
            404,
            '{"code":"not found","message":"bucket \\"b\\" not found"}',
            'HTTP 404: bucket "b" not found',
        ),
    ],
)
def test_where_or_who_is_wrong_is_permanent(status: int, body: str, reason: str) -> None:
    outcome = classify(status, {}, body)
    assert (outcome.kind, outcome.reason) == ("permanent", reason)
    assert not data_at_fault(status)


@pytest.mark.parametrize(
    ("status", "headers", "body", "delay"),
    [
        (500, {}, '{"error":"timeout"}', None),
        (500, {}, '{"error":"engine: cache maximum memory size exceeded"}', None),
        (503, {"retry-after": "30"}, '{"code":"unavailable","message":"too many requests"}', 30.0),
        (429, {"retry-after": "5"}, '{"code":"too many requests","message":"org exceeded"}', 5.0),
    ],
)
def test_overload_is_retried_with_retry_after(
    status: int, headers: dict[str, str], body: str, delay: float | None
) -> None:
    outcome = classify(status, headers, body)
    assert (outcome.kind, outcome.delay) == ("retry", delay)
    assert outcome.reason.startswith(f"HTTP {status}: ")


def test_too_large_and_v2_retention_refusals_are_the_datas_fault() -> None:
    assert (
        classify(
            413,
            {},
            '{"code":"request too large","message":"unable to read data: '
            'points batch is too large"}',
        ).kind
        == "permanent"
    )
    assert data_at_fault(413) and data_at_fault(422)


def test_error_message_falls_back_to_the_body() -> None:
    assert error_message("<html>bad gateway</html>") == "<html>bad gateway</html>"
    assert error_message('["odd"]') == '["odd"]'
    assert classify(204, {}, "").kind == "ok"
