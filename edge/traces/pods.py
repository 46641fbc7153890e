"""Kubernetes attributes of the pod that sent a request, looked up by its IP.

The pods come from the same list+watch the metrics shipper's pod discovery and the
log shipper's pod cache use (:class:`edge.discovery.kubernetes.KubernetesSD`,
relisting after an API server restart or a 410 Gone), narrowed to one node when
``node_name`` (or ``$NODE_NAME``) is set — the receiver as a DaemonSet — and to every
pod of the watched namespaces otherwise (a Deployment). A running pod's IP maps to
the OpenTelemetry semantic-convention attributes ``k8s.namespace.name``,
``k8s.pod.name``, ``k8s.pod.uid``, ``k8s.node.name`` and, from its controller,
``k8s.replicaset.name`` and ``k8s.deployment.name`` (the ReplicaSet's name without
its ``pod-template-hash``), ``k8s.daemonset.name``, ``k8s.statefulset.name`` or
``k8s.job.name``. They are added to a resource only where the application did not
set them itself. Pods on the host network share the node's IP and are not told
apart: they get nothing. Until the first list completes, nothing is added.

Reads come from the request threads; the API is touched only by the watch threads.
"""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field

from edge.discovery.config import KubernetesSDConfig, KubernetesSDNamespaces, KubernetesSDSelector
from edge.discovery.files import Discoverer
from edge.discovery.group import TargetGroup

if TYPE_CHECKING:
    from edge.discovery.kubernetes.labels import Obj

__all__ = ["PodAttributes", "PodAttributesConfig", "attributes_of_pod"]

log = logging.getLogger("ferryman.edge.traces")

META = "__meta_kubernetes_"
_CONTROLLERS = {
    "DaemonSet": "k8s.daemonset.name",
    "StatefulSet": "k8s.statefulset.name",
    "Job": "k8s.job.name",
    "ReplicaSet": "k8s.replicaset.name",
}


class PodAttributesConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    api_server: str | None = Field(None, description="API server URL (default: in-cluster).")
    kubeconfig_file: Path | None = Field(None, description="kubeconfig to use instead.")
    node_name: str | None = Field(
        None,
        description="Only pods on this node (default: $NODE_NAME; without either, "
        "every pod of the watched namespaces).",
    )
    namespaces: KubernetesSDNamespaces = Field(
        default_factory=KubernetesSDNamespaces, description="Namespaces to watch (default: all)."
    )


def attributes_of_pod(labels: Mapping[str, str]) -> dict[str, str]:
    """A pod's ``__meta_kubernetes_*`` labels (the pod role's) → resource attributes."""
    out = {
        "k8s.namespace.name": labels.get(META + "namespace", ""),
        "k8s.pod.name": labels.get(META + "pod_name", ""),
        "k8s.pod.uid": labels.get(META + "pod_uid", ""),
        "k8s.node.name": labels.get(META + "pod_node_name", ""),
    }
    kind = labels.get(META + "pod_controller_kind", "")
    name = labels.get(META + "pod_controller_name", "")
    if kind in _CONTROLLERS and name:
        out[_CONTROLLERS[kind]] = name
        template_hash = labels.get(META + "pod_label_pod_template_hash", "")
        if kind == "ReplicaSet" and template_hash and name.endswith("-" + template_hash):
            out["k8s.deployment.name"] = name[: -len(template_hash) - 1]
    return {key: value for key, value in out.items() if value}


def _pod_group(pod: Obj) -> TargetGroup:
    from edge.discovery.kubernetes.labels import NAMESPACE, pod_labels

    meta = pod.get("metadata") or {}
    labels = pod_labels(pod)
    labels[NAMESPACE] = str(meta.get("namespace") or "")
    if (pod.get("spec") or {}).get("hostNetwork") or (pod.get("status") or {}).get("phase") in (
        "Succeeded",
        "Failed",
    ):
        labels.pop(META + "pod_ip", None)
    source = f"pod/{meta.get('namespace') or ''}/{meta.get('name') or ''}"
    return TargetGroup(source, (), {k: v for k, v in labels.items() if v})


class PodAttributes:
    """Pod IP → resource attributes; ``pods`` is where pod groups come from (default a
    list+watch for ``config``)."""

    def __init__(self, config: PodAttributesConfig, pods: Discoverer | None = None) -> None:
        self.config = config
        if pods is None:
            from edge.discovery.kubernetes import KubernetesSD

            node = config.node_name or os.environ.get("NODE_NAME") or None
            selectors = (
                (KubernetesSDSelector(role="pod", field=f"spec.nodeName={node}"),) if node else ()
            )
            pods = KubernetesSD(
                KubernetesSDConfig(
                    role="pod",
                    api_server=config.api_server,
                    kubeconfig_file=config.kubeconfig_file,
                    namespaces=config.namespaces,
                    selectors=selectors,
                ),
                _pod_group,
            )
        self._sd = pods
        self._lock = threading.Lock()
        self._by_ip: dict[str, dict[str, str]] = {}
        self.synced = False

    def lookup(self, ip: str) -> dict[str, str] | None:
        """The attributes of the pod with this IP, or None (not a known pod)."""
        with self._lock:
            if self._sd.changed():
                self._rebuild()
            return self._by_ip.get(ip)

    def close(self) -> None:
        close = getattr(self._sd, "close", None)
        if close is not None:
            close()

    def _rebuild(self) -> None:
        by_ip: dict[str, dict[str, str]] = {}
        shared: set[str] = set()
        for group in self._sd.groups():
            ip = group.labels.get(META + "pod_ip")
            if not ip:
                continue
            if ip in by_ip:
                shared.add(ip)
            by_ip[ip] = attributes_of_pod(group.labels)
        for ip in shared:  # two live pods with one IP: saying either would be a guess
            del by_ip[ip]
        self._by_ip = by_ip
        self.synced = True
