"""The ``filter`` transform: selector and line regex, keep or drop."""

from __future__ import annotations

import logging
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from ferryman import headers as h
from ferryman.telemetry import Registry
from ferryman.wire.loki import Entry, Stream, decode_push_request, encode_push_request
from ferryman.wire.remote_write import snappy_compress, snappy_decompress
from functions.filter import SPEC
from functions.filter.config import FilterConfig, Matcher, parse_selector
from functions.filter.core import EntryFilter
from workers.function import Context
from workers.records import Record

TS = 1_700_000_000_000_000_000
HEADERS = ((h.SCHEMA, h.SCHEMA_LOKI_PUSH), (h.CLUSTER, b"alpha"))


def lines(labels: dict[str, str], *texts: str) -> Stream:
    return Stream(labels, [Entry(TS + i, text) for i, text in enumerate(texts)])


def kept(
    streams: list[Stream], **values: Any
) -> tuple[list[tuple[dict[str, str], list[str]]], int]:
    out, dropped = EntryFilter(FilterConfig.model_validate(values)).streams(streams)
    return [(dict(s.labels), [e.line for e in s.entries]) for s in out], dropped


def test_selector_syntax_and_semantics() -> None:
    matchers = parse_selector(
        r'{ app = "web", level!="info",pod=~"web-.*" , ns!~"kube-.*",'
        r' q="a\"b\\c" }'
    )
    assert [(m.name, m.op, m.value) for m in matchers] == [
        ("app", "=", "web"),
        ("level", "!=", "info"),
        ("pod", "=~", "web-.*"),
        ("ns", "!~", "kube-.*"),
        ("q", "=", 'a"b\\c'),
    ]
    assert parse_selector("{}") == ()
    anchored = Matcher("pod", "=~", "web")
    assert anchored.matches("web") and not anchored.matches("web-0")
    assert not anchored.matches("my-web")
    assert Matcher("x", "!~", "a|b").matches("") and Matcher("x", "=", "").matches("")
    assert Matcher("x", "!=", "").matches("v") and not Matcher("x", "!=", "v").matches("v")


@pytest.mark.parametrize(
    "bad",
    ['app="web"', "{app=web}", '{app="web" level="x"}', '{app=~"(x"}', '{1a="x"}', '{app=="x"}'],
)
def test_bad_selectors_are_refused(bad: str) -> None:
    with pytest.raises(ValidationError):
        FilterConfig(selector=bad)


def test_a_filter_needs_something_to_match() -> None:
    with pytest.raises(ValidationError, match="selector, a line_regex or both"):
        FilterConfig()
    with pytest.raises(ValidationError, match="invalid regex"):
        FilterConfig(line_regex="(")


STREAMS = [
    lines({"app": "web", "ns": "prod"}, "GET /healthz", "GET /api", "POST /api"),
    lines({"app": "db", "ns": "kube-system"}, "GET /healthz", "slow query"),
    lines({"ns": "prod"}, "no app label"),
]


def test_drop_by_selector() -> None:
    assert kept(STREAMS, selector='{ns=~"kube-.*"}') == (
        [
            ({"app": "web", "ns": "prod"}, ["GET /healthz", "GET /api", "POST /api"]),
            ({"ns": "prod"}, ["no app label"]),
        ],
        2,
    )
    # A missing label is the empty string: app="" selects the stream without one.
    assert kept(STREAMS, selector='{app=""}')[1] == 1


def test_drop_by_line_and_selector_together() -> None:
    assert kept(STREAMS, selector='{app="web"}', line_regex="healthz") == (
        [
            ({"app": "web", "ns": "prod"}, ["GET /api", "POST /api"]),
            ({"app": "db", "ns": "kube-system"}, ["GET /healthz", "slow query"]),
            ({"ns": "prod"}, ["no app label"]),
        ],
        1,
    )


def test_keep_only_matching_entries() -> None:
    assert kept(STREAMS, action="keep", line_regex="^GET ") == (
        [
            ({"app": "web", "ns": "prod"}, ["GET /healthz", "GET /api"]),
            ({"app": "db", "ns": "kube-system"}, ["GET /healthz"]),
        ],
        3,
    )
    assert kept(STREAMS, action="keep", selector='{ns="prod", app!="web"}') == (
        [({"ns": "prod"}, ["no app label"])],
        5,
    )


def _handler() -> tuple[Any, Registry]:
    registry = Registry()
    config = FilterConfig(selector='{app="web"}', line_regex="healthz")
    return SPEC.create(
        config, Context("filter", httpx.Client, registry, logging.getLogger("test"))
    ), registry


def test_handle_drops_whole_messages_counts_and_dead_letters_garbage() -> None:
    handler, registry = _handler()
    only_health = Record(
        "logs",
        0,
        0,
        b"a",
        snappy_compress(
            encode_push_request([lines({"app": "web"}, "GET /healthz", "GET /healthz")])
        ),
        HEADERS,
    )
    mixed = Record(
        "logs",
        0,
        1,
        b"b",
        snappy_compress(
            encode_push_request(
                [
                    lines({"app": "web"}, "GET /healthz", "GET /x"),
                    lines({"app": "db"}, "GET /healthz"),
                ]
            )
        ),
        HEADERS,
    )
    garbage = Record("logs", 0, 2, None, b"\x00junk", HEADERS)
    result = handler.handle([only_health, mixed, garbage])
    assert [r.offset for r, _ in result.dead] == [2]
    [output] = result.outputs
    assert (output.key, output.headers) == (b"b", HEADERS)
    assert [
        (dict(s.labels), [e.line for e in s.entries])
        for s in decode_push_request(snappy_decompress(output.value))
    ] == [({"app": "web"}, ["GET /x"]), ({"app": "db"}, ["GET /healthz"])]
    assert (
        'ferryman_lines_dropped_total{function="filter",reason="filtered"} 3' in registry.render()
    )
