"""The ``parse`` transform: lines → structured metadata, promotion, output."""

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
from functions.parse import SPEC
from functions.parse.config import ParseConfig
from functions.parse.core import Parser, Tally, sanitize
from workers.function import Context
from workers.records import Output, Record

TS = 1_700_000_000_000_000_000
HEADERS = ((h.SCHEMA, h.SCHEMA_LOKI_PUSH), (h.CLUSTER, b"alpha"), (h.TENANT, b"7"))


def config(**values: Any) -> ParseConfig:
    return ParseConfig.model_validate({"format": "logfmt", **values})


def record(*streams: Stream, offset: int = 0) -> Record:
    return Record(
        "logs", 0, offset, b"app=web", snappy_compress(encode_push_request(streams)), HEADERS
    )


def lines(labels: dict[str, str], *texts: str) -> Stream:
    return Stream(labels, [Entry(TS + i, text) for i, text in enumerate(texts)])


def transform(**values: Any) -> tuple[Any, Registry]:
    registry = Registry()
    context = Context("parse", httpx.Client, registry, logging.getLogger("test"))
    return SPEC.create(config(**values), context), registry


def decoded(output: Output) -> list[Stream]:
    return decode_push_request(snappy_decompress(output.value))


def run(parser: Parser, *streams: Stream) -> tuple[list[Stream], Tally]:
    tally = Tally()
    return parser.streams(list(streams), tally), tally


def test_logfmt_fields_become_metadata_and_the_line_stays() -> None:
    [out], tally = run(Parser(config()), lines({"app": "web"}, 'level=info msg="GET /" ms=12'))
    assert out.labels == {"app": "web"}
    assert list(out.entries) == [
        Entry(
            TS, 'level=info msg="GET /" ms=12', (("level", "info"), ("msg", "GET /"), ("ms", "12"))
        )
    ]
    assert (tally.parsed, tally.unparsed) == (1, 0)


def test_json_fields_nested_values_and_paths() -> None:
    parser = Parser(config(format="json", json_paths={"user_id": "user.id", "first": "tags[0]"}))
    [out], _ = run(
        parser, lines({}, '{"level":"warn","user":{"id":7},"tags":["a","b"],"n":null,"ok":true}')
    )
    assert dict(out.entries[0].metadata) == {
        "level": "warn",
        "user": '{"id":7}',
        "tags": '["a","b"]',
        "ok": "true",
        "user_id": "7",
        "first": "a",
    }


def test_regex_named_groups() -> None:
    parser = Parser(
        config(format="regex", regex=r'^(?P<ip>\S+) .* "(?P<method>[A-Z]+) (?P<path>\S+)')
    )
    [out], _ = run(parser, lines({}, '10.0.0.1 - - "GET /x HTTP/1.1" 200'))
    assert out.entries[0].metadata == (("ip", "10.0.0.1"), ("method", "GET"), ("path", "/x"))


def test_lines_that_do_not_parse_pass_unchanged_and_are_counted() -> None:
    parser = Parser(config(format="json"))
    stream = lines({"app": "a"}, "plain text", "[1, 2]", '{"a": 1}')
    [out], tally = run(parser, stream)
    assert [e.line for e in out.entries] == ["plain text", "[1, 2]", '{"a": 1}']
    assert [e.metadata for e in out.entries] == [(), (), (("a", "1"),)]
    assert (tally.parsed, tally.unparsed) == (1, 2)
    _, tally = run(Parser(config()), lines({}, "", "   "))
    assert tally.unparsed == 2


def test_keep_limits_fields_and_existing_metadata_are_merged() -> None:
    parser = Parser(config(keep=["level", "trace"]))
    stream = Stream(
        {}, [Entry(TS, "level=info trace=x other=y", (("source", "edge"), ("level", "old")))]
    )
    [out], _ = run(parser, stream)
    assert out.entries[0].metadata == (("source", "edge"), ("level", "info"), ("trace", "x"))


def test_output_replaces_the_line_and_leaves_the_metadata() -> None:
    parser = Parser(config(format="json", output="msg"))
    [out], _ = run(parser, lines({}, '{"msg":"hello","level":"info"}', '{"level":"x"}'))
    assert [(e.line, e.metadata) for e in out.entries] == [
        ("hello", (("level", "info"),)),
        ('{"level":"x"}', (("level", "x"),)),
    ]


