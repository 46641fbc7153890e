"""Kubernetes objects → Prometheus target groups, from objects a real API server served.

``kubernetes_sd_objects.json`` holds what kube-apiserver v1.37.2 returned for the
objects of ``tests/integration/kube.py`` (defaults and admission applied: protocols,
cluster IPs, the topology label a pod inherits from its node). Re-record it with
``python -m tests.integration.kube record tests/unit/edge/kubernetes_sd_objects.json``.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import pytest

from edge.discovery.config import KubernetesSDConfig
from edge.discovery.group import TargetGroup
from edge.discovery.kubernetes.discoverer import TargetStore, plan_streams
from edge.discovery.kubernetes.labels import (
    build_endpoints,
    build_endpointslice,
    build_node,
    build_pod,
    build_service,
    join_host_port,
    sanitize_label_name,
)
from edge.discovery.kubernetes.reflector import Stream

M = "__meta_kubernetes_"
RECORDED = json.loads((Path(__file__).parent / "kubernetes_sd_objects.json").read_text())


def obj(kind: str, name: str) -> dict[str, Any]:
    found = next(o for o in RECORDED[kind] if o["metadata"]["name"] == name)
    return copy.deepcopy(found)


def no_pods(namespace: str, name: str) -> None:
    return None


def pods(namespace: str, name: str) -> dict[str, Any] | None:
    return next(
        (
            p
            for p in RECORDED["pods"]
            if (p["metadata"]["namespace"], p["metadata"]["name"]) == (namespace, name)
        ),
        None,
    )


def by_address(group: TargetGroup) -> dict[str, dict[str, str]]:
    found = {t["__address__"]: dict(t) for t in group.targets}
    assert len(found) == len(group.targets)
    return found


WEB = obj("pods", "web-7d4b9")
POD = {  # the web pod's labels, on pod groups and on endpoint targets
    M + "pod_name": "web-7d4b9",
    M + "pod_ip": "10.244.1.5",
    M + "pod_ready": "true",
    M + "pod_phase": "Running",
    M + "pod_node_name": "edge-1",
    M + "pod_host_ip": "10.0.0.11",
    M + "pod_uid": WEB["metadata"]["uid"],
    M + "pod_label_app": "web",
    M + "pod_labelpresent_app": "true",
    M + "pod_label_app_kubernetes_io_name": "web",
    M + "pod_labelpresent_app_kubernetes_io_name": "true",
    # Copied from the node by the API server's pod topology labels admission.
    M + "pod_label_topology_kubernetes_io_zone": "z1",
    M + "pod_labelpresent_topology_kubernetes_io_zone": "true",
    M + "pod_annotation_prometheus_io_scrape": "true",
    M + "pod_annotationpresent_prometheus_io_scrape": "true",
    M + "pod_controller_kind": "ReplicaSet",
    M + "pod_controller_name": "web-7d4b",
}
SERVICE = {
    M + "namespace": "shop",
    M + "service_name": "web",
    M + "service_label_app": "web",
    M + "service_labelpresent_app": "true",
    M + "service_annotation_prometheus_io_probe": "true",
    M + "service_annotationpresent_prometheus_io_probe": "true",
}


def container(
    name: str, image: str, port: int, port_name: str, init: bool = False, protocol: str = "TCP"
) -> dict[str, str]:
    return {
        M + "pod_container_name": name,
        M + "pod_container_image": image,
        M + "pod_container_port_name": port_name,
        M + "pod_container_port_number": str(port),
        M + "pod_container_port_protocol": protocol,
        M + "pod_container_init": "true" if init else "false",
    }


# --- helpers -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "sanitized"),
    [
        ("app.kubernetes.io/name", "app_kubernetes_io_name"),
        ("prometheus.io/scrape", "prometheus_io_scrape"),
        ("ünïcode-ok", "_n_code_ok"),
        ("already_fine_9", "already_fine_9"),
    ],
)
def test_label_names_are_sanitised_like_prometheus(name, sanitized):
    assert sanitize_label_name(name) == sanitized


def test_ipv6_hosts_are_bracketed():
    assert join_host_port("10.0.0.1", 80) == "10.0.0.1:80"
    assert join_host_port("fd00::1", 8080) == "[fd00::1]:8080"
    assert join_host_port("web.shop.svc", "53") == "web.shop.svc:53"


# --- node ----------------------------------------------------------------------------


def test_node_targets_the_kubelet_on_its_first_internal_ip():
    group = build_node(obj("nodes", "edge-1"))
    assert group.source == "node/edge-1"
    assert dict(group.labels) == {
        M + "node_name": "edge-1",
        M + "node_provider_id": "kind://docker/edge-1",
        M + "node_condition_ready": "true",
        M + "node_condition_memorypressure": "false",
        M + "node_label_kubernetes_io_hostname": "edge-1",
        M + "node_labelpresent_kubernetes_io_hostname": "true",
        M + "node_label_topology_kubernetes_io_zone": "z1",
        M + "node_labelpresent_topology_kubernetes_io_zone": "true",
        M + "node_annotation_node_alpha_kubernetes_io_ttl": "0",
        M + "node_annotationpresent_node_alpha_kubernetes_io_ttl": "true",
    }
    assert [dict(t) for t in group.targets] == [
        {
            "__address__": "10.0.0.11:10250",
            "instance": "edge-1",
            M + "node_address_InternalIP": "10.0.0.11",  # the first of two
            M + "node_address_ExternalIP": "203.0.113.7",
            M + "node_address_Hostname": "edge-1",
        }
    ]


@pytest.mark.parametrize(
    ("addresses", "expected"),
    [
        (
            [("Hostname", "h"), ("ExternalDNS", "e.example"), ("InternalDNS", "i.example")],
            "i.example:10250",
        ),
        ([("Hostname", "h"), ("ExternalIP", "203.0.113.1")], "203.0.113.1:10250"),
        ([("Hostname", "h"), ("LegacyHostIP", "10.9.9.9")], "10.9.9.9:10250"),
        ([("Hostname", "h")], "h:10250"),
        ([("InternalIP", "fd00::2")], "[fd00::2]:10250"),
    ],
)
def test_node_address_preference(addresses, expected):
    node = obj("nodes", "edge-1")
    node["status"]["addresses"] = [{"type": t, "address": a} for t, a in addresses]
    assert build_node(node).targets[0]["__address__"] == expected


def test_a_node_without_addresses_has_no_target():
    group = build_node(obj("nodes", "bare"))
    assert group.targets == ()
    assert dict(group.labels) == {M + "node_name": "bare"}  # no provider ID: no label


# --- pod -----------------------------------------------------------------------------


def test_pod_one_target_per_container_port_and_per_portless_container():
    group = build_pod(WEB)
    assert group.source == "pod/shop/web-7d4b9"
    assert dict(group.labels) == {**POD, M + "namespace": "shop"}
    ids = {
        "app": "containerd://aaa111",
        "sidecar": "containerd://bbb222",
        "migrate": "containerd://ccc333",
    }

    def with_id(labels: dict[str, str]) -> dict[str, str]:
        return {**labels, M + "pod_container_id": ids[labels[M + "pod_container_name"]]}

    expected = {
        "10.244.1.5:8080": with_id(container("app", "shop/web:2.0", 8080, "http")),
        "10.244.1.5:9102": with_id(container("app", "shop/web:2.0", 9102, "metrics")),
        "10.244.1.5": {
            M + "pod_container_name": "sidecar",
            M + "pod_container_id": "containerd://bbb222",
            M + "pod_container_image": "shop/proxy:1.0",
            M + "pod_container_init": "false",
        },
        "10.244.1.5:9000": with_id(
            container("migrate", "shop/migrate:1.2", 9000, "mig", init=True)
        ),
    }
    assert by_address(group) == {a: {"__address__": a, **t} for a, t in expected.items()}


def test_a_pod_without_ip_is_an_empty_group():
    group = build_pod(obj("pods", "batch-x"))
    assert group == TargetGroup("pod/shop/batch-x", (), {})


def test_pod_readiness_and_missing_container_status():
    pod = copy.deepcopy(WEB)
    del pod["status"]["conditions"]
    del pod["status"]["containerStatuses"]
    group = build_pod(pod)
    assert group.labels[M + "pod_ready"] == "unknown"
    assert M + "pod_container_id" not in by_address(group)["10.244.1.5:8080"]
    pod["status"]["conditions"] = [{"type": "Ready", "status": "False"}]
    assert build_pod(pod).labels[M + "pod_ready"] == "false"


def test_only_a_controller_owner_names_the_controller():
    pod = copy.deepcopy(WEB)
    pod["metadata"]["ownerReferences"][0]["controller"] = False
    labels = build_pod(pod).labels
    assert M + "pod_controller_kind" not in labels
    assert M + "pod_controller_name" not in labels


def test_empty_values_are_absent_labels_as_in_prometheus():
    pod = copy.deepcopy(WEB)
    pod["metadata"]["labels"] = {"empty": ""}
    pod["spec"]["nodeName"] = ""
    labels = build_pod(pod).labels
    assert labels[M + "pod_labelpresent_empty"] == "true"
    assert M + "pod_label_empty" not in labels
    assert M + "pod_node_name" not in labels


def test_labels_that_sanitise_alike_resolve_the_same_way_every_time():
    pod = copy.deepcopy(WEB)
    pod["metadata"]["labels"] = {"a_b": "underscore", "a.b": "dot"}
    assert build_pod(pod).labels[M + "pod_label_a_b"] == "underscore"
    pod["metadata"]["labels"] = {"a.b": "dot", "a_b": "underscore"}
    assert build_pod(pod).labels[M + "pod_label_a_b"] == "underscore"


# --- service -------------------------------------------------------------------------


def test_service_one_target_per_port():
    service = obj("services", "web")
    group = build_service(service)
    assert group.source == "svc/shop/web"
    assert dict(group.labels) == SERVICE
    common = {
        M + "service_type": "ClusterIP",
        M + "service_cluster_ip": service["spec"]["clusterIP"],
    }
    assert by_address(group) == {
        "web.shop.svc:80": {
            "__address__": "web.shop.svc:80",
            **common,
            M + "service_port_name": "http",
            M + "service_port_number": "80",
            M + "service_port_protocol": "TCP",
        },
        "web.shop.svc:53": {
            "__address__": "web.shop.svc:53",
            **common,
            M + "service_port_name": "dns",
            M + "service_port_number": "53",
            M + "service_port_protocol": "UDP",
        },
    }


def test_load_balancer_and_external_name_services():
    lb = build_service(obj("services", "edge-lb")).targets[0]
    assert lb[M + "service_type"] == "LoadBalancer"
    assert lb[M + "service_loadbalancer_ip"] == "198.51.100.9"
    assert lb[M + "service_cluster_ip"].startswith("10.96.")
    external = dict(build_service(obj("services", "upstream")).targets[0])
    assert external == {
        "__address__": "upstream.shop.svc:443",  # an unnamed port: no port name label
        M + "service_port_number": "443",
        M + "service_port_protocol": "TCP",
        M + "service_type": "ExternalName",
        M + "service_external_name": "api.example.org",
    }


# --- endpoints -----------------------------------------------------------------------


def test_endpoints_targets_with_service_and_pod_labels():
    group = build_endpoints(obj("endpoints", "web"), obj("services", "web"), pods)
    assert group.source == "endpoints/shop/web"
    assert dict(group.labels) == {
        **SERVICE,
        M + "endpoints_name": "web",
        M + "endpoints_label_app": "web",
        M + "endpoints_labelpresent_app": "true",
    }
    backed = {
        M + "endpoint_ready": "true",
        M + "endpoint_node_name": "edge-1",
        M + "endpoint_address_target_kind": "Pod",
        M + "endpoint_address_target_name": "web-7d4b9",
        **POD,
    }
    not_ready = {M + "endpoint_ready": "false", M + "endpoint_hostname": "web-0"}
    http = {M + "endpoint_port_name": "http", M + "endpoint_port_protocol": "TCP"}
    dns = {M + "endpoint_port_name": "dns", M + "endpoint_port_protocol": "UDP"}
    expected = {
        "10.244.1.5:8080": {**http, **backed, **container("app", "shop/web:2.0", 8080, "http")},
        "10.244.1.5:5353": {**dns, **backed},  # no container declares 5353
        "10.244.2.9:8080": {**http, **not_ready},
        "10.244.2.9:5353": {**dns, **not_ready},
        # The pod's container ports no endpoint port covers:
        "10.244.1.5:9102": {**POD, **container("app", "shop/web:2.0", 9102, "metrics")},
        "10.244.1.5:9000": {
            **POD,
            **container("migrate", "shop/migrate:1.2", 9000, "mig", init=True),
        },
    }
    assert by_address(group) == {a: {"__address__": a, **t} for a, t in expected.items()}


def test_endpoints_use_the_endpoint_ports_protocol_for_a_matched_container_port():
    endpoints = obj("endpoints", "web")
    endpoints["subsets"][0]["ports"][0]["protocol"] = "SCTP"
    target = by_address(build_endpoints(endpoints, None, pods))["10.244.1.5:8080"]
    assert target[M + "endpoint_port_protocol"] == "SCTP"
    assert target[M + "pod_container_port_protocol"] == "SCTP"


def test_endpoints_without_service_or_known_pod():
    group = build_endpoints(obj("endpoints", "web"), None, no_pods)
    assert dict(group.labels) == {
        M + "namespace": "shop",
        M + "endpoints_name": "web",
        M + "endpoints_label_app": "web",
        M + "endpoints_labelpresent_app": "true",
    }
    assert sorted(by_address(group)) == [
        "10.244.1.5:5353",
        "10.244.1.5:8080",
        "10.244.2.9:5353",
        "10.244.2.9:8080",
    ]
    assert all(M + "pod_name" not in t for t in group.targets)


# --- endpointslice -------------------------------------------------------------------


def test_endpointslice_targets_with_service_and_pod_labels():
    group = build_endpointslice(obj("endpointslices", "web-abcde"), obj("services", "web"), pods)
    assert group.source == "endpointslice/shop/web-abcde"
    assert dict(group.labels) == {
        **SERVICE,
        M + "endpointslice_name": "web-abcde",
        M + "endpointslice_address_type": "IPv4",
        M + "endpointslice_label_kubernetes_io_service_name": "web",
        M + "endpointslice_labelpresent_kubernetes_io_service_name": "true",
        M + "endpointslice_label_endpointslice_kubernetes_io_managed_by": "test",
        M + "endpointslice_labelpresent_endpointslice_kubernetes_io_managed_by": "true",
    }
    port = {
        M + "endpointslice_port": "8080",
        M + "endpointslice_port_name": "http",
        M + "endpointslice_port_protocol": "TCP",
        M + "endpointslice_port_app_protocol": "http",
    }
    expected = {
        "10.244.1.5:8080": {
            **port,
            M + "endpointslice_endpoint_conditions_ready": "true",
            M + "endpointslice_endpoint_conditions_serving": "true",
            M + "endpointslice_endpoint_conditions_terminating": "false",
            M + "endpointslice_endpoint_node_name": "edge-1",
            M + "endpointslice_endpoint_zone": "z1",
            M + "endpointslice_address_target_kind": "Pod",
            M + "endpointslice_address_target_name": "web-7d4b9",
            **POD,
            **container("app", "shop/web:2.0", 8080, "http"),
        },
        "10.244.2.9:8080": {
            **port,
            M + "endpointslice_endpoint_conditions_ready": "false",
            M + "endpointslice_endpoint_hostname": "web-0",
        },
        "10.244.1.5:9102": {**POD, **container("app", "shop/web:2.0", 9102, "metrics")},
        "10.244.1.5:9000": {
            **POD,
            **container("migrate", "shop/migrate:1.2", 9000, "mig", init=True),
        },
    }
    assert by_address(group) == {a: {"__address__": a, **t} for a, t in expected.items()}


def test_deprecated_topology_becomes_topology_labels():
    # discovery.k8s.io/v1 servers drop deprecatedTopology on write (1.37 did when
    # recording); slices written through older API versions may still carry it.
    slice_ = obj("endpointslices", "web-abcde")
    slice_["endpoints"][1]["deprecatedTopology"] = {
        "kubernetes.io/hostname": "edge-2",
        "topology.kubernetes.io/zone": "z2",
    }
    target = by_address(build_endpointslice(slice_, None, pods))["10.244.2.9:8080"]
    assert {k: v for k, v in target.items() if "topology" in k} == {
        M + "endpointslice_endpoint_topology_kubernetes_io_hostname": "edge-2",
        M + "endpointslice_endpoint_topology_present_kubernetes_io_hostname": "true",
        M + "endpointslice_endpoint_topology_topology_kubernetes_io_zone": "z2",
        M + "endpointslice_endpoint_topology_present_topology_kubernetes_io_zone": "true",
    }


def test_the_secondary_ip_family_slice_of_a_dual_stack_service_has_no_targets():
    service = obj("services", "edge-lb")  # PreferDualStack, primary family IPv4
    slice_ = obj("endpointslices", "edge-lb-v6")
    group = build_endpointslice(slice_, service, pods)
    assert group.targets == ()
    assert group.labels[M + "service_name"] == "edge-lb"
    # Without the service nothing says which family is primary.
    assert [t["__address__"] for t in build_endpointslice(slice_, None, pods).targets] == [
        "[fd00::5]:8443"
    ]


def test_a_slice_port_without_number_leaves_the_address_bare():
    group = build_endpointslice(obj("endpointslices", "orphan-1"), None, pods)
    assert [dict(t) for t in group.targets] == [
        {
            "__address__": "fd00::7",
            M + "endpointslice_port_name": "metrics",
            M + "endpointslice_port_protocol": "TCP",
        }
    ]


# --- the store behind KubernetesSD ---------------------------------------------------


def synced_store(role: str, kinds: dict[str, list[dict[str, Any]]]) -> TargetStore:
    store = TargetStore(role)
    streams = [Stream(kind) for kind in kinds]
    store.expect(streams)
    for stream in streams:
        store.replace(stream, copy.deepcopy(kinds[stream.kind]))
    return store


def endpoint_store() -> TargetStore:
    return synced_store(
        "endpoints",
        {
            "endpoints": RECORDED["endpoints"],
            "service": RECORDED["services"],
            "pod": RECORDED["pods"],
        },
    )


def test_nothing_is_reported_before_every_stream_listed():
    store = TargetStore("endpoints")
    streams = [Stream("endpoints"), Stream("service"), Stream("pod")]
    assert store.synced_version() is None
    store.expect(streams)
    store.replace(streams[0], copy.deepcopy(RECORDED["endpoints"]))
    store.replace(streams[1], copy.deepcopy(RECORDED["services"]))
    assert store.synced_version() is None
    store.replace(streams[2], copy.deepcopy(RECORDED["pods"]))
    assert store.synced_version() is not None
    assert [g.source for g in store.groups()] == ["endpoints/shop/web"]
    assert store.groups()[0] == build_endpoints(
        obj("endpoints", "web"), obj("services", "web"), pods
    )


def test_a_pod_or_service_change_rebuilds_the_endpoints_that_use_it():
    store = endpoint_store()
    version = store.synced_version()
    pod = copy.deepcopy(WEB)
    pod["metadata"]["labels"]["app"] = "web-v2"
    pod["metadata"]["resourceVersion"] = "999"
    store.apply(Stream("pod"), "MODIFIED", pod)
    assert store.synced_version() != version
    assert store.groups()[0].targets[0][M + "pod_label_app"] == "web-v2"

    version = store.synced_version()
    unrelated = copy.deepcopy(obj("pods", "batch-x"))
    unrelated["metadata"]["labels"] = {"x": "y"}
    store.apply(Stream("pod"), "MODIFIED", unrelated)
    assert store.synced_version() == version  # no group changed

    store.apply(Stream("service"), "DELETED", obj("services", "web"))
    assert M + "service_name" not in store.groups()[0].labels
    store.apply(Stream("endpoints"), "DELETED", obj("endpoints", "web"))
    assert store.groups() == []


def test_a_relist_drops_what_disappeared_meanwhile():
    store = synced_store("pod", {"pod": RECORDED["pods"]})
    assert [g.source for g in store.groups()] == ["pod/shop/batch-x", "pod/shop/web-7d4b9"]
    store.replace(Stream("pod"), [copy.deepcopy(WEB)])
    assert [g.source for g in store.groups()] == ["pod/shop/web-7d4b9"]


def test_a_relist_of_one_namespace_keeps_the_others():
    store = TargetStore("service")
    shop, other = Stream("service", "shop"), Stream("service", "other")
    store.expect([shop, other])
    moved = obj("services", "web")
    moved["metadata"]["namespace"] = "other"
    store.replace(other, [moved])
    store.replace(shop, [obj("services", "web")])
    store.replace(shop, [])
    assert [g.source for g in store.groups()] == ["svc/other/web"]


def test_a_malformed_object_is_logged_not_raised(caplog):
    store = synced_store("service", {"service": []})
    broken = obj("services", "web")
    broken["spec"]["ports"] = [{"port": "not-a-number"}]
    store.apply(Stream("service"), "ADDED", broken)
    assert store.groups() == []
    assert "cannot build the target group of service shop/web" in caplog.text


# --- configuration → list/watch streams ----------------------------------------------


def config(**settings: Any) -> KubernetesSDConfig:
    return KubernetesSDConfig.model_validate(settings)


def test_streams_per_kind_namespace_and_selector():
    planned = plan_streams(
        config(
            role="endpointslice",
            namespaces={"names": ["a", "b", "a"]},
            selectors=[
                {"role": "pod", "field": "spec.nodeName=n1"},
                {"role": "endpointslice", "label": "x=y"},
            ],
        ),
        None,
    )
    assert planned == [
        Stream("endpointslice", "a", "x=y"),
        Stream("endpointslice", "b", "x=y"),
        Stream("service", "a"),
        Stream("service", "b"),
        Stream("pod", "a", None, "spec.nodeName=n1"),
        Stream("pod", "b", None, "spec.nodeName=n1"),
    ]


def test_nodes_ignore_namespaces_and_all_namespaces_is_the_default():
    assert plan_streams(config(role="node", namespaces={"names": ["a"]}), None) == [Stream("node")]
    assert plan_streams(config(role="pod"), None) == [Stream("pod")]
    assert plan_streams(config(role="pod", namespaces={"own_namespace": True}), "mine") == [
        Stream("pod", "mine")
    ]


def test_selectors_for_other_roles_are_ignored_with_an_error(caplog):
    planned = plan_streams(
        config(
            role="service",
            selectors=[
                {"role": "pod", "label": "a=b"},
                {"role": "service", "label": "c=d"},
                {"role": "service", "label": "e=f"},
            ],
        ),
        None,
    )
    assert planned == [Stream("service", None, "c=d")]
    assert "role service supports only service selectors" in caplog.text
    assert "duplicated selector role service" in caplog.text
