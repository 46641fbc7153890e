"""elasticsearch_logs against the real Kafka and Elasticsearch, through the worker."""

from __future__ import annotations

import time

import httpx
import pytest
from elasticsearch import Elasticsearch
from kafka import KafkaConsumer, KafkaProducer

from ferryman import headers as h
from ferryman.wire.loki import Entry, Stream, encode_push_request
from ferryman.wire.remote_write import snappy_compress
from tests.integration.pipeline import Worker, committed_total, create_topics, free_port, wait_for

#: Stands in for invalid UTF-8 when encoding; swapped for raw bytes of the same length.
PLACEHOLDER = "@@BAD@@"
BAD_BYTES = b"ab\xff\xfecd\xc3"


@pytest.fixture
def workers(tmp_path):
    started: list[Worker] = []

    def make(settings):
        worker = Worker(tmp_path, "elasticsearch_logs", settings).start()
        started.append(worker)
        return worker

    yield make
    for worker in started:
        if worker.proc and worker.proc.poll() is None:
            worker.kill9()


@pytest.fixture
def es(stack):
    client = Elasticsearch(stack("elasticsearch", "http"), request_timeout=30)
    yield client
    client.close()


def _settings(stack, topic, stream, *, group=None, port=None):
    settings = {"kafka": {"bootstrap_servers": stack("kafka", "bootstrap"), "input_topic": topic,
                          "group_id": group or f"g-{topic}", "dead_letter_topic": f"{topic}-dlq"},
                "batch": {"max_records": 50, "max_wait_s": 0.2},
                "retry": {"initial_backoff_s": 0.2, "max_backoff_s": 2.0},
                "shutdown_deadline_s": 10,
                "config": {"url": stack("elasticsearch", "http"), "data_stream": stream}}
    if port is not None:
        settings["http"] = {"listen": f"127.0.0.1:{port}"}
    return settings


def _pod(cluster_tag: str, m: int) -> dict[str, str]:
    return {"filename": f"/var/log/{cluster_tag}/{m}.log", "host": f"node-{m % 3}",
            "namespace": "web", "pod": f"web-{m}", "container": "nginx", "job": "web/nginx"}


