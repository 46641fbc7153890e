"""kubernetes_sd_configs against a real kube-apiserver (and etcd) started for this module.

No kubelet or controllers run: the tests create nodes, pods, services, endpoints and
endpoint slices as plain objects, write pod and node status as a kubelet would, then
check the target groups KubernetesSD discovers, and that the watch follows changes
and deletions.
"""

from __future__ import annotations

import gc
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from kafka import KafkaConsumer
from kubernetes import config as kube_config
from kubernetes.client import ApiClient, Configuration

from edge.discovery.config import KubernetesSDConfig
from edge.discovery.group import TargetGroup
from edge.discovery.kubernetes import KubernetesSD
from edge.discovery.kubernetes.labels import Obj
from edge.discovery.kubernetes.reflector import Reflector, Stream
from tests.integration.exporter import TEXT
from tests.integration.kube import Cluster, create, patch
from tests.integration.pipeline import EdgeMetrics, Worker, create_topics, wait_for

M = "__meta_kubernetes_"
CORE, SLICES = "/api/v1", "/apis/discovery.k8s.io/v1"


@pytest.fixture
def discover(cluster: Cluster) -> Iterator[Callable[..., KubernetesSD]]:
    started: list[KubernetesSD] = []

    def start(role: str, **settings: Any) -> KubernetesSD:
        config = KubernetesSDConfig.model_validate(
            {"role": role, "kubeconfig_file": str(cluster.kubeconfig), **settings}
        )
        sd = KubernetesSD(config)
        started.append(sd)
        return sd

    yield start
    for sd in started:
        sd.close()


# --- helpers -------------------------------------------------------------------------


def delete(api: httpx.Client, path: str) -> None:
    # At once: with no kubelet to confirm, a graceful pod deletion would only mark the
    # pod (deletionTimestamp) and leave it listed, as it stays in Prometheus too.
    response = api.delete(path, params={"gracePeriodSeconds": 0})
    assert response.status_code in (200, 202), response.text


def groups_when(
    sd: KubernetesSD,
    check: Callable[[dict[str, TargetGroup]], bool],
    what: str,
    timeout: float = 20,
) -> dict[str, TargetGroup]:
    """Polls as the shipper does (changed(), then groups()) until ``check`` holds."""
    latest = {g.source: g for g in sd.groups()}

    def poll() -> bool:
        nonlocal latest
        if sd.changed():
            latest = {g.source: g for g in sd.groups()}
        return check(latest)

    wait_for(poll, timeout, what, interval=0.2)
    return latest


def targets(group: TargetGroup) -> list[dict[str, str]]:
    return sorted((dict(t) for t in group.targets), key=lambda t: sorted(t.items()))


def pod_manifest(
    namespace: str, name: str, labels: dict[str, str], containers: list[dict[str, Any]]
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "namespace": namespace, "labels": labels},
        "spec": {"nodeName": "worker-1", "containers": containers},
    }


def running(
    ip: str, ready: bool = True, container_ids: dict[str, str] | None = None
) -> dict[str, Any]:
    return {
        "phase": "Running",
        "podIP": ip,
        "podIPs": [{"ip": ip}],
        "hostIP": "10.0.0.21",
        "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        "containerStatuses": [
            {
                "name": name,
                "containerID": cid,
                "image": "img",
                "imageID": "",
                "ready": ready,
                "restartCount": 0,
            }
            for name, cid in (container_ids or {}).items()
        ],
    }


# --- roles ---------------------------------------------------------------------------


