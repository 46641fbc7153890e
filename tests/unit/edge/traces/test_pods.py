"""A pod's discovery labels → OpenTelemetry's Kubernetes resource attributes."""

from __future__ import annotations

from edge.traces.pods import attributes_of_pod

M = "__meta_kubernetes_"


def test_a_deployments_pod_names_its_deployment_by_the_template_hash() -> None:
    labels = {
        M + "namespace": "shop",
        M + "pod_name": "api-7d9f8b6c5d-x2x4q",
        M + "pod_uid": "u1",
        M + "pod_node_name": "worker-1",
        M + "pod_controller_kind": "ReplicaSet",
        M + "pod_controller_name": "api-7d9f8b6c5d",
        M + "pod_label_pod_template_hash": "7d9f8b6c5d",
    }
    assert attributes_of_pod(labels) == {
        "k8s.namespace.name": "shop",
        "k8s.pod.name": "api-7d9f8b6c5d-x2x4q",
        "k8s.pod.uid": "u1",
        "k8s.node.name": "worker-1",
        "k8s.replicaset.name": "api-7d9f8b6c5d",
        "k8s.deployment.name": "api",
    }


def test_a_bare_replica_set_and_other_controllers() -> None:
    bare = {M + "pod_controller_kind": "ReplicaSet", M + "pod_controller_name": "rs-1"}
    assert attributes_of_pod(bare) == {"k8s.replicaset.name": "rs-1"}
    for kind, key in (
        ("DaemonSet", "k8s.daemonset.name"),
        ("StatefulSet", "k8s.statefulset.name"),
        ("Job", "k8s.job.name"),
    ):
        labels = {M + "pod_controller_kind": kind, M + "pod_controller_name": "x"}
        assert attributes_of_pod(labels) == {key: "x"}
    odd = {M + "pod_controller_kind": "Rollout", M + "pod_controller_name": "x"}
    assert attributes_of_pod(odd) == {}
