"""Log-path discovery against a real kube-apiserver (and etcd) started for this module,
and file_sd files that change under it.

No kubelet runs: the tests create pods bound to nodes as plain objects, write pod
status as a kubelet would, and lay out the kubelet's log directory themselves, then
check the targets, that relabeling turns them into globs matching those files, and
that the watch follows label changes and deletions.
"""

from __future__ import annotations

import glob
import json
import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from edge.logs.discovery import (
    FileSDConfig,
    FileTarget,
    LogDiscovery,
    LogTarget,
    PodLogsSDConfig,
    resolve,
)
from edge.logs.podlabels import PodLabels, PodLabelsConfig
from ferryman.prom.relabel import RelabelConfig, compile_rules
from tests.integration.kube import create
from tests.integration.pipeline import wait_for

M = "__meta_kubernetes_"
CORE = "/api/v1"


@pytest.fixture
def discover() -> Iterator[Callable[..., LogDiscovery]]:
    started: list[LogDiscovery] = []

    def start(**configs: Any) -> LogDiscovery:
        discovery = LogDiscovery(**configs)
        started.append(discovery)
        return discovery

    yield start
    for discovery in started:
        discovery.close()


def patch(api: httpx.Client, path: str, change: dict[str, Any]) -> None:
    response = api.patch(
        path, json=change, headers={"Content-Type": "application/merge-patch+json"}
    )
    assert response.status_code == 200, response.text


def delete(api: httpx.Client, path: str) -> None:
    response = api.delete(path, params={"gracePeriodSeconds": 0})
    assert response.status_code in (200, 202), response.text


def pod(
    namespace: str, name: str, node: str, labels: dict[str, str], containers: list[str]
) -> dict[str, Any]:
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "annotations": {"team": "shop"},
        },
        "spec": {
            "nodeName": node,
            "containers": [{"name": c, "image": f"{c}:1"} for c in containers],
        },
    }


RUNNING = {
    "phase": "Running",
    "podIP": "10.9.0.5",
    "podIPs": [{"ip": "10.9.0.5"}],
    "hostIP": "10.0.0.9",
    "conditions": [{"type": "Ready", "status": "True"}],
}


def targets_when(
    discovery: LogDiscovery,
    check: Callable[[list[LogTarget]], bool],
    what: str,
    timeout: float = 20,
) -> list[LogTarget]:
    """Polls as the shipper does (changed(), then targets()) until ``check`` holds."""
    latest = discovery.targets()

    def poll() -> bool:
        nonlocal latest
        if discovery.changed():
            latest = discovery.targets()
        return check(latest)

    wait_for(poll, timeout, what, interval=0.2)
    return latest


def by_container(found: list[LogTarget]) -> dict[tuple[str, str], LogTarget]:
    return {(t.labels[M + "pod_name"], t.labels[M + "pod_container_name"]): t for t in found}


def kubelet_log(root: Path, namespace: str, name: str, uid: str, container: str) -> str:
    directory = root / f"{namespace}_{name}_{uid}" / container
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "0.log").write_text("2026-01-01T00:00:00Z stdout F hello\n")
    return str(directory / "0.log")


PROMTAIL_RULES = [
    {"source_labels": [M + "namespace"], "target_label": "namespace"},
    {"source_labels": [M + "pod_name"], "target_label": "pod"},
    {"source_labels": [M + "pod_container_name"], "target_label": "container"},
    {"action": "labelmap", "regex": M + "pod_label_(.+)"},
]


def test_the_pods_of_this_node_become_log_targets(api, cluster, namespace, discover, tmp_path):
    path = f"{CORE}/namespaces/{namespace}/pods"
    web = create(
        api, path, pod(namespace, "web", "node-a", {"app": "web"}, ["app", "proxy"]), status=RUNNING
    )
    uid = web["metadata"]["uid"]
    create(api, path, pod(namespace, "elsewhere", "node-b", {"app": "web"}, ["app"]))
    discovery = discover(
        kubernetes_sd_configs=(
            PodLogsSDConfig(
                kubeconfig_file=cluster.kubeconfig,
                node_name="node-a",
                namespaces={"names": [namespace]},
                pod_logs_directory=tmp_path,
            ),
        )
    )

    found = by_container(targets_when(discovery, lambda t: len(t) == 2, "web's containers"))
    assert sorted(found) == [("web", "app"), ("web", "proxy")]  # not node-b's pod
    app = found[("web", "app")].labels
    assert {k: v for k, v in app.items() if k not in (M + "pod_ready",)} == {
        "__path__": f"{tmp_path}/*{uid}/app/*.log",
        M + "namespace": namespace,
        M + "pod_name": "web",
        M + "pod_uid": uid,
        M + "pod_node_name": "node-a",
        M + "pod_phase": "Running",
        M + "pod_ip": "10.9.0.5",
        M + "pod_host_ip": "10.0.0.9",
        M + "pod_label_app": "web",
        M + "pod_labelpresent_app": "true",
        M + "pod_annotation_team": "shop",
        M + "pod_annotationpresent_team": "true",
        M + "pod_container_name": "app",
        M + "pod_container_image": "app:1",
        M + "pod_container_init": "false",
    }

    # Relabeled the Promtail way, the default __path__ matches the kubelet's file.
    written = kubelet_log(tmp_path, namespace, "web", uid, "app")
    rules = compile_rules([RelabelConfig.model_validate(r) for r in PROMTAIL_RULES])
    resolved = resolve(found[("web", "app")], rules, "pods")
    assert resolved == FileTarget(
        f"{tmp_path}/*{uid}/app/*.log",
        None,
        {"job": "pods", "namespace": namespace, "pod": "web", "container": "app", "app": "web"},
    )
    assert glob.glob(resolved.path) == [written]

    patch(api, f"{path}/web", {"metadata": {"labels": {"app": "shop", "tier": "front"}}})
    targets_when(
        discovery,
        lambda t: (
            all(
                x.labels.get(M + "pod_label_tier") == "front"
                and x.labels[M + "pod_label_app"] == "shop"
                for x in t
            )
            and len(t) == 2
        ),
        "the new labels",
    )
    create(api, path, pod(namespace, "later", "node-a", {}, ["c"]))
    targets_when(discovery, lambda t: ("later", "c") in by_container(t), "a new pod")
    delete(api, f"{path}/web")
    targets_when(
        discovery,
        lambda t: sorted(by_container(t)) == [("later", "c")],
        "the deleted pod's targets to go",
    )