def test_node_role_discovers_nodes_and_follows_their_changes(api, unique, discover):
    name = f"node-{unique}"
    create(
        api,
        f"{CORE}/nodes",
        {
            "metadata": {
                "name": name,
                "labels": {"ferryman-test": unique, "disk.type": "ssd"},
                "annotations": {"note": "x"},
            },
            "spec": {"providerID": f"test://{name}"},
        },
        status={
            "addresses": [
                {"type": "Hostname", "address": name},
                {"type": "InternalIP", "address": "10.1.0.4"},
            ],
            "daemonEndpoints": {"kubeletEndpoint": {"Port": 10250}},
            "conditions": [{"type": "Ready", "status": "True"}],
        },
    )
    create(api, f"{CORE}/nodes", {"metadata": {"name": f"other-{unique}"}})
    sd = discover("node", selectors=[{"role": "node", "label": f"ferryman-test={unique}"}])

    found = groups_when(sd, lambda g: f"node/{name}" in g, "the node")
    assert list(found) == [f"node/{name}"]  # the label selector went to the API
    group = found[f"node/{name}"]
    assert dict(group.labels) == {
        M + "node_name": name,
        M + "node_provider_id": f"test://{name}",
        M + "node_condition_ready": "true",
        M + "node_label_ferryman_test": unique,
        M + "node_labelpresent_ferryman_test": "true",
        M + "node_label_disk_type": "ssd",
        M + "node_labelpresent_disk_type": "true",
        M + "node_annotation_note": "x",
        M + "node_annotationpresent_note": "true",
    }
    assert targets(group) == [
        {
            "__address__": "10.1.0.4:10250",
            "instance": name,
            M + "node_address_InternalIP": "10.1.0.4",
            M + "node_address_Hostname": name,
        }
    ]

    patch(
        api,
        f"{CORE}/nodes/{name}/status",
        {"status": {"addresses": [{"type": "ExternalIP", "address": "198.51.100.4"}]}},
    )
    groups_when(
        sd,
        lambda g: [t["__address__"] for t in g[f"node/{name}"].targets] == ["198.51.100.4:10250"],
        "the node's new address",
    )

    delete(api, f"{CORE}/nodes/{name}")
    groups_when(sd, lambda g: not g, "the node to disappear")


def test_pod_role_one_target_per_port_with_selectors_and_namespaces(
    api, namespace, unique, discover
):
    path = f"{CORE}/namespaces/{namespace}/pods"
    uid = create(
        api,
        path,
        pod_manifest(
            namespace,
            "web",
            {"app": "web"},
            [
                {
                    "name": "app",
                    "image": "web:1",
                    "ports": [
                        {"containerPort": 8080, "name": "http"},
                        {"containerPort": 53, "name": "dns", "protocol": "UDP"},
                    ],
                },
                {"name": "log", "image": "log:1"},
            ],
        ),
        status=running("10.2.0.5", container_ids={"app": "containerd://a1"}),
    )["metadata"]["uid"]
    create(
        api,
        path,
        pod_manifest(namespace, "idle", {"app": "web"}, [{"name": "c", "image": "idle:1"}]),
    )  # Pending, no IP
    create(
        api,
        path,
        pod_manifest(namespace, "db", {"app": "db"}, [{"name": "c", "image": "db:1"}]),
        status=running("10.2.0.6"),
    )
    other = f"{unique}-other"
    create(api, f"{CORE}/namespaces", {"metadata": {"name": other}})
    create(
        api,
        f"{CORE}/namespaces/{other}/pods",
        pod_manifest(other, "web", {"app": "web"}, [{"name": "c", "image": "x"}]),
        status=running("10.2.0.7"),
    )

    sd = discover(
        "pod",
        namespaces={"names": [namespace]},
        selectors=[{"role": "pod", "label": "app=web", "field": "status.phase=Running"}],
    )
    found = groups_when(sd, lambda g: f"pod/{namespace}/web" in g, "the web pod")
    assert list(found) == [f"pod/{namespace}/web"]
    group = found[f"pod/{namespace}/web"]
    assert dict(group.labels) == {
        M + "namespace": namespace,
        M + "pod_name": "web",
        M + "pod_ip": "10.2.0.5",
        M + "pod_ready": "true",
        M + "pod_phase": "Running",
        M + "pod_node_name": "worker-1",
        M + "pod_host_ip": "10.0.0.21",
        M + "pod_uid": uid,
        M + "pod_label_app": "web",
        M + "pod_labelpresent_app": "true",
    }
    common = {
        M + "pod_container_name": "app",
        M + "pod_container_id": "containerd://a1",
        M + "pod_container_image": "web:1",
        M + "pod_container_init": "false",
    }
    assert targets(group) == [
        {
            "__address__": "10.2.0.5",
            M + "pod_container_name": "log",
            M + "pod_container_image": "log:1",
            M + "pod_container_init": "false",
        },
        {
            "__address__": "10.2.0.5:53",
            **common,
            M + "pod_container_port_name": "dns",
            M + "pod_container_port_number": "53",
            M + "pod_container_port_protocol": "UDP",
        },
        {
            "__address__": "10.2.0.5:8080",
            **common,
            M + "pod_container_port_name": "http",
            M + "pod_container_port_number": "8080",
            M + "pod_container_port_protocol": "TCP",
        },
    ]

    # The field selector is the API server's: the idle pod appears once it runs.
    patch(api, f"{path}/idle/status", {"status": running("10.2.0.8")})
    groups_when(sd, lambda g: f"pod/{namespace}/idle" in g, "the idle pod once running")
    patch(api, f"{path}/web", {"metadata": {"labels": {"tier": "front"}}})
    groups_when(
        sd,
        lambda g: g[f"pod/{namespace}/web"].labels.get(M + "pod_label_tier") == "front",
        "the new pod label",
    )
    delete(api, f"{path}/web")
    groups_when(sd, lambda g: list(g) == [f"pod/{namespace}/idle"], "the deleted pod to go")


