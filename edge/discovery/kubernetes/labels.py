"""Kubernetes objects → target groups, exactly as Prometheus' kubernetes_sd_config.

Pure functions over the API's JSON objects (``dict`` as the API server sends them,
camelCase keys). Each builder returns one TargetGroup whose ``source`` is the one
Prometheus uses (``node/NAME``, ``pod/NS/NAME``, ``svc/NS/NAME``,
``endpoints/NS/NAME``, ``endpointslice/NS/NAME``), with the object's labels on the
group and one target per address (and port) carrying the per-target ``__meta_*``
labels.

Reference: Prometheus v3.14 ``discovery/kubernetes`` and its documentation. Where
Go iterates a map (labels, annotations, topology), keys are taken in sorted order so
two keys that sanitise to the same label name resolve the same way every time.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from ..group import TargetGroup

__all__ = [
    "Obj",
    "PodLookup",
    "build_endpoints",
    "build_endpointslice",
    "build_node",
    "build_pod",
    "build_service",
    "dependencies",
    "join_host_port",
    "sanitize_label_name",
]

Obj = Mapping[str, Any]
PodLookup = Callable[[str, str], Obj | None]
Labels = dict[str, str]

META = "__meta_kubernetes_"
NAMESPACE = META + "namespace"
SERVICE_NAME_LABEL = "kubernetes.io/service-name"  # on every EndpointSlice of a Service

# The node address used as the target, by preference (Prometheus' nodeAddress).
NODE_ADDRESS_PREFERENCE = (
    "InternalIP",
    "InternalDNS",
    "ExternalIP",
    "ExternalDNS",
    "LegacyHostIP",
    "Hostname",
)

_INVALID_LABEL_CHARS = re.compile(r"[^a-zA-Z0-9_]")


def sanitize_label_name(name: str) -> str:
    """Every character outside ``[a-zA-Z0-9_]`` becomes ``_`` (Prometheus' strutil)."""
    return _INVALID_LABEL_CHARS.sub("_", name)


def join_host_port(host: str, port: int | str) -> str:
    """Go's net.JoinHostPort: IPv6 hosts get brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _map(value: Any) -> Obj:
    return value if isinstance(value, Mapping) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _str(value: Any) -> str:
    return "" if value is None else str(value)


def _bool(value: bool) -> str:
    return "true" if value else "false"


def _group(source: str, targets: Iterable[Labels], labels: Labels) -> TargetGroup:
    """A TargetGroup without empty label values: Prometheus' label sets hold none (an
    empty value means "absent" to relabeling and is dropped), so neither do ours."""
    return TargetGroup(
        source,
        tuple({k: v for k, v in t.items() if v} for t in targets),
        {k: v for k, v in labels.items() if v},
    )


def _namespaced_source(kind: str, meta: Obj) -> str:
    return f"{kind}/{_str(meta.get('namespace'))}/{_str(meta.get('name'))}"


def _labels_and_annotations(out: Labels, meta: Obj, resource: str) -> None:
    for kind, field in (("label", "labels"), ("annotation", "annotations")):
        for key, value in sorted(_map(meta.get(field)).items()):
            name = sanitize_label_name(key)
            out[f"{META}{resource}_{kind}_{name}"] = _str(value)
            out[f"{META}{resource}_{kind}present_{name}"] = "true"


def _object_meta_labels(out: Labels, meta: Obj, role: str) -> None:
    out[f"{META}{role}_name"] = _str(meta.get("name"))
    _labels_and_annotations(out, meta, role)


# --- node ----------------------------------------------------------------------------


def build_node(node: Obj) -> TargetGroup:
    """One target per node: its preferred address and the kubelet port;
    ``instance`` is the node name."""
    meta, spec, status = (
        _map(node.get("metadata")),
        _map(node.get("spec")),
        _map(node.get("status")),
    )
    name = _str(meta.get("name"))
    labels: Labels = {META + "node_provider_id": _str(spec.get("providerID"))}
    for condition in _list(status.get("conditions")):
        condition = _map(condition)
        kind = sanitize_label_name(_str(condition.get("type")).lower())
        labels[f"{META}node_condition_{kind}"] = _str(condition.get("status")).lower()
    _object_meta_labels(labels, meta, "node")

    addresses: dict[str, list[str]] = {}
    for entry in _list(status.get("addresses")):
        entry = _map(entry)
        addresses.setdefault(_str(entry.get("type")), []).append(_str(entry.get("address")))
    address = next(
        (addresses[kind][0] for kind in NODE_ADDRESS_PREFERENCE if kind in addresses), None
    )
    if address is None:
        # Prometheus logs "No node address found" and sends no update at all; a node
        # with no address cannot be scraped, so it keeps its labels but no target here.
        return _group(f"node/{name}", (), labels)
    kubelet = _map(_map(status.get("daemonEndpoints")).get("kubeletEndpoint"))
    target: Labels = {
        "__address__": join_host_port(address, int(kubelet.get("Port") or 0)),
        "instance": name,
    }
    for kind, values in addresses.items():
        target[sanitize_label_name(f"{META}node_address_{kind}")] = values[0]
    return _group(f"node/{name}", [target], labels)


# --- pod -----------------------------------------------------------------------------


def _pod_ready(pod: Obj) -> str:
    for condition in _list(_map(pod.get("status")).get("conditions")):
        condition = _map(condition)
        if condition.get("type") == "Ready":
            return _str(condition.get("status")).lower()
    return "unknown"


def pod_labels(pod: Obj) -> Labels:
    """The pod's own labels, shared by the pod, endpoints and endpointslice roles
    (the namespace label is not among them: the group carries it)."""
    meta, spec, status = _map(pod.get("metadata")), _map(pod.get("spec")), _map(pod.get("status"))
    labels: Labels = {
        META + "pod_ip": _str(status.get("podIP")),
        META + "pod_ready": _pod_ready(pod),
        META + "pod_phase": _str(status.get("phase")),
        META + "pod_node_name": _str(spec.get("nodeName")),
        META + "pod_host_ip": _str(status.get("hostIP")),
        META + "pod_uid": _str(meta.get("uid")),
    }
    _object_meta_labels(labels, meta, "pod")
    controller = next(
        (
            _map(ref)
            for ref in _list(meta.get("ownerReferences"))
            if _map(ref).get("controller") is True
        ),
        None,
    )
    if controller is not None:
        if controller.get("kind"):
            labels[META + "pod_controller_kind"] = _str(controller["kind"])
        if controller.get("name"):
            labels[META + "pod_controller_name"] = _str(controller["name"])
    return labels


def _containers(pod: Obj) -> list[tuple[Obj, bool]]:
    """Containers then init containers, each with whether it is an init container."""
    spec = _map(pod.get("spec"))
    return [(_map(c), False) for c in _list(spec.get("containers"))] + [
        (_map(c), True) for c in _list(spec.get("initContainers"))
    ]


def _container_port_labels(
    container: Obj, port: Obj, number: int, protocol: Any, is_init: bool
) -> Labels:
    return {
        META + "pod_container_name": _str(container.get("name")),
        META + "pod_container_image": _str(container.get("image")),
        META + "pod_container_port_name": _str(port.get("name")),
        META + "pod_container_port_number": str(number),
        META + "pod_container_port_protocol": _str(protocol),
        META + "pod_container_init": _bool(is_init),
    }


def build_pod(pod: Obj) -> TargetGroup:
    """One target per container port, or one per container without ports (address:
    the pod IP alone). A pod without an IP yet yields an empty group."""
    meta, status = _map(pod.get("metadata")), _map(pod.get("status"))
    source = _namespaced_source("pod", meta)
    pod_ip = _str(status.get("podIP"))
    if not pod_ip:
        return _group(source, (), {})
    labels = pod_labels(pod)
    labels[NAMESPACE] = _str(meta.get("namespace"))

    container_ids = {
        is_init: {
            _str(_map(s).get("name")): _str(_map(s).get("containerID"))
            for s in _list(status.get(field))
        }
        for is_init, field in ((False, "containerStatuses"), (True, "initContainerStatuses"))
    }
    targets: list[Labels] = []
    for container, is_init in _containers(pod):
        common = {
            META + "pod_container_name": _str(container.get("name")),
            META + "pod_container_id": container_ids[is_init].get(_str(container.get("name")), ""),
            META + "pod_container_image": _str(container.get("image")),
            META + "pod_container_init": _bool(is_init),
        }
        ports = [_map(p) for p in _list(container.get("ports"))]
        if not ports:
            targets.append({"__address__": pod_ip, **common})
            continue
        for port in ports:
            number = int(port.get("containerPort") or 0)
            targets.append(
                {
                    "__address__": join_host_port(pod_ip, number),
                    **common,
                    META + "pod_container_port_number": str(number),
                    META + "pod_container_port_name": _str(port.get("name")),
                    META + "pod_container_port_protocol": _str(port.get("protocol")),
                }
            )
    return _group(source, targets, labels)


# --- service -------------------------------------------------------------------------


def service_labels(service: Obj) -> Labels:
    """The service's labels, shared by the service, endpoints and endpointslice roles."""
    meta = _map(service.get("metadata"))
    labels: Labels = {NAMESPACE: _str(meta.get("namespace"))}
    _object_meta_labels(labels, meta, "service")
    return labels


