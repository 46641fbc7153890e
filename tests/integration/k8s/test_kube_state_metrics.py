"""kube-state-metrics (built from its Go module by infra/local/build) against a real
kube-apiserver: the objects a test creates become the kube_* series the Kubernetes
dashboards read."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.integration.kube import KubeStateMetrics, running_apiserver
from tests.integration.pipeline import wait_for

pytestmark = pytest.mark.integration


def _objects(namespace: str) -> list[tuple[str, dict]]:
    labels = {"app": "checkout"}
    container = {"name": "app", "image": "example/checkout:1.0"}
    return [
        ("/api/v1/namespaces", {"metadata": {"name": namespace}}),
        (
            "/api/v1/nodes",
            {
                "metadata": {"name": f"{namespace}-node-1", "labels": {"role": "worker"}},
                "spec": {},
            },
        ),
        (
            f"/apis/apps/v1/namespaces/{namespace}/deployments",
            {
                "metadata": {"name": "checkout", "labels": labels},
                "spec": {
                    "replicas": 3,
                    "selector": {"matchLabels": labels},
                    "template": {
                        "metadata": {"labels": labels},
                        "spec": {"containers": [container]},
                    },
                },
            },
        ),
        (
            f"/api/v1/namespaces/{namespace}/pods",
            {
                "metadata": {"name": "checkout-0", "labels": labels},
                "spec": {"nodeName": f"{namespace}-node-1", "containers": [container]},
            },
        ),
    ]


def test_objects_become_kube_series(tmp_path: Path, unique: str) -> None:
    namespace = f"ksm-{unique}"[:60].lower()
    with running_apiserver(tmp_path / "kube") as cluster:
        with cluster.http() as api:
            for path, body in _objects(namespace):
                created = api.post(path, json=body)
                assert created.status_code == 201, created.text
        ksm = KubeStateMetrics(cluster, tmp_path).start()
        try:
            want = [
                f'kube_namespace_status_phase{{namespace="{namespace}",phase="Active"}} 1',
                f'kube_deployment_spec_replicas{{namespace="{namespace}",deployment="checkout"}} 3',
                f'kube_node_info{{node="{namespace}-node-1"',
                f'kube_pod_info{{namespace="{namespace}",pod="checkout-0"',
                f'kube_pod_status_phase{{namespace="{namespace}",pod="checkout-0"',
            ]

            def seen() -> list[str]:
                text = ksm.metrics()
                return [w for w in want if w not in text]

            wait_for(lambda: not seen(), 90, "the objects' series in kube-state-metrics")
            text = ksm.metrics()
            (info,) = [
                line
                for line in text.splitlines()
                if line.startswith(f'kube_pod_info{{namespace="{namespace}"')
            ]
            assert f'node="{namespace}-node-1"' in info
            assert 'created_by_kind=""' in info  # a bare pod, no owner
        finally:
            ksm.stop()