def test_service_role_one_target_per_port(api, namespace, discover):
    path = f"{CORE}/namespaces/{namespace}/services"
    cluster_ip = create(
        api,
        path,
        {
            "metadata": {
                "name": "web",
                "namespace": namespace,
                "labels": {"app": "web"},
                "annotations": {"prometheus.io/probe": "true"},
            },
            "spec": {
                "ports": [
                    {"name": "http", "port": 80, "targetPort": 8080},
                    {"name": "dns", "port": 53, "protocol": "UDP"},
                ]
            },
        },
    )["spec"]["clusterIP"]
    create(
        api,
        path,
        {
            "metadata": {"name": "ext", "namespace": namespace},
            "spec": {
                "type": "ExternalName",
                "externalName": "example.org",
                "ports": [{"port": 443}],
            },
        },
    )
    sd = discover("service", namespaces={"names": [namespace]})

    found = groups_when(sd, lambda g: len(g) == 2, "both services")
    web = found[f"svc/{namespace}/web"]
    assert dict(web.labels) == {
        M + "namespace": namespace,
        M + "service_name": "web",
        M + "service_label_app": "web",
        M + "service_labelpresent_app": "true",
        M + "service_annotation_prometheus_io_probe": "true",
        M + "service_annotationpresent_prometheus_io_probe": "true",
    }
    port = {M + "service_type": "ClusterIP", M + "service_cluster_ip": cluster_ip}
    assert targets(web) == [
        {
            "__address__": f"web.{namespace}.svc:53",
            **port,
            M + "service_port_name": "dns",
            M + "service_port_number": "53",
            M + "service_port_protocol": "UDP",
        },
        {
            "__address__": f"web.{namespace}.svc:80",
            **port,
            M + "service_port_name": "http",
            M + "service_port_number": "80",
            M + "service_port_protocol": "TCP",
        },
    ]
    assert targets(found[f"svc/{namespace}/ext"]) == [
        {
            "__address__": f"ext.{namespace}.svc:443",
            M + "service_port_number": "443",
            M + "service_port_protocol": "TCP",
            M + "service_type": "ExternalName",
            M + "service_external_name": "example.org",
        }
    ]

    patch(api, f"{path}/web", {"spec": {"ports": [{"name": "http", "port": 8000}]}})
    groups_when(
        sd,
        lambda g: (
            [t["__address__"] for t in g[f"svc/{namespace}/web"].targets]
            == [f"web.{namespace}.svc:8000"]
        ),
        "the changed port",
    )
    delete(api, f"{path}/ext")
    groups_when(sd, lambda g: list(g) == [f"svc/{namespace}/web"], "the deleted service")