def build_service(service: Obj) -> TargetGroup:
    """One target per service port; the address is the service's DNS name."""
    meta, spec = _map(service.get("metadata")), _map(service.get("spec"))
    name, namespace = _str(meta.get("name")), _str(meta.get("namespace"))
    kind = _str(spec.get("type"))
    targets: list[Labels] = []
    for port in _list(spec.get("ports")):
        port = _map(port)
        number = str(int(port.get("port") or 0))
        target: Labels = {
            "__address__": join_host_port(f"{name}.{namespace}.svc", number),
            META + "service_port_name": _str(port.get("name")),
            META + "service_port_number": number,
            META + "service_port_protocol": _str(port.get("protocol")),
            META + "service_type": kind,
        }
        if kind == "ExternalName":
            target[META + "service_external_name"] = _str(spec.get("externalName"))
        else:
            target[META + "service_cluster_ip"] = _str(spec.get("clusterIP"))
        if kind == "LoadBalancer":
            target[META + "service_loadbalancer_ip"] = _str(spec.get("loadBalancerIP"))
        targets.append(target)
    return _group(_namespaced_source("svc", meta), targets, service_labels(service))


# --- endpoints and endpointslice -----------------------------------------------------


class _PodTargets:
    """What the endpoints and endpointslice roles share: pod labels on targets backed
    by a pod, and extra targets for the container ports of those pods that no
    endpoint port covered."""

    def __init__(self, lookup: PodLookup) -> None:
        self._lookup = lookup
        self._seen: dict[tuple[str, str], tuple[Obj, list[int | None]]] = {}

    def resolve(self, ref: Any) -> Obj | None:
        ref = _map(ref)
        if ref.get("kind") != "Pod":
            return None
        return self._lookup(_str(ref.get("namespace")), _str(ref.get("name")))

    def attach(
        self, target: Labels, pod: Obj, port: int | None, endpoint_protocol: str | None
    ) -> Labels:
        """Pod labels, and the labels of the container port equal to ``port``; its
        protocol label is ``endpoint_protocol`` when given, else the container's."""
        meta = _map(pod.get("metadata"))
        key = (_str(meta.get("namespace")), _str(meta.get("name")))
        self._seen.setdefault(key, (pod, []))[1].append(port)
        target = {**target, **pod_labels(pod)}
        if port is None:
            return target
        for container, is_init in _containers(pod):
            match = next(
                (
                    _map(p)
                    for p in _list(container.get("ports"))
                    if int(_map(p).get("containerPort") or 0) == port
                ),
                None,
            )
            if match is not None:
                protocol = match.get("protocol") if endpoint_protocol is None else endpoint_protocol
                target.update(_container_port_labels(container, match, port, protocol, is_init))
        return target

    def unaccounted(self) -> list[Labels]:
        targets: list[Labels] = []
        for pod, covered in self._seen.values():
            pod_ip = _str(_map(pod.get("status")).get("podIP"))
            if not pod_ip:
                continue
            for container, is_init in _containers(pod):
                for port in _list(container.get("ports")):
                    port = _map(port)
                    number = int(port.get("containerPort") or 0)
                    if number in covered:
                        continue
                    targets.append(
                        {
                            "__address__": join_host_port(pod_ip, number),
                            **_container_port_labels(
                                container, port, number, port.get("protocol"), is_init
                            ),
                            **pod_labels(pod),
                        }
                    )
        return targets


