"""The edge log shipper with discovered log paths, against the real Kafka:
``file_sd_configs`` whose targets file changes while it runs, and
``kubernetes_sd_configs`` and ``pod_labels`` against a real kube-apiserver (and
etcd) started for this module (no kubelet: pods are plain objects and the tests lay
out the kubelet's log directory themselves)."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from kafka import KafkaConsumer

from ferryman.wire.loki import decode_push_request
from ferryman.wire.remote_write import snappy_decompress
from tests.integration.kube import create
from tests.integration.pipeline import EdgeLogs, create_topics, wait_for

M = "__meta_kubernetes_"
CORE = "/api/v1"
CRI = "2026-01-01T00:00:00.000000001Z stdout F "


class Shipped:
    """Every line shipped to a topic, per filename, and each file's latest labels."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = KafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest"
        )
        self.by_file: dict[str, list[str]] = {}
        self.labels: dict[str, dict[str, str]] = {}

    def poll(self) -> Shipped:
        batches = self.consumer.poll(timeout_ms=500, max_records=10_000)
        for message in (m for records in batches.values() for m in records):
            for stream in decode_push_request(snappy_decompress(message.value)):
                name = stream.labels["filename"]
                self.labels[name] = dict(stream.labels)
                self.by_file.setdefault(name, []).extend(e.line for e in stream.entries)
        return self

    def lines(self, path: Path | str) -> list[str]:
        return self.by_file.get(str(path), [])

    def close(self) -> None:
        self.consumer.close()


@pytest.fixture
def shipped(stack, unique) -> Iterator[Callable[[], Shipped]]:
    made: list[Shipped] = []

    def consume() -> Shipped:
        made.append(Shipped(stack("kafka", "bootstrap"), unique))
        return made[-1]

    yield consume
    for consumer in made:
        consumer.close()


def append(path: Path, *lines: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write("".join(line + "\n" for line in lines))


def settings(
    tmp_path: Path, bootstrap: str, topic: str, scrape_configs: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "global": {"external_labels": {"cluster": "alpha"}},
        "positions": {"filename": str(tmp_path / "positions.json")},
        "scrape_configs": scrape_configs,
        "ferryman": {
            "kafka": {"bootstrap_servers": bootstrap, "topic": topic},
            "listen": "127.0.0.1:0",
            "host": "node-1",
            "batch_wait": "200ms",
            "rescan_interval": "300ms",
        },
    }


# --- file_sd -------------------------------------------------------------------------


def write_targets(path: Path, groups: list[dict[str, Any]]) -> None:
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(groups))
    tmp.replace(path)
    later = time.time() + 2  # a new mtime even within the second of the last read
    os.utime(path, (later, later))


def test_file_sd_targets_that_change_while_running(stack, unique, tmp_path, processes, shipped):
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (unique, 2))
    logs = tmp_path / "logs"
    a, b, skipped = logs / "a.log", logs / "b.log", logs / "b-debug.log"
    append(a, "a 1", "a 2")
    append(b, "b 1")
    append(skipped, "never")
    targets = tmp_path / "sd" / "apps.json"
    targets.parent.mkdir()
    write_targets(targets, [{"targets": ["localhost"], "labels": {"__path__": str(a), "app": "a"}}])
    processes(
        EdgeLogs(
            tmp_path,
            settings(
                tmp_path,
                bootstrap,
                unique,
                [
                    {
                        "job_name": "apps",
                        "file_sd_configs": [{"files": [str(tmp_path / "sd" / "*.json")]}],
                        "relabel_configs": [
                            {"source_labels": ["__meta_filepath"], "target_label": "sd_file"}
                        ],
                    }
                ],
            ),
        )
    )
    got = shipped()
    wait_for(lambda: got.poll().lines(a) == ["a 1", "a 2"], 30, "a.log's lines")
    assert got.labels[str(a)] == {
        "job": "apps",
        "app": "a",
        "filename": str(a),
        "sd_file": str(targets),
        "host": "node-1",
        "cluster": "alpha",
    }
    assert got.lines(b) == []

    # a.log leaves the targets; b*.log comes, less its exclude.
    write_targets(
        targets,
        [
            {
                "targets": ["localhost"],
                "labels": {
                    "__path__": str(logs / "b*.log"),
                    "__path_exclude__": str(logs / "*debug*"),
                    "app": "b",
                },
            }
        ],
    )
    append(b, "b 2")
    wait_for(lambda: got.poll().lines(b) == ["b 1", "b 2"], 30, "b.log's lines")
    assert got.labels[str(b)]["app"] == "b"
    append(a, "a 3 (no longer a target)")
    append(b, "b 3")
    wait_for(lambda: got.poll().lines(b) == ["b 1", "b 2", "b 3"], 30, "b.log's new line")
    time.sleep(1.5)  # several rescans
    assert got.poll().lines(a) == ["a 1", "a 2"]
    assert got.lines(skipped) == []

    # A new targets file is picked up too.
    c = logs / "c.log"
    append(c, "c 1")
    write_targets(
        tmp_path / "sd" / "more.json",
        [{"targets": ["x"], "labels": {"__path__": str(c), "app": "c"}}],
    )
    wait_for(lambda: got.poll().lines(c) == ["c 1"], 30, "c.log, from a new targets file")


