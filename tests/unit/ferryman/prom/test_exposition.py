"""Prometheus text 0.0.4 and OpenMetrics 1.0 parsing: examples, every error class, properties."""

from __future__ import annotations

import dataclasses
import gc
import math
import pickle
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from ferryman.prom import exposition
from ferryman.prom.exposition import (
    ACCEPT,
    MetricFamily,
    ParseError,
    ScrapedSample,
    negotiate_accept,
    parse,
)

TEXT = "text/plain; version=0.0.4; charset=utf-8"
OM = "application/openmetrics-text; version=1.0.0; charset=utf-8"
INF = math.inf
DATA = Path(__file__).parent / "data"


def text(body: str) -> tuple[list[ScrapedSample], dict[str, MetricFamily]]:
    return parse(body.encode(), TEXT)


def om(body: str) -> tuple[list[ScrapedSample], dict[str, MetricFamily]]:
    return parse(body.encode(), OM)


def rows(samples: list[ScrapedSample]) -> list[tuple[object, ...]]:
    """Samples as comparable tuples (NaN made equal to itself)."""
    return [
        (s.name, s.labels, "NaN" if math.isnan(s.value) else s.value, s.timestamp_ms)
        for s in samples
    ]


def error(body: str | bytes, content_type: str) -> ParseError:
    raw = body.encode() if isinstance(body, str) else body
    with pytest.raises(ParseError) as info:
        parse(raw, content_type)
    return info.value


# --- the public surface -------------------------------------------------------------


def test_accept_header_prefers_openmetrics_like_prometheus() -> None:
    assert negotiate_accept() == ACCEPT
    assert ACCEPT == (
        "application/openmetrics-text;version=1.0.0;escaping=underscores;q=0.6,"
        "application/openmetrics-text;version=0.0.1;q=0.5,"
        "text/plain;version=0.0.4;q=0.4,"
        "*/*;q=0.3"
    )


def test_parse_error_is_a_value_error_naming_the_line() -> None:
    err = error("ok 1\nbad-name 1\n", TEXT)
    assert isinstance(err, ValueError)
    assert err.line == 2
    assert str(err).startswith("line 2: ")
    assert str(err) == f"line 2: {err.reason}"
    copy = pickle.loads(pickle.dumps(err))
    assert (copy.line, copy.reason, str(copy)) == (err.line, err.reason, str(err))


def test_samples_are_ordinary_frozen_dataclasses() -> None:
    [sample], _ = text('a{b="c"} 1.5 7\n')
    built = ScrapedSample("a", (("b", "c"),), 1.5, 7)
    assert sample == built
    assert hash(sample) == hash(built)
    assert repr(sample) == repr(built)
    with pytest.raises(dataclasses.FrozenInstanceError):
        sample.value = 2.0  # type: ignore[misc]


@pytest.mark.parametrize("enabled", [True, False])
def test_gc_state_is_restored(enabled: bool) -> None:
    was = gc.isenabled()
    try:
        gc.enable() if enabled else gc.disable()
        text("a 1\n")
        assert gc.isenabled() is enabled
        with pytest.raises(ParseError):
            text("a b\n")
        assert gc.isenabled() is enabled
    finally:
        gc.enable() if was else gc.disable()


@pytest.mark.parametrize(
    ("content_type", "is_openmetrics"),
    [
        (OM, True),
        ("application/openmetrics-text;version=0.0.1", True),
        ("APPLICATION/OpenMetrics-Text", True),
        ("application/openmetrics-text; version=2.0.0", True),
        (TEXT, False),
        ("text/plain", False),
        ("text/plain;version=1.0.0;escaping=underscores", False),
        ("", False),
        ("application/json", False),
        (";;garbage", False),
    ],
)
def test_content_type_chooses_the_format(content_type: str, is_openmetrics: bool) -> None:
    body = b"a 1\n"  # Valid 0.0.4; OpenMetrics wants '# EOF'.
    if is_openmetrics:
        assert "missing '# EOF'" in error(body, content_type).reason
    else:
        assert parse(body, content_type)[0] == [ScrapedSample("a", (), 1.0, None)]


# --- text format 0.0.4 ------------------------------------------------------------------

TEXT_EXAMPLE = (
    "# A comment that is not metadata.\n"
    "# HELP http_requests_total Requests served, by path.\n"
    "# TYPE http_requests_total counter\n"
    'http_requests_total{method="post",code="200"} 1027 1395066363000\n'
    'http_requests_total{method="post",code="400"}    3 1395066363000\n'
    "\n"
    r'# HELP file_access_seconds Last access\ntime of C:\\DIR, "quoted" \a.' + "\n"
    r'file_access_seconds{path="C:\\DIR\\FILE.TXT",error="Cannot find:\n\"F.TXT\""} 1.458255915e9'
    "\n"
    "minimal 12.47\n"
    'weird{problem="division by zero"} +Inf -3982045\n'
    '\t tabbed \t{ a = "b" , }\t-0.5  7 \t\n'
    "   \t\n"
    "# TYPE latency_seconds histogram\n"
    'latency_seconds_bucket{le="0.05"} 24054\n'
    'latency_seconds_bucket{le="+Inf"} 144320\n'
    "latency_seconds_sum 53423\n"
    "latency_seconds_count 144320\n"
    "  # TYPE rpc_seconds summary\n"
    'rpc_seconds{quantile="0.5"} 4773\n'
    "rpc_seconds_sum 1.7560473e+07\n"
    "rpc_seconds_count 2693\n"
    "empty_set{} 0\n"
    'no_space{a="b"}1\n'
    "last_line_without_newline NaN"
)


