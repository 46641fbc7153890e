"""Whatever a scrape body holds, ``exposition.parse`` returns samples or raises
ParseError, in both formats: never another exception, which the runtime would retry.

Bodies are random bytes; lines assembled from the tokens that matter (names, label
sets with escapes, values and timestamps Go would or would not take, exemplars,
metadata), so that the parser's fast path and careful scanner both see near misses;
and real bodies truncated anywhere or with a byte flipped.
"""

from __future__ import annotations

import math
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ferryman.prom.exposition import MetricFamily, ParseError, ScrapedSample, parse

TEXT = "text/plain; version=0.0.4; charset=utf-8"
OM = "application/openmetrics-text; version=1.0.0; charset=utf-8"
NODE_EXPORTER = (Path(__file__).parent / "prom" / "data" / "node_exporter.txt").read_bytes()

CHECKS = settings(max_examples=200, suppress_health_check=[HealthCheck.too_slow])
INT64 = (-(2**63), 2**63 - 1)

content_types = st.one_of(
    st.sampled_from([TEXT, OM, "", "application/openmetrics-text"]), st.text(max_size=30)
)


def check(body: bytes, content_type: str) -> None:
    """Parse; a result must hold what the parser promises, an error must be ParseError."""
    try:
        samples, families = parse(body, content_type)
    except ParseError as exc:
        assert exc.line >= 1 and isinstance(exc.reason, str)
        return
    for sample in samples:
        assert isinstance(sample, ScrapedSample)
        assert isinstance(sample.name, str) and isinstance(sample.value, float)
        assert all(isinstance(n, str) and isinstance(v, str) for n, v in sample.labels)
        assert sample.timestamp_ms is None or INT64[0] <= sample.timestamp_ms <= INT64[1]
    assert all(isinstance(f, MetricFamily) and f.name == name for name, f in families.items())


# --- lines near the grammar ------------------------------------------------------------

names = st.sampled_from(
    [
        "a",
        "a_total",
        "a_bucket",
        "a_count",
        "a_sum",
        "a_created",
        "b",
        "b_info",
        "x:y",
        "a_seconds",
        "0bad",
        "é",
        "",
        '"q"',
        "__name__",
    ]
)
label_names = st.sampled_from(["l", "le", "quantile", "__name__", "_", "0x", "é", '"q"', ""])
label_values = st.one_of(
    st.sampled_from(
        [
            "",
            "v",
            '\\"',
            "\\\\",
            "\\n",
            "\\",
            "\\x",
            '"',
            "}",
            ",",
            "{",
            "\t",
            "\r",
            "\x00",
            "\ufffd",
        ]
    ),
    st.text(max_size=6),
)
values = st.one_of(
    st.sampled_from(
        [
            "1",
            "-1.5",
            "+Inf",
            "-Inf",
            "NaN",
            "nan",
            "inf",
            "Infinity",
            "1e999",
            "-1e999",
            "0x1p3",
            "1_0",
            "",
            " 1",
            "1 ",
            "\u0661",
            "1e-400",
            ".5",
            "5.",
            "0e99999999999999999999999",
            "1e-99999999999999999999999",
            "1" * 5000,
            "1\r",
            "+",
            "-",
            "e5",
        ]
    ),
    st.floats().map(repr),
    st.integers().map(str),
)
timestamps = st.one_of(
    st.sampled_from(
        [
            "123",
            "-5",
            "1.5",
            "1.005",
            "0e99999999999999999999999",
            "1e-99999999999999999999999",
            "0.0e-99999999999999999999999999",
            "9223372036854775807",
            "9223372036854775808",
            "-9223372036854775809",
            "9223372036854775.807",
            "9223372036854775.808",
            "1" * 5000,
            "1_0",
            "0x10",
            "+1",
            "NaN",
            "Inf",
            "1e18",
            "1e-3",
        ]
    ),
    st.integers().map(str),
    st.floats().map(repr),
)
separators = st.sampled_from([" ", " ", " ", "\t", "  ", " \t"])


@st.composite
def label_sets(draw: st.DrawFn) -> str:
    pairs = draw(st.lists(st.tuples(label_names, label_values), max_size=3))
    inner = ",".join(f'{n}="{v}"' for n, v in pairs)
    return (
        "{"
        + inner
        + draw(st.sampled_from(["", ",", " ", ", "]))
        + draw(st.sampled_from(["}", "}", "}", "", '"}', "}}"]))
    )


@st.composite
def sample_lines(draw: st.DrawFn) -> str:
    line = draw(names) + draw(st.one_of(st.just(""), label_sets()))
    line += draw(separators) + draw(values)
    if draw(st.booleans()):
        line += draw(separators) + draw(timestamps)
    if draw(st.booleans()):
        line += " # " + draw(label_sets()) + " " + draw(values)
        if draw(st.booleans()):
            line += " " + draw(timestamps)
    return line


