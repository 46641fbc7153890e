"""elasticsearch_metrics against the real Kafka and Elasticsearch, through the worker."""

from __future__ import annotations

import json
import math
import struct
import time

import httpx

from functions.elasticsearch_metrics.config import ElasticsearchMetricsConfig
from functions.elasticsearch_metrics.send import install_templates
from tests.integration.pipeline import (
    create_topics,
    dead_letters,
    produce,
    produce_series,
    remote_write,
    time_series,
    wait_for,
)

STALE = struct.unpack("<d", struct.pack("<Q", 0x7FF0000000000002))[0]
DAY_MS = 86_400_000
SINK = "elasticsearch_metrics"


def _config(stack, **config):
    return {"url": stack("elasticsearch", "http"), **config}


def _produce(bootstrap, topic, messages, cluster="alpha"):
    """Each message is a list of (labels, [(value, ts_ms), ...]) series."""
    produce(
        bootstrap,
        topic,
        [
            remote_write(
                [time_series(labels, *samples) for labels, samples in series], cluster=cluster
            )
            for series in messages
        ],
    )


def _documents(es, target):
    es.indices.refresh(index=target)
    hits = es.search(index=target, size=10_000, query={"match_all": {}})["hits"]["hits"]
    return {hit["_id"]: hit["_source"] for hit in hits}


def _count(es, target):
    es.indices.refresh(index=target)
    return es.count(index=target)["count"]


def _templates(es, name):
    return (
        es.indices.get_index_template(name=name).body,
        es.cluster.get_component_template(name=f"{name}@ferryman").body,
    )


def test_every_sample_arrives_with_its_fields_for_two_clusters(stack, unique, worker, es):
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (unique, 3))
    stream = f"metrics-{unique}-default"
    metric = f"es_{unique}"
    sent = produce_series(bootstrap, unique, metric, messages=30, series_per_message=10)
    sent |= produce_series(
        bootstrap, unique, metric, messages=30, series_per_message=10, cluster="beta", start=30
    )
    now = int(time.time() * 1000)
    _produce(
        bootstrap,
        unique,
        [
            [
                (
                    {"__name__": metric, "sid": "odd"},
                    [
                        (STALE, now),
                        (math.nan, now + 1),
                        (math.inf, now + 2),
                        (-math.inf, now + 3),
                        (5.0, now + 4),
                    ],
                )
            ]
        ],
    )
    running = worker(SINK, unique, _config(stack, data_stream=stream))
    wait_for(lambda: running.committed() == 61, 90, "all 61 offsets committed")

    documents = _documents(es, stream)
    assert len(documents) == 601
    assert {d["labels"]["sid"] for d in documents.values()} == sent | {"odd"}
    by_sid = {d["labels"]["sid"]: d for d in documents.values()}
    assert by_sid["3-7"]["metric"] == {"name": metric, "value": 3.0}
    assert by_sid["3-7"]["cluster"] == "alpha" and by_sid["33-7"]["cluster"] == "beta"
    assert by_sid["3-7"]["labels"] == {"sid": "3-7"}
    assert isinstance(by_sid["3-7"]["@timestamp"], int)
    assert by_sid["odd"] == {
        "@timestamp": now + 4,
        "metric": {"name": metric, "value": 5.0},
        "cluster": "alpha",
        "labels": {"sid": "odd"},
    }

    resolved = es.indices.resolve_index(name=stream)
    assert [d["name"] for d in resolved["data_streams"]] == [stream]
    (backing,) = resolved["data_streams"][0]["backing_indices"]
    properties = es.indices.get_mapping(index=backing)[backing]["mappings"]["properties"]
    assert properties["labels"]["properties"]["sid"]["type"] == "keyword"
    assert properties["metric"]["properties"]["value"]["type"] == "double"
    assert properties["cluster"]["type"] == "keyword"
    assert (
        es.indices.get_settings(index=backing)[backing]["settings"]["index"]["number_of_replicas"]
        == "0"
    )

    for reason, count in (("stale_marker", 1), ("nan", 1), ("inf", 2)):
        assert running.metric("ferryman_samples_skipped_total", reason=reason) == count
    assert running.metric("ferryman_documents_total", result="created") == 601
    assert running.terminate() == 0
    assert "worker stopped" in running.output()
    assert dead_letters(bootstrap, running.dead_letter_topic) == []


def test_replay_and_restart_add_nothing_and_keep_the_templates(stack, unique, worker, es):
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (unique, 2))
    stream = f"metrics-{unique}-default"
    config = _config(stack, data_stream=stream)
    produce_series(bootstrap, unique, f"es_{unique}", messages=40, series_per_message=10)
    first = worker(SINK, unique, config)
    wait_for(lambda: first.committed() == 40, 90, "first worker committed all 40")
    assert _count(es, stream) == 400
    assert first.terminate() == 0
    installed = _templates(es, stream)

    # A new consumer group starts from the beginning: every document is sent again.
    replay = worker(SINK, unique, config, kafka={"group_id": f"replay-{unique}"})
    wait_for(lambda: replay.committed() == 40, 90, "the replay committed all 40")
    assert _count(es, stream) == 400
    assert replay.metric("ferryman_documents_total", result="duplicate") == 400
    assert replay.metric("ferryman_documents_total", result="created") == 0
    assert replay.terminate() == 0
    for worker in (first, replay):
        assert f"index template {stream} for {stream} is in place" in worker.output()
    assert _templates(es, stream) == installed
    resolved = es.indices.resolve_index(name=stream)
    assert len(resolved["data_streams"][0]["backing_indices"]) == 1
    assert dead_letters(bootstrap, first.dead_letter_topic) == []