def test_text_example() -> None:
    samples, families = text(TEXT_EXAMPLE)
    assert rows(samples) == [
        ("http_requests_total", (("method", "post"), ("code", "200")), 1027.0, 1395066363000),
        ("http_requests_total", (("method", "post"), ("code", "400")), 3.0, 1395066363000),
        (
            "file_access_seconds",
            (("path", "C:\\DIR\\FILE.TXT"), ("error", 'Cannot find:\n"F.TXT"')),
            1.458255915e9,
            None,
        ),
        ("minimal", (), 12.47, None),
        ("weird", (("problem", "division by zero"),), INF, -3982045),
        ("tabbed", (("a", "b"),), -0.5, 7),
        ("latency_seconds_bucket", (("le", "0.05"),), 24054.0, None),
        ("latency_seconds_bucket", (("le", "+Inf"),), 144320.0, None),
        ("latency_seconds_sum", (), 53423.0, None),
        ("latency_seconds_count", (), 144320.0, None),
        ("rpc_seconds", (("quantile", "0.5"),), 4773.0, None),
        ("rpc_seconds_sum", (), 1.7560473e7, None),
        ("rpc_seconds_count", (), 2693.0, None),
        ("empty_set", (), 0.0, None),
        ("no_space", (("a", "b"),), 1.0, None),
        ("last_line_without_newline", (), "NaN", None),
    ]
    assert families == {
        "http_requests_total": MetricFamily(
            "http_requests_total", "counter", "Requests served, by path.", ""
        ),
        # 0.0.4 HELP decodes only \\ and \n; other sequences stay as written.
        "file_access_seconds": MetricFamily(
            "file_access_seconds", "untyped", 'Last access\ntime of C:\\DIR, "quoted" \\a.', ""
        ),
        "minimal": MetricFamily("minimal", "untyped", "", ""),
        "weird": MetricFamily("weird", "untyped", "", ""),
        "tabbed": MetricFamily("tabbed", "untyped", "", ""),
        "latency_seconds": MetricFamily("latency_seconds", "histogram", "", ""),
        "rpc_seconds": MetricFamily("rpc_seconds", "summary", "", ""),
        "empty_set": MetricFamily("empty_set", "untyped", "", ""),
        "no_space": MetricFamily("no_space", "untyped", "", ""),
        "last_line_without_newline": MetricFamily("last_line_without_newline", "untyped", "", ""),
    }


def test_text_label_value_escapes() -> None:
    [sample], _ = text(r'a{b="q\"uo\\te\nnl\tkept\\",c="",d="}{,= #"} 1' + "\n")
    assert sample.labels == (("b", 'q"uo\\te\nnl\\tkept\\'), ("c", ""), ("d", "}{,= #"))


def test_text_raw_unicode_and_null_in_label_values() -> None:
    [sample], _ = text('a{b="\u00e9\u4e2d\x00\r\u2028"} 1\n')
    assert sample.labels == (("b", "\u00e9\u4e2d\x00\r\u2028"),)


@pytest.mark.parametrize(
    ("token", "value"),
    [
        ("1e3", 1000.0),
        ("1E3", 1000.0),
        ("+Inf", INF),
        ("-Inf", -INF),
        ("inf", INF),
        ("+infinity", INF),
        ("-Infinity", -INF),
        (".5", 0.5),
        ("5.", 5.0),
        ("1.e2", 100.0),
        ("-0", -0.0),
        ("0005", 5.0),
        ("1e-400", 0.0),  # Underflow is not an error in Go.
        ("18446744073709551615", 18446744073709551615.0),
    ],
)
def test_values_as_go_parse_float_reads_them(token: str, value: float) -> None:
    [sample], _ = text(f"a {token}\n")
    assert sample.value == value
    assert math.copysign(1, sample.value) == math.copysign(1, value)


@pytest.mark.parametrize("token", ["NaN", "nan", "Nan", "NAN"])
def test_nan_spellings(token: str) -> None:
    [sample], _ = text(f"a {token}\n")
    assert math.isnan(sample.value)


@pytest.mark.parametrize(
    "token",
    ["1_000", "0x1p3", "0x10", "+nan", "-NaN", "1e999", "-1e999", "infin", "\u0661", "true", "1,5"],
)
def test_values_go_rejects(token: str) -> None:
    err = error(f"ok 1\na {token}\n", TEXT)
    assert err.line == 2
    assert err.reason == f"invalid value {token!r}"


@pytest.mark.parametrize(
    ("token", "millis"),
    [("0", 0), ("-3982045", -3982045), ("+5", 5), ("9223372036854775807", 2**63 - 1)],
)
def test_text_timestamps_are_int64_milliseconds(token: str, millis: int) -> None:
    [sample], _ = text(f"a 1 {token}\n")
    assert sample.timestamp_ms == millis


@pytest.mark.parametrize("token", ["1.5", "1e3", "1_0", "9223372036854775808", "0x10", "\u0661"])
def test_text_timestamps_go_rejects(token: str) -> None:
    assert error(f"a 1 {token}\n", TEXT).reason.startswith(f"invalid timestamp {token!r}")


def test_text_metadata_forms() -> None:
    body = (
        "#HELP not_metadata because there is no blank after the hash\n"
        "#\n"
        "# HELPER is a comment\n"
        "# HELP\tspaced \t  words  and\tblanks \t\n"
        "# TYPE\tspaced\t gauge \t\n"
        "# HELP bare\n"
        "# TYPE after_help counter\n"
        "# HELP after_help Help after type.\n"
    )
    samples, families = text(body)
    assert samples == []
    assert families == {
        "spaced": MetricFamily("spaced", "gauge", "words  and\tblanks", ""),
        "bare": MetricFamily("bare", "untyped", "", ""),
        "after_help": MetricFamily("after_help", "counter", "Help after type.", ""),
    }