metadata_lines = st.builds(
    lambda keyword, name, text: (
        f"# {keyword} {name} {text}".rstrip(" ") if text else f"# {keyword} {name}"
    ),
    st.sampled_from(["HELP", "TYPE", "UNIT", "help", "EOF"]),
    names,
    st.one_of(
        st.sampled_from(
            [
                "counter",
                "gauge",
                "histogram",
                "summary",
                "untyped",
                "unknown",
                "info",
                "stateset",
                "gaugehistogram",
                "seconds",
                "bogus",
                "a \\n b \\\\ \\x",
                "",
            ]
        ),
        st.text(max_size=8),
    ),
)
lines = st.one_of(
    sample_lines(),
    sample_lines(),
    metadata_lines,
    st.sampled_from(["", "#", "# EOF", "# free text", " # TYPE a gauge", "\t"]),
    st.text(max_size=20),
)


@st.composite
def bodies(draw: st.DrawFn) -> str:
    text = "\n".join(draw(st.lists(lines, max_size=8)))
    return text + draw(st.sampled_from(["", "\n", "\n# EOF", "\n# EOF\n", "\r\n"]))


@CHECKS
@given(bodies(), content_types)
def test_lines_near_the_grammar_parse_or_raise_parse_error(body: str, content_type: str) -> None:
    check(body.encode("utf-8", "surrogatepass"), content_type)


@CHECKS
@given(st.binary(max_size=300), content_types)
def test_random_bytes_parse_or_raise_parse_error(body: bytes, content_type: str) -> None:
    check(body, content_type)


@st.composite
def odd_numbers(draw: st.DrawFn) -> str:
    """Well-formed sample lines but for their values, timestamps and exemplars."""
    out = []
    for value, stamp, exemplar in draw(
        st.lists(
            st.tuples(
                values,
                st.one_of(st.none(), timestamps),
                st.one_of(st.none(), st.tuples(values, st.one_of(st.none(), timestamps))),
            ),
            min_size=1,
            max_size=4,
        )
    ):
        line = f'a_total{{l="v"}} {value}' + ("" if stamp is None else f" {stamp}")
        if exemplar is not None:
            line += f' # {{t="x"}} {exemplar[0]}' + (
                "" if exemplar[1] is None else f" {exemplar[1]}"
            )
        out.append(line)
    return "# TYPE a counter\n" + "\n".join(out) + "\n# EOF\n"


@CHECKS
@given(odd_numbers(), st.sampled_from([TEXT, OM]))
def test_odd_numbers_parse_or_raise_parse_error(body: str, content_type: str) -> None:
    check(body.encode(), content_type)


# --- real bodies, broken -----------------------------------------------------------------


@st.composite
def broken(draw: st.DrawFn) -> bytes:
    body = draw(
        st.one_of(
            st.just(NODE_EXPORTER), bodies().map(lambda b: b.encode("utf-8", "surrogatepass"))
        )
    )
    if not body or draw(st.booleans()):
        return body[: draw(st.integers(0, len(body)))]
    at = draw(st.integers(0, len(body) - 1))
    return body[:at] + bytes([body[at] ^ draw(st.integers(1, 255))]) + body[at + 1 :]


@CHECKS
@given(broken(), st.sampled_from([TEXT, OM]))
def test_truncated_or_flipped_bodies_parse_or_raise_parse_error(
    body: bytes, content_type: str
) -> None:
    check(body, content_type)


# --- what was broken ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "stamp",
    ["0e99999999999999999999999", "1e-99999999999999999999999", "0.0e-99999999999999999999999999"],
)
def test_an_openmetrics_timestamp_beyond_decimal_exponents_is_a_parse_error(stamp: str) -> None:
    # It was decimal.InvalidOperation: float() takes the token (0.0), Decimal cannot scale it.
    with pytest.raises(ParseError, match="line 1: invalid timestamp"):
        parse(f"a 1 {stamp}\n# EOF\n".encode(), OM)
    with pytest.raises(ParseError, match="line 1: invalid exemplar timestamp"):
        parse(f'a_total 1 # {{x="y"}} 1 {stamp}\n# EOF\n'.encode(), OM)


def test_exponents_decimal_can_scale_still_count() -> None:
    samples, _ = parse(b"a 1 0e999999\nb 1 1e-999999\n# EOF\n", OM)
    assert [s.timestamp_ms for s in samples] == [0, 0]
    assert not math.isnan(samples[0].value)
