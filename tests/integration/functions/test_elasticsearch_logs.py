"""elasticsearch_logs against the real Kafka and Elasticsearch, through the worker."""

from __future__ import annotations

import time

from ferryman import headers as h
from ferryman.wire.lines import encode_lines, source_id
from ferryman.wire.loki import Entry, Stream, encode_push_request
from ferryman.wire.remote_write import snappy_compress
from tests.integration.pipeline import (
    Message,
    create_topics,
    dead_letters,
    loki_push,
    produce,
    raw,
    wait_for,
)

SINK = "elasticsearch_logs"

#: Stands in for invalid UTF-8 when encoding; swapped for raw bytes of the same length.
PLACEHOLDER = "@@BAD@@"
BAD_BYTES = b"ab\xff\xfecd\xc3"


def _config(stack, stream):
    return {"url": stack("elasticsearch", "http"), "data_stream": stream}


def _pod(cluster_tag: str, m: int) -> dict[str, str]:
    return {
        "filename": f"/var/log/{cluster_tag}/{m}.log",
        "host": f"node-{m % 3}",
        "namespace": "web",
        "pod": f"web-{m}",
        "container": "nginx",
        "job": "web/nginx",
    }


def _produce_logs(
    bootstrap,
    topic,
    messages,
    *,
    cluster="alpha",
    start=0,
    lines=5,
    extra: tuple[Message, ...] = (),
) -> set[str]:
    """Produce Loki push messages the way the edge does, then ``extra``; returns the
    lines sent."""
    now_ns = time.time_ns()
    sent = set()
    out = []
    for m in range(start, start + messages):
        entries = []
        for i in range(lines):
            text = f"{cluster} message {m} line {i}"
            sent.add(text)
            entries.append(Entry(now_ns + i, text))
        out.append(
            loki_push([Stream(_pod(cluster, m), entries)], cluster=cluster, key=f"{m}".encode())
        )
    produce(bootstrap, topic, [*out, *extra])
    return sent


def _documents(es, target):
    es.indices.refresh(index=target)
    hits = es.search(index=target, size=10_000, query={"match_all": {}})["hits"]["hits"]
    return {hit["_id"]: hit["_source"] for hit in hits}


def _count(es, target):
    es.indices.refresh(index=target)
    return es.count(index=target)["count"]


def _odd_message(ts_ns: int) -> bytes:
    """Invalid UTF-8 in one line, and the same line twice in the same nanosecond."""
    labels = {"host": "odd", "app": "odd"}
    body = encode_push_request(
        [
            Stream(
                labels,
                [Entry(ts_ns, PLACEHOLDER), Entry(ts_ns + 1, "twin"), Entry(ts_ns + 1, "twin")],
            )
        ]
    )
    assert len(PLACEHOLDER) == len(BAD_BYTES)
    return snappy_compress(body.replace(PLACEHOLDER.encode(), BAD_BYTES))