def _produce_logs(bootstrap, topic, messages, *, cluster="alpha", start=0, lines=5,
                  extra=()) -> set[str]:
    """Produce Loki push messages the way the edge does; returns the lines sent."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, compression_type="snappy", acks="all")
    now_ns = time.time_ns()
    sent = set()
    for m in range(start, start + messages):
        entries = []
        for i in range(lines):
            text = f"{cluster} message {m} line {i}"
            sent.add(text)
            entries.append(Entry(now_ns + i, text))
        body = encode_push_request([Stream(_pod(cluster, m), entries)])
        producer.send(topic, key=f"{m}".encode(), value=snappy_compress(body),
                      headers=[(h.SCHEMA, h.SCHEMA_LOKI_PUSH), (h.CLUSTER, cluster.encode())])
    for value, headers in extra:
        producer.send(topic, value=value, headers=headers)
    producer.flush(timeout=30)
    producer.close()
    return sent


def _documents(es, target):
    es.indices.refresh(index=target)
    hits = es.search(index=target, size=10_000, query={"match_all": {}})["hits"]["hits"]
    return {hit["_id"]: hit["_source"] for hit in hits}


def _count(es, target):
    es.indices.refresh(index=target)
    return es.count(index=target)["count"]


def _metric(port, name, **labels):
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.TransportError:  # the worker is still starting
        return 0.0
    want = [f'{k}="{v}"' for k, v in labels.items()]
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines()
               if line.startswith(name + "{") and all(w in line for w in want))


def _dead_letters(bootstrap, dlq):
    consumer = KafkaConsumer(dlq, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=5000)
    dead = list(consumer)
    consumer.close()
    return dead


def _odd_message(ts_ns: int) -> bytes:
    """Invalid UTF-8 in one line, and the same line twice in the same nanosecond."""
    labels = {"host": "odd", "app": "odd"}
    body = encode_push_request([Stream(labels, [Entry(ts_ns, PLACEHOLDER),
                                                Entry(ts_ns + 1, "twin"),
                                                Entry(ts_ns + 1, "twin")])])
    assert len(PLACEHOLDER) == len(BAD_BYTES)
    return snappy_compress(body.replace(PLACEHOLDER.encode(), BAD_BYTES))


def test_lines_from_two_clusters_arrive_as_ecs_documents(stack, unique, workers, es):
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (unique, 3), (f"{unique}-dlq", 1))
    stream = f"logs-{unique}-default"
    ts = time.time_ns()
    sent = _produce_logs(bootstrap, unique, 20)
    sent |= _produce_logs(bootstrap, unique, 20, cluster="beta", start=20, extra=[
        (_odd_message(ts), [(h.SCHEMA, h.SCHEMA_LOKI_PUSH), (h.CLUSTER, b"beta")])])
    port = free_port()
    worker = workers(_settings(stack, unique, stream, port=port))
    wait_for(lambda: committed_total(bootstrap, f"g-{unique}", unique) == 41, 90,
             "all 41 offsets committed")

    documents = list(_documents(es, stream).values())
    assert len(documents) == 203
    by_message = {d["message"]: d for d in documents}
    assert set(by_message) == sent | {"ab\ufffd\ufffdcd\ufffd", "twin"}
    assert sum(d["message"] == "twin" for d in documents) == 2
    first = by_message["alpha message 4 line 2"]
    assert first["log"] == {"file": {"path": "/var/log/alpha/4.log"}}
    assert first["host"] == {"name": "node-1"}
    assert first["kubernetes"] == {"namespace": "web", "pod": {"name": "web-4"},
                                   "container": {"name": "nginx"}}
    assert first["cluster"] == "alpha" and by_message["beta message 24 line 0"][
        "cluster"] == "beta"
    assert first["labels"] == {"job": "web/nginx"}
    odd = by_message["ab\ufffd\ufffdcd\ufffd"]
    seconds, nanos = divmod(ts, 10**9)
    assert odd["@timestamp"] == time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) \
        + f".{nanos:09d}Z"
    assert odd["labels"] == {"app": "odd"} and odd["cluster"] == "beta"

    # Nanoseconds survive the round trip through date_nanos.
    nanos_format = "strict_date_optional_time_nanos"
    hits = es.search(index=stream, size=1, query={"term": {"host.name": "odd"}},
                     sort=[{"@timestamp": {"order": "asc", "format": nanos_format}}])
    assert hits["hits"]["hits"][0]["sort"][0].endswith(f".{nanos:09d}Z")

    resolved = es.indices.resolve_index(name=stream)
    (backing,) = resolved["data_streams"][0]["backing_indices"]
    properties = es.indices.get_mapping(index=backing)[backing]["mappings"]["properties"]
    assert properties["@timestamp"]["type"] == "date_nanos"
    assert properties["message"]["type"] == "text"
    assert properties["labels"]["properties"]["job"]["type"] == "keyword"
    assert properties["kubernetes"]["properties"]["pod"]["properties"]["name"]["type"] \
        == "keyword"
    assert _metric(port, "ferryman_documents_total", result="created") == 203
    assert worker.terminate() == 0
    assert f"index template {stream} for {stream} is in place" in worker.output()
    assert _dead_letters(bootstrap, f"{unique}-dlq") == []


def test_replay_under_a_new_group_adds_nothing(stack, unique, workers, es):
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (unique, 2), (f"{unique}-dlq", 1))
    stream = f"logs-{unique}-default"
    _produce_logs(bootstrap, unique, 30, extra=[
        (_odd_message(time.time_ns()), [(h.SCHEMA, h.SCHEMA_LOKI_PUSH)])])
    first = workers(_settings(stack, unique, stream))
    wait_for(lambda: committed_total(bootstrap, f"g-{unique}", unique) == 31, 90,
             "first worker committed all 31")
    assert _count(es, stream) == 153
    assert first.terminate() == 0

    port = free_port()
    replay = workers(_settings(stack, unique, stream, group=f"replay-{unique}", port=port))
    wait_for(lambda: committed_total(bootstrap, f"replay-{unique}", unique) == 31, 90,
             "the replay committed all 31")
    assert _count(es, stream) == 153
    assert _metric(port, "ferryman_documents_total", result="duplicate") == 153
    assert _metric(port, "ferryman_documents_total", result="created") == 0
    assert replay.terminate() == 0
    assert _dead_letters(bootstrap, f"{unique}-dlq") == []


def test_garbage_goes_to_dead_letter_and_the_rest_flows(stack, unique, workers, es):
    bootstrap = stack("kafka", "bootstrap")
    dlq = f"{unique}-dlq"
    create_topics(bootstrap, (unique, 1), (dlq, 1))
    stream = f"logs-{unique}-default"
    sent = _produce_logs(bootstrap, unique, 5, extra=[
        (b"\x00\xffnot snappy at all", [(h.SCHEMA, h.SCHEMA_LOKI_PUSH)])])
    sent |= _produce_logs(bootstrap, unique, 5, start=5)
    workers(_settings(stack, unique, stream))
    wait_for(lambda: committed_total(bootstrap, f"g-{unique}", unique) == 11, 60,
             "all 11 offsets committed")
    assert {d["message"] for d in _documents(es, stream).values()} == sent
    dead = _dead_letters(bootstrap, dlq)
    assert [d.value for d in dead] == [b"\x00\xffnot snappy at all"]
    headers = dict(dead[0].headers)
    assert headers["ferryman.error"].startswith(b"undecodable loki push message: not snappy")
    assert headers["ferryman.function"] == b"elasticsearch_logs"
    assert headers["ferryman.source"] == f"{unique}/0/5".encode()