def build_endpoints(endpoints: Obj, service: Obj | None, pods: PodLookup) -> TargetGroup:
    """One target per address and port of every subset (not-ready addresses with
    ``endpoint_ready="false"``), plus one per uncovered container port of the pods
    behind them. ``service`` is the Service of the same name, if known."""
    meta = _map(endpoints.get("metadata"))
    labels: Labels = {NAMESPACE: _str(meta.get("namespace"))}
    if service is not None:
        labels.update(service_labels(service))
    _object_meta_labels(labels, meta, "endpoints")

    pod_targets = _PodTargets(pods)
    targets: list[Labels] = []
    for subset in _list(endpoints.get("subsets")):
        subset = _map(subset)
        for port in _list(subset.get("ports")):
            port = _map(port)
            number = int(port.get("port") or 0)
            for field, ready in (("addresses", "true"), ("notReadyAddresses", "false")):
                for address in _list(subset.get(field)):
                    address = _map(address)
                    target: Labels = {
                        "__address__": join_host_port(_str(address.get("ip")), number),
                        META + "endpoint_port_name": _str(port.get("name")),
                        META + "endpoint_port_protocol": _str(port.get("protocol")),
                        META + "endpoint_ready": ready,
                    }
                    ref = address.get("targetRef")
                    if ref is not None:
                        target[META + "endpoint_address_target_kind"] = _str(_map(ref).get("kind"))
                        target[META + "endpoint_address_target_name"] = _str(_map(ref).get("name"))
                    if address.get("nodeName") is not None:
                        target[META + "endpoint_node_name"] = _str(address["nodeName"])
                    if address.get("hostname"):
                        target[META + "endpoint_hostname"] = _str(address["hostname"])
                    pod = pod_targets.resolve(ref)
                    if pod is not None:
                        # Prometheus labels the matched container port with the
                        # endpoint port's protocol here (the slice role uses the
                        # container port's).
                        target = pod_targets.attach(target, pod, number, _str(port.get("protocol")))
                    targets.append(target)
    targets += pod_targets.unaccounted()
    return _group(_namespaced_source("endpoints", meta), targets, labels)


