"""filter → parse → redact → loki (VictoriaLogs) and elasticsearch_logs (Elasticsearch),
and count → prometheus_remote_write (VictoriaMetrics): real workers, real Kafka."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
from elasticsearch import Elasticsearch

from ferryman import headers as h
from ferryman.wire.loki import Entry, Stream, format_labels
from tests.integration.pipeline import (
    create_topics,
    dead_letters,
    loki_push,
    produce,
    raw,
    wait_for,
)

GARBAGE = b"\x00\xffnot a push request"


def _produce(bootstrap: str, topic: str, job: str, messages: int) -> dict[str, int]:
    """Edge-style messages: one stream a message, keyed by its label text. Each holds
    three logfmt lines with secrets in them, one plain line and one health check;
    returns the lines sent per app."""
    base = time.time_ns() - 30 * 10**9
    sent: dict[str, int] = {}
    out = []
    for m in range(messages):
        app = f"app{m % 2}"
        labels = {"job": job, "app": app}
        texts = [
            f"level={'warn' if i == 1 else 'info'} trace_id=t{m}-{i} "
            f'user=user{m}@example.com msg="login ok" '
            f"db=postgres://svc:hunter2@db:5432/x token=tok{m}{i}"
            for i in range(3)
        ]
        texts += [f"plain line {m} Authorization: Bearer secret{m}", "GET /healthz 200"]
        entries = [Entry(base + m * 1000 + i, text) for i, text in enumerate(texts)]
        sent[app] = sent.get(app, 0) + len(entries)
        out.append(
            loki_push(
                [Stream(labels, entries)], cluster="alpha", key=format_labels(labels).encode()
            )
        )
    out.append(raw(GARBAGE, schema=h.SCHEMA_LOKI_PUSH))
    produce(bootstrap, topic, out)
    return sent


def _victorialogs(base: str, job: str) -> list[dict[str, str]]:
    response = httpx.get(
        f"{base}/select/logsql/query",
        params={"query": f'job:="{job}"', "limit": "10000"},
        timeout=30,
    )
    response.raise_for_status()
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def _elasticsearch(es: Elasticsearch, stream: str) -> list[dict[str, Any]]:
    if not es.indices.exists(index=stream):
        return []
    es.indices.refresh(index=stream)
    hits = es.search(index=stream, size=10_000, query={"match_all": {}})["hits"]["hits"]
    return [hit["_source"] for hit in hits]


def test_parsed_and_masked_lines_reach_victorialogs_and_elasticsearch(stack, unique, worker):
    bootstrap = stack("kafka", "bootstrap")
    source, kept, parsed, masked = (
        unique,
        f"{unique}-kept",
        f"{unique}-parsed",
        f"{unique}-masked",
    )
    create_topics(bootstrap, (source, 2), (kept, 2), (parsed, 2), (masked, 2))
    data_stream = f"logs-{unique}-default"
    messages = 10
    _produce(bootstrap, source, unique, messages)
    running = {}
    for name, topic, output, config in [
        (
            "filter",
            source,
            kept,
            {"action": "drop", "selector": f'{{job="{unique}"}}', "line_regex": "/healthz"},
        ),
        (
            "parse",
            kept,
            parsed,
            {"format": "logfmt", "promote": ["level"], "keep": ["trace_id", "user", "db", "msg"]},
        ),
        ("redact", parsed, masked, {}),
    ]:
        running[name] = worker(name, topic, config, kafka={"output_topic": output})
    worker(
        "loki",
        masked,
        {"url": stack("victorialogs", "http"), "push_path": "/insert/loki/api/v1/push"},
    )
    worker(
        "elasticsearch_logs",
        masked,
        {"url": stack("elasticsearch", "http"), "data_stream": data_stream},
    )
    wait_for(
        lambda: running["filter"].committed() == messages + 1,
        60,
        "the filter committed every message",
    )
    want = messages * 4  # the health checks were filtered out

    rows = wait_for(
        lambda: (
            (found := _victorialogs(stack("victorialogs", "http"), unique))
            and len(found) == want
            and found
        ),
        60,
        "every line in VictoriaLogs",
    )
    parsed_rows = [r for r in rows if "trace_id" in r]
    assert len(parsed_rows) == messages * 3
    for row in parsed_rows:
        assert row["level"] in ("info", "warn")  # promoted: a stream label
        assert "level" in row["_stream"] and "trace_id" not in row["_stream"]
        assert row["user"] == "***@***"  # metadata masked
        assert row["db"] == "postgres://svc:***@db:5432/x"
        assert row["msg"] == "login ok" and row["cluster"] == "alpha"
        assert "token" not in row  # not in keep
        assert "hunter2" not in row["_msg"] and "@example.com" not in row["_msg"]
        assert "token=***" in row["_msg"]
    plain = [r["_msg"] for r in rows if "trace_id" not in r]
    assert sorted(plain) == sorted(
        f"plain line {m} Authorization: Bearer ***" for m in range(messages)
    )
    assert {r["trace_id"] for r in parsed_rows} == {
        f"t{m}-{i}" for m in range(messages) for i in range(3)
    }

    es = Elasticsearch(stack("elasticsearch", "http"), request_timeout=30)
    try:
        docs = wait_for(
            lambda: (found := _elasticsearch(es, data_stream)) and len(found) == want and found,
            60,
            "every line in Elasticsearch",
        )
        hits = es.search(index=data_stream, query={"term": {"fields.trace_id": "t3-1"}})
        [hit] = hits["hits"]["hits"]
        assert hit["_source"]["fields"]["user"] == "***@***"
        assert hit["_source"]["labels"]["level"] == "warn"
        mapping = es.indices.get_mapping(index=data_stream)
        [index] = mapping.values()
        assert (
            index["mappings"]["properties"]["fields"]["properties"]["trace_id"]["type"] == "keyword"
        )
    finally:
        es.close()
    assert all("secret" not in d["message"] and "hunter2" not in d["message"] for d in docs)
    assert sum("fields" in d for d in docs) == messages * 3

    dead = dead_letters(bootstrap, running["filter"].dead_letter_topic)
    assert [d.value for d in dead] == [GARBAGE]
    headers = dict(dead[0].headers)
    assert headers["ferryman.function"] == b"filter"
    assert headers["ferryman.error"].startswith(b"not a Loki push message")


def _victoriametrics(base: str, metric: str) -> dict[str, float]:
    httpx.get(f"{base}/internal/force_flush", timeout=10)
    response = httpx.get(
        f"{base}/api/v1/query", params={"query": f"sum by (app, cluster) ({metric})"}, timeout=10
    )
    response.raise_for_status()
    return {
        f"{r['metric'].get('app', '')}/{r['metric']['cluster']}": float(r["value"][1])
        for r in response.json()["data"]["result"]
    }


def test_count_publishes_counters_that_victoriametrics_stores(stack, unique, worker):
    bootstrap = stack("kafka", "bootstrap")
    logs, metrics = unique, f"{unique}-metrics"
    create_topics(bootstrap, (logs, 2), (metrics, 1))
    metric = f"lines_{unique}_total"
    sent = _produce(bootstrap, logs, unique, 12)
    count = worker(
        "count", logs, {"metric": metric, "by": ["app"]}, kafka={"output_topic": metrics}
    )
    remote_write = worker(
        "prometheus_remote_write", metrics, {"url": stack("victoriametrics", "remote_write")}
    )
    wait_for(lambda: count.committed() == 13, 60, "count committed every message")
    want = {f"{app}/alpha": float(n) for app, n in sent.items()}
    assert wait_for(
        lambda: _victoriametrics(stack("victoriametrics", "http"), metric) == want and want,
        60,
        "the counts in VictoriaMetrics",
    )
    dead = dead_letters(bootstrap, count.dead_letter_topic)
    assert [(d.value, dict(d.headers)["ferryman.function"]) for d in dead] == [(GARBAGE, b"count")]
    assert dead_letters(bootstrap, remote_write.dead_letter_topic) == []
