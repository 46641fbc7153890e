"""Log-path discovery: pod → per-container targets (from objects a real API server
served, ``tests/unit/edge/kubernetes_sd_objects.json``), the node selector,
file_sd through the metrics shipper's FileSD, and relabeling into file targets."""

from __future__ import annotations

import copy
import json
import os
import time
from pathlib import Path
from typing import Any

import pytest
from pydantic import ValidationError

from edge.discovery.config import KubernetesSDSelector
from edge.logs.discovery import (
    FileSDConfig,
    FileTarget,
    LogDiscovery,
    LogTarget,
    PodLogsSDConfig,
    _with_node,
    build_pod_logs,
    node_name,
    resolve,
)
from ferryman.prom.relabel import RelabelConfig, compile_rules

M = "__meta_kubernetes_"
RECORDED = json.loads((Path(__file__).parents[1] / "kubernetes_sd_objects.json").read_text())
WEB_UID = "8091fdfd-c7be-42b1-9c0f-d9809ecc8a93"


def pod(name: str) -> dict[str, Any]:
    return copy.deepcopy(next(p for p in RECORDED["pods"] if p["metadata"]["name"] == name))


# --- pods ----------------------------------------------------------------------------


def test_a_pod_gives_one_target_per_container_with_the_kubelet_path() -> None:
    group = build_pod_logs(pod("web-7d4b9"))
    assert group.source == "pod/shop/web-7d4b9"
    assert dict(group.labels) == {
        M + "namespace": "shop",
        M + "pod_name": "web-7d4b9",
        M + "pod_uid": WEB_UID,
        M + "pod_ip": "10.244.1.5",
        M + "pod_ready": "true",
        M + "pod_phase": "Running",
        M + "pod_node_name": "edge-1",
        M + "pod_host_ip": "10.0.0.11",
        M + "pod_label_app": "web",
        M + "pod_labelpresent_app": "true",
        M + "pod_label_app_kubernetes_io_name": "web",
        M + "pod_labelpresent_app_kubernetes_io_name": "true",
        M + "pod_label_topology_kubernetes_io_zone": "z1",
        M + "pod_labelpresent_topology_kubernetes_io_zone": "true",
        M + "pod_annotation_prometheus_io_scrape": "true",
        M + "pod_annotationpresent_prometheus_io_scrape": "true",
        M + "pod_controller_kind": "ReplicaSet",
        M + "pod_controller_name": "web-7d4b",
    }
    assert [dict(t) for t in group.targets] == [
        {
            "__path__": f"/var/log/pods/*{WEB_UID}/app/*.log",
            M + "pod_container_name": "app",
            M + "pod_container_image": "shop/web:2.0",
            M + "pod_container_id": "containerd://aaa111",
            M + "pod_container_init": "false",
        },
        {
            "__path__": f"/var/log/pods/*{WEB_UID}/sidecar/*.log",
            M + "pod_container_name": "sidecar",
            M + "pod_container_image": "shop/proxy:1.0",
            M + "pod_container_id": "containerd://bbb222",
            M + "pod_container_init": "false",
        },
        {
            "__path__": f"/var/log/pods/*{WEB_UID}/migrate/*.log",
            M + "pod_container_name": "migrate",
            M + "pod_container_image": "shop/migrate:1.2",
            M + "pod_container_id": "containerd://ccc333",
            M + "pod_container_init": "true",
        },
    ]


def test_a_pod_without_an_ip_still_has_targets(tmp_path: Path) -> None:
    group = build_pod_logs(pod("batch-x"), tmp_path)
    assert [dict(t) for t in group.targets] == [
        {
            "__path__": f"{tmp_path}/*e894dddc-7434-40cb-a779-1886e84a1e38/job/*.log",
            M + "pod_container_name": "job",
            M + "pod_container_image": "shop/batch:1",
            M + "pod_container_init": "false",
        }
    ]
    assert group.labels[M + "pod_phase"] == "Pending"
    assert M + "pod_ip" not in group.labels  # empty values are no labels


def test_a_malformed_pod_does_not_raise() -> None:
    group = build_pod_logs({"metadata": {"name": "x"}, "spec": {"containers": ["junk"]}})
    assert group.targets == ()


# --- the node ------------------------------------------------------------------------


def test_node_name_from_the_config_then_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("NODE_NAME", "from-env")
    assert node_name(PodLogsSDConfig(node_name="edge-1")) == "edge-1"
    assert node_name(PodLogsSDConfig()) == "from-env"
    monkeypatch.delenv("NODE_NAME")
    assert node_name(PodLogsSDConfig()) is None


def test_the_node_selector_joins_a_pod_field_selector() -> None:
    plain = _with_node(PodLogsSDConfig(api_server="https://k"), "edge-1")
    assert plain.role == "pod" and plain.api_server == "https://k"
    assert plain.selectors == (KubernetesSDSelector(role="pod", field="spec.nodeName=edge-1"),)
    config = PodLogsSDConfig.model_validate(
        {"selectors": [{"role": "pod", "label": "app=web", "field": "status.phase=Running"}]}
    )
    assert _with_node(config, "edge-1").selectors == (
        KubernetesSDSelector(
            role="pod", label="app=web", field="status.phase=Running,spec.nodeName=edge-1"
        ),
    )
    assert _with_node(config, None).selectors == config.selectors