def _secondary_ip_family(service: Obj | None, slice_: Obj) -> bool:
    """A dual-stack service has one slice per IP family; the targets of the
    secondary family's slice would duplicate the primary's, so Prometheus skips it."""
    if service is None:
        return False
    spec = _map(service.get("spec"))
    if spec.get("ipFamilyPolicy") not in ("PreferDualStack", "RequireDualStack"):
        return False
    families = _list(spec.get("ipFamilies"))
    return bool(families) and _str(slice_.get("addressType")) != _str(families[0])


def build_endpointslice(slice_: Obj, service: Obj | None, pods: PodLookup) -> TargetGroup:
    """One target per endpoint address and slice port, plus one per uncovered
    container port of the pods behind them. ``service`` is the Service named by the
    slice's ``kubernetes.io/service-name`` label, if known."""
    meta = _map(slice_.get("metadata"))
    labels: Labels = {
        NAMESPACE: _str(meta.get("namespace")),
        META + "endpointslice_address_type": _str(slice_.get("addressType")),
    }
    _object_meta_labels(labels, meta, "endpointslice")
    if service is not None:
        labels.update(service_labels(service))
    source = _namespaced_source("endpointslice", meta)
    if _secondary_ip_family(service, slice_):
        return _group(source, (), labels)

    pod_targets = _PodTargets(pods)
    targets: list[Labels] = []
    ports = [_map(p) for p in _list(slice_.get("ports"))]
    for endpoint in _list(slice_.get("endpoints")):
        endpoint = _map(endpoint)
        per_endpoint = _endpoint_labels(endpoint)
        for port in ports:
            number = None if port.get("port") is None else int(port["port"])
            per_port: Labels = {}
            for field, label in (("name", "port_name"), ("protocol", "port_protocol")):
                if port.get(field) is not None:
                    per_port[f"{META}endpointslice_{label}"] = _str(port[field])
            if number is not None:
                per_port[META + "endpointslice_port"] = str(number)
            if port.get("appProtocol") is not None:
                per_port[META + "endpointslice_port_app_protocol"] = _str(port["appProtocol"])
            for address in _list(endpoint.get("addresses")):
                address = _str(address)
                target: Labels = {
                    "__address__": address if number is None else join_host_port(address, number),
                    **per_port,
                    **per_endpoint,
                }
                pod = pod_targets.resolve(endpoint.get("targetRef"))
                if pod is not None:
                    target = pod_targets.attach(target, pod, number, None)
                targets.append(target)
    targets += pod_targets.unaccounted()
    return _group(source, targets, labels)


