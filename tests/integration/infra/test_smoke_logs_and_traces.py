"""Smoke tests: Loki push (protobuf + snappy) into VictoriaLogs' Loki API, OTLP into Jaeger."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable
from typing import Any

import httpx

from ferryman.wire import loki
from ferryman.wire.remote_write import snappy_compress


def _poll(fetch: Callable[[], list[Any]], want: int, timeout: float = 20.0) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        result = fetch()
        if len(result) >= want or time.monotonic() > deadline:
            return result
        time.sleep(0.3)


def test_loki_push_protobuf_then_query(stack, unique):
    now_ns = time.time_ns()
    lines = [f"request {i} took {i * 3}ms" for i in range(20)]
    streams = [
        loki.Stream(
            {"job": unique, "cluster": "alpha"},
            [loki.Entry(now_ns + i, line) for i, line in enumerate(lines[:10])],
        ),
        loki.Stream(
            {"job": unique, "cluster": "beta"},
            [loki.Entry(now_ns + i, line) for i, line in enumerate(lines[10:])],
        ),
    ]
    body = snappy_compress(loki.encode_push_request(streams))
    response = httpx.post(
        stack("victorialogs", "loki_push"), content=body, headers=loki.HEADERS, timeout=10
    )
    assert response.status_code in (200, 204), response.text

    def query() -> list[dict[str, Any]]:
        answer = httpx.get(
            f"{stack('victorialogs', 'http')}/select/logsql/query",
            params={"query": f'job:="{unique}"', "limit": "100"},
            timeout=10,
        )
        answer.raise_for_status()
        return [json.loads(row) for row in answer.text.splitlines() if row.strip()]

    rows = _poll(query, want=20)
    assert sorted(r["_msg"] for r in rows) == sorted(lines)
    by_cluster = {r["_msg"]: r["cluster"] for r in rows}
    assert by_cluster[lines[0]] == "alpha"
    assert by_cluster[lines[15]] == "beta"


def test_jaeger_otlp_http_span_then_api_traces(stack, unique):
    trace_id = os.urandom(16).hex()
    span_id = os.urandom(8).hex()
    start = time.time_ns()
    payload = {
        "resourceSpans": [
            {
                "resource": {
                    "attributes": [
                        {"key": "service.name", "value": {"stringValue": f"smoke-{unique}"}}
                    ]
                },
                "scopeSpans": [
                    {
                        "scope": {"name": "ferryman-smoke"},
                        "spans": [
                            {
                                "traceId": trace_id,
                                "spanId": span_id,
                                "name": "ship-batch",
                                "kind": 1,
                                "startTimeUnixNano": str(start),
                                "endTimeUnixNano": str(start + 5_000_000),
                                "attributes": [
                                    {"key": "cluster", "value": {"stringValue": "alpha"}}
                                ],
                            }
                        ],
                    }
                ],
            }
        ]
    }
    response = httpx.post(f"{stack('jaeger', 'otlp_http')}/v1/traces", json=payload, timeout=10)
    assert response.status_code == 200, response.text

    def fetch() -> list[Any]:
        answer = httpx.get(f"{stack('jaeger', 'query')}/api/traces/{trace_id}", timeout=10)
        if answer.status_code == 404:
            return []
        answer.raise_for_status()
        data: list[Any] = answer.json()["data"]
        return data

    traces = _poll(fetch, want=1)
    assert len(traces) == 1
    spans = traces[0]["spans"]
    assert [(s["spanID"], s["operationName"]) for s in spans] == [(span_id, "ship-batch")]
    tags = {t["key"]: t["value"] for t in spans[0]["tags"]}
    assert tags["cluster"] == "alpha"
    services = httpx.get(f"{stack('jaeger', 'query')}/api/services", timeout=10).json()["data"]
    assert f"smoke-{unique}" in services