def test_lines_from_two_clusters_arrive_as_ecs_documents(stack, unique, worker, es):
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (unique, 3))
    stream = f"logs-{unique}-default"
    ts = time.time_ns()
    sent = _produce_logs(bootstrap, unique, 20)
    sent |= _produce_logs(
        bootstrap,
        unique,
        20,
        cluster="beta",
        start=20,
        extra=(raw(_odd_message(ts), schema=h.SCHEMA_LOKI_PUSH, cluster="beta"),),
    )
    running = worker(SINK, unique, _config(stack, stream))
    wait_for(lambda: running.committed() == 41, 90, "all 41 offsets committed")

    documents = list(_documents(es, stream).values())
    assert len(documents) == 203
    by_message = {d["message"]: d for d in documents}
    assert set(by_message) == sent | {"ab\ufffd\ufffdcd\ufffd", "twin"}
    assert sum(d["message"] == "twin" for d in documents) == 2
    first = by_message["alpha message 4 line 2"]
    assert first["log"] == {"file": {"path": "/var/log/alpha/4.log"}}
    assert first["host"] == {"name": "node-1"}
    assert first["kubernetes"] == {
        "namespace": "web",
        "pod": {"name": "web-4"},
        "container": {"name": "nginx"},
    }
    assert first["cluster"] == "alpha" and by_message["beta message 24 line 0"]["cluster"] == "beta"
    assert first["labels"] == {"job": "web/nginx"}
    odd = by_message["ab\ufffd\ufffdcd\ufffd"]
    seconds, nanos = divmod(ts, 10**9)
    assert (
        odd["@timestamp"]
        == time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{nanos:09d}Z"
    )
    assert odd["labels"] == {"app": "odd"} and odd["cluster"] == "beta"

    # Nanoseconds survive the round trip through date_nanos.
    nanos_format = "strict_date_optional_time_nanos"
    hits = es.search(
        index=stream,
        size=1,
        query={"term": {"host.name": "odd"}},
        sort=[{"@timestamp": {"order": "asc", "format": nanos_format}}],
    )
    # Elasticsearch prints the fraction without its trailing zeros (.32125044Z).
    fraction = hits["hits"]["hits"][0]["sort"][0].rsplit(".", 1)[1].removesuffix("Z")
    assert int(fraction.ljust(9, "0")) == nanos

    resolved = es.indices.resolve_index(name=stream)
    (backing,) = resolved["data_streams"][0]["backing_indices"]
    properties = es.indices.get_mapping(index=backing)[backing]["mappings"]["properties"]
    assert properties["@timestamp"]["type"] == "date_nanos"
    assert properties["message"]["type"] == "text"
    assert properties["labels"]["properties"]["job"]["type"] == "keyword"
    assert properties["kubernetes"]["properties"]["pod"]["properties"]["name"]["type"] == "keyword"
    assert running.metric("ferryman_documents_total", result="created") == 203
    assert running.terminate() == 0
    assert f"index template {stream} for {stream} is in place" in running.output()
    assert dead_letters(bootstrap, running.dead_letter_topic) == []


def test_replay_under_a_new_group_adds_nothing(stack, unique, worker, es):
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (unique, 2))
    stream = f"logs-{unique}-default"
    _produce_logs(
        bootstrap, unique, 30, extra=(raw(_odd_message(time.time_ns()), schema=h.SCHEMA_LOKI_PUSH),)
    )
    first = worker(SINK, unique, _config(stack, stream))
    wait_for(lambda: first.committed() == 31, 90, "first worker committed all 31")
    assert _count(es, stream) == 153
    assert first.terminate() == 0

    replay = worker(SINK, unique, _config(stack, stream), kafka={"group_id": f"replay-{unique}"})
    wait_for(lambda: replay.committed() == 31, 90, "the replay committed all 31")
    assert _count(es, stream) == 153
    assert replay.metric("ferryman_documents_total", result="duplicate") == 153
    assert replay.metric("ferryman_documents_total", result="created") == 0
    assert replay.terminate() == 0
    assert dead_letters(bootstrap, first.dead_letter_topic) == []


def test_garbage_goes_to_dead_letter_and_the_rest_flows(stack, unique, worker, es):
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (unique, 1))
    stream = f"logs-{unique}-default"
    sent = _produce_logs(
        bootstrap, unique, 5, extra=(raw(b"\x00\xffnot snappy at all", schema=h.SCHEMA_LOKI_PUSH),)
    )
    sent |= _produce_logs(bootstrap, unique, 5, start=5)
    running = worker(SINK, unique, _config(stack, stream))
    wait_for(lambda: running.committed() == 11, 60, "all 11 offsets committed")
    assert {d["message"] for d in _documents(es, stream).values()} == sent
    dead = dead_letters(bootstrap, running.dead_letter_topic)
    assert [d.value for d in dead] == [b"\x00\xffnot snappy at all"]
    headers = dict(dead[0].headers)
    assert headers["ferryman.error"].startswith(b"not a Loki push message: not snappy")
    assert headers["ferryman.function"] == b"elasticsearch_logs"
    assert headers["ferryman.source"] == f"{unique}/0/5".encode()


def _file(m: int, start: int, count: int) -> list[tuple[str, int]]:
    """Lines ``start`` … of file ``m`` with their end offsets, as a shipper reads them."""
    out, offset = [], 0
    for i in range(start + count):
        text = f"file {m} line {i} " + "x" * (i % 7)
        offset += len(text) + 1
        if i >= start:
            out.append((text, offset))
    return out


def _source(m: int) -> bytes:
    return source_id("node-1", 2049, 1000 + m, 0xFEED)