def _endpoint_labels(endpoint: Obj) -> Labels:
    labels: Labels = {}
    conditions = _map(endpoint.get("conditions"))
    for condition in ("ready", "serving", "terminating"):
        if conditions.get(condition) is not None:
            labels[f"{META}endpointslice_endpoint_conditions_{condition}"] = _bool(
                bool(conditions[condition])
            )
    if endpoint.get("hostname") is not None:
        labels[META + "endpointslice_endpoint_hostname"] = _str(endpoint["hostname"])
    ref = endpoint.get("targetRef")
    if ref is not None:
        labels[META + "endpointslice_address_target_kind"] = _str(_map(ref).get("kind"))
        labels[META + "endpointslice_address_target_name"] = _str(_map(ref).get("name"))
    if endpoint.get("nodeName") is not None:
        labels[META + "endpointslice_endpoint_node_name"] = _str(endpoint["nodeName"])
    if endpoint.get("zone") is not None:
        labels[META + "endpointslice_endpoint_zone"] = _str(endpoint["zone"])
    for key, value in sorted(_map(endpoint.get("deprecatedTopology")).items()):
        name = sanitize_label_name(key)
        labels[f"{META}endpointslice_endpoint_topology_{name}"] = _str(value)
        labels[f"{META}endpointslice_endpoint_topology_present_{name}"] = "true"
    return labels


# --- what a group depends on ---------------------------------------------------------


def service_key(role: str, obj: Obj) -> tuple[str, str] | None:
    """(namespace, name) of the Service whose labels an endpoints or endpointslice
    group carries: the same name for Endpoints, the service-name label for slices."""
    meta = _map(obj.get("metadata"))
    namespace = _str(meta.get("namespace"))
    if role == "endpoints":
        return namespace, _str(meta.get("name"))
    if role == "endpointslice":
        name = _map(meta.get("labels")).get(SERVICE_NAME_LABEL)
        return None if name is None else (namespace, _str(name))
    return None


def _pod_refs(refs: Iterable[Any]) -> set[tuple[str, str]]:
    return {
        (_str(_map(r).get("namespace")), _str(_map(r).get("name")))
        for r in refs
        if _map(r).get("kind") == "Pod"
    }


def dependencies(role: str, obj: Obj) -> set[tuple[str, str, str]]:
    """The other objects (kind, namespace, name) whose change changes this object's
    group: its Service and the Pods its addresses refer to."""
    deps: set[tuple[str, str, str]] = set()
    service = service_key(role, obj)
    if service is not None:
        deps.add(("service", *service))
    if role == "endpoints":
        refs = [
            _map(a).get("targetRef")
            for s in _list(obj.get("subsets"))
            for field in ("addresses", "notReadyAddresses")
            for a in _list(_map(s).get(field))
        ]
    elif role == "endpointslice":
        refs = [_map(e).get("targetRef") for e in _list(obj.get("endpoints"))]
    else:
        refs = []
    deps |= {("pod", *key) for key in _pod_refs(refs)}
    return deps
