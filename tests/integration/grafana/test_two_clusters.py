"""ferryman's own health, node and scrape panels show data for two clusters.

Two clusters, each an edge metrics shipper labelled ``alpha-<token>`` or
``beta-<token>`` (unique per run: other tests write ``alpha``/``beta`` into the shared
stores) scraping itself, its cluster's worker, the stack's node-exporter and a target
that is down. Both ship into one Kafka topic; two ``prometheus_remote_write`` workers
(one per cluster, own consumer groups) deliver it, alpha's to Prometheus, beta's to
VictoriaMetrics, so each store holds both clusters. One malformed record makes both
workers dead-letter it, which the error panels must show. Then every query of every
panel in :data:`proof.PROVEN` is expanded with both clusters selected (``(a|b)``) and
run through ``query_range`` on both stores; each must return series of both clusters.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from tests.integration.grafana.expand import ALL, Range
from tests.integration.grafana.harness import (
    BACKENDS,
    label_values,
    prometheus_queries,
    query_range,
    variable_queries,
)
from tests.integration.grafana.proof import NOT_PROVEN, PROVEN, all_panels
from tests.integration.pipeline import (
    EdgeMetrics,
    Worker,
    create_topics,
    free_port,
    produce,
    raw,
)

DEADLINE_S = 180


def test_every_panel_is_proven_or_has_a_reason() -> None:
    for dashboard, titles in all_panels().items():
        proven = PROVEN.get(dashboard, frozenset())
        reasons = NOT_PROVEN.get(dashboard, {})
        assert proven.isdisjoint(reasons), dashboard
        assert titles == proven | set(reasons), dashboard


def _worker(stack: Any, tmp: Path, topic: str, cluster: str, store: str, port: int) -> Worker:
    return Worker(
        tmp,
        "prometheus_remote_write",
        {
            "kafka": {
                "bootstrap_servers": stack("kafka", "bootstrap"),
                "input_topic": topic,
                "group_id": f"g-{topic}-{cluster}",
                "dead_letter_topic": f"{topic}-dlq",
            },
            "batch": {"max_wait_s": 0.2},
            "http": {"listen": f"127.0.0.1:{port}"},
            "config": {"url": stack(store, "remote_write")},
        },
    )


def _shipper(
    stack: Any, tmp: Path, topic: str, cluster: str, worker_port: int, down_port: int
) -> EdgeMetrics:
    port = free_port()
    node = stack("node-exporter", "metrics").split("/")[2]

    def job(name: str, target: str) -> dict[str, Any]:
        return {"job_name": name, "static_configs": [{"targets": [target]}]}

    return EdgeMetrics(
        tmp,
        {
            "global": {
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "external_labels": {"cluster": cluster},
            },
            "scrape_configs": [
                job("ferryman-edge", f"127.0.0.1:{port}"),
                job("ferryman-worker", f"127.0.0.1:{worker_port}"),
                job("node", node),
                job("gone", f"127.0.0.1:{down_port}"),
            ],
            "ferryman": {
                "kafka": {"bootstrap_servers": stack("kafka", "bootstrap"), "topic": topic},
                "buffer": {"directory": str(tmp / f"buffer-{cluster}")},
                "listen": f"127.0.0.1:{port}",
                "flush_interval": "200ms",
            },
        },
    )


def _missing(stack: Any, clusters: tuple[str, str]) -> list[str]:
    """Every proven query (and the cluster variable) lacking a cluster, per store."""
    now = time.time()
    time_range = Range(now - 300, now)
    out: list[str] = []
    for backend in BACKENDS:
        base = stack(backend, "http")
        for dashboard, titles in PROVEN.items():
            for query in prometheus_queries(f"{dashboard}.json"):
                if query.panel not in titles:
                    continue
                selected = {n: [ALL] for n, v in query.variables.items() if v["type"] == "query"}
                selected["cluster"] = list(clusters)
                status, body, expr = query_range(base, query, time_range, selected)
                assert status == 200 and body["status"] == "success", (backend, expr, body)
                seen = {r["metric"].get("cluster") for r in body["data"]["result"] if r["values"]}
                if seen != set(clusters):
                    out.append(f"{backend} {query.name}: clusters {sorted(map(str, seen))}")
        for dashboard, variable, variables in variable_queries():
            if variable["name"] == "cluster" and dashboard in PROVEN:
                all_selected = {n: [ALL] for n, v in variables.items() if v["type"] == "query"}
                _, body = label_values(base, variable, variables, time_range, all_selected)
                if not set(clusters) <= set(body["data"]):
                    out.append(f"{backend} {dashboard} $cluster lists neither/one of {clusters}")
    return out


@pytest.mark.integration
def test_proven_panels_show_both_clusters(stack, unique, tmp_path, processes) -> None:
    topic = unique
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (topic, 2), (f"{topic}-dlq", 1))
    clusters = (f"alpha-{unique}", f"beta-{unique}")
    down_port = free_port()  # nothing listens there: each cluster has a target down
    for cluster, store in zip(clusters, BACKENDS, strict=True):
        worker_port = free_port()
        worker = processes(_worker(stack, tmp_path, topic, cluster, store, worker_port))
        worker.wait_ready()
        processes(_shipper(stack, tmp_path, topic, cluster, worker_port, down_port))
    # A record no remote-write decoder accepts: both workers dead-letter it.
    produce(bootstrap, topic, [raw(b"not a remote-write message")])

    deadline = time.monotonic() + DEADLINE_S
    missing = _missing(stack, clusters)
    while missing and time.monotonic() < deadline:
        time.sleep(3)
        missing = _missing(stack, clusters)
    assert missing == [], f"after {DEADLINE_S}s, panels without both clusters:\n" + "\n".join(
        missing
    )