def _read(files: list[int], start: int, count: int, ts_ns: int, name: str) -> Message:
    """One message holding ``count`` lines from ``start`` of each of ``files`` (one
    stream each, ``filename`` ending in ``name``), stamped from ``ts_ns``, with the
    ``ferryman.lines`` header saying where each line was read."""
    streams, runs = [], []
    for m in files:
        read = _file(m, start, count)
        labels = {"filename": f"/var/log/app/{m}.{name}", "host": "node-1", "job": "app"}
        streams.append(Stream(labels, [Entry(ts_ns + i, t) for i, (t, _) in enumerate(read)]))
        runs.append([(_source(m), [offset for _, offset in read])])
    return loki_push(streams, cluster="alpha", lines=encode_lines(runs))


def test_a_file_read_again_under_a_new_name_stores_each_line_once(stack, unique, worker, es):
    """Ten files read into ten messages, then read again from the start (the positions
    file lost, the files rotated to ``.log.1``): new read-time timestamps, another
    ``filename``, other messages (two files each), two lines more per file. Only the
    new lines are stored."""
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (unique, 2))
    stream = f"logs-{unique}-default"
    first_read = time.time_ns()
    produce(bootstrap, unique, [_read([m], 0, 5, first_read + m * 1000, "log") for m in range(10)])
    running = worker(SINK, unique, _config(stack, stream))
    wait_for(lambda: running.committed() == 10, 90, "the first read committed")
    assert _count(es, stream) == 50

    again = first_read + 3_600 * 10**9
    produce(
        bootstrap,
        unique,
        [_read([m, m + 1], 0, 7, again + m * 1000, "log.1") for m in range(0, 10, 2)],
    )
    wait_for(lambda: running.committed() == 15, 90, "the re-read committed")
    documents = _documents(es, stream)
    assert len(documents) == 70
    messages = sorted(d["message"] for d in documents.values())
    assert messages == sorted(t for m in range(10) for t, _ in _file(m, 0, 7))
    assert running.metric("ferryman_documents_total", result="created") == 70
    assert running.metric("ferryman_documents_total", result="duplicate") == 50
    # The first read's documents stay as they were stored: the first name and stamps.
    first = next(d for d in documents.values() if d["message"] == _file(3, 2, 1)[0][0])
    assert first["log"] == {"file": {"path": "/var/log/app/3.log"}}
    renamed = next(d for d in documents.values() if d["message"] == _file(3, 6, 1)[0][0])
    assert renamed["log"] == {"file": {"path": "/var/log/app/3.log.1"}}
    assert running.metric("ferryman_lines_header_invalid_total") == 0
    assert running.terminate() == 0
    assert dead_letters(bootstrap, running.dead_letter_topic) == []


def test_two_sources_with_the_same_lines_and_timestamps_are_stored_twice(stack, unique, worker, es):
    """Two files (another inode) with the same content, read in the same nanoseconds
    under the same labels: by content they would be the same lines; by source they are
    not. A record whose header does not match is named by content, and counted."""
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (unique, 1))
    stream = f"logs-{unique}-default"
    ts = time.time_ns()
    labels = {"filename": "/var/log/app/same.log", "host": "node-1", "job": "app"}
    lines = [Entry(ts + i, f"the same line {i}") for i in range(4)]
    offsets = [20 * (i + 1) for i in range(4)]
    messages = [
        loki_push(
            [Stream(labels, lines)],
            cluster="alpha",
            lines=encode_lines([[(source_id("node-1", 2049, inode, 1), offsets)]]),
        )
        for inode in (7, 8)
    ]
    mismatched = encode_lines([[(source_id("node-1", 2049, 9, 1), offsets[:3])]])
    messages += [
        loki_push([Stream(labels, lines)], cluster="alpha", lines=mismatched),
        loki_push([Stream(labels, lines)], cluster="alpha"),
    ]
    produce(bootstrap, unique, messages)
    running = worker(SINK, unique, _config(stack, stream))
    wait_for(lambda: running.committed() == 4, 90, "all 4 offsets committed")

    documents = _documents(es, stream)
    assert len(documents) == 12  # each line by two sources, and once by content
    assert sorted(d["message"] for d in documents.values()) == sorted(e.line for e in lines * 3)
    assert sum("." in _id for _id in documents) == 8
    assert running.metric("ferryman_documents_total", result="created") == 12
    assert running.metric("ferryman_documents_total", result="duplicate") == 4
    assert running.metric("ferryman_lines_header_invalid_total") == 1
    assert running.terminate() == 0
    assert "does not match its message" in running.output()