def test_the_node_comes_from_node_name_in_the_environment(
    api, cluster, namespace, discover, monkeypatch
):
    path = f"{CORE}/namespaces/{namespace}/pods"
    create(api, path, pod(namespace, "mine", "node-env", {}, ["c"]))
    create(api, path, pod(namespace, "theirs", "node-other", {}, ["c"]))
    monkeypatch.setenv("NODE_NAME", "node-env")
    discovery = discover(
        kubernetes_sd_configs=(
            PodLogsSDConfig(kubeconfig_file=cluster.kubeconfig, namespaces={"names": [namespace]}),
        )
    )
    found = targets_when(discovery, lambda t: len(t) >= 1, "the node's pod")
    time.sleep(0.5)
    discovery.changed()
    assert [t.labels[M + "pod_name"] for t in discovery.targets()] == ["mine"]
    assert found[0].labels["__path__"].startswith("/var/log/pods/*")


def test_file_sd_files_that_change(discover, tmp_path):
    sd = tmp_path / "sd"
    sd.mkdir()
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "a.log").write_text("a\n")
    (logs / "b.log").write_text("b\n")
    first = sd / "apps.json"
    first.write_text(
        json.dumps(
            [{"targets": ["localhost"], "labels": {"__path__": f"{logs}/a.log", "app": "a"}}]
        )
    )
    discovery = discover(file_sd_configs=(FileSDConfig(files=(f"{sd}/*.json", f"{sd}/*.yml")),))
    rules = compile_rules([])

    def paths(found: list[LogTarget]) -> dict[str, str]:
        out = {}
        for target in found:
            resolved = resolve(target, rules, "files")
            assert resolved is not None
            out[resolved.path] = resolved.labels["app"]
        return out

    targets_when(discovery, lambda t: paths(t) == {f"{logs}/a.log": "a"}, "the first file")
    # A change within the same second as the last read is still seen: a new mtime.
    first.write_text(
        json.dumps(
            [{"targets": ["localhost"], "labels": {"__path__": f"{logs}/*.log", "app": "all"}}]
        )
    )
    os.utime(first, (time.time() + 2, time.time() + 2))
    targets_when(discovery, lambda t: paths(t) == {f"{logs}/*.log": "all"}, "the change")
    (sd / "more.yml").write_text(
        f"- targets: [localhost]\n  labels: {{__path__: '{logs}/b.log', app: b}}\n"
    )
    targets_when(
        discovery,
        lambda t: paths(t) == {f"{logs}/*.log": "all", f"{logs}/b.log": "b"},
        "a new file",
    )
    first.unlink()
    targets_when(discovery, lambda t: paths(t) == {f"{logs}/b.log": "b"}, "a removed file")


# --- pod labels for static globs -----------------------------------------------------


def test_pod_labels_follow_the_pods_of_this_node_across_an_apiserver_restart(
    api, cluster, namespace
):
    path = f"{CORE}/namespaces/{namespace}/pods"
    uid = create(
        api,
        path,
        pod(
            namespace, "web", "node-p", {"app.kubernetes.io/name": "web", "tier": "front"}, ["app"]
        ),
    )["metadata"]["uid"]
    other = create(
        api,
        path,
        pod(namespace, "other", "node-q", {"tier": "x"}, ["app"]),
    )["metadata"]["uid"]
    cache = PodLabels(
        PodLabelsConfig(
            labels=("app.kubernetes.io/name", "tier"),
            kubeconfig_file=cluster.kubeconfig,
            node_name="node-p",
            namespaces={"names": [namespace]},
            keep_deleted="2s",
        )
    )
    try:
        wait_for(lambda: cache.synced, 20, "the first list")
        file_labels = {
            "namespace": namespace,
            "pod": "web",
            "pod_uid": uid,
            "filename": "/var/log/pods/x/app/0.log",
        }
        assert cache.enrich(file_labels) == {
            **file_labels,
            "app_kubernetes_io_name": "web",
            "tier": "front",
        }
        assert cache.meta_labels(other) is None  # another node's pod

        cluster.stop_apiserver()
        cluster.start_apiserver()
        patch(api, f"{path}/web", {"metadata": {"labels": {"tier": "back"}}})
        later = create(api, path, pod(namespace, "later", "node-p", {"tier": "new"}, ["c"]))[
            "metadata"
        ]["uid"]
        wait_for(
            lambda: (
                cache.labels(uid).get("tier") == "back" and cache.labels(later) == {"tier": "new"}
            ),
            60,
            "the changes made after the restart",
        )

        delete(api, f"{path}/web")
        time.sleep(1)
        assert cache.labels(uid) == {"app_kubernetes_io_name": "web", "tier": "back"}
        wait_for(lambda: cache.meta_labels(uid) is None, 20, "the deleted pod to expire")
    finally:
        cache.close()