def test_text_eof_is_only_a_comment() -> None:
    samples, _ = text("a 1\n# EOF\nb 2\n")
    assert [s.name for s in samples] == ["a", "b"]


def test_text_help_after_samples_is_allowed() -> None:
    _, families = text("a 1\n# HELP a late help\n")
    assert families["a"].help == "late help"


def test_text_family_may_be_split_by_other_families() -> None:
    body = '# TYPE a summary\na{quantile="0.5"} 1\nb 2\na_sum 3\na{quantile="0.9"} 4\na_count 5\n'
    samples, families = text(body)
    assert [s.name for s in samples] == ["a", "b", "a_sum", "a", "a_count"]
    assert families == {
        "a": MetricFamily("a", "summary", "", ""),
        "b": MetricFamily("b", "untyped", "", ""),
    }


def test_text_suffix_samples_before_type_keep_their_own_family() -> None:
    samples, families = text("foo_sum 1\n# TYPE foo summary\nfoo_count 2\nfoo_sum 3\n")
    assert [s.name for s in samples] == ["foo_sum", "foo_count", "foo_sum"]
    assert families == {
        "foo_sum": MetricFamily("foo_sum", "untyped", "", ""),
        "foo": MetricFamily("foo", "summary", "", ""),
    }


def test_text_counter_samples_are_bare_names() -> None:
    # In 0.0.4 a counter's sample has the family name; foo_total is a family of its own.
    _, families = text("# TYPE foo counter\nfoo 1\nfoo_total 2\n")
    assert families["foo"].type == "counter"
    assert families["foo_total"].type == "untyped"


def test_openmetrics_counter_named_with_total_takes_samples_of_its_own_name() -> None:
    # kube-state-metrics v2.20 writes its counters this way; Prometheus accepts them.
    samples, families = om(
        "# HELP kube_pod_container_status_restarts_total Restarts.\n"
        "# TYPE kube_pod_container_status_restarts_total counter\n"
        'kube_pod_container_status_restarts_total{pod="a"} 3\n'
        "# EOF\n"
    )
    assert [(s.name, s.labels, s.value) for s in samples] == [
        ("kube_pod_container_status_restarts_total", (("pod", "a"),), 3.0)
    ]
    family = families["kube_pod_container_status_restarts_total"]
    assert family.type == "counter"


TEXT_ERRORS = [
    # (body, line, reason or a part of it)
    ('a{b="1",b="2"} 1', 1, "duplicate label name b"),
    ('a{__name__="x"} 1', 1, "label name __name__ is reserved"),
    ("0a 1", 1, "invalid metric name at column 1: '0a 1'"),
    ("a-b 1", 1, "invalid metric name 'a-b'"),
    ("a.b 1", 1, "invalid metric name 'a.b'"),
    ("\u00e9 1", 1, "invalid metric name"),
    ('a{1b="x"} 1', 1, "invalid label name at column 3"),
    ('a{b.c="x"} 1', 1, "expected '=' after label name b"),
    ('a{b:c="x"} 1', 1, "expected '=' after label name b"),
    ('{"a.b"} 1', 1, "metric names inside braces (UTF-8 names) are not supported"),
    ('a{"b.c"="x"} 1', 1, "quoted label names (UTF-8 names) are not supported"),
    ('a{b="1" c="2"} 1', 1, "expected ',' or '}' after the value of label b"),
    ('a{b="1",,c="2"} 1', 1, "invalid label name at column 9"),
    ("a{,} 1", 1, "invalid label name at column 3"),
    ("a{b=1} 1", 1, "expected '\"' to open the value of label b"),
    ("a{b='1'} 1", 1, "expected '\"' to open the value of label b"),
    ("a{b} 1", 1, "expected '=' after label name b"),
    ('a{b="1} 1', 1, "value of label b is not closed"),
    ('a{b="1\\"} 1', 1, "value of label b is not closed"),
    ('a{b="1",', 1, "label set is not closed"),
    ("a", 1, "missing value"),
    ("a   ", 1, "missing value"),
    ('a{b="c"}', 1, "missing value"),
    ("a 1 2 3", 1, "unexpected text after the timestamp: '3'"),
    ("a bar", 1, "invalid value 'bar'"),
    ("a 1\r", 1, "invalid value '1\\r' (line endings must be \\n, not \\r\\n)"),
    ("# TYPE a counter\n# TYPE a gauge", 2, "second TYPE line for family a"),
    ("# HELP a x\n# HELP a y", 2, "second HELP line for family a"),
    ("a 1\n# TYPE a counter", 2, "TYPE for family a after its samples"),
    ("# TYPE a Counter", 1, "invalid metric type 'Counter' for family a"),
    ("# TYPE a gaugehistogram", 1, "invalid metric type 'gaugehistogram'"),
    ("# TYPE a unknown", 1, "invalid metric type 'unknown'"),
    ("# TYPE a", 1, "invalid metric type '' for family a"),
    ("# TYPE a counter extra", 1, "invalid metric type 'counter extra'"),
    ("# HELP", 1, "HELP needs a metric name"),
    ("# TYPE \t ", 1, "TYPE needs a metric name"),
    ("# HELP 0a x", 1, "invalid metric name '0a'"),
    ('# HELP "a.b" x', 1, "quoted metric names are not supported"),
    ("# TYPE a histogram\na 1", 2, "sample a does not fit histogram family a"),
    ("# TYPE a summary\na_bucket 1\n# TYPE a_bucket gauge", 3, "after its samples"),
    ("\ufeffa 1", 1, "a byte order mark is not allowed"),
]


@pytest.mark.parametrize(("body", "line", "reason"), TEXT_ERRORS)
def test_text_errors(body: str, line: int, reason: str) -> None:
    err = error(body + "\n", TEXT)
    assert (err.line, str(err)) == (line, f"line {line}: {err.reason}")
    assert reason in err.reason


