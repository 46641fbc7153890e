"""elasticsearch_logs: the pure encode and classify steps, and how the handler folds
per-document answers into per-record results."""

from __future__ import annotations

import json
import logging
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from ferryman import headers as h
from ferryman.telemetry import Registry
from ferryman.wire.loki import Entry, Stream, encode_push_request
from ferryman.wire.remote_write import snappy_compress
from functions._elasticsearch import DOC_SCHEMA
from functions.elasticsearch_logs import SPEC
from functions.elasticsearch_logs.classify import classify, classify_bulk, classify_item
from functions.elasticsearch_logs.config import ElasticsearchLogsConfig
from functions.elasticsearch_logs.encode import (
    BulkEncoder,
    Encoded,
    component_template,
    index_template,
    iso_timestamp,
)
from workers.function import Context
from workers.records import Record

TS = 1_700_000_000_000_000_001  # 2023-11-14T22:13:20.000000001Z
POD = {
    "filename": "/var/log/pods/web-0/nginx.log",
    "host": "node-1",
    "namespace": "web",
    "pod": "web-0",
    "container": "nginx",
    "job": "web/nginx",
    "stream": "stdout",
}


def config(**overrides: Any) -> ElasticsearchLogsConfig:
    return ElasticsearchLogsConfig.model_validate({"url": "http://es:9200", **overrides})


def stream(labels: dict[str, str], *entries: tuple[int, str]) -> Stream:
    return Stream(labels, [Entry(ts, line) for ts, line in entries])


def record(
    *streams: Stream,
    offset: int = 0,
    cluster: str | None = "alpha",
    value: bytes | None = None,
    schema: bytes = h.SCHEMA_LOKI_PUSH,
) -> Record:
    headers: tuple[tuple[str, bytes], ...] = ((h.SCHEMA, schema),)
    if cluster is not None:
        headers += ((h.CLUSTER, cluster.encode()),)
    body = value if value is not None else snappy_compress(encode_push_request(streams))
    return Record("logs", 0, offset, b"k", body, headers)


