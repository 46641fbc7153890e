"""elasticsearch_metrics: the pure encode and classify steps, and how the handler
folds per-document answers into per-record results."""

from __future__ import annotations

import json
import logging
import math
import struct
from typing import Any

import httpx
import pytest
from pydantic import ValidationError

from ferryman import headers as h
from ferryman.telemetry import Registry
from ferryman.wire.remote_write import (
    Sample,
    TimeSeries,
    encode_write_request,
    snappy_compress,
)
from functions.elasticsearch_metrics import SPEC
from functions.elasticsearch_metrics.classify import classify_bulk, classify_item
from functions.elasticsearch_metrics.config import ElasticsearchMetricsConfig
from functions.elasticsearch_metrics.encode import (
    DOC_SCHEMA,
    BulkEncoder,
    Encoded,
    component_template,
    document_record,
    index_template,
)
from workers.function import Context
from workers.records import Record

STALE = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]
TS = 1_700_000_000_000


def config(**overrides: Any) -> ElasticsearchMetricsConfig:
    return ElasticsearchMetricsConfig.model_validate({"url": "http://es:9200", **overrides})


def series(labels: dict[str, str], *samples: tuple[float, int]) -> TimeSeries:
    return TimeSeries(tuple(sorted(labels.items())), tuple(Sample(v, t) for v, t in samples))


def record(
    *many: TimeSeries, offset: int = 0, cluster: str | None = "alpha", value: bytes | None = None
) -> Record:
    headers: tuple[tuple[str, bytes], ...] = ((h.SCHEMA, h.SCHEMA_REMOTE_WRITE),)
    if cluster is not None:
        headers += ((h.CLUSTER, cluster.encode()),)
    body = value if value is not None else snappy_compress(encode_write_request(many))
    return Record("metrics", 0, offset, b"k", body, headers)


def docs(encoded: Encoded) -> list[tuple[dict[str, Any], dict[str, Any]]]:
    """(action, document) pairs of every chunk, parsed."""
    out = []
    for chunk in encoded.chunks:
        lines = chunk.body().decode().splitlines()
        out += [
            (json.loads(a), json.loads(d)) for a, d in zip(lines[::2], lines[1::2], strict=True)
        ]
    return out


UP = {"__name__": "up", "job": "node", "instance": "a:9100"}


# ---- encode ----------------------------------------------------------------------------


def test_one_document_per_sample_with_every_field() -> None:
    encoded = BulkEncoder(config()).encode(
        [record(series({**UP, "cluster": "beta"}, (1.0, TS), (0.5, TS + 15_000)))]
    )
    (a1, d1), (a2, d2) = docs(encoded)
    assert d1 == {
        "@timestamp": TS,
        "metric": {"name": "up", "value": 1.0},
        "cluster": "beta",
        "labels": {"instance": "a:9100", "job": "node"},
    }
    assert d2["@timestamp"] == TS + 15_000 and d2["metric"]["value"] == 0.5
    assert set(a1) == {"create"} and set(a1["create"]) == {"_id"}
    assert a1["create"]["_id"] != a2["create"]["_id"]
    assert encoded.undecodable == [] and not encoded.skipped


def test_cluster_comes_from_the_header_when_the_series_lacks_it() -> None:
    ((_, doc),) = docs(BulkEncoder(config()).encode([record(series(UP, (1.0, TS)))]))
    assert doc["cluster"] == "alpha"
    ((_, doc),) = docs(BulkEncoder(config()).encode([record(series(UP, (1.0, TS)), cluster=None)]))
    assert "cluster" not in doc


def test_id_is_a_function_of_labels_cluster_and_timestamp() -> None:
    def one_id(labels: dict[str, str], ts: int = TS, cluster: str | None = "alpha") -> str:
        reversed_labels = TimeSeries(
            tuple(sorted(labels.items(), reverse=True)), (Sample(2.0, ts),)
        )
        ((action, _),) = docs(
            BulkEncoder(config()).encode([record(reversed_labels, cluster=cluster)])
        )
        _id: str = action["create"]["_id"]
        return _id

    base = one_id(UP)
    assert base == one_id(dict(reversed(UP.items())))  # label order does not matter
    assert base == one_id({**UP, "cluster": "alpha"})  # header cluster == label cluster
    assert (
        len(
            {
                base,
                one_id(UP, ts=TS + 1),
                one_id(UP, cluster="beta"),
                one_id({**UP, "job": "other"}),
                one_id(UP, cluster=None),
            }
        )
        == 5
    )
    assert base.startswith(f"{TS:x}") and len(base) == 20 + len(f"{TS:x}")
    # A value holding the separator character cannot pass for two labels.
    assert one_id({"__name__": "m", "a": "x\xffb\xffc"}) != one_id(
        {"__name__": "m", "a": "x", "b": "c"}
    )


