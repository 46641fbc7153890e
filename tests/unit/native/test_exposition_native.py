"""The native exposition parser (``ferryman_native.parse_exposition``, the parsing step
of ``ScrapeCache.scrape``) against ``ferryman.prom.exposition.parse``, its oracle: on
generated bodies of both formats it gives the same samples (names, labels in order,
values bit for bit, timestamps), or declines; it declines as invalid only bodies the
oracle refuses, and declines as an unsupported spelling only rarely. The bodies hold
escapes, Go float spellings, ``+Inf``/``NaN``, exemplars, timestamps at and past the
int64 edges, duplicate series and labels, huge and many labels, invalid UTF-8, a byte
order mark, misplaced metadata and the OpenMetrics ``_total`` counter naming."""

from __future__ import annotations

import struct

import pytest
from ferryman_native import parse_exposition
from hypothesis import given, settings
from hypothesis import strategies as st

from ferryman.prom.exposition import ParseError, parse
from tests.unit.native.expositions import exposition

OM = "application/openmetrics-text; version=1.0.0; charset=utf-8"
TEXT = "text/plain; version=0.0.4"

_Row = tuple[str, tuple[tuple[str, str], ...], bytes, int | None]


def _oracle(body: bytes, openmetrics: bool) -> list[_Row] | None:
    try:
        samples, _ = parse(body, OM if openmetrics else TEXT)
    except ParseError:
        return None
    return [(s.name, s.labels, struct.pack("<d", s.value), s.timestamp_ms) for s in samples]


def _native(body: bytes, openmetrics: bool) -> list[_Row] | str:
    result = parse_exposition(body, openmetrics)
    if isinstance(result, str):
        return result
    return [(n, labels, struct.pack("<d", v), ts) for n, labels, v, ts in result]


def check(body: bytes, openmetrics: bool) -> str:
    """Assert the native parser agrees with the oracle on body; say what happened."""
    expected = _oracle(body, openmetrics)
    got = _native(body, openmetrics)
    if isinstance(got, str):
        assert got in ("invalid_exposition", "unsupported_spelling")
        if got == "invalid_exposition":
            assert expected is None, f"native refused a body the oracle takes: {body!r}"
        return got
    assert expected is not None, f"native took a body the oracle refuses: {body!r}"
    assert got == expected
    return "parsed"


@settings(max_examples=500, derandomize=True, database=None)
@given(st.data())
def test_generated_text_bodies(data: st.DataObject) -> None:
    body = data.draw(exposition(openmetrics=False))
    check(body, False)
    check(body, True)


@settings(max_examples=500, derandomize=True, database=None)
@given(st.data())
def test_generated_openmetrics_bodies(data: st.DataObject) -> None:
    body = data.draw(exposition(openmetrics=True))
    check(body, True)
    check(body, False)


def test_the_generator_makes_mostly_bodies_both_take() -> None:
    """The property above is only as good as the share of bodies both parsers take."""
    outcomes: dict[str, int] = {}

    @settings(max_examples=300, derandomize=True, database=None)
    @given(st.data())
    def count(data: st.DataObject) -> None:
        openmetrics = data.draw(st.booleans())
        outcome = check(data.draw(exposition(openmetrics=openmetrics)), openmetrics)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1

    count()
    assert outcomes.get("parsed", 0) >= 100, outcomes
    assert outcomes.get("invalid_exposition", 0) >= 30, outcomes


@pytest.mark.parametrize(
    ("body", "openmetrics"),
    [
        (b'a{l="x\\"y",m="\\\\",n="\\n\\t"} 1 5\n', False),
        (b"a +Inf\nb -inf\nc NaN\nd 1e999\n", False),
        (b'# TYPE a counter\na_total 1 1.005 # {t="1"} 2 3\n# EOF\n', True),
        (b"# TYPE a_total counter\na_total 1\n# EOF\n", True),
        (b'# TYPE a histogram\na_bucket{le="1"} 1\na_sum 2\na_count 1\na 3\n', False),
        (b'# TYPE a summary\na{quantile="0.5"} 1\na_sum 2\n# TYPE a summary\n', False),
        (b"a 1\nb 1\na 2\n# EOF\n", True),
        (b"a 1\n# EOF\n\n", True),
        (b"a 1 0.99999999999999999999999999999\n# EOF\n", True),
        (b"a 1 1.2345678901234567890123456789012e5\n# EOF\n", True),
        (b'a{l="\xff"} 1\n', False),
        (b"\xef\xbb\xbfa 1\n", False),
        (b'  # TYPE a gauge\n\t a \t{ l = "v" , } \t 1 \t -7 \t\n', False),
        (b"a 1 " + b"0" * 4100 + b"1\n", False),
    ],
)
def test_corners(body: bytes, openmetrics: bool) -> None:
    check(body, openmetrics)