def test_field_limits_drop_and_cut_and_are_counted() -> None:
    parser = Parser(config(max_fields=2, max_value_length=3))
    [out], tally = run(parser, lines({}, "a=1 b=12345 c=3 d=4"))
    assert out.entries[0].metadata == (("a", "1"), ("b", "123"))
    assert tally.limited == {"too_many_fields": 2, "value_too_long": 1}


def test_names_are_sanitized_unless_asked_not_to() -> None:
    assert [sanitize(n) for n in ["a.b", "1x", "", "ok_1", "é"]] == ["a_b", "_1x", "_", "ok_1", "_"]
    [out], _ = run(Parser(config(format="json")), lines({}, '{"http.status":200}'))
    assert out.entries[0].metadata == (("http_status", "200"),)
    [out], _ = run(
        Parser(config(format="json", sanitize_names=False)), lines({}, '{"http.status":200}')
    )
    assert out.entries[0].metadata == (("http.status", "200"),)


def test_promotion_splits_streams_and_guards_cardinality() -> None:
    parser = Parser(
        config(promote=["level", "app"], max_label_value_length=5, max_values_per_label=2)
    )
    stream = lines(
        {"app": "web"},
        "level=info app=x",
        "level=warn",
        "level=info",
        "level=error",
        "level=toolongvalue",
        "nothing=here",
        "level=",
    )
    out, tally = run(parser, stream)
    assert [(dict(s.labels), [e.line for e in s.entries]) for s in out] == [
        ({"app": "web", "level": "info"}, ["level=info app=x", "level=info"]),
        ({"app": "web", "level": "warn"}, ["level=warn"]),
        ({"app": "web"}, ["level=error", "level=toolongvalue", "nothing=here", "level="]),
    ]
    # A promoted field leaves the metadata; a refused one and the existing label's stay.
    assert out[0].entries[0].metadata == (("app", "x"),)
    assert out[2].entries[0].metadata == (("level", "error"),)
    assert tally.refused == {("level", "too_many_values"): 1, ("level", "value_too_long"): 1}
    again, tally = run(parser, lines({}, "level=info", "level=debug"))
    assert [dict(s.labels) for s in again] == [{"level": "info"}, {}]  # the guard remembers
    assert tally.refused == {("level", "too_many_values"): 1}


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"format": "regex"}, "regex is required"),
        ({"regex": "(?P<a>x)"}, "regex is required"),
        ({"format": "regex", "regex": "(x"}, "invalid regex"),
        ({"format": "regex", "regex": "(x)"}, "no named groups"),
        ({"json_paths": {"a": "b"}}, "needs format json"),
        ({"format": "json", "json_paths": {"a": "b..c"}}, "cannot read path"),
        ({"promote": ["bad-name"]}, "not a valid label name"),
        ({"promote": ["__name__"]}, "not a valid label name"),
        ({"promote": [f"l{i}" for i in range(9)]}, "at most 8"),
        ({"promote": ["a"], "output": "a"}, "both the output line and a label"),
    ],
)
def test_bad_config_is_refused(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        config(**values)


def test_handle_keeps_key_and_headers_counts_and_dead_letters_garbage() -> None:
    handler, registry = transform(format="json", promote=["level"], max_values_per_label=1)
    garbage = Record("logs", 0, 1, None, b"\x00\xffjunk")
    metrics = Record("logs", 0, 2, None, b"", ((h.SCHEMA, h.SCHEMA_REMOTE_WRITE),))
    good = record(lines({"app": "a"}, '{"level":"info","x":1}', "not json", '{"level":"warn"}'))
    result = handler.handle([good, garbage, metrics])
    assert [(r.offset, reason.split(":")[0]) for r, reason in result.dead] == [
        (1, "not a Loki push message"),
        (2, "schema b'prometheus.remote_write.v1' is not b'loki.push.v1'"),
    ]
    [output] = result.outputs
    assert (output.key, output.headers) == (good.key, good.headers)
    assert [(dict(s.labels), [e.metadata for e in s.entries]) for s in decoded(output)] == [
        ({"app": "a", "level": "info"}, [(("x", "1"),)]),
        ({"app": "a"}, [(), (("level", "warn"),)]),
    ]
    text = registry.render()
    assert 'ferryman_lines_parsed_total{function="parse"} 2' in text
    assert 'ferryman_lines_unparsed_total{function="parse"} 1' in text
    assert (
        'ferryman_parse_promotions_refused_total{function="parse",label="level",'
        'reason="too_many_values"} 1'
    ) in text


def test_a_message_of_empty_streams_gives_no_output() -> None:
    handler, _ = transform()
    assert handler.handle([record(Stream({"a": "b"}, []))]).outputs == []