def test_non_finite_samples_are_skipped_and_counted() -> None:
    encoded = BulkEncoder(config()).encode(
        [
            record(
                series(
                    UP,
                    (STALE, TS),
                    (math.nan, TS + 1),
                    (math.inf, TS + 2),
                    (-math.inf, TS + 3),
                    (1e300, TS + 4),
                    (-0.0, TS + 5),
                )
            )
        ]
    )
    assert [d["metric"]["value"] for _, d in docs(encoded)] == [1e300, -0.0]
    assert encoded.skipped == {"stale_marker": 1, "nan": 1, "inf": 2}


def test_bodies_are_cut_at_max_bulk_bytes_and_remember_their_records() -> None:
    batch = [
        record(*(series({**UP, "i": str(i)}, (float(i), TS)) for i in range(10)), offset=n)
        for n in range(5)
    ]
    encoded = BulkEncoder(config(max_bulk_bytes=1024)).encode(batch)
    assert len(encoded.chunks) > 5
    assert all(len(c.body()) <= 1024 for c in encoded.chunks)
    assert [o for c in encoded.chunks for o in c.owners] == [n for n in range(5) for _ in range(10)]
    assert len(docs(encoded)) == 50
    big = series({**UP, "blob": "x" * 3000}, (1.0, TS))
    lone = BulkEncoder(config(max_bulk_bytes=1024)).encode([record(big), record(big)])
    assert [len(c) for c in lone.chunks] == [1, 1]


def test_undecodable_records_are_reported_not_raised() -> None:
    good = record(series(UP, (1.0, TS)))
    junk = record(value=b"\x00\xffnot snappy at all", offset=1)
    other = Record("metrics", 0, 2, None, b"{}", ((h.SCHEMA, b"loki.push.v1"),))
    encoded = BulkEncoder(config()).encode([good, junk, other])
    assert len(docs(encoded)) == 1
    (p1, why1), (p2, why2) = encoded.undecodable
    assert (p1, p2) == (1, 2)
    assert why1.startswith("not a remote-write message: not snappy")
    assert "loki.push.v1" in why2


def test_index_mode_names_indices_after_the_sample_time() -> None:
    cfg = config(data_stream=None, index="ferryman-metrics-%Y.%m.%d")
    day = 86_400_000
    midnight = TS - TS % day
    encoded = BulkEncoder(cfg).encode([record(series(UP, (1.0, midnight - 1), (2.0, midnight)))])
    assert [a["create"]["_index"] for a, _ in docs(encoded)] == [
        "ferryman-metrics-2023.11.13",
        "ferryman-metrics-2023.11.14",
    ]
    assert cfg.index_pattern == "ferryman-metrics-*"
    assert cfg.template_name == "ferryman-metrics"
    assert "data_stream" not in index_template(cfg)
    far = BulkEncoder(cfg).encode([record(series(UP, (1.0, 10**15)))])
    assert far.skipped == {"timestamp_out_of_range": 1} and not far.chunks


def test_dead_document_record_carries_the_json_document() -> None:
    source = record(series(UP, (1.0, TS)), offset=7)
    chunk = BulkEncoder(config()).encode([source]).chunks[0]
    dead = document_record(source, chunk, 0)
    assert json.loads(dead.value)["metric"] == {"name": "up", "value": 1.0}
    assert (dead.topic, dead.partition, dead.offset, dead.key) == ("metrics", 0, 7, b"k")
    assert dead.header(h.SCHEMA) == DOC_SCHEMA
    assert [k for k, _ in dead.headers].count(h.SCHEMA) == 1
    assert dead.header(h.CLUSTER) == b"alpha"
    assert dead.header("elasticsearch.id") == chunk.action(0)["_id"].encode()


