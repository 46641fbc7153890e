"""The edge metrics shipper end to end: real targets → Kafka → worker → Prometheus."""

from __future__ import annotations

import httpx

from tests.integration.exporter import TEXT
from tests.integration.pipeline import (
    EdgeMetrics,
    Worker,
    create_topics,
    wait_for,
)


def _edge_settings(stack, tmp_path, name, topic, cluster, targets, **job):
    return {
        "global": {
            "scrape_interval": "1s",
            "scrape_timeout": "1s",
            "external_labels": {"cluster": cluster},
        },
        "scrape_configs": [
            {
                "job_name": "node",
                "static_configs": [{"targets": [stack("node-exporter", "metrics").split("/")[2]]}],
            },
            {
                "job_name": "app",
                "static_configs": [{"targets": targets, "labels": {"team": "ops"}}],
                **job,
            },
        ],
        "ferryman": {
            "kafka": {"bootstrap_servers": stack("kafka", "bootstrap"), "topic": topic},
            "buffer": {"directory": str(tmp_path / f"buffer-{name}")},
            "listen": "127.0.0.1:0",
            "flush_interval": "200ms",
        },
    }


def _start_shippers(stack, tmp_path, processes, exporter, topic, metric):
    exporter.routes["/metrics"] = lambda n: (
        200,
        TEXT,
        (
            f"# TYPE {metric}_requests_total counter\n"
            f'{metric}_requests_total{{code="200"}} {n * 10}\n'
            f'{metric}_requests_total{{code="500"}} {n}\n'
            f"# TYPE {metric}_temp gauge\n{metric}_temp 21.5\n"
        ).encode(),
    )
    for cluster in ("alpha", "beta"):
        processes(
            EdgeMetrics(
                tmp_path,
                _edge_settings(stack, tmp_path, cluster, topic, cluster, [exporter.address]),
            )
        )


def _worker(stack, tmp_path, topic, function, config):
    return Worker(
        tmp_path,
        function,
        {
            "kafka": {
                "bootstrap_servers": stack("kafka", "bootstrap"),
                "input_topic": topic,
                "group_id": f"g-{topic}-{function}",
                "dead_letter_topic": f"{topic}-dlq",
            },
            "batch": {"max_wait_s": 0.2},
            "config": config,
        },
    )


def _query(base: str, promql: str) -> list[dict]:
    response = httpx.get(f"{base}/api/v1/query", params={"query": promql}, timeout=10)
    response.raise_for_status()
    result: list[dict] = response.json()["data"]["result"]
    return result


def test_two_clusters_arrive_in_prometheus_with_their_labels(
    stack, unique, tmp_path, processes, exporter
):
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (unique, 4), (f"{unique}-dlq", 1))
    metric = f"app_{unique}"
    _start_shippers(stack, tmp_path, processes, exporter, unique, metric)
    exporter.routes["/broken"] = lambda n: (200, TEXT, b"this is { not exposition\n")
    broken = processes(
        EdgeMetrics(
            tmp_path,
            _edge_settings(
                stack,
                tmp_path,
                "gamma",
                unique,
                "gamma",
                [exporter.address],
                metrics_path="/broken",
            ),
        )
    )
    processes(
        _worker(
            stack,
            tmp_path,
            unique,
            "prometheus_remote_write",
            {"url": stack("prometheus", "remote_write")},
        )
    )
    prom = stack("prometheus", "http")

    rows = wait_for(
        lambda: (
            len(_query(prom, f"{metric}_requests_total")) == 4
            and _query(prom, f"{metric}_requests_total")
        ),
        60,
        "the app series of both clusters",
    )
    seen = {(r["metric"]["cluster"], r["metric"]["code"]) for r in rows}
    assert seen == {("alpha", "200"), ("alpha", "500"), ("beta", "200"), ("beta", "500")}
    for row in rows:
        assert row["metric"]["job"] == "app"
        assert row["metric"]["team"] == "ops"
        assert row["metric"]["instance"] == exporter.address
    temps = _query(prom, f"{metric}_temp")
    assert sorted((r["metric"]["cluster"], float(r["value"][1])) for r in temps) == [
        ("alpha", 21.5),
        ("beta", 21.5),
    ]

    node = wait_for(
        lambda: _query(
            prom, 'count by (cluster) (node_cpu_seconds_total{job="node", cluster=~"alpha|beta"})'
        ),
        30,
        "node-exporter series of both clusters",
    )
    assert {r["metric"]["cluster"] for r in node} == {"alpha", "beta"}
    assert all(float(r["value"][1]) > 0 for r in node)

    ups = wait_for(
        lambda: (
            len(_query(prom, f'up{{instance="{exporter.address}"}}')) == 3
            and _query(prom, f'up{{instance="{exporter.address}"}}')
        ),
        30,
        "up series of the three shippers",
    )
    by_cluster = {}
    for r in ups:
        by_cluster[(r["metric"]["cluster"], r["metric"]["job"])] = float(r["value"][1])
    assert by_cluster[("alpha", "app")] == 1.0
    assert by_cluster[("beta", "app")] == 1.0
    assert by_cluster[("gamma", "app")] == 0.0, "malformed exposition must give up=0"
    # The malformed target's shipper keeps scraping its healthy target and says why.
    gamma_node = wait_for(
        lambda: _query(prom, 'up{cluster="gamma", job="node"}'),
        30,
        "up of the healthy target beside the malformed one",
    )
    assert [float(r["value"][1]) for r in gamma_node] == [1.0]
    assert broken.alive()
    assert "target down" in broken.output() and "unparsable exposition" in broken.output()

    meta = wait_for(
        lambda: _query(
            prom,
            f'scrape_samples_scraped{{cluster="alpha", job="app", instance="{exporter.address}"}}',
        ),
        30,
        "scrape_samples_scraped",
    )
    assert [float(r["value"][1]) for r in meta] == [3.0]


