"""Smoke tests: Prometheus, VictoriaMetrics, InfluxDB 1.x and node-exporter answer for real."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import yaml

from ferryman.wire.remote_write import (
    HEADERS,
    Sample,
    TimeSeries,
    encode_write_request,
    snappy_compress,
)


def _series(name: str, value: float, **labels: str) -> TimeSeries:
    now_ms = int(time.time() * 1000)
    return TimeSeries(tuple(sorted({"__name__": name, **labels}.items())), (Sample(value, now_ms),))


def _poll(fetch: Callable[[], list[Any]], timeout: float = 15.0) -> list[Any]:
    deadline = time.monotonic() + timeout
    while True:
        result = fetch()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.3)


def _promql(base: str, query: str) -> list[Any]:
    response = httpx.get(f"{base}/api/v1/query", params={"query": query}, timeout=10)
    response.raise_for_status()
    body = response.json()
    assert body["status"] == "success"
    result: list[Any] = body["data"]["result"]
    return result


def test_prometheus_remote_write_then_promql(stack, unique):
    body = snappy_compress(
        encode_write_request([_series(f"smoke_{unique}", 42.5, cluster="alpha", job="smoke")])
    )
    response = httpx.post(
        stack("prometheus", "remote_write"), content=body, headers=HEADERS, timeout=10
    )
    assert response.status_code == 204, response.text
    result = _poll(lambda: _promql(stack("prometheus", "http"), f"smoke_{unique}"))
    assert len(result) == 1
    assert result[0]["metric"] == {
        "__name__": f"smoke_{unique}",
        "cluster": "alpha",
        "job": "smoke",
    }
    assert float(result[0]["value"][1]) == 42.5


def test_the_stack_prometheus_evaluates_the_shipped_alert_rules(stack):
    """`ferryman up` gives the local pipeline the operators' alerts: the stack's
    Prometheus loads infra/alerts/ferryman.rules.yml and evaluates every rule."""
    shipped = yaml.safe_load(
        (Path(__file__).resolve().parents[3] / "infra/alerts/ferryman.rules.yml").read_text()
    )
    wanted = {
        rule.get("alert") or rule["record"]
        for group in shipped["groups"]
        for rule in group["rules"]
    }

    def loaded() -> list[Any]:
        response = httpx.get(f"{stack('prometheus', 'http')}/api/v1/rules", timeout=10)
        response.raise_for_status()
        groups = response.json()["data"]["groups"]
        rules = [r for g in groups for r in g["rules"] if r["name"] in wanted]
        # Evaluated at least once: a health of "ok" (never "unknown" or "err").
        return rules if len(rules) == len(wanted) and {r["health"] for r in rules} == {"ok"} else []

    rules = _poll(loaded, timeout=40)
    assert {r["name"] for r in rules} == wanted


def test_victoriametrics_remote_write_influx_and_opentsdb(stack, unique):
    base = stack("victoriametrics", "http")
    body = snappy_compress(encode_write_request([_series(f"rw_{unique}", 7.0, cluster="beta")]))
    assert (
        httpx.post(
            stack("victoriametrics", "remote_write"), content=body, headers=HEADERS, timeout=10
        ).status_code
        == 204
    )
    line = f"influx_{unique},cluster=beta,host=h1 used=3i,free=1.5"
    assert (
        httpx.post(stack("victoriametrics", "influx"), content=line, timeout=10).status_code == 204
    )
    put = [
        {
            "metric": f"tsdb_{unique}",
            "timestamp": int(time.time()),
            "value": 9,
            "tags": {"cluster": "beta"},
        }
    ]
    response = httpx.post(f"{stack('victoriametrics', 'opentsdb')}/api/put", json=put, timeout=10)
    assert response.status_code == 204, response.text

    httpx.get(f"{base}/internal/force_flush", timeout=10).raise_for_status()
    rw = _poll(lambda: _promql(base, f"rw_{unique}"))
    assert [float(r["value"][1]) for r in rw] == [7.0]
    influx = _poll(lambda: _promql(base, f'{{__name__=~"influx_{unique}_.*"}}'))
    by_name = {r["metric"]["__name__"]: float(r["value"][1]) for r in influx}
    assert by_name == {f"influx_{unique}_used": 3.0, f"influx_{unique}_free": 1.5}
    assert all(r["metric"]["host"] == "h1" for r in influx)
    tsdb = _poll(lambda: _promql(base, f"tsdb_{unique}"))
    assert [(r["metric"]["cluster"], float(r["value"][1])) for r in tsdb] == [("beta", 9.0)]


def test_influxdb_v1_write_then_query(stack, unique):
    base = stack("influxdb", "http")
    created = httpx.post(f"{base}/query", params={"q": f'CREATE DATABASE "{unique}"'}, timeout=10)
    assert created.status_code == 200, created.text
    lines = (
        "cpu,cluster=alpha,host=a value=0.5 1700000000000000000\n"
        "cpu,cluster=beta,host=b value=0.25 1700000000000000000\n"
    )
    written = httpx.post(f"{base}/write", params={"db": unique}, content=lines, timeout=10)
    assert written.status_code == 204, written.text
    answer = httpx.get(
        f"{base}/query",
        params={"db": unique, "q": 'SELECT value FROM cpu GROUP BY "cluster"'},
        timeout=10,
    ).json()
    series = answer["results"][0]["series"]
    values = {s["tags"]["cluster"]: s["values"][0][1] for s in series}
    assert values == {"alpha": 0.5, "beta": 0.25}


def test_node_exporter_scrape(stack):
    response = httpx.get(stack("node-exporter", "metrics"), timeout=10)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain; version=0.0.4")
    cpu_lines = [
        line for line in response.text.splitlines() if line.startswith("node_cpu_seconds_total{")
    ]
    assert cpu_lines, "node_cpu_seconds_total missing"
    assert all(float(line.rsplit(" ", 1)[1]) >= 0 for line in cpu_lines)