# --- Kubernetes ----------------------------------------------------------------------


def pod(
    namespace: str, name: str, node: str, labels: dict[str, str], containers: list[str]
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {
            "nodeName": node,
            "containers": [{"name": c, "image": f"{c}:1"} for c in containers],
        },
    }


def kubelet_log(root: Path, namespace: str, name: str, uid: str, container: str) -> Path:
    return root / f"{namespace}_{name}_{uid}" / container / "0.log"


def test_pod_logs_discovered_and_static_pod_globs_enriched(
    stack, unique, tmp_path, processes, shipped, cluster, api
):
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (unique, 2))
    namespace = unique
    create(api, f"{CORE}/namespaces", {"metadata": {"name": namespace}})
    pods = f"{CORE}/namespaces/{namespace}/pods"
    web_uid = create(api, pods, pod(namespace, "web", "node-a", {"app": "web"}, ["app", "proxy"]))[
        "metadata"
    ]["uid"]
    other_uid = create(api, pods, pod(namespace, "elsewhere", "node-b", {"app": "x"}, ["app"]))[
        "metadata"
    ]["uid"]
    root = tmp_path / "pods"
    app = kubelet_log(root, namespace, "web", web_uid, "app")
    proxy = kubelet_log(root, namespace, "web", web_uid, "proxy")
    elsewhere = kubelet_log(root, namespace, "elsewhere", other_uid, "app")
    append(app, CRI + "app 1")
    append(proxy, CRI + "proxy 1")
    append(elsewhere, CRI + "not this node's")
    # The same pod's log seen through a static glob over a kubelet-style directory.
    static = tmp_path / "static/var/log/pods" / f"{namespace}_web_{web_uid}" / "app" / "0.log"
    append(static, "static 1")

    kube = {
        "kubeconfig_file": str(cluster.kubeconfig),
        "node_name": "node-a",
        "namespaces": {"names": [namespace]},
    }
    processes(
        EdgeLogs(
            tmp_path,
            settings(
                tmp_path,
                bootstrap,
                unique,
                [
                    {
                        "job_name": "pods",
                        "kubernetes_sd_configs": [{**kube, "pod_logs_directory": str(root)}],
                        "relabel_configs": [
                            {"source_labels": [M + "namespace"], "target_label": "namespace"},
                            {"source_labels": [M + "pod_name"], "target_label": "pod"},
                            {
                                "source_labels": [M + "pod_container_name"],
                                "target_label": "container",
                            },
                            {"action": "labelmap", "regex": M + "pod_label_(.+)"},
                            {"source_labels": ["container"], "regex": "proxy", "action": "drop"},
                        ],
                        "pipeline_stages": [{"cri": {}}],
                    },
                    {
                        "job_name": "static-pods",
                        "static_configs": [
                            {
                                "labels": {
                                    "__path__": str(tmp_path / "static/var/log/pods/*/*/*.log")
                                }
                            }
                        ],
                        "pod_labels": {**kube, "labels": ["app"], "prefix": "pod_"},
                        "relabel_configs": [{"action": "labeldrop", "regex": "pod_uid"}],
                    },
                ],
            ),
        )
    )
    got = shipped()
    wait_for(lambda: got.poll().lines(app) == ["app 1"], 60, "the pod's log")
    assert got.labels[str(app)] == {
        "job": "pods",
        "namespace": namespace,
        "pod": "web",
        "container": "app",
        "app": "web",
        "stream": "stdout",
        "filename": str(app),
        "host": "node-1",
        "cluster": "alpha",
    }
    wait_for(lambda: got.poll().lines(static) == ["static 1"], 60, "the static file")
    # The first lines already carry the pod's labels: files wait for the first list.
    assert got.labels[str(static)] == {
        "job": "static-pods",
        "namespace": namespace,
        "pod": "web",
        "container": "app",
        "pod_app": "web",
        "filename": str(static),
        "host": "node-1",
        "cluster": "alpha",
    }

    # A pod created while running is tailed; the dropped container and the pod of
    # another node never are.
    later_uid = create(api, pods, pod(namespace, "later", "node-a", {"app": "late"}, ["worker"]))[
        "metadata"
    ]["uid"]
    later = kubelet_log(root, namespace, "later", later_uid, "worker")
    append(later, CRI + "later 1")
    append(app, CRI + "app 2")
    wait_for(lambda: got.poll().lines(later) == ["later 1"], 60, "the new pod's log")
    assert got.labels[str(later)]["app"] == "late"
    wait_for(lambda: got.poll().lines(app) == ["app 1", "app 2"], 30, "app's next line")
    assert got.lines(proxy) == [] and got.lines(elsewhere) == []