def test_two_clusters_reach_elasticsearch_influxdb_and_opentsdb(
    stack, unique, tmp_path, processes, exporter
):
    create_topics(stack("kafka", "bootstrap"), (unique, 4), (f"{unique}-dlq", 1))
    metric = f"app_{unique}"
    _start_shippers(stack, tmp_path, processes, exporter, unique, metric)
    influx = stack("influxdb", "http")
    httpx.post(
        f"{influx}/query", params={"q": f'CREATE DATABASE "{unique}"'}, timeout=10
    ).raise_for_status()
    stream = f"metrics-e2e-{unique}"
    processes(
        _worker(
            stack,
            tmp_path,
            unique,
            "elasticsearch_metrics",
            {"url": stack("elasticsearch", "http"), "data_stream": stream},
        )
    )
    processes(_worker(stack, tmp_path, unique, "influxdb", {"url": influx, "database": unique}))
    processes(
        _worker(stack, tmp_path, unique, "opentsdb", {"url": stack("victoriametrics", "opentsdb")})
    )

    def es_clusters() -> dict[str, float]:
        response = httpx.post(
            f"{stack('elasticsearch', 'http')}/{stream}/_search",
            json={"size": 50, "query": {"term": {"metric.name": f"{metric}_temp"}}},
            timeout=10,
        )
        if response.status_code != 200:  # not created yet, or its shard still starting
            return {}
        hits = response.json()["hits"]["hits"]
        return {h["_source"]["cluster"]: h["_source"]["metric"]["value"] for h in hits}

    assert wait_for(
        lambda: es_clusters().keys() == {"alpha", "beta"} and es_clusters(),
        60,
        "both clusters in Elasticsearch",
    ) == {"alpha": 21.5, "beta": 21.5}

    def influx_clusters() -> dict[str, float]:
        answer = httpx.get(
            f"{influx}/query",
            params={
                "db": unique,
                "q": f'SELECT last(value) FROM "{metric}_temp" GROUP BY "cluster"',
            },
            timeout=10,
        ).json()
        series = answer["results"][0].get("series", [])
        return {s["tags"]["cluster"]: s["values"][0][1] for s in series}

    assert wait_for(
        lambda: len(influx_clusters()) == 2 and influx_clusters(), 60, "both clusters in InfluxDB"
    ) == {"alpha": 21.5, "beta": 21.5}

    vm = stack("victoriametrics", "http")

    def tsdb_clusters() -> dict[str, float]:
        httpx.get(f"{vm}/internal/force_flush", timeout=10)
        rows = _query(vm, f"{metric}_temp")
        return {r["metric"]["cluster"]: float(r["value"][1]) for r in rows}

    assert wait_for(
        lambda: len(tsdb_clusters()) == 2 and tsdb_clusters(), 60, "both clusters through OpenTSDB"
    ) == {"alpha": 21.5, "beta": 21.5}