def test_text_crlf_body_fails_on_the_first_sample() -> None:
    err = error("# HELP a x\r\n# TYPE a gauge\r\na 1\r\n", TEXT)
    # The TYPE line already fails: its type reads 'gauge\r'.
    assert err.line == 2
    assert "invalid metric type 'gauge\\r'" in err.reason


# --- OpenMetrics 1.0 ---------------------------------------------------------------

OM_EXAMPLE = (
    "# TYPE process_cpu_seconds counter\n"
    "# UNIT process_cpu_seconds seconds\n"
    r"# HELP process_cpu_seconds CPU time, \"user\" and\nsystem \\ \t." + "\n"
    'process_cpu_seconds_total 4.20072246e+06 # {trace_id="KOO5S4vxi0o"} 0.67 1520879607.789\n'
    "process_cpu_seconds_created 1605281325.0\n"
    "# TYPE router_seconds histogram\n"
    "# HELP router_seconds \n"
    'router_seconds_bucket{le="0.1"} 8 # {} 0.054\n'
    'router_seconds_bucket{le="+Inf"} 17 1520879607.789 # {trace_id="a # b",x=""} 9.8\n'
    "router_seconds_count 17\n"
    "router_seconds_sum 324789.3\n"
    "router_seconds_created 1520430000.123\n"
    "# TYPE queue gaugehistogram\n"
    'queue_bucket{le="+Inf"} 42\n'
    "queue_gcount 42\n"
    "queue_gsum 3289.3\n"
    "# TYPE build info\n"
    'build_info{version="8.2.7",name="a \\"b\\" \\\\ \\q"} 1\n'
    "# TYPE state stateset\n"
    'state{state="a"} 0\n'
    'state{state="bb"} 1.0\n'
    "# TYPE rpc summary\n"
    'rpc{quantile="0.99"} 150.0\n'
    "rpc_sum 3.5\n"
    "rpc_count 7\n"
    "# TYPE temperature gauge\n"
    'temperature{room="a"} 17.0 1520879607.789\n'
    'temperature{room="a"} 18.0 1.005\n'
    "temperature{} -Inf -1.5e3\n"
    "# TYPE legacy unknown\n"
    "legacy NaN\n"
    "no_metadata 1\n"
    "# EOF\n"
)


def test_openmetrics_example() -> None:
    samples, families = om(OM_EXAMPLE)
    assert rows(samples) == [
        ("process_cpu_seconds_total", (), 4.20072246e06, None),
        ("process_cpu_seconds_created", (), 1605281325.0, None),
        ("router_seconds_bucket", (("le", "0.1"),), 8.0, None),
        ("router_seconds_bucket", (("le", "+Inf"),), 17.0, 1520879607789),
        ("router_seconds_count", (), 17.0, None),
        ("router_seconds_sum", (), 324789.3, None),
        ("router_seconds_created", (), 1520430000.123, None),
        ("queue_bucket", (("le", "+Inf"),), 42.0, None),
        ("queue_gcount", (), 42.0, None),
        ("queue_gsum", (), 3289.3, None),
        ("build_info", (("version", "8.2.7"), ("name", 'a "b" \\ \\q')), 1.0, None),
        ("state", (("state", "a"),), 0.0, None),
        ("state", (("state", "bb"),), 1.0, None),
        ("rpc", (("quantile", "0.99"),), 150.0, None),
        ("rpc_sum", (), 3.5, None),
        ("rpc_count", (), 7.0, None),
        ("temperature", (("room", "a"),), 17.0, 1520879607789),
        ("temperature", (("room", "a"),), 18.0, 1005),
        ("temperature", (), -INF, -1500000),
        ("legacy", (), "NaN", None),
        ("no_metadata", (), 1.0, None),
    ]
    assert families == {
        "process_cpu_seconds": MetricFamily(
            "process_cpu_seconds", "counter", 'CPU time, "user" and\nsystem \\ \\t.', "seconds"
        ),
        "router_seconds": MetricFamily("router_seconds", "histogram", "", ""),
        "queue": MetricFamily("queue", "gaugehistogram", "", ""),
        "build": MetricFamily("build", "info", "", ""),
        "state": MetricFamily("state", "stateset", "", ""),
        "rpc": MetricFamily("rpc", "summary", "", ""),
        "temperature": MetricFamily("temperature", "gauge", "", ""),
        "legacy": MetricFamily("legacy", "unknown", "", ""),
        "no_metadata": MetricFamily("no_metadata", "unknown", "", ""),
    }


@pytest.mark.parametrize("ending", ["# EOF\n", "# EOF"])
def test_openmetrics_eof_may_end_with_or_without_a_line_feed(ending: str) -> None:
    assert om("a 1\n" + ending)[0] == [ScrapedSample("a", (), 1.0, None)]
    assert om(ending) == ([], {})


@pytest.mark.parametrize(
    ("body", "line", "reason"),
    [
        ("", 1, "missing '# EOF' at the end of the exposition"),
        ("a 1\n", 2, "missing '# EOF'"),
        ("a 1", 2, "missing '# EOF'"),
        ("a 1\n# EOF\nb 1\n", 3, "content after '# EOF'"),
        ("# EOF\n\n", 2, "content after '# EOF'"),
        ("# EOF\n# EOF\n", 2, "content after '# EOF'"),
        ("a 1\n# EOF ", 2, "content after '# EOF'"),
        ("a 1\n# EOFblah", 2, "content after '# EOF'"),
        ("a 1\n# EOF\r\n", 2, "content after '# EOF'"),
    ],
)
def test_openmetrics_eof_rules(body: str, line: int, reason: str) -> None:
    err = error(body, OM)
    assert err.line == line
    assert reason in err.reason