def _backend(api: httpx.Client, namespace: str) -> str:
    """A service "web" and its pod "web-1" (ports 8080 http, 9100 metrics)."""
    create(
        api,
        f"{CORE}/namespaces/{namespace}/services",
        {
            "metadata": {"name": "web", "namespace": namespace, "labels": {"team": "shop"}},
            "spec": {"ports": [{"name": "http", "port": 80, "targetPort": 8080}]},
        },
    )
    pod = create(
        api,
        f"{CORE}/namespaces/{namespace}/pods",
        pod_manifest(
            namespace,
            "web-1",
            {"app": "web"},
            [
                {
                    "name": "app",
                    "image": "web:1",
                    "ports": [
                        {"containerPort": 8080, "name": "http"},
                        {"containerPort": 9100, "name": "metrics"},
                    ],
                }
            ],
        ),
        status=running("10.3.0.5"),
    )
    uid: str = pod["metadata"]["uid"]
    return uid


def _pod_labels(namespace: str, uid: str, app: str = "web") -> dict[str, str]:
    return {
        M + "pod_name": "web-1",
        M + "pod_ip": "10.3.0.5",
        M + "pod_ready": "true",
        M + "pod_phase": "Running",
        M + "pod_node_name": "worker-1",
        M + "pod_host_ip": "10.0.0.21",
        M + "pod_uid": uid,
        M + "pod_label_app": app,
        M + "pod_labelpresent_app": "true",
    }


def _container(port: int, name: str) -> dict[str, str]:
    return {
        M + "pod_container_name": "app",
        M + "pod_container_image": "web:1",
        M + "pod_container_port_name": name,
        M + "pod_container_port_number": str(port),
        M + "pod_container_port_protocol": "TCP",
        M + "pod_container_init": "false",
    }


def test_endpoints_role_joins_service_and_pod_labels(api, namespace, discover):
    uid = _backend(api, namespace)
    path = f"{CORE}/namespaces/{namespace}/endpoints"
    create(
        api,
        path,
        {
            "metadata": {"name": "web", "namespace": namespace},
            "subsets": [
                {
                    "addresses": [
                        {
                            "ip": "10.3.0.5",
                            "nodeName": "worker-1",
                            "targetRef": {"kind": "Pod", "namespace": namespace, "name": "web-1"},
                        }
                    ],
                    "notReadyAddresses": [{"ip": "10.3.0.9", "hostname": "web-2"}],
                    "ports": [{"name": "http", "port": 8080, "protocol": "TCP"}],
                }
            ],
        },
    )
    sd = discover("endpoints", namespaces={"names": [namespace]})

    source = f"endpoints/{namespace}/web"
    group = groups_when(sd, lambda g: source in g, "the endpoints")[source]
    assert dict(group.labels) == {
        M + "namespace": namespace,
        M + "endpoints_name": "web",
        M + "service_name": "web",
        M + "service_label_team": "shop",
        M + "service_labelpresent_team": "true",
    }
    endpoint = {M + "endpoint_port_name": "http", M + "endpoint_port_protocol": "TCP"}
    assert targets(group) == [
        {
            "__address__": "10.3.0.5:8080",
            **endpoint,
            M + "endpoint_ready": "true",
            M + "endpoint_node_name": "worker-1",
            M + "endpoint_address_target_kind": "Pod",
            M + "endpoint_address_target_name": "web-1",
            **_pod_labels(namespace, uid),
            **_container(8080, "http"),
        },
        {
            "__address__": "10.3.0.5:9100",
            **_pod_labels(namespace, uid),
            **_container(9100, "metrics"),
        },
        {
            "__address__": "10.3.0.9:8080",
            **endpoint,
            M + "endpoint_ready": "false",
            M + "endpoint_hostname": "web-2",
        },
    ]

    # A change to the pod or the service alone reaches the endpoints' targets.
    patch(
        api, f"{CORE}/namespaces/{namespace}/pods/web-1", {"metadata": {"labels": {"app": "web2"}}}
    )
    groups_when(
        sd,
        lambda g: g[source].targets[0].get(M + "pod_label_app") == "web2",
        "the pod's new label on the endpoint target",
    )
    delete(api, f"{CORE}/namespaces/{namespace}/services/web")
    groups_when(
        sd,
        lambda g: M + "service_name" not in g[source].labels,
        "the service labels to go with the service",
    )
    delete(api, f"{path}/web")
    groups_when(sd, lambda g: not g, "the deleted endpoints")