def test_garbage_goes_to_dead_letter_and_the_rest_flows(stack, unique, worker, es):
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (unique, 1))
    stream = f"metrics-{unique}-default"
    metric = f"es_{unique}"
    sent = produce_series(
        bootstrap,
        unique,
        metric,
        messages=5,
        series_per_message=3,
        extra=[(b"\x00\xffnot snappy at all", b"junk")],
    )
    sent |= produce_series(bootstrap, unique, metric, messages=5, series_per_message=3, start=5)
    running = worker(SINK, unique, _config(stack, data_stream=stream))
    wait_for(lambda: running.committed() == 11, 60, "all 11 offsets committed")
    assert {d["labels"]["sid"] for d in _documents(es, stream).values()} == sent
    dead = dead_letters(bootstrap, running.dead_letter_topic)
    assert [d.value for d in dead] == [b"\x00\xffnot snappy at all"]
    headers = dict(dead[0].headers)
    assert headers["ferryman.error"].startswith(b"not a remote-write message: not snappy")
    assert headers["ferryman.function"] == b"elasticsearch_metrics"
    assert headers["ferryman.source"] == f"{unique}/0/5".encode()


def test_documents_refused_for_good_are_dead_lettered_one_by_one(stack, unique, worker, es):
    """An operator's component template maps labels.code as long: documents whose code
    is not a number get a per-item 400 (document_parsing_exception) in an otherwise
    successful bulk."""
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (unique, 1))
    es.cluster.put_component_template(
        name=f"{unique}-codes",
        template={
            "mappings": {"properties": {"labels": {"properties": {"code": {"type": "long"}}}}}
        },
    )
    stream = f"metrics-{unique}-default"
    metric = f"es_{unique}"
    now = int(time.time() * 1000)
    _produce(
        bootstrap,
        unique,
        [
            [
                ({"__name__": metric, "m": str(m), "code": code}, [(float(m), now)])
                for code in ("200", "oops", "404", f"bad-{m}")
            ]
            for m in range(10)
        ],
        cluster="gamma",
    )
    running = worker(
        SINK,
        unique,
        _config(stack, data_stream=stream, template={"composed_of": [f"{unique}-codes"]}),
    )
    wait_for(lambda: running.committed() == 10, 60, "all 10 offsets committed")

    stored = _documents(es, stream).values()
    assert sorted((d["labels"]["m"], d["labels"]["code"]) for d in stored) == sorted(
        (str(m), code) for m in range(10) for code in ("200", "404")
    )
    dead = dead_letters(bootstrap, running.dead_letter_topic)
    assert len(dead) == 20
    documents = [json.loads(d.value) for d in dead]
    assert sorted((d["labels"]["m"], d["labels"]["code"]) for d in documents) == sorted(
        (str(m), code) for m in range(10) for code in ("oops", f"bad-{m}")
    )
    assert all(d["cluster"] == "gamma" and d["metric"]["name"] == metric for d in documents)
    for message in dead:
        headers = dict(message.headers)
        assert headers["schema"] == b"elasticsearch.doc.v1"
        assert headers["cluster"] == b"gamma"
        assert b"HTTP 400 document_parsing_exception" in headers["ferryman.error"]
        assert headers["ferryman.source"].startswith(f"{unique}/0/".encode())
        assert len(headers["elasticsearch.id"]) > 20


def test_documents_throttled_per_item_are_retried_until_stored(stack, unique, worker, es):
    """A real per-item 429: yesterday's index carries the flood-stage block
    (read_only_allow_delete), so in every bulk its documents answer 429 while
    today's are created. Nothing is committed until the block is lifted; then every
    document is stored exactly once."""
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (unique, 1))
    config = {"data_stream": None, "index": f"{unique}-%Y.%m.%d"}
    now = int(time.time() * 1000)
    yesterday = now - DAY_MS
    with httpx.Client() as client:  # the index must exist, with its template, before blocking
        install_templates(
            client,
            ElasticsearchMetricsConfig.model_validate(
                {"url": stack("elasticsearch", "http"), **config}
            ),
        )
    blocked = time.strftime(f"{unique}-%Y.%m.%d", time.gmtime(yesterday / 1000))
    today = time.strftime(f"{unique}-%Y.%m.%d", time.gmtime(now / 1000))
    es.indices.create(index=blocked)
    es.indices.put_settings(index=blocked, settings={"index.blocks.read_only_allow_delete": True})
    try:
        _produce(
            bootstrap,
            unique,
            [
                [
                    (
                        {"__name__": f"es_{unique}", "m": str(m), "s": str(s)},
                        [(1.0, yesterday), (2.0, now)],
                    )
                    for s in range(5)
                ]
                for m in range(20)
            ],
        )
        running = worker(SINK, unique, _config(stack, **config))
        wait_for(
            lambda: running.metric("ferryman_documents_total", result="retry") > 200,
            60,
            "yesterday's documents refused with 429 more than once",
        )
        assert _count(es, today) == 100
        assert running.committed() == 0
        es.indices.put_settings(
            index=blocked, settings={"index.blocks.read_only_allow_delete": None}
        )
        wait_for(
            lambda: running.committed() == 20, 60, "all 20 committed once the block was lifted"
        )
        assert _count(es, blocked) == 100
        assert _count(es, today) == 100
        assert running.metric("ferryman_documents_total", result="duplicate") >= 100
        assert dead_letters(bootstrap, running.dead_letter_topic) == []
    finally:
        es.indices.delete(index=f"{unique}-*")
        es.indices.delete_index_template(name=unique)
        es.cluster.delete_component_template(name=f"{unique}@ferryman")