# ---- config and templates ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"data_stream": None}, "exactly one of data_stream and index"),
        ({"index": "x-%Y"}, "exactly one of data_stream and index"),
        ({"data_stream": "Metrics"}, "not a valid Elasticsearch name"),
        ({"data_stream": ".ds-x"}, "may not start with .ds-"),
        ({"data_stream": None, "index": "x-%M"}, "index directive %M"),
        ({"api_key": "k", "bearer_token": "t"}, "at most one of"),
        ({"url": "es:9200"}, "http://"),
    ],
)
def test_bad_config_is_refused(overrides: dict[str, Any], message: str) -> None:
    with pytest.raises(ValidationError, match=message):
        config(**overrides)


def test_templates_map_every_field_and_put_operator_components_last() -> None:
    cfg = config(template={"composed_of": ["my-ilm"], "priority": 300, "number_of_replicas": 1})
    component = component_template(cfg)["template"]
    properties = component["mappings"]["properties"]
    assert properties["@timestamp"] == {"type": "date"}
    assert properties["metric"]["properties"] == {
        "name": {"type": "keyword"},
        "value": {"type": "double"},
    }
    assert properties["cluster"] == {"type": "keyword"}
    assert properties["labels"]["subobjects"] is False
    (labels_rule,) = component["mappings"]["dynamic_templates"]
    assert labels_rule["ferryman_labels"]["mapping"]["type"] == "keyword"
    assert component["settings"]["index"]["number_of_replicas"] == 1
    index = index_template(cfg)
    assert index["index_patterns"] == ["metrics-ferryman-default"]
    assert index["composed_of"] == ["metrics-ferryman-default@ferryman", "my-ilm"]
    assert index["priority"] == 300 and index["data_stream"] == {}
    flat = component_template(config(template={"labels": "flattened"}))["template"]["mappings"]
    assert flat["properties"]["labels"] == {"type": "flattened"}
    assert flat["dynamic_templates"] == []


# ---- classify ----------------------------------------------------------------------------


def bulk_body(*items: tuple[int, str | None]) -> bytes:
    answers = []
    for status, error_type in items:
        answer: dict[str, Any] = {"status": status}
        if error_type:
            answer["error"] = {"type": error_type, "reason": f"{error_type} happened"}
        answers.append({"create": answer})
    return json.dumps({"errors": True, "items": answers}).encode()


def test_classify_bulk_judges_each_document() -> None:
    body = bulk_body(
        (201, None),
        (409, "version_conflict_engine_exception"),
        (429, "es_rejected_execution_exception"),
        (400, "document_parsing_exception"),
        (503, "unavailable_shards_exception"),
        (500, "es_rejected_execution_exception"),
        (403, "cluster_block_exception"),
    )
    result = classify_bulk(body, 7)
    assert (result.created, result.duplicates) == (1, 1)
    assert [(i, o.kind) for i, o in result.failed] == [
        (2, "retry"),
        (3, "permanent"),
        (4, "retry"),
        (5, "retry"),
        (6, "permanent"),
    ]
    assert result.failed[1][1].reason == (
        "HTTP 400 document_parsing_exception: document_parsing_exception happened"
    )


def test_classify_bulk_fast_path_and_unreadable_answers() -> None:
    assert classify_bulk(b'{"errors":false,"items":[]}', 3).created == 3
    for body in (b"<html>proxy</html>", bulk_body((201, None)), b'{"items":[{"create":{}}]}'):
        result = classify_bulk(body, 2)
        assert [(i, o.kind) for i, o in result.failed] == [(0, "retry"), (1, "retry")]


def test_classify_item_rules() -> None:
    assert classify_item(201, None).kind == "ok"
    assert classify_item(409, {"type": "version_conflict_engine_exception"}).reason == "duplicate"
    assert classify_item(429, "weird").kind == "retry"
    assert classify_item(408, None).kind == "retry"
    assert classify_item(404, {"type": "index_not_found_exception"}).kind == "permanent"


# ---- the handler folds document answers into record results -----------------------------


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
        "elasticsearch_metrics",
        lambda **kw: httpx.Client(transport=transport, **kw),
        Registry(),
        logging.getLogger("test"),
    )
    return SPEC.create(config(**overrides), context)