@pytest.mark.parametrize(
    ("token", "millis"),
    [
        ("0", 0),
        ("000", 0),
        ("1.1", 1100),
        ("1.005", 1005),
        ("1.0009", 1000),
        ("-1.0009", -1000),
        ("1.5e3", 1500000),
        ("0.0000000001", 0),
        ("1520879607.789", 1520879607789),
        ("9223372036854775.807", 2**63 - 1),
    ],
)
def test_openmetrics_timestamps_are_seconds(token: str, millis: int) -> None:
    [sample], _ = om(f"a 1 {token}\n# EOF\n")
    assert sample.timestamp_ms == millis


@pytest.mark.parametrize(
    "token",
    ["NaN", "Inf", "-Inf", "1_2", "1.1.1", "z", "1z", "0x1p-3", "9223372036854775.808", "1e30"],
)
def test_openmetrics_timestamp_errors(token: str) -> None:
    err = error(f"a 1 {token}\n# EOF\n", OM)
    assert err.reason == f"invalid timestamp {token!r} (want float seconds)"


EXEMPLARS = [
    'a_total 1 # {trace_id="x"} 0.5',
    'a_total 1 123 # {trace_id="x"} 0.5 123.456',
    "a_total 1 # {} NaN",
    'a_total 1 # {a="#",b="} #",} +Inf',
    'a_total{x="1"} 1 # {y="\\"\\n"} -1e-3 -5',
]


@pytest.mark.parametrize("line", EXEMPLARS)
def test_openmetrics_exemplars_are_checked_and_dropped(line: str) -> None:
    [sample], _ = om(f"# TYPE a counter\n{line}\n# EOF\n")
    assert sample.name == "a_total"
    assert sample.labels in ((), (("x", "1"),))
    assert sample.value == 1.0


OM_ERRORS = [
    ("a 1\n\n", 2, "blank lines are not allowed in OpenMetrics"),
    ("# a comment\n", 1, "OpenMetrics allows only '# HELP', '# TYPE', '# UNIT' and '# EOF' lines"),
    ("#\n", 1, "OpenMetrics allows only"),
    ("# HELP\n", 1, "OpenMetrics allows only"),
    ("# HELP \n", 1, "HELP needs a metric name"),
    ("# HELP a\n", 1, "HELP a needs a space and a value after the name"),
    ("# HELP a\t\n", 1, "invalid metric name 'a\\t'"),
    (" # HELP a x\n", 1, "leading whitespace is not allowed in OpenMetrics"),
    (" a 1\n", 1, "leading whitespace is not allowed in OpenMetrics"),
    ("a  1\n", 1, "missing value"),
    ("a\t1\n", 1, "expected a space before the value, got '\\t1'"),
    ("a 1 \n", 1, "invalid timestamp ''"),
    ("a 1\t\n", 1, "invalid value '1\\t'"),
    ("a 1  2\n", 1, "invalid timestamp ''"),
    ("a\n", 1, "missing value"),
    ("a \n", 1, "missing value"),
    ('a{b="1", c="2"} 1\n', 1, "invalid label name at column 9"),
    ('a {b="1"} 1\n', 1, "invalid value"),
    ('a{b="1"}1\n', 1, "expected a space before the value, got '1'"),
    ('a{b="1",b="2"} 1\n', 1, "duplicate label name b"),
    ('a{b="1"c="2"} 1\n', 1, "expected ',' or '}' after the value of label b"),
    ("a{b=1} 1\n", 1, "expected '\"' to open the value of label b"),
    ("a 0x1p-3\n", 1, "invalid value '0x1p-3'"),
    ("a 1_2\n", 1, "invalid value '1_2'"),
    ("a 0b1\n", 1, "invalid value '0b1'"),
    ("0a 1\n", 1, "invalid metric name"),
    ('{"a.b"} 1\n', 1, "metric names inside braces"),
    ("# TYPE a untyped\n", 1, "invalid metric type 'untyped' for family a"),
    ("# TYPE a Gauge\n", 1, "invalid metric type 'Gauge'"),
    ("# TYPE a gauge \n", 1, "invalid metric type 'gauge '"),
    ("# TYPE a\n", 1, "TYPE a needs a space and a value after the name"),
    ("# TYPE a gauge\n# TYPE a gauge\n", 2, "second TYPE line for family a"),
    ("# HELP a x\n# HELP a x\n", 2, "second HELP line for family a"),
    ("# HELP a \n# HELP a \n", 2, "second HELP line for family a"),
    ("# UNIT a_s s\n# UNIT a_s s\n", 2, "second UNIT line for family a_s"),
    ("# UNIT a seconds\n", 1, "unit seconds is not a suffix of family name a"),
    ("# UNIT aseconds seconds\n", 1, "unit seconds is not a suffix of family name aseconds"),
    ("# UNIT a_seconds seconds \n", 1, "invalid unit 'seconds '"),
    ("# UNIT a\n", 1, "UNIT a needs a space and a value after the name"),
    ("# TYPE x_u info\n# UNIT x_u u\n", 2, "a info family cannot have a unit"),
    ("# UNIT x_u u\n# TYPE x_u stateset\n", 2, "a stateset family cannot have a unit"),
    ("# TYPE a gauge\na 1\n# HELP a x\n", 3, "HELP for family a after its samples"),
    ("# TYPE a_s gauge\na_s 1\n# UNIT a_s s\n", 3, "UNIT for family a_s after its samples"),
    ("# HELP a x\na 1\n# TYPE a gauge\n", 3, "TYPE for family a after its samples"),
    ("# TYPE a gauge\n# TYPE b gauge\n# HELP a x\n", 3, "HELP for family a after another family"),
    ("a 1\nb 1\na 2\n", 3, "samples of family a are interleaved with another family"),
    ("# TYPE a gauge\na 1\n# TYPE b gauge\na 2\n", 4, "interleaved"),
    ("# TYPE a_created gauge\n# TYPE a counter\n", 2, "clashes with family a_created"),
    ("# TYPE a counter\n# TYPE a_total gauge\n", 2, "family a_total clashes with samples of"),
    ("a_total 1\n# TYPE a counter\n", 2, "counter family a would produce sample a_total"),
    ("# TYPE a counter\na 1\n", 2, "sample a does not fit counter family a"),
    ("# TYPE a info\na 1\n", 2, "sample a does not fit info family a (expected a_info)"),
    ("a_total 1 #\n", 1, "invalid timestamp '#'"),
    ("a_total 1# {} 1\n", 1, "invalid value '1#'"),
    ("a_total 1 #{} 1\n", 1, "invalid timestamp '#{}'"),
    ("a_total 1 # {}1\n", 1, "expected a space and a value after the exemplar labels"),
    ("a_total 1 # {} 1 \n", 1, "invalid exemplar timestamp ''"),
    ("a_total 1 # {} 1 1 \n", 1, "unexpected text after the exemplar: ' '"),
    ("a_total 1 # {} 0x1p-3\n", 1, "invalid exemplar value '0x1p-3'"),
    ("a_total 1 # {} \n", 1, "missing exemplar value"),
    ('a_total 1 # {a="b"} 0.5 NaN\n', 1, "invalid exemplar timestamp 'NaN'"),
    ('a_total 1 1 # id="a"} 1\n', 1, "unexpected text after the sample"),
    ('a_total 1 # {a="1",a="2"} 1\n', 1, "duplicate exemplar label name a"),
    ('a_total 1 # {a b="1"} 1\n', 1, "expected '=' after exemplar label name a"),
    ('a_total 1 # {"a"} 1\n', 1, "quoted label names"),
]


