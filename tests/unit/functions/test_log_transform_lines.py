"""The log transforms and the ``ferryman.lines`` header: passed on while it describes
the output, made to follow the entries a transform kept, dropped when it cannot be
told, never left describing the wrong lines."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx

from ferryman import headers as h
from ferryman.telemetry import Registry
from ferryman.wire.lines import NO_SOURCE, decode_lines, encode_lines, source_id
from ferryman.wire.loki import Entry, Stream, decode_push_request, encode_push_request
from ferryman.wire.remote_write import snappy_compress, snappy_decompress
from functions._log_transform import follow_lines
from functions.count import SPEC as COUNT
from functions.elasticsearch_logs.config import ElasticsearchLogsConfig
from functions.elasticsearch_logs.encode import BulkEncoder
from functions.filter import SPEC as FILTER
from functions.parse import SPEC as PARSE
from functions.redact import SPEC as REDACT
from workers.function import Context, FunctionSpec
from workers.records import Output, Record

TS = 1_700_000_000_000_000_000
WEB = source_id("node-1", 1, 10, 7)
DB = source_id("node-1", 1, 11, 7)


def lines(labels: dict[str, str], *texts: str) -> Stream:
    return Stream(labels, [Entry(TS + i, text) for i, text in enumerate(texts)])


def record(streams: list[Stream], runs: list[list[tuple[bytes, list[int]]]]) -> Record:
    headers = (
        (h.SCHEMA, h.SCHEMA_LOKI_PUSH),
        (h.LINES, encode_lines(runs)),
        (h.CLUSTER, b"alpha"),
    )
    return Record("logs", 0, 0, b"k", snappy_compress(encode_push_request(streams)), headers)


def run(spec: FunctionSpec, config: dict[str, Any], *records: Record) -> list[Output]:
    context = Context(spec.name, httpx.Client, Registry(), logging.getLogger("test"))
    handler = spec.create(spec.config_model.model_validate(config), context)
    return list(handler.handle(list(records)).outputs)


def places(output: Output) -> list[list[tuple[str, tuple[bytes, int] | None]]]:
    """Per output stream, per entry: its line and where the output's header says it
    was read."""
    streams = decode_push_request(snappy_decompress(output.value))
    value = dict(output.headers)[h.LINES]
    where = decode_lines(value, [len(s.entries) for s in streams])
    return [
        [(entry.line, place) for entry, place in zip(stream.entries, stream_places, strict=True)]
        for stream, stream_places in zip(streams, where, strict=True)
    ]


def es_ids(*records: Record | Output) -> list[tuple[str, str]]:
    """Each line and the ``_id`` elasticsearch_logs gives it, in order."""
    config = ElasticsearchLogsConfig.model_validate({"url": "http://es:9200"})
    batch = [
        r if isinstance(r, Record) else Record("t", 0, 0, r.key, r.value, r.headers)
        for r in records
    ]
    out = []
    for chunk in BulkEncoder(config).encode(batch).chunks:
        for i in range(0, len(chunk.lines), 2):
            action, document = json.loads(chunk.lines[i]), json.loads(chunk.lines[i + 1])
            out.append((document["message"], action["create"]["_id"]))
    return out


MESSAGE = [
    lines({"app": "web"}, "GET /healthz", "GET /x password=hunter2", "GET /healthz"),
    lines({"app": "db"}, "slow query", "GET /healthz"),
]
RUNS = [[(WEB, [100, 230, 300])], [(NO_SOURCE, [0]), (DB, [4096])]]


def test_redact_and_parse_keep_the_header_as_it_came() -> None:
    source = record(MESSAGE, RUNS)
    [redacted] = run(REDACT, {}, source)
    assert redacted.headers == source.headers
    [parsed] = run(PARSE, {"format": "logfmt"}, source)
    assert parsed.headers == source.headers
    # parse changed lines and metadata, not which line is which.
    assert [i for _, i in es_ids(parsed)] == [i for _, i in es_ids(source)]


def test_filter_dropping_entries_makes_the_header_follow_the_survivors() -> None:
    source = record(MESSAGE, RUNS)
    [output] = run(FILTER, {"line_regex": "healthz"}, source)
    assert places(output) == [
        [("GET /x password=hunter2", (WEB, 230))],
        [("slow query", None)],
    ]
    assert [k for k, _ in output.headers] == [h.SCHEMA, h.CLUSTER, h.LINES]
    # The survivors are the documents the unfiltered message would have written.
    before = dict(es_ids(source))
    assert es_ids(output) == [(line, before[line]) for line, _ in es_ids(output)]


def test_filter_dropping_a_whole_stream_and_keeping_everything() -> None:
    source = record(MESSAGE, RUNS)
    [output] = run(FILTER, {"selector": '{app="web"}'}, source)
    assert places(output) == [
        [("slow query", None), ("GET /healthz", (DB, 4096))],
    ]
    [untouched] = run(FILTER, {"selector": '{app="nothing"}'}, source)
    assert untouched.headers == source.headers


def test_a_header_that_does_not_match_is_dropped_once_entries_move() -> None:
    bad = record(MESSAGE, [[(WEB, [1, 2])], [(DB, [3, 4])]])  # an entry short
    [output] = run(FILTER, {"line_regex": "healthz"}, bad)
    assert h.LINES not in dict(output.headers)
    assert dict(output.headers)[h.CLUSTER] == b"alpha"
    # Nothing moved: passed on as it came, for the sink to refuse.
    [kept] = run(REDACT, {}, bad)
    assert kept.headers == bad.headers


def test_parse_splitting_streams_drops_the_header() -> None:
    source = record(
        [lines({"app": "web"}, "level=info a=1", "level=warn a=2", "level=info a=3")],
        [[(WEB, [10, 20, 30])]],
    )
    [output] = run(PARSE, {"format": "logfmt", "promote": ["level"]}, source)
    assert len(decode_push_request(snappy_decompress(output.value))) == 2
    assert h.LINES not in dict(output.headers)


def test_empty_streams_leave_the_header_with_them() -> None:
    source = record([Stream({"app": "none"}, []), *MESSAGE], [[], *RUNS])
    [output] = run(REDACT, {}, source)
    assert dict(output.headers)[h.LINES] == encode_lines(RUNS)


def test_follow_lines_gives_up_on_new_entries_in_new_places() -> None:
    before = [lines({"a": "b"}, "x", "y")]
    value = encode_lines([[(WEB, [1, 2])]])
    same = [lines({"a": "b"}, "x", "y")]
    assert follow_lines(value, before, [2], same) is value
    assert follow_lines(value, before, [2], [lines({"a": "b"}, "y")]) is None
    kept = [Stream({"a": "b"}, [before[0].entries[1]])]
    assert follow_lines(value, before, [2], kept) == encode_lines([[(WEB, [2])]])
    # Split across streams, the same entry objects: each takes its place along.
    split = [Stream({"a": "1"}, [before[0].entries[1]]), Stream({"a": "2"}, [before[0].entries[0]])]
    assert follow_lines(value, before, [2], split) == encode_lines([[(WEB, [2])], [(WEB, [1])]])


def test_count_leaves_the_header_behind() -> None:
    [output] = run(COUNT, {"by": ["app"]}, record(MESSAGE, RUNS))
    assert h.LINES not in dict(output.headers)
    assert dict(output.headers)[h.SCHEMA] == h.SCHEMA_REMOTE_WRITE
