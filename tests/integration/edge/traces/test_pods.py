"""The sending pod's Kubernetes attributes, looked up by its IP in a real API server's
pods (tests/integration/kube.py); the clients connect from loopback addresses that
the test's pods claim as theirs."""

from __future__ import annotations

import httpx
import pytest
from opentelemetry.exporter.otlp.proto.common.trace_encoder import encode_spans
from opentelemetry.exporter.otlp.proto.grpc.trace_exporter import OTLPSpanExporter
from opentelemetry.sdk.trace.export import SpanExportResult

from tests.integration.edge.traces.otlp import make_spans, read_back, settings, span_ids
from tests.integration.kube import CORE, create
from tests.integration.pipeline import EdgeTraces, create_topics, wait_for

pytestmark = pytest.mark.integration


def _pod(namespace: str, name: str, owner: tuple[str, str], labels: dict[str, str]) -> dict:
    kind, owner_name = owner
    return {
        "metadata": {
            "name": name,
            "namespace": namespace,
            "labels": labels,
            "ownerReferences": [
                {
                    "apiVersion": "apps/v1",
                    "kind": kind,
                    "name": owner_name,
                    "uid": "6f0c2a8e-0000-4000-8000-000000000001",
                    "controller": True,
                }
            ],
        },
        "spec": {"nodeName": "worker-1", "containers": [{"name": "app", "image": "app"}]},
    }


def _running(ip: str) -> dict:
    return {"phase": "Running", "podIP": ip, "podIPs": [{"ip": ip}], "hostIP": "10.0.0.21"}


def test_the_sending_pods_attributes_are_added_by_its_ip(
    stack, processes, tmp_path, cluster, api, namespace, unique
):
    pods = f"{CORE}/namespaces/{namespace}/pods"
    replica_set = ("ReplicaSet", "shop-api-7d9f8b6c5d")
    template = {"app": "shop-api", "pod-template-hash": "7d9f8b6c5d"}
    create(
        api,
        pods,
        _pod(namespace, "shop-api-7d9f8b6c5d-x2x4q", replica_set, template),
        _running("127.0.0.1"),
    )
    create(
        api,
        pods,
        _pod(namespace, "agent-k7p2m", ("DaemonSet", "agent"), {"app": "agent"}),
        _running("127.0.0.3"),
    )
    bootstrap = stack("kafka", "bootstrap")
    topic = f"traces-{unique}"
    create_topics(bootstrap, (topic, 1))
    config = settings(
        bootstrap,
        topic,
        kubernetes={
            "kubeconfig_file": str(cluster.kubeconfig),
            "namespaces": {"names": [namespace]},
        },
    )
    receiver = processes(EdgeTraces(tmp_path, config)).wait_ready()

    # The SDK's gRPC exporter connects from 127.0.0.1: the Deployment's pod.
    from_api = make_spans(f"api-{unique}", traces=1, per_trace=2)
    exporter = OTLPSpanExporter(endpoint=receiver.grpc, insecure=True, timeout=30)

    def exported() -> bool:
        # Until the receiver's first list of pods completes, spans get no pod attributes;
        # send until they do.
        return exporter.export(from_api) == SpanExportResult.SUCCESS and _has_pod(
            bootstrap, topic, from_api
        )

    wait_for(exported, 60, "spans with the pod's attributes", interval=0.5)
    exporter.shutdown()
    # httpx from 127.0.0.3: the DaemonSet's pod; a resource attribute the app set wins.
    from_agent = make_spans(f"agent-{unique}", traces=1, per_trace=1)
    request = encode_spans(from_agent)
    attribute = request.resource_spans[0].resource.attributes.add(key="k8s.node.name")
    attribute.value.string_value = "as-the-app-says"
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.3")) as client:
        answer = client.post(
            f"http://{receiver.http}/v1/traces",
            content=request.SerializeToString(),
            headers={"Content-Type": "application/x-protobuf"},
            timeout=30,
        )
    assert answer.status_code == 200
    # ... and a client no pod claims gets none.
    from_elsewhere = make_spans(f"else-{unique}", traces=1, per_trace=1)
    with httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.4")) as client:
        answer = client.post(
            f"http://{receiver.http}/v1/traces",
            content=encode_spans(from_elsewhere).SerializeToString(),
            headers={"Content-Type": "application/x-protobuf"},
            timeout=30,
        )
    assert answer.status_code == 200

    wanted = span_ids(from_api) | span_ids(from_agent) | span_ids(from_elsewhere)
    by_service = {}
    # One partition: in the order sent, so the last of a service's messages wins.
    for message in read_back(bootstrap, topic, wanted):
        for attributes in message.resource_attributes():
            by_service[attributes["service.name"]] = attributes
    k8s = {
        service: {k: v for k, v in attributes.items() if k.startswith("k8s.")}
        for service, attributes in by_service.items()
    }
    assert k8s[f"api-{unique}"] == {
        "k8s.namespace.name": namespace,
        "k8s.pod.name": "shop-api-7d9f8b6c5d-x2x4q",
        "k8s.pod.uid": k8s[f"api-{unique}"]["k8s.pod.uid"],
        "k8s.node.name": "worker-1",
        "k8s.replicaset.name": "shop-api-7d9f8b6c5d",
        "k8s.deployment.name": "shop-api",
    }
    assert k8s[f"agent-{unique}"] == {
        "k8s.namespace.name": namespace,
        "k8s.pod.name": "agent-k7p2m",
        "k8s.pod.uid": k8s[f"agent-{unique}"]["k8s.pod.uid"],
        "k8s.node.name": "as-the-app-says",
        "k8s.daemonset.name": "agent",
    }
    assert k8s[f"else-{unique}"] == {}
    assert receiver.alive()


def _has_pod(bootstrap: str, topic: str, spans) -> bool:
    messages = read_back(bootstrap, topic, span_ids(spans), timeout=5)
    return any(
        "k8s.pod.name" in attributes
        for message in messages
        for attributes in message.resource_attributes()
    )