@pytest.mark.parametrize(("body", "line", "reason"), OM_ERRORS)
def test_openmetrics_errors(body: str, line: int, reason: str) -> None:
    err = error(body + "# EOF\n", OM)
    assert (err.line, str(err)) == (line, f"line {line}: {err.reason}")
    assert reason in err.reason


def test_openmetrics_accepts_what_prometheus_accepts() -> None:
    # A trailing comma, a sample without metadata whose name carries a suffix,
    # and a family that repeats a timestamp.
    body = 'a{b="1",} 1\nc_total 2\n# TYPE g gauge\ng 1 0\ng 2 0\n# EOF\n'
    samples, families = om(body)
    assert [s.name for s in samples] == ["a", "c_total", "g", "g"]
    assert families["c_total"].type == "unknown"


# --- both formats -------------------------------------------------------------------


@pytest.mark.parametrize("content_type", [TEXT, OM])
def test_invalid_utf8_names_the_line(content_type: str) -> None:
    body = b'a 1\nb 2\nc{d="x\xff"} 3\n# EOF\n'
    err = error(body, content_type)
    assert (err.line, err.reason) == (3, "invalid UTF-8 (byte 0xff at column 7)")


@pytest.mark.parametrize("content_type", [TEXT, OM])
def test_invalid_utf8_in_a_comment_or_help_is_an_error_too(content_type: str) -> None:
    assert error(b"# HELP a \xc3(\n# EOF\n", content_type).line == 1
    assert error(b"a 1\n# \xed\xa0\x80 surrogate\n", TEXT).line == 2


@pytest.mark.parametrize("content_type", [TEXT, OM])
def test_huge_lines_parse_in_linear_time(content_type: str) -> None:
    # A quadratic scan of any of these would run for hours, not milliseconds.
    n = 400_000
    value = "x\\\\" * n
    help_line = "# HELP a " + "y" + " " * n + "z"
    labels = ",".join(f'l{i}="v"' for i in range(20_000))
    body = f'{help_line}\na{{big="{value}"}} 1\na{{{labels}}} 2\n# EOF\n'
    samples, families = parse(body.encode(), content_type)
    assert samples[0].labels == (("big", "x\\" * n),)
    assert len(samples[1].labels) == 20_000
    expected_help = "y" + " " * n + "z"
    assert families["a"].help == expected_help
    long_name = "n" * n
    err = error(f"{long_name}{{a=b}} 1\n# EOF\n", content_type)
    assert len(str(err)) < 200


# --- the real node-exporter body ----------------------------------------------------


def test_node_exporter_body_parses() -> None:
    body = (DATA / "node_exporter.txt").read_bytes()
    samples, families = parse(body, "text/plain; version=0.0.4; charset=utf-8")
    assert len(samples) == 507
    assert len(families) == 283
    types = [f.type for f in families.values()]
    assert {t: types.count(t) for t in set(types)} == {
        "counter": 60,
        "gauge": 175,
        "summary": 1,
        "untyped": 47,
    }
    assert samples[0] == ScrapedSample(
        "go_gc_duration_seconds", (("quantile", "0"),), 3.4302e-05, None
    )
    by_key = {(s.name, s.labels): s for s in samples}
    assert by_key[("go_gc_duration_seconds_count", ())].value == 3.0
    idle = by_key[("node_cpu_seconds_total", (("cpu", "0"), ("mode", "idle")))]
    assert idle.value == 795.35
    assert families["node_cpu_seconds_total"].type == "counter"
    uname = next(s for s in samples if s.name == "node_uname_info")
    assert dict(uname.labels)["version"] == "#1 SMP PREEMPT_DYNAMIC @0"
    assert families["go_gc_duration_seconds"] == MetricFamily(
        "go_gc_duration_seconds",
        "summary",
        "A summary of the pause duration of garbage collection cycles.",
        "",
    )
    for sample in samples:  # Every sample's family is in the result.
        assert any(sample.name.startswith(name) for name in families)


