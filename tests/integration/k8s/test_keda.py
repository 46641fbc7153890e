"""Scaling on real Kafka consumer lag with the real KEDA and kube-controller-manager.

KEDA v2.21.0 (operator and metrics adapter) and kube-controller-manager v1.37.2 run
against the test kube-apiserver with its aggregation layer (tests/integration/keda.py),
the Kafka trigger reads the stack's broker. No node runs pods: what KEDA and the HPA
change are the replicas of the Deployment and its ReplicaSets, which a watch records.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
from kafka import KafkaConsumer, KafkaProducer

from tests.integration.keda import Keda, running_keda
from tests.integration.kube import Cluster, create, running_apiserver
from tests.integration.pipeline import create_topics, wait_for

pytestmark = pytest.mark.integration

PARTITIONS = 2
LAG_THRESHOLD = 5
#: Messages produced: lag enough for more replicas than partitions (20 / 5 = 4),
#: so the partition cap, not the lag, bounds the scale-out.
MESSAGES = 20
COOLDOWN = 5
DEPLOYMENT = "worker"


@pytest.fixture(scope="module")
def kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, Keda]]:
    started = time.monotonic()
    with (
        running_apiserver(tmp_path_factory.mktemp("kube"), aggregation=True) as cluster,
        running_keda(cluster, tmp_path_factory.mktemp("keda")) as keda,
    ):
        print(
            f"\netcd, kube-apiserver, kube-controller-manager and KEDA up in "
            f"{time.monotonic() - started:.1f}s"
        )
        yield cluster, keda


def deployment(namespace: str, node_name: str | None = None) -> dict[str, Any]:
    """A Deployment of pods nobody runs, unless ``node_name`` names a node whose
    kubelet takes them (no scheduler runs: the pods are bound in their template)."""
    labels = {"app": DEPLOYMENT}
    pod: dict[str, Any] = {"containers": [{"name": "worker", "image": "ferryman/worker:test"}]}
    if node_name is not None:
        pod["nodeName"] = node_name
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": DEPLOYMENT, "namespace": namespace},
        "spec": {
            "replicas": 0,
            "selector": {"matchLabels": labels},
            "template": {
                "metadata": {"labels": labels},
                "spec": pod,
            },
        },
    }


def scaled_object(namespace: str, bootstrap: str, topic: str, group: str) -> dict[str, Any]:
    """Shaped like infra/k8s/central/functions/*/scaledobject.yaml, with test timers."""
    return {
        "apiVersion": "keda.sh/v1alpha1",
        "kind": "ScaledObject",
        "metadata": {"name": DEPLOYMENT, "namespace": namespace},
        "spec": {
            "scaleTargetRef": {"name": DEPLOYMENT},
            "pollingInterval": 1,
            "cooldownPeriod": COOLDOWN,
            "minReplicaCount": 0,
            "maxReplicaCount": PARTITIONS,
            "advanced": {
                "horizontalPodAutoscalerConfig": {
                    "behavior": {
                        "scaleUp": {"stabilizationWindowSeconds": 0},
                        "scaleDown": {"stabilizationWindowSeconds": 0},
                    }
                }
            },
            "triggers": [
                {
                    "type": "kafka",
                    "metadata": {
                        "bootstrapServers": bootstrap,
                        "consumerGroup": group,
                        "topic": topic,
                        "lagThreshold": str(LAG_THRESHOLD),
                        "activationLagThreshold": "1",
                        "offsetResetPolicy": "earliest",
                        "allowIdleConsumers": "false",
                    },
                }
            ],
        },
    }


class ReplicaWatch:
    """Every ``spec.replicas`` the API server reports for the namespace's
    Deployments and ReplicaSets, from a watch started before anything scales.

    Each watch request ends after two seconds and the next resumes from the last
    resource version seen, so no change is missed and stopping takes that long at most
    (an open watch would also hold up the API server's shutdown)."""

    def __init__(self, cluster: Cluster, namespace: str) -> None:
        self.history: list[tuple[float, str, int]] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._watch, args=(cluster, path), daemon=True)
            for path in (
                f"/apis/apps/v1/namespaces/{namespace}/deployments",
                f"/apis/apps/v1/namespaces/{namespace}/replicasets",
            )
        ]

    def _record(self, obj: dict[str, Any]) -> None:
        name = f"{obj.get('kind', '?')}/{obj['metadata']['name']}"
        self.history.append((time.monotonic(), name, obj["spec"].get("replicas", 0)))

    def _watch(self, cluster: Cluster, path: str) -> None:
        with cluster.http() as api:
            listed = api.get(path)
            listed.raise_for_status()
            for item in listed.json()["items"]:
                self._record(item)
            version = listed.json()["metadata"]["resourceVersion"]
            while not self._stop.is_set():
                params = {"watch": "true", "timeoutSeconds": 2, "resourceVersion": version}
                with api.stream("GET", path, params=params) as response:
                    for line in response.iter_lines():
                        event = json.loads(line)
                        if event["type"] == "ERROR":  # e.g. 410 Gone: start over
                            raise AssertionError(f"watch {path}: {event['object']}")
                        version = event["object"]["metadata"]["resourceVersion"]
                        self._record(event["object"])

    def __enter__(self) -> ReplicaWatch:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=10)

    def deployment_steps(self) -> list[int]:
        """The Deployment's replicas over time, repeats dropped."""
        steps: list[int] = []
        for _, name, replicas in self.history:
            if name.startswith("Deployment/") and (not steps or steps[-1] != replicas):
                steps.append(replicas)
        return steps

    def highest(self) -> int:
        return max((replicas for _, _, replicas in self.history), default=0)


def _replicas(cluster: Cluster, namespace: str) -> int:
    with cluster.http() as api:
        got = api.get(f"/apis/apps/v1/namespaces/{namespace}/deployments/{DEPLOYMENT}")
        got.raise_for_status()
        replicas: int = got.json()["spec"].get("replicas", 0)
        return replicas


def _scaled_object_ready(cluster: Cluster, namespace: str) -> bool:
    with cluster.http() as api:
        got = api.get(f"/apis/keda.sh/v1alpha1/namespaces/{namespace}/scaledobjects/{DEPLOYMENT}")
        conditions = got.json().get("status", {}).get("conditions", [])
    return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)


def _hpa_exists(cluster: Cluster, namespace: str) -> bool:
    with cluster.http() as api:
        got = api.get(f"/apis/autoscaling/v2/namespaces/{namespace}/horizontalpodautoscalers")
        return bool(got.json().get("items"))


def _produce_to_every_partition(bootstrap: str, topic: str, count: int) -> None:
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    try:
        for i in range(count):
            producer.send(topic, value=f"record {i}".encode(), partition=i % PARTITIONS)
        producer.flush(timeout=30)
    finally:
        producer.close()


def _consume_and_commit(bootstrap: str, topic: str, group: str, count: int) -> None:
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=group,
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    try:
        seen = 0
        deadline = time.monotonic() + 60
        while seen < count and time.monotonic() < deadline:
            seen += sum(len(batch) for batch in consumer.poll(timeout_ms=1000).values())
        assert seen == count, f"consumed {seen} of {count}"
        consumer.commit()
    finally:
        consumer.close()


def test_kafka_lag_scales_a_deployment_from_zero_and_back(
    kube: tuple[Cluster, Keda], stack: Any, unique: str
) -> None:
    cluster, keda = kube
    started = time.monotonic()
    bootstrap = stack("kafka", "bootstrap")
    topic, group, namespace = f"keda.{unique}", f"keda-{unique}", unique
    create_topics(bootstrap, (topic, PARTITIONS))

    with cluster.http() as api, ReplicaWatch(cluster, namespace) as watch:
        create(api, "/api/v1/namespaces", {"metadata": {"name": namespace}})
        create(api, f"/apis/apps/v1/namespaces/{namespace}/deployments", deployment(namespace))
        create(
            api,
            f"/apis/keda.sh/v1alpha1/namespaces/{namespace}/scaledobjects",
            scaled_object(namespace, bootstrap, topic, group),
        )
        try:
            wait_for(lambda: _scaled_object_ready(cluster, namespace), 60, "ScaledObject Ready")
            wait_for(lambda: _hpa_exists(cluster, namespace), 30, "KEDA's HPA")
            # No lag: nothing activates.
            time.sleep(3)
            assert _replicas(cluster, namespace) == 0

            _produce_to_every_partition(bootstrap, topic, MESSAGES)
            lag_produced = time.monotonic()
            wait_for(lambda: _replicas(cluster, namespace) >= 1, 60, "scale from zero", 0.2)
            to_one = time.monotonic() - lag_produced
            wait_for(lambda: _replicas(cluster, namespace) == PARTITIONS, 60, "scale out", 0.2)
            to_max = time.monotonic() - lag_produced

            _consume_and_commit(bootstrap, topic, group, MESSAGES)
            lag_gone = time.monotonic()
            wait_for(lambda: _replicas(cluster, namespace) == 0, 60, "scale to zero", 0.5)
            to_zero = time.monotonic() - lag_gone
        except AssertionError as exc:
            raise AssertionError(f"{exc}\n{keda.log_tails()}") from None

    steps = watch.deployment_steps()
    # Scaled out by the lag, never beyond the partitions, and back to zero.
    assert steps[0] == 0 and steps[-1] == 0 and watch.highest() == PARTITIONS, watch.history
    total = time.monotonic() - started
    print(
        f"\nKEDA on Kafka lag: 0 -> >=1 replicas {to_one:.1f}s after the lag was produced, "
        f"-> {PARTITIONS} after {to_max:.1f}s; back to 0 {to_zero:.1f}s after the lag "
        f"was committed (cooldown {COOLDOWN}s); Deployment replicas {steps}; "
        f"test body {total:.1f}s"
    )
    assert total < 180