def test_endpointslice_role(api, namespace, discover):
    uid = _backend(api, namespace)
    path = f"{SLICES}/namespaces/{namespace}/endpointslices"
    ref = {"kind": "Pod", "namespace": namespace, "name": "web-1"}
    create(
        api,
        path,
        {
            "metadata": {
                "name": "web-x1",
                "namespace": namespace,
                "labels": {"kubernetes.io/service-name": "web"},
            },
            "addressType": "IPv4",
            "endpoints": [
                {
                    "addresses": ["10.3.0.5"],
                    "nodeName": "worker-1",
                    "zone": "z1",
                    "conditions": {"ready": True, "serving": True, "terminating": False},
                    "targetRef": ref,
                }
            ],
            "ports": [{"name": "http", "port": 8080, "protocol": "TCP", "appProtocol": "http"}],
        },
    )
    create(
        api,
        path,
        {
            "metadata": {
                "name": "other",
                "namespace": namespace,
                "labels": {"kubernetes.io/service-name": "other"},
            },
            "addressType": "IPv4",
            "endpoints": [{"addresses": ["10.3.0.99"]}],
            "ports": [{"port": 1}],
        },
    )
    sd = discover(
        "endpointslice",
        namespaces={"names": [namespace]},
        selectors=[{"role": "endpointslice", "label": "kubernetes.io/service-name=web"}],
    )

    source = f"endpointslice/{namespace}/web-x1"
    found = groups_when(sd, lambda g: source in g, "the slice")
    assert list(found) == [source]
    group = found[source]
    assert dict(group.labels) == {
        M + "namespace": namespace,
        M + "endpointslice_name": "web-x1",
        M + "endpointslice_address_type": "IPv4",
        M + "endpointslice_label_kubernetes_io_service_name": "web",
        M + "endpointslice_labelpresent_kubernetes_io_service_name": "true",
        M + "service_name": "web",
        M + "service_label_team": "shop",
        M + "service_labelpresent_team": "true",
    }
    assert targets(group) == [
        {
            "__address__": "10.3.0.5:8080",
            M + "endpointslice_port": "8080",
            M + "endpointslice_port_name": "http",
            M + "endpointslice_port_protocol": "TCP",
            M + "endpointslice_port_app_protocol": "http",
            M + "endpointslice_endpoint_conditions_ready": "true",
            M + "endpointslice_endpoint_conditions_serving": "true",
            M + "endpointslice_endpoint_conditions_terminating": "false",
            M + "endpointslice_endpoint_node_name": "worker-1",
            M + "endpointslice_endpoint_zone": "z1",
            M + "endpointslice_address_target_kind": "Pod",
            M + "endpointslice_address_target_name": "web-1",
            **_pod_labels(namespace, uid),
            **_container(8080, "http"),
        },
        {
            "__address__": "10.3.0.5:9100",
            **_pod_labels(namespace, uid),
            **_container(9100, "metrics"),
        },
    ]

    patch(
        api,
        f"{path}/web-x1",
        {
            "endpoints": [
                {"addresses": ["10.3.0.5"], "conditions": {"ready": False}, "targetRef": ref}
            ]
        },
    )
    groups_when(
        sd,
        lambda g: (
            g[source].targets[0].get(M + "endpointslice_endpoint_conditions_ready") == "false"
        ),
        "the slice's new condition",
    )
    patch(
        api,
        f"{CORE}/namespaces/{namespace}/services/web",
        {"metadata": {"annotations": {"owner": "ops"}}},
    )
    groups_when(
        sd,
        lambda g: g[source].labels.get(M + "service_annotation_owner") == "ops",
        "the service's new annotation on the slice group",
    )
    delete(api, f"{path}/web-x1")
    groups_when(sd, lambda g: not g, "the deleted slice")


# --- resilience ----------------------------------------------------------------------