# --- properties ---------------------------------------------------------------------

TEXT_SUFFIXES = {
    "counter": ("",),
    "gauge": ("",),
    "untyped": ("",),
    "summary": ("", "_sum", "_count"),
    "histogram": ("_bucket", "_sum", "_count"),
}
OM_SUFFIXES = {
    "counter": ("_total", "_created"),
    "gauge": ("",),
    "unknown": ("",),
    "stateset": ("",),
    "info": ("_info",),
    "summary": ("", "_sum", "_count", "_created"),
    "histogram": ("_bucket", "_sum", "_count", "_created"),
    "gaugehistogram": ("_bucket", "_gsum", "_gcount"),
}

label_names = st.from_regex(r"[a-zA-Z_][a-zA-Z0-9_]{0,8}", fullmatch=True).filter(
    lambda n: n != "__name__"
)
label_sets = st.lists(
    st.tuples(label_names, st.text(max_size=12)), max_size=4, unique_by=lambda p: p[0]
).map(tuple)
int64s = st.integers(-(2**63), 2**63 - 1)


@dataclass
class Family:
    name: str
    type: str
    help: str | None
    unit: str
    show_type: bool
    samples: list[tuple[str, tuple[tuple[str, str], ...], float, int | None]]


@dataclass
class Style:
    """Where 0.0.4 allows blanks: between tokens, inside braces, at the ends of lines."""

    sep: str
    inner: str
    lead: str
    trail: str
    trailing_comma: bool
    exemplars: bool