def docs(encoded: Encoded) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(action, document) pairs of every chunk, parsed."""
    return [
        (json.loads(c.lines[i]), json.loads(c.lines[i + 1]))
        for c in encoded.chunks
        for i in range(0, len(c.lines), 2)
    ]


def ids(*records: Record) -> list[str]:
    return [a["create"]["_id"] for a, _ in docs(BulkEncoder(config()).encode(records))]


def test_one_ecs_document_per_line() -> None:
    encoded = BulkEncoder(config()).encode([record(stream(POD, (TS, "GET / 200")))])
    ((action, document),) = docs(encoded)
    assert set(action) == {"create"} and set(action["create"]) == {"_id"}
    assert document == {
        "@timestamp": "2023-11-14T22:13:20.000000001Z",
        "message": "GET / 200",
        "log": {"file": {"path": "/var/log/pods/web-0/nginx.log"}},
        "host": {"name": "node-1"},
        "kubernetes": {
            "namespace": "web",
            "pod": {"name": "web-0"},
            "container": {"name": "nginx"},
        },
        "cluster": "alpha",
        "labels": {"job": "web/nginx", "stream": "stdout"},
    }
    assert encoded.lines == 1


def test_cluster_label_wins_over_the_header_and_absent_fields_are_left_out() -> None:
    labelled = record(stream({"cluster": "beta", "app": "x"}, (TS, "a")), cluster="alpha")
    headerless = record(stream({"app": "x"}, (TS, "b")), cluster=None)
    (_, first), (_, second) = docs(BulkEncoder(config()).encode([labelled, headerless]))
    assert first == {
        "@timestamp": "2023-11-14T22:13:20.000000001Z",
        "message": "a",
        "cluster": "beta",
        "labels": {"app": "x"},
    }
    assert second == {
        "@timestamp": "2023-11-14T22:13:20.000000001Z",
        "message": "b",
        "labels": {"app": "x"},
    }


def test_structured_metadata_go_under_fields_and_leave_the_id_alone() -> None:
    meta = (("trace_id", "4bf9"), ("host", "parsed-host"), ("message", "m"), ("a.b", "é"))
    plain = Stream({"app": "x"}, [Entry(TS, "GET /")])
    parsed = Stream({"app": "x"}, [Entry(TS, "GET /", meta)])
    [(action, document)] = docs(BulkEncoder(config()).encode([record(parsed)]))
    assert document == {
        "@timestamp": "2023-11-14T22:13:20.000000001Z",
        "message": "GET /",
        "cluster": "alpha",
        "labels": {"app": "x"},
        "fields": {"trace_id": "4bf9", "host": "parsed-host", "message": "m", "a.b": "é"},
    }
    assert [action["create"]["_id"]] == ids(record(plain))
    other = docs(BulkEncoder(config(metadata_field="meta")).encode([record(parsed)]))
    assert other[0][1]["meta"]["trace_id"] == "4bf9" and "fields" not in other[0][1]


@pytest.mark.parametrize("name", ["labels", "message", "a.b", ""])
def test_metadata_field_may_not_clash_or_nest(name: str) -> None:
    with pytest.raises(ValidationError, match="metadata_field"):
        config(metadata_field=name)


def test_timestamps_keep_nanoseconds() -> None:
    assert iso_timestamp(0) == "1970-01-01T00:00:00.000000000Z"
    assert iso_timestamp(TS + 998_999_999) == "2023-11-14T22:13:20.999000000Z"
    assert iso_timestamp(10**30) is None
    far = 10**21  # year 33658: past what a calendar (or date_nanos) names
    many = record(stream({"a": "b"}, (TS, "x"), (TS + 1, "x"), (TS + 10**9, "x"), (far, "x")))
    stamps = [d["@timestamp"] for _, d in docs(BulkEncoder(config()).encode([many]))]
    assert stamps == [
        "2023-11-14T22:13:20.000000001Z",
        "2023-11-14T22:13:20.000000002Z",
        "2023-11-14T22:13:21.000000001Z",
        far // 10**6,
    ]


def test_id_is_deterministic_and_tells_lines_apart() -> None:
    first = ids(record(stream(POD, (TS, "x"), (TS, "y"), (TS + 1, "x"))))
    assert len(set(first)) == 3
    assert first[0].startswith(f"{TS:x}") and len(first[0]) == len(f"{TS:x}") + 20
    # Same input, new encoder, other offset: same ids (what makes a replay a no-op).
    assert ids(record(stream(POD, (TS, "x"), (TS, "y"), (TS + 1, "x")), offset=9)) == first
    # Labels and cluster (label or header) are part of the identity.
    assert ids(record(stream({**POD, "pod": "web-1"}, (TS, "x"))))[0] != first[0]
    assert ids(record(stream(POD, (TS, "x")), cluster="beta"))[0] != first[0]
    assert ids(record(stream(POD, (TS, "x")), cluster=None))[0] != first[0]
    assert ids(record(stream({**POD, "cluster": "alpha"}, (TS, "x")), cluster=None)) == first[:1]


def test_identical_lines_in_the_same_nanosecond_are_distinct_and_stable() -> None:
    twice = record(
        stream(POD, (TS, "same"), (TS, "same")), stream(dict(POD), (TS, "same"))
    )  # same labels, another stream
    three = ids(twice)
    assert len(set(three)) == 3
    assert ids(twice) == three
    # Each record ranks its own lines: a record with one copy repeats the first id.
    assert ids(record(stream(POD, (TS, "same")))) == three[:1]


def test_invalid_utf8_and_unicode_are_escaped_safely() -> None:
    body = snappy_compress(encode_push_request([stream({"a": "b"}, (TS, "ok"))]))
    bad = body.replace(b"ok", b"\xff\xfe")  # same length, so framing and snappy survive
    encoded = BulkEncoder(config()).encode(
        [record(value=bad), record(stream({"é": "ü"}, (TS, 'q"\n€')))]
    )
    (_, first), (_, second) = docs(encoded)
    assert first["message"] == "\ufffd\ufffd"
    assert second["message"] == 'q"\n€' and second["labels"] == {"é": "ü"}
    assert all(line.isascii() for c in encoded.chunks for line in c.lines)


def test_bodies_are_cut_at_max_bulk_bytes_and_remember_their_records() -> None:
    batch = [
        record(stream({"r": str(r)}, *((TS + i, "l" * 200) for i in range(10))), offset=r)
        for r in range(5)
    ]
    encoded = BulkEncoder(config(max_bulk_bytes=1024)).encode(batch)
    assert len(encoded.chunks) > 5
    assert all(c.size <= 1024 and c.size == len(c.body()) for c in encoded.chunks)
    owners = [o for c in encoded.chunks for o in c.owners]
    assert owners == [r for r in range(5) for _ in range(10)]
    one = BulkEncoder(config(max_bulk_bytes=1024)).encode(
        [record(stream({"a": "b"}, (TS, "x" * 5000)))]
    )
    assert [len(c) for c in one.chunks] == [1]  # a document is never split


def test_undecodable_records_are_reported_not_raised() -> None:
    batch = [
        record(value=b"\x00\xffnot snappy"),
        record(stream({"a": "b"}, (TS, "x"))),
        record(stream({"a": "b"}, (TS, "x")), schema=h.SCHEMA_REMOTE_WRITE, offset=2),
        record(value=snappy_compress(b"\x0a\x05\x0a\x03abc")),
    ]
    encoded = BulkEncoder(config()).encode(batch)
    assert [p for p, _ in encoded.undecodable] == [0, 2, 3]
    assert encoded.undecodable[0][1].startswith("not a Loki push message: not snappy")
    assert "is not b'loki.push.v1'" in encoded.undecodable[1][1]
    assert [c.owners for c in encoded.chunks] == [[1]]


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"data_stream": "Logs"}, "not a valid Elasticsearch name"),
        ({"data_stream": ".ds-x"}, "may not start with .ds-"),
        ({"url": "es:9200"}, "must start with http"),
        ({"api_key": "k", "bearer_token": "t"}, "at most one"),
        ({"max_bulk_bytes": 10}, "greater than or equal"),
    ],
)
def test_bad_config_is_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        config(**overrides)


def test_templates_map_ecs_fields_and_put_operator_components_last() -> None:
    cfg = config(data_stream="logs-x-default", template={"composed_of": ["ilm"]})
    mappings = component_template(cfg)["template"]["mappings"]
    props = mappings["properties"]
    assert props["@timestamp"] == {"type": "date_nanos"}
    assert props["message"] == {"type": "text"}
    assert props["log"]["properties"]["file"]["properties"]["path"]["type"] == "keyword"
    assert props["kubernetes"]["properties"]["pod"]["properties"]["name"]["type"] == "keyword"
    assert props["labels"]["subobjects"] is False
    assert mappings["dynamic_templates"][0]["ferryman_labels"]["mapping"]["type"] == "keyword"
    assert props["fields"]["subobjects"] is False
    assert mappings["dynamic_templates"][1]["ferryman_metadata"]["path_match"] == "fields.*"
    assert index_template(cfg) | {"version": 0, "_meta": {}} == {
        "version": 0,
        "_meta": {},
        "index_patterns": ["logs-x-default"],
        "priority": 200,
        "composed_of": ["logs-x-default@ferryman", "ilm"],
        "data_stream": {},
    }


def test_classify_shares_the_bulk_rules() -> None:
    assert classify(429, {"retry-after": "1"}, "").delay == 1.0
    assert classify_item(409, None).kind == "ok"
    assert classify_item(400, {"type": "mapper_parsing_exception"}).kind == "permanent"
    assert classify_item(429, {"type": "x"}).kind == "retry"
    result = classify_bulk(
        bulk_body((201, None), (409, None), (400, "mapper_parsing_exception")), 3
    )
    assert (result.created, result.duplicates) == (1, 1)
    assert [(i, o.kind) for i, o in result.failed] == [(2, "permanent")]


# ---- the handler folds document answers into record results -----------------------------


def bulk_body(*items: tuple[int, str | None]) -> bytes:
    answers = []
    for status, error_type in items:
        answer: dict[str, Any] = {"status": status}
        if error_type:
            answer["error"] = {"type": error_type, "reason": "because"}
        answers.append({"create": answer})
    return json.dumps({"errors": any(s >= 300 for s, _ in items), "items": answers}).encode()


class Script:
    """Answers each bulk POST with the next scripted item statuses (or raises)."""

    def __init__(self, *answers: list[int] | Exception | int) -> None:
        self.answers = list(answers)
        self.paths: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(request.url.path)
        if request.method == "PUT":
            return httpx.Response(200, json={"acknowledged": True})
        answer = self.answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        if isinstance(answer, int):
            return httpx.Response(answer, headers={"retry-after": "3"}, text="busy")
        types = {
            409: "version_conflict_engine_exception",
            429: "es_rejected_execution_exception",
            400: "document_parsing_exception",
        }
        return httpx.Response(200, content=bulk_body(*((s, types.get(s)) for s in answer)))


def sink(script: Script, **overrides: Any) -> Any:
    transport = httpx.MockTransport(script)
    context = Context(
        "elasticsearch_logs",
        lambda **kw: httpx.Client(transport=transport, **kw),
        Registry(),
        logging.getLogger("test"),
    )
    return SPEC.create(config(**overrides), context)


def two_records() -> list[Record]:
    return [
        record(stream(POD, (TS, "a"), (TS + 1, "b")), offset=0),
        record(stream(POD, (TS + 2, "c"), (TS + 3, "d")), offset=1),
    ]


def test_partial_throttle_retries_only_its_records_and_dead_letters_once() -> None:
    script = Script([201, 429, 400, 201], [409, 201])
    handler = sink(script)
    handler.start()
    first = handler.handle(two_records())
    assert [r.offset for r in first.retry] == [0]
    assert [(r.offset, r.header(h.SCHEMA)) for r, _ in first.dead] == [(1, DOC_SCHEMA)]
    assert json.loads(first.dead[0][0].value)["message"] == "c"
    assert first.dead[0][0].header("elasticsearch.id") is not None
    assert "document_parsing_exception" in first.dead[0][1]
    second = handler.handle(first.retry)
    assert (list(second.dead), list(second.retry)) == ([], [])
    assert script.paths == [
        "/_component_template/logs-ferryman-default@ferryman",
        "/_index_template/logs-ferryman-default",
        "/logs-ferryman-default/_bulk",
        "/logs-ferryman-default/_bulk",
    ]
    assert handler.m_documents.value(function="elasticsearch_logs", result="duplicate") == 1


def test_whole_request_throttle_or_outage_retries_the_rest() -> None:
    throttled = sink(Script(503)).handle(two_records())
    assert [r.offset for r in throttled.retry] == [0, 1] and throttled.retry_delay == 3.0
    handler = sink(Script([201, 201], httpx.ConnectError("refused")))
    handler.encoder.max_bytes = BulkEncoder(config()).encode(two_records()[:1]).chunks[0].size
    down = handler.handle(two_records())
    assert [r.offset for r in down.retry] == [1] and down.dead == []


def test_permanent_request_failure_and_garbage_dead_letter_whole_records() -> None:
    batch = [*two_records(), record(value=b"garbage", offset=2)]
    result = sink(Script(401)).handle(batch)
    assert [(r.offset, why.split(":")[0]) for r, why in result.dead] == [
        (0, "bulk request refused"),
        (1, "bulk request refused"),
        (2, "not a Loki push message"),
    ]
    assert result.retry == []