class _Recorder:
    def __init__(self) -> None:
        self.lists: list[list[Obj]] = []
        self.events: list[tuple[str, str]] = []

    def replace(self, stream: Stream, objects: list[Obj]) -> None:
        self.lists.append(objects)

    def apply(self, stream: Stream, event: str, obj: Obj) -> None:
        self.events.append((event, obj["metadata"]["name"]))


def _client(kubeconfig: Path) -> ApiClient:
    configuration = Configuration()
    kube_config.load_kube_config(
        config_file=str(kubeconfig), client_configuration=configuration, persist_config=False
    )
    return ApiClient(configuration)


def test_a_watch_from_a_version_the_server_no_longer_has_relists(api, cluster, namespace, caplog):
    version = create(
        api,
        f"{CORE}/namespaces/{namespace}/pods",
        pod_manifest(namespace, "p", {}, [{"name": "c", "image": "x"}]),
    )["metadata"]["resourceVersion"]
    # A restarted API server's watch cache starts after that version: 410 Gone.
    cluster.stop_apiserver()
    cluster.start_apiserver()
    sink, stop = _Recorder(), threading.Event()
    reflector = Reflector(
        _client(cluster.kubeconfig), Stream("pod", namespace), sink, stop, resource_version=version
    )
    thread = threading.Thread(target=reflector.run, daemon=True)
    with caplog.at_level(logging.INFO, logger="ferryman.edge.discovery"):
        thread.start()
        try:
            wait_for(lambda: sink.lists, 20, "a list after the 410")
            create(
                api,
                f"{CORE}/namespaces/{namespace}/pods",
                pod_manifest(namespace, "q", {}, [{"name": "c", "image": "x"}]),
            )
            wait_for(lambda: ("ADDED", "q") in sink.events, 20, "the watch after the list")
        finally:
            stop.set()
            reflector.interrupt()
            thread.join(10)
    assert [o["metadata"]["name"] for o in sink.lists[0]] == ["p"]
    assert "410 Gone" in caplog.text
    assert not thread.is_alive()


def test_discovery_survives_an_apiserver_restart(api, cluster, namespace, discover):
    path = f"{CORE}/namespaces/{namespace}/pods"
    create(
        api,
        path,
        pod_manifest(namespace, "before", {}, [{"name": "c", "image": "x"}]),
        status=running("10.4.0.1"),
    )
    sd = discover("pod", namespaces={"names": [namespace]})
    groups_when(sd, lambda g: f"pod/{namespace}/before" in g, "the first pod")

    cluster.stop_apiserver()
    cluster.start_apiserver()
    create(
        api,
        path,
        pod_manifest(namespace, "after", {}, [{"name": "c", "image": "x"}]),
        status=running("10.4.0.2"),
    )
    delete(api, f"{path}/before")
    groups_when(
        sd,
        lambda g: list(g) == [f"pod/{namespace}/after"],
        "the changes made around the restart",
        timeout=60,
    )


def test_close_or_dropping_the_discoverer_stops_its_threads(cluster, discover, namespace):
    before = {t for t in threading.enumerate() if t.name.startswith("kubernetes-sd")}
    sd = discover("endpoints", namespaces={"names": [namespace]})
    wait_for(sd.changed, 20, "the first sync")
    started = {
        t
        for t in threading.enumerate()
        if t.name.startswith("kubernetes-sd") and t.name.endswith(namespace)
    } - before
    assert len(started) == 3  # endpoints, services and pods of one namespace
    sd.close()
    wait_for(lambda: not any(t.is_alive() for t in started), 10, "the threads to end")
    # Dropping the last reference (a configuration reload does) stops the threads too.
    dropped = KubernetesSD(
        KubernetesSDConfig(
            role="pod", kubeconfig_file=cluster.kubeconfig, namespaces={"names": [namespace]}
        )
    )
    wait_for(dropped.changed, 20, "the second discoverer's sync")
    threads = {t for t in threading.enumerate() if t.name == f"kubernetes-sd-pod-{namespace}"}
    assert len(threads) == 1
    del dropped
    gc.collect()
    wait_for(lambda: not any(t.is_alive() for t in threads), 10, "the pod thread to end")