def render_float(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(value)


def escape_value(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def render_labels(labels: tuple[tuple[str, str], ...], style: Style) -> str:
    i = style.inner
    pairs = f"{i},{i}".join(f'{n}{i}={i}"{escape_value(v)}"' for n, v in labels)
    comma = "," if style.trailing_comma and labels else ""
    return f"{{{i}{pairs}{comma}{i}}}"


def render_seconds(millis: int) -> str:
    sign = "-" if millis < 0 else ""
    return f"{sign}{abs(millis) // 1000}.{abs(millis) % 1000:03d}"


@st.composite
def metric_sets(draw: st.DrawFn, openmetrics: bool) -> tuple[list[Family], Style]:
    types = sorted(OM_SUFFIXES if openmetrics else TEXT_SUFFIXES)
    families = []
    for i in range(draw(st.integers(0, 5))):
        base = draw(st.text("abcxyzABCXYZ:", min_size=1, max_size=6))
        type_ = draw(st.sampled_from(types))
        unit = ""
        if openmetrics and type_ not in ("info", "stateset") and draw(st.booleans()):
            unit = draw(st.from_regex(r"[a-z]{1,6}", fullmatch=True))
        # The _f{i} marker keeps every family's sample names apart from the others'.
        name = f"{base}_f{i}" + (f"_{unit}" if unit else "")
        suffixes = (OM_SUFFIXES if openmetrics else TEXT_SUFFIXES)[type_]
        samples = draw(
            st.lists(
                st.tuples(
                    st.sampled_from(suffixes).map(lambda s, n=name: n + s),  # type: ignore[misc]
                    label_sets,
                    st.floats(),
                    st.none() | int64s,
                ),
                max_size=4,
            )
        )
        families.append(
            Family(
                name=name,
                type=type_,
                help=draw(st.none() | st.text(max_size=16)),
                unit=unit,
                show_type=type_ not in ("untyped", "unknown") or draw(st.booleans()),
                samples=samples,
            )
        )
    if openmetrics:
        style = Style(" ", "", "", "", draw(st.booleans()), draw(st.booleans()))
    else:
        blanks = st.sampled_from([" ", "\t", "  ", " \t "])
        optional = st.sampled_from(["", " ", "\t"])
        style = Style(
            draw(blanks), draw(optional), draw(optional), draw(optional), draw(st.booleans()), False
        )
    return families, style


def render(families: list[Family], style: Style, openmetrics: bool) -> str:
    lines = []
    for f in families:
        if f.show_type:
            lines.append(f"# TYPE {f.name} {f.type}")
        if f.unit:
            lines.append(f"# UNIT {f.name} {f.unit}")
        if f.help is not None:
            help_ = f.help.replace("\\", "\\\\").replace("\n", "\\n")
            if openmetrics:
                help_ = help_.replace('"', '\\"')
            lines.append(f"# HELP {f.name} {help_}")
        for name, labels, value, stamp in f.samples:
            line = style.lead + name
            if labels or style.trailing_comma:
                line += style.inner + render_labels(labels, style)
            line += style.sep + render_float(value)
            if stamp is not None:
                line += style.sep + (render_seconds(stamp) if openmetrics else str(stamp))
            if style.exemplars:
                line += ' # {trace_id="t"} 1.5 1.25'
            lines.append(line + style.trail)
    if openmetrics:
        lines.append("# EOF")
    return "".join(line + "\n" for line in lines)


def expected(
    families: list[Family], openmetrics: bool
) -> tuple[list[tuple[object, ...]], dict[str, MetricFamily]]:
    samples: list[tuple[object, ...]] = [
        (name, labels, "NaN" if math.isnan(value) else value, stamp)
        for f in families
        for name, labels, value, stamp in f.samples
    ]
    metadata = {}
    for f in families:
        if f.show_type or f.help is not None or f.unit or f.samples:
            help_ = f.help or ""
            if not openmetrics:
                help_ = help_.strip(" \t")  # 0.0.4 ignores blanks at both ends of a line.
            type_ = f.type if f.show_type else ("unknown" if openmetrics else "untyped")
            metadata[f.name] = MetricFamily(f.name, type_, help_, f.unit)
    return samples, metadata


@pytest.mark.parametrize("openmetrics", [False, True], ids=["text", "openmetrics"])
@settings(deadline=None, max_examples=100)
@given(data=st.data())
def test_round_trip(openmetrics: bool, data: st.DataObject) -> None:
    families, style = data.draw(metric_sets(openmetrics))
    body = render(families, style, openmetrics)
    samples, metadata = parse(body.encode(), OM if openmetrics else TEXT)
    assert (rows(samples), metadata) == expected(families, openmetrics)


VALUE_TOKENS = [
    "1", "-1.5", "1e3", "+Inf", "-inf", "NaN", "nan", "+nan", "1_0", "0x1p3", " 1", "1 ",
    "1\t", "\t1", "1\r", "", "1e999", "\u0661", ".", "-", "1.5.5", "Infinity", "infinit",
]  # fmt: skip
STAMP_TOKENS = [
    "", "0", "-5", "+5", "1.5", "1_0", "9223372036854775807", "9223372036854775808",
    " 1", "1 ", "\t1", "\u0661", "0x10", "NaN", "1e3", "#",
]  # fmt: skip
NAMES = ["a", "a_b:c", "_x", ":", "0a", "a-b", "", "\u00e9", " a", "a ", "a\t"]


@st.composite
def sample_lines(draw: st.DrawFn) -> str:
    name = draw(
        st.sampled_from(NAMES) | st.from_regex(r"[a-zA-Z_:][a-zA-Z0-9_:]{0,5}", fullmatch=True)
    )
    line = name
    if draw(st.booleans()):
        pairs = draw(
            st.lists(
                st.tuples(
                    st.sampled_from(["b", "c", "_d", "b", "c", "1e", "__name__", "b ", ""]),
                    st.text(alphabet="ab {},=#\t\u00e9", max_size=6)
                    | st.text(alphabet='ab"\\ {},=#\t', max_size=6),
                ),
                max_size=3,
            )
        )
        inner = ",".join(f'{n}="{v}"' for n, v in pairs)
        line += "{" + inner + draw(st.sampled_from(["", ","])) + "}"
    line += draw(st.sampled_from([" ", " ", " ", "  ", "\t", ""]))
    line += draw(st.floats().map(render_float) | st.sampled_from(VALUE_TOKENS))
    if draw(st.booleans()):
        line += " " + draw(st.sampled_from(STAMP_TOKENS) | int64s.map(str))
    return line


def outcome(call: object) -> object:
    try:
        result = call() if callable(call) else call
    except ParseError as err:
        return ("error", err.line)
    return result


@settings(deadline=None, max_examples=400)
@given(line=sample_lines())
@example(line='a{b="x\\"} 1')
@example(line='a{b="1",b="2"} 1')
@example(line="a 1  2")
def test_fast_path_agrees_with_the_careful_scanner(line: str) -> None:
    """parse() takes a shortcut for common lines; it must mean exactly what the scanner means.

    The line is given twice: the shortcut for a line without labels needs its name
    seen before, so the second copy is where it can be taken.
    """
    assume(line.strip(" \t") and not line.lstrip(" \t").startswith("#"))  # Sample lines only.

    def via_parse(content_type: str, suffix: str) -> object:
        samples, _ = parse(f"{line}\n{line}{suffix}".encode(), content_type)
        first, second = (
            (s.name, s.labels, "NaN" if math.isnan(s.value) else s.value, s.timestamp_ms)
            for s in samples
        )
        assert first == second
        return first

    def via_scanner(scan: object) -> object:
        name, labels, value, stamp = scan(line, 1)  # type: ignore[operator]
        return (name, labels, "NaN" if math.isnan(value) else value, stamp)

    assert outcome(lambda: via_parse(TEXT, "\n")) == outcome(
        lambda: via_scanner(exposition._text_sample)
    )
    assert outcome(lambda: via_parse(OM, "\n# EOF\n")) == outcome(
        lambda: via_scanner(exposition._om_sample)
    )


GO_FLOAT = re.compile(
    r"[+-]?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][+-]?[0-9]+)?|(?i:inf|infinity))|(?i:nan)"
)


@settings(max_examples=500)
@given(token=st.text(alphabet="0123456789.eE+-_xXpPinfatyINFATY \t\u0661", max_size=10))
@example(token="1e999")
@example(token="+nan")
def test_values_follow_go_parse_float(token: str) -> None:
    go_accepts = GO_FLOAT.fullmatch(token) is not None and not (
        math.isinf(float(token)) and "n" not in token.lower()
    )
    assert (exposition._go_float(token) is not None) == go_accepts


CHARS = 'a_:{}="\\,# \t\n\r.+-eE019\u00e9\x00'


@settings(deadline=None, max_examples=300)
@given(body=st.binary(max_size=120) | st.text(alphabet=CHARS, max_size=120).map(str.encode))
@example(body=b"# TYPE a histogram\na_bucket 1\n")
@example(body=b'a{b="\\')
def test_any_body_parses_or_raises_parse_error_naming_a_line(body: bytes) -> None:
    for content_type in (TEXT, OM):
        try:
            parse(body, content_type)
        except ParseError as err:
            assert re.fullmatch(r"line \d+: \S.*", str(err), re.DOTALL)
            assert 1 <= err.line <= body.count(b"\n") + 2


def iter_errors() -> Iterator[tuple[str, str, int, str]]:
    for body, line, reason in TEXT_ERRORS:
        yield TEXT, body + "\n", line, reason
    for body, line, reason in OM_ERRORS:
        yield OM, body + "# EOF\n", line, reason


def test_every_error_message_has_the_line_prefix() -> None:
    for content_type, body, line, _ in iter_errors():
        err = error(body, content_type)
        assert str(err).startswith(f"line {line}: ")