def two_records() -> list[Record]:
    return [
        record(series(UP, (1.0, TS), (2.0, TS + 1)), offset=0),
        record(series(UP, (3.0, TS + 2), (4.0, TS + 3)), offset=1),
    ]


def test_partial_throttle_retries_only_its_records_and_dead_letters_once() -> None:
    batch = two_records()
    script = Script([201, 429, 400, 201], [409, 201])
    handler = sink(script)
    handler.start()
    first = handler.handle(batch)
    assert [r.offset for r in first.retry] == [0]
    assert [(r.offset, r.header(h.SCHEMA)) for r, _ in first.dead] == [(1, DOC_SCHEMA)]
    assert json.loads(first.dead[0][0].value)["metric"]["value"] == 3.0
    assert "document_parsing_exception" in first.dead[0][1]
    second = handler.handle(first.retry)
    assert (list(second.dead), list(second.retry)) == ([], [])  # 409 = already stored
    assert script.paths == [
        "/_component_template/metrics-ferryman-default@ferryman",
        "/_index_template/metrics-ferryman-default",
        "/metrics-ferryman-default/_bulk",
        "/metrics-ferryman-default/_bulk",
    ]
    assert handler.m_documents.value(function="elasticsearch_metrics", result="duplicate") == 1


def test_rejected_documents_wait_for_their_records_throttled_siblings() -> None:
    batch = two_records()
    first = sink(Script([400, 429, 201, 201])).handle(batch)
    assert [r.offset for r in first.retry] == [0] and first.dead == []


def test_whole_request_throttle_or_outage_retries_the_rest() -> None:
    batch = two_records()
    throttled = sink(Script(429), max_bulk_bytes=1024).handle(batch)
    assert [r.offset for r in throttled.retry] == [0, 1] and throttled.retry_delay == 3.0
    script = Script([201, 201], httpx.ConnectError("refused"))
    handler = sink(script)
    handler.encoder.max_bytes = BulkEncoder(config()).encode(batch[:1]).chunks[0].size
    down = handler.handle(batch)
    assert [r.offset for r in down.retry] == [1] and down.dead == []


def test_permanent_request_failure_and_garbage_dead_letter_whole_records() -> None:
    batch = [*two_records(), record(value=b"garbage", offset=2)]
    result = sink(Script(401)).handle(batch)
    assert [(r.offset, why.split(":")[0]) for r, why in result.dead] == [
        (0, "bulk request refused"),
        (1, "bulk request refused"),
        (2, "not a remote-write message"),
    ]
    assert result.retry == []


def test_only_per_item_refusals_that_are_not_backpressure_are_evidence() -> None:
    """Record 0's document answered 500 is pinned on it; record 1's 429
    (es_rejected_execution_exception) is backpressure."""
    result = sink(Script([201, 500, 429, 201])).handle(two_records())
    assert [r.offset for r in result.retry] == [0, 1]
    assert [r.offset for r, _ in result.refused] == [0]
    assert result.refused[0][1].startswith("HTTP 500")


def test_unavailable_shards_and_index_blocks_are_backpressure() -> None:
    assert classify_item(503, {"type": "unavailable_shards_exception"}).status == 503
    assert classify_item(500, {"type": "es_rejected_execution_exception"}).status == 429
    blocked = classify_item(429, {"type": "cluster_block_exception"})
    assert (blocked.kind, blocked.status) == ("retry", 429)
    assert classify_item(500, {"type": "illegal_state_exception"}).status == 500


def test_a_whole_request_refused_pins_nothing_unless_it_held_one_record() -> None:
    batch = two_records()
    several = sink(Script(500), max_bulk_bytes=1024 * 1024).handle(batch)
    assert [r.offset for r in several.retry] == [0, 1] and list(several.refused) == []
    script = Script(500)
    handler = sink(script)
    handler.encoder.max_bytes = BulkEncoder(config()).encode(batch[:1]).chunks[0].size
    alone = handler.handle(batch)  # the first chunk holds record 0 alone; 1 is not sent
    assert [r.offset for r in alone.retry] == [0, 1]
    assert [r.offset for r, _ in alone.refused] == [0]
    throttled = sink(Script(503), max_bulk_bytes=1024 * 1024).handle(batch[:1])
    assert list(throttled.refused) == []