# --- the shipper ---------------------------------------------------------------------


def _partitions(bootstrap: str, topic: str) -> set[int]:
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        return consumer.partitions_for_topic(topic) or set()
    finally:
        consumer.close()


def test_the_shipper_scrapes_discovered_pods_into_prometheus(
    stack, cluster, api, namespace, unique, tmp_path, processes, exporter
):
    metric = f"k8s_{unique}"
    exporter.routes["/metrics"] = lambda n: (
        200,
        TEXT,
        (f"# TYPE {metric}_total counter\n{metric}_total {n}\n").encode(),
    )
    port = int(exporter.address.rsplit(":", 1)[1])
    # The exporter listens on loopback, so the pod "runs" at 127.0.0.1.
    create(
        api,
        f"{CORE}/namespaces/{namespace}/pods",
        {
            "metadata": {
                "name": "app-1",
                "namespace": namespace,
                "annotations": {"prometheus.io/scrape": "true"},
                "labels": {"app": "a"},
            },
            "spec": {
                "nodeName": "worker-1",
                "containers": [
                    {
                        "name": "app",
                        "image": "app:1",
                        "ports": [{"containerPort": port, "name": "metrics"}],
                    },
                    {"name": "sidecar", "image": "proxy:1"},
                ],
            },
        },
        status=running("127.0.0.1"),
    )
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (unique, 2), (f"{unique}-dlq", 1))
    # A worker that joins before the broker serves the new topic's metadata gets no
    # partitions until its next metadata refresh (minutes): wait for the topic first.
    wait_for(lambda: _partitions(bootstrap, unique), 30, "the topic's metadata")
    processes(
        EdgeMetrics(
            tmp_path,
            {
                "global": {
                    "scrape_interval": "1s",
                    "scrape_timeout": "1s",
                    "external_labels": {"cluster": "kube"},
                },
                "scrape_configs": [
                    {
                        "job_name": "pods",
                        "kubernetes_sd_configs": [
                            {
                                "role": "pod",
                                "kubeconfig_file": str(cluster.kubeconfig),
                                "namespaces": {"names": [namespace]},
                            }
                        ],
                        "relabel_configs": [
                            {
                                "source_labels": [M + "pod_annotation_prometheus_io_scrape"],
                                "regex": "true",
                                "action": "keep",
                            },
                            {
                                "source_labels": [M + "pod_container_port_name"],
                                "regex": "metrics",
                                "action": "keep",
                            },
                            {"source_labels": [M + "namespace"], "target_label": "namespace"},
                            {"source_labels": [M + "pod_name"], "target_label": "pod"},
                            {"action": "labelmap", "regex": M + "pod_label_(.+)"},
                        ],
                    }
                ],
                "ferryman": {
                    "kafka": {"bootstrap_servers": bootstrap, "topic": unique},
                    "buffer": {"directory": str(tmp_path / "buffer")},
                    "listen": "127.0.0.1:0",
                    "flush_interval": "200ms",
                },
            },
        )
    )
    processes(
        Worker(
            tmp_path,
            "prometheus_remote_write",
            {
                "kafka": {
                    "bootstrap_servers": bootstrap,
                    "input_topic": unique,
                    "group_id": f"g-{unique}",
                    "dead_letter_topic": f"{unique}-dlq",
                },
                "batch": {"max_wait_s": 0.2},
                "config": {"url": stack("prometheus", "remote_write")},
            },
        )
    )

    def series() -> list[dict[str, Any]]:
        response = httpx.get(
            f"{stack('prometheus', 'http')}/api/v1/query",
            params={"query": f"{metric}_total"},
            timeout=10,
        )
        response.raise_for_status()
        result: list[dict[str, Any]] = response.json()["data"]["result"]
        return result

    rows = wait_for(series, 90, "the discovered pod's series in Prometheus")
    assert [row["metric"] for row in rows] == [
        {
            "__name__": f"{metric}_total",
            "job": "pods",
            "instance": exporter.address,
            "namespace": namespace,
            "pod": "app-1",
            "app": "a",
            "cluster": "kube",
        }
    ]