def test_the_config_is_a_pod_role_kubernetes_sd_config() -> None:
    config = PodLogsSDConfig.model_validate(
        {"api_server": "https://k", "namespaces": {"names": ["a"]}, "node_name": "n"}
    )
    assert config.role == "pod"
    assert PodLogsSDConfig.model_validate(config.model_dump()) == config
    for bad in ({"role": "node"}, {"unknown": 1}):
        with pytest.raises(ValidationError):
            PodLogsSDConfig.model_validate(bad)
    assert all(f.description for f in PodLogsSDConfig.model_fields.values())


# --- file_sd -------------------------------------------------------------------------


def _write(path: Path, data: Any, mtime: float | None = None) -> None:
    path.write_text(json.dumps(data) if path.suffix == ".json" else data)
    if mtime is not None:
        os.utime(path, (mtime, mtime))


def test_file_sd_targets_follow_their_files(tmp_path: Path) -> None:
    _write(
        tmp_path / "a.json",
        [
            {"targets": ["localhost"], "labels": {"__path__": "/var/log/a/*.log", "app": "a"}},
            {"targets": [], "labels": {"__path__": "/never"}},
        ],
    )
    (tmp_path / "b.yaml").write_text(
        "- targets: [localhost]\n  labels: {__path__: /var/log/b.log, app: b}\n"
    )
    discovery = LogDiscovery(
        file_sd_configs=(FileSDConfig(files=(f"{tmp_path}/*.json", f"{tmp_path}/*.yaml")),)
    )
    assert discovery.changed()
    assert discovery.targets() == [
        LogTarget(
            f"file/{tmp_path}/a.json/0/0",
            {
                "__path__": "/var/log/a/*.log",
                "app": "a",
                "__address__": "localhost",
                "__meta_filepath": f"{tmp_path}/a.json",
            },
        ),
        LogTarget(
            f"file/{tmp_path}/b.yaml/0/0",
            {
                "__path__": "/var/log/b.log",
                "app": "b",
                "__address__": "localhost",
                "__meta_filepath": f"{tmp_path}/b.yaml",
            },
        ),
    ]
    assert not discovery.changed()

    _write(tmp_path / "a.json", "{broken", mtime=time.time() + 5)
    assert discovery.changed()  # re-read, and the last good content kept
    assert [t.labels["app"] for t in discovery.targets()] == ["a", "b"]
    (tmp_path / "b.yaml").unlink()
    assert discovery.changed()
    assert [t.labels["app"] for t in discovery.targets()] == ["a"]


# --- relabeling ----------------------------------------------------------------------


def _rules(*configs: dict[str, Any]) -> Any:
    return compile_rules([RelabelConfig.model_validate(c) for c in configs])


def test_resolve_relabels_then_splits_path_and_labels() -> None:
    # Promtail's usual pod configuration.
    rules = _rules(
        {"source_labels": [M + "namespace"], "target_label": "namespace"},
        {"source_labels": [M + "pod_name"], "target_label": "pod"},
        {"source_labels": [M + "pod_container_name"], "target_label": "container"},
        {"action": "labelmap", "regex": M + "pod_label_(.+)"},
        {
            "source_labels": [M + "pod_uid", M + "pod_container_name"],
            "separator": "/",
            "target_label": "__path__",
            "replacement": "/logs/*$1/*.log",
        },
    )
    group = build_pod_logs(pod("web-7d4b9"))
    target = LogTarget("pod/shop/web-7d4b9/0", {**group.labels, **group.targets[0]})
    assert resolve(target, rules, "pods") == FileTarget(
        f"/logs/*{WEB_UID}/app/*.log",
        None,
        {
            "job": "pods",
            "namespace": "shop",
            "pod": "web-7d4b9",
            "container": "app",
            "app": "web",
            "app_kubernetes_io_name": "web",
            "topology_kubernetes_io_zone": "z1",
        },
    )


def test_resolve_drops_targets_without_path_or_dropped_and_keeps_exclude() -> None:
    keep_a = _rules({"source_labels": ["app"], "regex": "a", "action": "keep"})
    assert resolve(LogTarget("s", {"app": "b", "__path__": "/x"}), keep_a, "j") is None
    assert resolve(LogTarget("s", {"app": "a"}), keep_a, "j") is None
    target = LogTarget(
        "s", {"app": "a", "job": "mine", "__path__": "/x/*.log", "__path_exclude__": "/x/*.gz.log"}
    )
    assert resolve(target, keep_a, "j") == FileTarget(
        "/x/*.log", "/x/*.gz.log", {"app": "a", "job": "mine"}
    )
