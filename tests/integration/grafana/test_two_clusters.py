"""ferryman's own health, node and scrape panels show data for two clusters.

Two clusters, each an edge metrics shipper labelled ``alpha-<token>`` or
``beta-<token>`` (unique per run: other tests write ``alpha``/``beta`` into the shared
stores) scraping itself, its cluster's worker and log shipper, the stack's
node-exporter, kube-state-metrics and a target that is down. kube-state-metrics
watches one real kube-apiserver holding the objects of :func:`_kube_objects` (nodes,
a deployment, a running pod whose container keeps restarting, a pending one whose
container waits), statuses written through the status subresources as kubelets and
controllers write them. Both ship into one Kafka topic; two
``prometheus_remote_write`` workers (one per cluster, own consumer groups) deliver it,
alpha's to Prometheus, beta's to VictoriaMetrics, so each store holds both clusters.
Each cluster's edge log shipper tails an info and an error log file into a logs topic
that a ``count`` worker (``by: [level]``) turns into line counters on the metrics
topic, and drops the debug lines with a ``drop`` stage; a second metrics shipper
whose Kafka never answers overflows its 16 KiB disk buffer and drops samples; its edge
traces receiver takes OTLP/JSON spans, one of them with an all-zero
(invalid) trace id that the receiver refuses. One malformed record makes both
workers dead-letter it, which the error panels must show. Each cluster also has a
retry lane: a ``prometheus_remote_write`` worker (own consumer group) reads a lane
topic of one batch and writes to its cluster's store through a fault proxy that takes
the first record and refuses the next writes with 503, so the refused records go to
the lane (Redis, keys under ``<token>-<cluster>``) and the cluster's ``--retry-lane``
worker, refused once more, then delivers them; the shipper scrapes both. The test
requires in both stores that each cluster handed those records to the lane, retried
and delivered every one, and that every lane record is stored. Then every query of
every panel in :data:`proof.PROVEN` is expanded with both clusters selected
(``(a|b)``) and run through ``query_range`` on both stores; each must return series
of both clusters. The receivers' spans reach Jaeger through an ``otlp_traces``
worker; every proven Jaeger search panel (repeated per cluster) must find, for each
cluster alone, that cluster's trace and no other; the error-trace searches
(:data:`proof.RUNS_ONLY`) must answer, though this Jaeger cannot filter on errors
(:data:`proof.NOT_PROVEN` says why). The lines also reach Elasticsearch
(``elasticsearch_logs``) and VictoriaLogs (``loki`` into its Loki push API); each
Elasticsearch and VictoriaLogs panel query, for one cluster, the other and both, must
return lines of exactly those clusters, and its volume query a bucket per level.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import redis

from infra.grafana.datasources import by_uid
from tests.integration.faultproxy import FaultProxy
from tests.integration.grafana.expand import ALL, Range
from tests.integration.grafana.harness import (
    BACKENDS,
    elasticsearch_targets,
    jaeger_search,
    jaeger_searches,
    label_values,
    logsql,
    msearch,
    prometheus_queries,
    query_range,
    variable_queries,
    victorialogs_targets,
)
from tests.integration.grafana.proof import NOT_PROVEN, PROVEN, RUNS_ONLY, all_panels
from tests.integration.kube import CORE, Cluster, KubeStateMetrics, create, patch, running_apiserver
from tests.integration.pipeline import (
    EdgeLogs,
    EdgeMetrics,
    EdgeTraces,
    Process,
    Worker,
    create_topics,
    free_port,
    produce,
    raw,
    remote_write,
    time_series,
)

DEADLINE_S = 180
LEVELS = ("info", "error")
LANE_RECORDS = 3  # on the lane topic: the first is taken, the others go to the lane


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


def _refusing_store(url: str) -> tuple[FaultProxy, str]:
    """A fault proxy in front of the remote-write endpoint ``url`` and the URL to write
    to through it: it forwards one write, refuses the next :data:`LANE_RECORDS` with
    503 (the lane worker's first attempt, stopped at its second record, and each of the
    other records' first retry from the lane), then forwards every write."""
    proxy = FaultProxy(url)
    path = urlsplit(url).path
    proxy.pass_through(1, path=path)
    proxy.fail(503, times=LANE_RECORDS, path=path)
    return proxy, proxy.url + path


def _lane_settings(
    stack: Any, topic: str, dlq: str, cluster: str, url: str, namespace: str, port: int
) -> dict[str, Any]:
    """A ``prometheus_remote_write`` worker on the lane topic with a retry lane in Redis
    under ``namespace``: a batch the store took in part goes to the lane after one
    attempt; the lane retries after 0.2 s, then 0.4 s..."""
    return {
        "kafka": {
            "bootstrap_servers": stack("kafka", "bootstrap"),
            "input_topic": topic,
            "group_id": f"g-{topic}-{cluster}",
            "dead_letter_topic": dlq,
        },
        "batch": {"max_wait_s": 0.5},
        "http": {"listen": f"127.0.0.1:{port}"},
        "retry_lane": {
            "redis_url": stack("redis", "url"),
            "namespace": namespace,
            "budget_attempts": 1,
            "min_backoff_s": 0.2,
            "max_backoff_s": 1.0,
        },
        "config": {"url": url},
    }


def _log_shipper(stack: Any, tmp: Path, topic: str, cluster: str, port: int) -> EdgeLogs:
    folder = tmp / cluster
    folder.mkdir()
    for level in LEVELS:
        (folder / f"{level}.log").touch()
    return EdgeLogs(
        tmp,
        {
            "global": {"external_labels": {"cluster": cluster}},
            "positions": {"filename": str(folder / "positions.json")},
            "scrape_configs": [
                {
                    "job_name": f"app-{level}",
                    "static_configs": [
                        {"labels": {"__path__": str(folder / f"{level}.log"), "level": level}}
                    ],
                    "pipeline_stages": [{"drop": {"expression": "debug"}}],
                }
                for level in LEVELS
            ],
            "ferryman": {
                "kafka": {"bootstrap_servers": stack("kafka", "bootstrap"), "topic": topic},
                "listen": f"127.0.0.1:{port}",
                "batch_wait": "200ms",
                "rescan_interval": "300ms",
            },
        },
    )


def _traces_receiver(stack: Any, tmp: Path, topic: str, cluster: str) -> EdgeTraces:
    return EdgeTraces(
        tmp,
        {
            "external_labels": {"cluster": cluster},
            "ferryman": {
                "kafka": {"bootstrap_servers": stack("kafka", "bootstrap"), "topic": topic},
                "grpc": {"listen": f"127.0.0.1:{free_port()}"},
                "http": {"listen": f"127.0.0.1:{free_port()}"},
                "listen": f"127.0.0.1:{free_port()}",
            },
        },
    )


def _send_spans(receivers: list[EdgeTraces], service: str) -> None:
    """One valid span with an error status (a trace of its own per cluster) and one
    with an all-zero trace id, which the receiver refuses, to each receiver."""
    for receiver in receivers:
        now = time.time_ns()
        spans = [
            {
                "traceId": trace_id,
                "spanId": os.urandom(8).hex(),
                "name": "grafana-proof",
                "kind": 1,
                "startTimeUnixNano": str(now - 1_000_000),
                "endTimeUnixNano": str(now),
                "status": {"code": 2, "message": "proof of the error panels"},
            }
            for trace_id in (os.urandom(16).hex(), "0" * 32)
        ]
        resource = {"attributes": [{"key": "service.name", "value": {"stringValue": service}}]}
        body = {"resourceSpans": [{"resource": resource, "scopeSpans": [{"spans": spans}]}]}
        if receiver.ready():
            httpx.post(f"http://{receiver.http}/v1/traces", json=body, timeout=10)


def _write_lines(tmp: Path, clusters: tuple[str, str]) -> None:
    for cluster in clusters:
        for level in LEVELS:
            with (tmp / cluster / f"{level}.log").open("a") as f:
                f.write(f"{time.time():.3f} {level} something happened\n")
                f.write(f"{time.time():.3f} debug dropped by the drop stage\n")


def _stranded(stack: Any, tmp: Path, cluster: str, port: int) -> EdgeMetrics:
    """A metrics shipper whose Kafka never answers and whose 16 KiB disk buffer
    overflows: it drops samples (reason buffer_full)."""
    node = stack("node-exporter", "metrics").split("/")[2]
    return EdgeMetrics(
        tmp,
        {
            "global": {"scrape_interval": "1s", "scrape_timeout": "1s"},
            "scrape_configs": [{"job_name": "node", "static_configs": [{"targets": [node]}]}],
            "ferryman": {
                "kafka": {"bootstrap_servers": f"127.0.0.1:{free_port()}", "topic": "nowhere"},
                "buffer": {"directory": str(tmp / f"stranded-{cluster}"), "max_bytes": 16384},
                "listen": f"127.0.0.1:{port}",
                "flush_interval": "200ms",
            },
        },
    )


def _shipper(
    stack: Any,
    tmp: Path,
    topic: str,
    cluster: str,
    worker_port: int,
    logs_port: int,
    traces_api: str,
    stranded_port: int,
    down_port: int,
    ksm: KubeStateMetrics,
    lane_ports: tuple[int, int],
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
                job("ferryman-logs", f"127.0.0.1:{logs_port}"),
                job("ferryman-traces", traces_api.removeprefix("http://")),
                job("ferryman-edge-stranded", f"127.0.0.1:{stranded_port}"),
                job("ferryman-lane", f"127.0.0.1:{lane_ports[0]}"),
                job("ferryman-retry-lane", f"127.0.0.1:{lane_ports[1]}"),
                job("node", node),
                job("kube-state-metrics", ksm.url.split("/")[2]),
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


_APP = {"app": "checkout"}
_RESOURCES = {
    "requests": {"cpu": "500m", "memory": "256Mi"},
    "limits": {"cpu": "1", "memory": "512Mi"},
}
_CONTAINER = {"name": "app", "image": "example/checkout:1.0", "resources": _RESOURCES}


def _running_status(restarts: int) -> dict[str, Any]:
    """A kubelet's status for a running pod whose container restarted ``restarts`` times."""
    return {
        "phase": "Running",
        "conditions": [{"type": "Ready", "status": "True"}],
        "containerStatuses": [
            {
                "name": "app",
                "image": "example/checkout:1.0",
                "imageID": "",
                "ready": True,
                "restartCount": restarts,
                "state": {"running": {"startedAt": "2026-01-01T00:00:00Z"}},
            }
        ],
    }


def _kube_objects(cluster: Cluster, namespace: str) -> None:
    """In the API server, as kubectl and the kubelets would leave them: a namespace,
    two nodes with capacity and allocatable, a deployment (2 desired, 1 available), a
    running pod of it with requests and limits and restarts, and a pending one whose
    container waits on its image."""
    node_status = {
        "capacity": {"cpu": "4", "memory": "8Gi", "pods": "110"},
        "allocatable": {"cpu": "3800m", "memory": "7Gi", "pods": "110"},
        "conditions": [{"type": "Ready", "status": "True", "reason": "KubeletReady"}],
    }
    with cluster.http() as api:
        create(api, f"{CORE}/namespaces", {"metadata": {"name": namespace}})
        for i in (1, 2):
            create(api, f"{CORE}/nodes", {"metadata": {"name": f"{namespace}-{i}"}}, node_status)
        create(
            api,
            f"/apis/apps/v1/namespaces/{namespace}/deployments",
            {
                "metadata": {"name": "checkout", "labels": _APP},
                "spec": {
                    "replicas": 2,
                    "selector": {"matchLabels": _APP},
                    "template": {
                        "metadata": {"labels": _APP},
                        "spec": {"containers": [_CONTAINER]},
                    },
                },
            },
            {"replicas": 2, "readyReplicas": 1, "availableReplicas": 1, "updatedReplicas": 2},
        )
        pods = f"{CORE}/namespaces/{namespace}/pods"
        spec = {"nodeName": f"{namespace}-1", "containers": [_CONTAINER]}
        create(
            api,
            pods,
            {"metadata": {"name": "checkout-a", "labels": _APP}, "spec": spec},
            _running_status(3),
        )
        waiting = {"reason": "ImagePullBackOff", "message": "proof: no such image"}
        create(
            api,
            pods,
            {"metadata": {"name": "checkout-b", "labels": _APP}, "spec": spec},
            {
                "phase": "Pending",
                "containerStatuses": [
                    {
                        "name": "app",
                        "image": "example/checkout:1.0",
                        "imageID": "",
                        "ready": False,
                        "restartCount": 0,
                        "state": {"waiting": waiting},
                    }
                ],
            },
        )


def _restart(cluster: Cluster, namespace: str, restarts: int) -> None:
    """The running pod's container restarted again (as its kubelet reports it)."""
    with cluster.http() as api:
        path = f"{CORE}/namespaces/{namespace}/pods/checkout-a/status"
        patch(api, path, {"status": _running_status(restarts)})


def _missing_in_elasticsearch(
    stack: Any, clusters: tuple[str, str], time_range: Range
) -> list[str]:
    """Each Elasticsearch panel, for each cluster alone and for both: the logs query
    must return lines of exactly the selected clusters, the volume query a bucket for
    each level."""
    out: list[str] = []
    index = by_uid()["elasticsearch-logs"].json_data["index"]
    for search in elasticsearch_targets("logs-elasticsearch.json"):
        for chosen in ([clusters[0]], [clusters[1]], list(clusters)):
            status, body, query = msearch(
                stack("elasticsearch", "http"), index, search, time_range, {"cluster": chosen}
            )
            assert status == 200, (query, body)
            answer = body["responses"][0]
            assert "error" not in answer, (query, answer)
            if search.target["metrics"][0]["type"] == "logs":
                seen = {hit["_source"].get("cluster") for hit in answer["hits"]["hits"]}
                if seen != set(chosen):
                    out.append(f"es {search.name} {query}: clusters {sorted(map(str, seen))}")
            else:
                buckets = answer.get("aggregations", {}).get("2", {}).get("buckets", [])
                levels = {b["key"] for b in buckets}
                if levels != set(LEVELS):
                    out.append(f"es {search.name} {query}: levels {sorted(levels)}")
    return out


def _missing_in_victorialogs(stack: Any, clusters: tuple[str, str], time_range: Range) -> list[str]:
    """Each VictoriaLogs panel, for each cluster alone and for both: the lines query
    must return lines of exactly the selected clusters, the stats query a series per
    level."""
    out: list[str] = []
    for search in victorialogs_targets("logs-victorialogs.json"):
        for chosen in ([clusters[0]], [clusters[1]], list(clusters)):
            status, text, query = logsql(
                stack("victorialogs", "http"), search, time_range, {"cluster": chosen}
            )
            assert status == 200, (query, text)
            if search.target["queryType"] == "statsRange":
                answer = json.loads(text)
                assert answer["status"] == "success", (query, answer)
                levels = {r["metric"].get("level") for r in answer["data"]["result"]}
                if levels != set(LEVELS):
                    out.append(f"vl {search.name} {query}: levels {sorted(map(str, levels))}")
            else:
                rows = [json.loads(line) for line in text.splitlines() if line.strip()]
                seen = {row.get("cluster") for row in rows}
                if seen != set(chosen):
                    out.append(f"vl {search.name} {query}: clusters {sorted(map(str, seen))}")
    return out


def _lane_unfinished(stack: Any, clusters: tuple[str, str], run: str) -> list[str]:
    """What the retry lanes have not shown yet, in both stores: each cluster's lane
    worker handed the records the store refused to the lane, its retry worker was
    refused again and then delivered every one of them; and every record of the lane
    topic reached the store its cluster writes to."""
    chosen = f'cluster=~"{"|".join(clusters)}"'
    handed = LANE_RECORDS - 1
    checks = (
        ("handed to the lane", "ferryman_records_handed_to_lane_total", "ferryman-lane", handed),
        ("retried by the lane", "ferryman_records_retried_total", "ferryman-retry-lane", None),
        ("sent by the lane", "ferryman_records_sent_total", "ferryman-retry-lane", handed),
    )
    out: list[str] = []
    for backend in BACKENDS:
        base = stack(backend, "http")
        for what, metric, job, want in checks:
            expr = f'sum by (cluster) ({metric}{{{chosen}, job="{job}"}})'
            answer = httpx.get(f"{base}/api/v1/query", params={"query": expr}, timeout=30).json()
            got = {
                r["metric"].get("cluster"): float(r["value"][1]) for r in answer["data"]["result"]
            }
            for cluster in clusters:
                value = got.get(cluster)
                if value is None or (value != want if want is not None else value < 1):
                    out.append(f"{backend} {cluster}: {what} {value}, want {want or '>= 1'}")
    for backend in BACKENDS:
        expr = f'count(ferryman_proof_lane{{run="{run}"}})'
        answer = httpx.get(
            f"{stack(backend, 'http')}/api/v1/query", params={"query": expr}, timeout=30
        ).json()
        stored = [float(r["value"][1]) for r in answer["data"]["result"]]
        if stored != [LANE_RECORDS]:
            out.append(f"{backend}: lane records stored {stored}, want {LANE_RECORDS}")
    return out


def _missing(stack: Any, clusters: tuple[str, str], service: str) -> list[str]:
    """Every proven query (and the cluster variable) lacking a cluster, per store; and
    every proven Jaeger search (one per cluster: the panels repeat by cluster) that
    finds no trace of ``service`` from that cluster."""
    now = time.time()
    time_range = Range(now - 300, now)
    out: list[str] = []
    out += _missing_in_elasticsearch(stack, clusters, time_range)
    out += _missing_in_victorialogs(stack, clusters, time_range)
    for dashboard, titles in PROVEN.items():
        for search in jaeger_searches(f"{dashboard}.json"):
            if search.panel not in titles | RUNS_ONLY.get(dashboard, set()):
                continue
            for cluster in clusters:
                selected = {n: [ALL] for n, v in search.variables.items() if v["type"] == "query"}
                selected["cluster"] = [cluster]
                status, body, params = jaeger_search(
                    stack("jaeger", "query"), search, time_range, selected, {"service": service}
                )
                assert status == 200 and not body.get("errors"), (params, body)
                if search.panel in RUNS_ONLY.get(dashboard, ()):
                    continue
                found = {
                    tag["value"]
                    for trace in body["data"] or []
                    for process in trace["processes"].values()
                    for tag in process.get("tags", [])
                    if tag["key"] == "k8s.cluster.name"
                }
                if found != {cluster}:
                    out.append(f"jaeger {search.name} for {cluster}: clusters {sorted(found)}")
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
    out += _lane_unfinished(stack, clusters, service)
    return out


@pytest.fixture
def lanes(stack: Any, unique: str) -> Iterator[list[FaultProxy]]:
    """The fault proxies the test puts in front of the stores (closed at the end), and
    the lanes' Redis keys, all under ``<unique>-`` (deleted at the end). The test asks
    for it before ``processes``, so it ends after the workers stopped: a retry worker
    writes its heartbeat key until then."""
    proxies: list[FaultProxy] = []
    yield proxies
    for proxy in proxies:
        proxy.close()
    client = redis.Redis.from_url(stack("redis", "url"))
    try:
        for key in client.scan_iter(match=f"{unique}-*"):
            client.delete(key)
    finally:
        client.close()


@pytest.fixture
def kube_state(tmp_path: Path, unique: str) -> Iterator[tuple[Cluster, KubeStateMetrics, str]]:
    """One API server holding :func:`_kube_objects` in namespace ``proof-<token>``, and
    kube-state-metrics watching it; both clusters' shippers scrape it."""
    workdir = tmp_path / "kube"
    workdir.mkdir()
    with running_apiserver(workdir) as cluster:
        namespace = f"proof-{unique}"
        _kube_objects(cluster, namespace)
        ksm = KubeStateMetrics(cluster, workdir).start()
        try:
            yield cluster, ksm, namespace
        finally:
            ksm.stop()


@pytest.mark.integration
def test_proven_panels_show_both_clusters(
    stack, unique, tmp_path, lanes, processes, kube_state
) -> None:
    kube, ksm, namespace = kube_state
    topic = unique
    bootstrap = stack("kafka", "bootstrap")
    logs = f"{topic}-logs"
    traces = f"{topic}-traces"
    lane = f"{topic}-lane"
    create_topics(bootstrap, (topic, 2), (f"{topic}-dlq", 1), (logs, 2), (traces, 1), (lane, 1))
    service = f"proof-{unique}"
    clusters = (f"alpha-{unique}", f"beta-{unique}")
    down_port = free_port()  # nothing listens there: each cluster has a target down
    count = Worker(
        tmp_path,
        "count",
        {
            "kafka": {
                "bootstrap_servers": bootstrap,
                "input_topic": logs,
                "output_topic": topic,
                "dead_letter_topic": f"{topic}-dlq",
            },
            "batch": {"max_wait_s": 0.2},
            "config": {"by": ["level"]},
        },
    )
    processes(count)
    processes(
        Worker(
            tmp_path,
            "elasticsearch_logs",
            {
                "kafka": {
                    "bootstrap_servers": bootstrap,
                    "input_topic": logs,
                    "group_id": f"g-{logs}-es",
                    "dead_letter_topic": f"{topic}-dlq",
                },
                "batch": {"max_wait_s": 0.2},
                "config": {"url": stack("elasticsearch", "http")},
            },
        )
    )
    processes(
        Worker(
            tmp_path,
            "loki",
            {
                "kafka": {
                    "bootstrap_servers": bootstrap,
                    "input_topic": logs,
                    "group_id": f"g-{logs}-vl",
                    "dead_letter_topic": f"{topic}-dlq",
                },
                "batch": {"max_wait_s": 0.2},
                "config": {
                    "url": stack("victorialogs", "http"),
                    "push_path": "/insert/loki/api/v1/push",
                },
            },
        )
    )
    processes(
        Worker(
            tmp_path,
            "otlp_traces",
            {
                "kafka": {
                    "bootstrap_servers": bootstrap,
                    "input_topic": traces,
                    "dead_letter_topic": f"{topic}-dlq",
                },
                "batch": {"max_wait_s": 0.2},
                "config": {"url": stack("jaeger", "otlp_http")},
            },
        )
    )
    receivers: list[EdgeTraces] = []
    lane_workers: list[Worker] = []
    for cluster, store in zip(clusters, BACKENDS, strict=True):
        worker_port, logs_port = free_port(), free_port()
        worker = processes(_worker(stack, tmp_path, topic, cluster, store, worker_port))
        worker.wait_ready()
        processes(_log_shipper(stack, tmp_path, logs, cluster, logs_port))
        stranded_port = free_port()
        processes(_stranded(stack, tmp_path, cluster, stranded_port))
        receiver = processes(_traces_receiver(stack, tmp_path, traces, cluster))
        receivers.append(receiver)
        proxy, url = _refusing_store(stack(store, "remote_write"))
        lanes.append(proxy)
        lane_ports = (free_port(), free_port())
        settings = _lane_settings(
            stack, lane, f"{topic}-dlq", cluster, url, f"{unique}-{cluster}", lane_ports[0]
        )
        lane_workers.append(processes(Worker(tmp_path, "prometheus_remote_write", settings)))
        settings = {**settings, "http": {"listen": f"127.0.0.1:{lane_ports[1]}"}}
        processes(
            Process(
                tmp_path, ["worker", "prometheus_remote_write"], settings, flags=["--retry-lane"]
            )
        )
        processes(
            _shipper(
                stack,
                tmp_path,
                topic,
                cluster,
                worker_port,
                logs_port,
                receiver.api,
                stranded_port,
                down_port,
                ksm,
                lane_ports,
            )
        )
    # The lane topic, once both lane workers hold its partition (a rebalance hands no
    # batch back after the proxy took its first record): one batch, a series per record.
    for lane_worker in lane_workers:
        lane_worker.wait_ready()
    now_ms = int(time.time() * 1000)
    produce(
        bootstrap,
        lane,
        [
            remote_write(
                [
                    time_series(
                        {"__name__": "ferryman_proof_lane", "run": service, "n": str(n)},
                        (1.0, now_ms),
                    )
                ]
            )
            for n in range(LANE_RECORDS)
        ],
    )
    # A record no remote-write decoder accepts: both workers dead-letter it.
    produce(bootstrap, topic, [raw(b"not a remote-write message")])

    deadline = time.monotonic() + DEADLINE_S
    _write_lines(tmp_path, clusters)
    missing = _missing(stack, clusters, service)
    restarts = 3
    while missing and time.monotonic() < deadline:
        time.sleep(3)
        _write_lines(tmp_path, clusters)
        restarts += 1  # a crash-looping container: the restarts panel sees increases
        _restart(kube, namespace, restarts)
        _send_spans(receivers, service)
        missing = _missing(stack, clusters, service)
    assert missing == [], f"after {DEADLINE_S}s, panels without both clusters:\n" + "\n".join(
        missing
    )
