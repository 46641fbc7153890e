"""Log files to tail beyond static globs: ``file_sd_configs`` and Kubernetes pods.

As in Promtail, discovery yields label sets holding ``__path__`` (a glob) and meta
labels; the job's ``relabel_configs`` then decide the final labels and may rewrite
or drop ``__path__``; labels starting with ``__`` leave the set afterwards.

- ``file_sd_configs``: Prometheus file SD, the metrics shipper's own
  (:class:`edge.discovery.files.FileSD`): JSON/YAML lists of
  ``{targets: [...], labels: {__path__: ..., ...}}``, re-read when a file changes
  and every ``refresh_interval``; a file that fails to parse keeps its last good
  content; ``__meta_filepath`` names the file. One label set per target, as
  Promtail (a group with no targets yields nothing).
- ``kubernetes_sd_configs`` (role ``pod`` only): the metrics shipper's list+watch
  (:class:`edge.discovery.kubernetes.KubernetesSD`) of the pods on this node only
  (field selector ``spec.nodeName``), one label set per container (init containers
  included) rather than per port: the pod's ``__meta_kubernetes_*`` labels (namespace,
  name, uid, labels, annotations, node name, controller kind and name, phase, ready,
  IPs) and the container's (name, image, id, init), with ``__path__`` defaulting to
  ``<pod_logs_directory>/*<uid>/<container>/*.log``: the kubelet's
  ``/var/log/pods/<namespace>_<pod>_<uid>/<container>/<restart>.log``. Unlike the
  metrics pod role, a pod without an IP still counts: its files are what matters.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field

from edge.discovery.config import FileSDConfig, KubernetesSDConfig, KubernetesSDSelector
from edge.discovery.files import Discoverer, FileSD
from edge.discovery.group import TargetGroup
from ferryman.prom.relabel import Relabeler

if TYPE_CHECKING:
    from edge.discovery.kubernetes.labels import Obj

# edge.discovery.kubernetes is imported where it is used: it loads the Kubernetes client
# (most of a second), which a shipper without Kubernetes discovery should not pay for
# at every start.

__all__ = [
    "FileSDConfig",
    "FileTarget",
    "LogDiscovery",
    "LogTarget",
    "PodLogsSD",
    "PodLogsSDConfig",
    "build_pod_logs",
    "node_name",
    "resolve",
]

log = logging.getLogger("ferryman.edge.logs")

META = "__meta_kubernetes_"
NODE_NAME_ENV = "NODE_NAME"  # the usual name for the Downward API's spec.nodeName
DEFAULT_POD_LOGS = Path("/var/log/pods")


class PodLogsSDConfig(KubernetesSDConfig):
    """A Prometheus ``kubernetes_sd_configs`` entry for pod logs: role ``pod`` only,
    narrowed to the pods of one node."""

    role: Literal["pod"] = Field("pod", description="Always pod (the default).")
    node_name: str | None = Field(
        None,
        description="Only pods on this node (field selector spec.nodeName). "
        "Default: $NODE_NAME (set it from the Downward API's spec.nodeName); without "
        "either, pods of every node are watched and a warning logged.",
    )
    pod_logs_directory: Path = Field(
        DEFAULT_POD_LOGS,
        description="The kubelet's pod log directory, root of the "
        "default __path__ (default /var/log/pods).",
    )


@dataclass(frozen=True)
class LogTarget:
    """One discovered label set, before relabeling; holds ``__path__`` unless the
    source did not set one (then relabeling must)."""

    source: str
    labels: Mapping[str, str]


@dataclass(frozen=True)
class FileTarget:
    """A target after relabeling: the glob of the files to tail, the glob of files to
    leave out (Promtail's ``__path_exclude__``, or None) and the files' labels (no
    ``__`` labels; the shipper adds ``filename``, ``host`` and external labels)."""

    path: str
    exclude: str | None
    labels: Mapping[str, str]


# --- Kubernetes pods -----------------------------------------------------------------


def node_name(config: PodLogsSDConfig) -> str | None:
    """The node whose pods to watch: the config's, else $NODE_NAME, else None."""
    return config.node_name or os.environ.get(NODE_NAME_ENV) or None


def _containers(pod: Obj) -> list[tuple[dict[str, Any], bool]]:
    spec = pod.get("spec") or {}
    return [(c, False) for c in spec.get("containers") or () if isinstance(c, dict)] + [
        (c, True) for c in spec.get("initContainers") or () if isinstance(c, dict)
    ]


def build_pod_logs(pod: Obj, directory: Path = DEFAULT_POD_LOGS) -> TargetGroup:
    """A pod → its group: the pod's labels on the group, one target per container."""
    from edge.discovery.kubernetes.labels import NAMESPACE, pod_labels

    meta, status = pod.get("metadata") or {}, pod.get("status") or {}
    labels = pod_labels(pod)
    labels[NAMESPACE] = str(meta.get("namespace") or "")
    uid = str(meta.get("uid") or "")
    ids = {
        str(s.get("name")): str(s.get("containerID") or "")
        for field in ("containerStatuses", "initContainerStatuses")
        for s in status.get(field) or ()
        if isinstance(s, dict)
    }
    targets = []
    for container, is_init in _containers(pod):
        name = str(container.get("name") or "")
        targets.append(
            {
                "__path__": f"{directory}/*{uid}/{name}/*.log",
                META + "pod_container_name": name,
                META + "pod_container_image": str(container.get("image") or ""),
                META + "pod_container_id": ids.get(name, ""),
                META + "pod_container_init": "true" if is_init else "false",
            }
        )
    source = f"pod/{meta.get('namespace') or ''}/{meta.get('name') or ''}"
    return TargetGroup(
        source,
        tuple({k: v for k, v in t.items() if v} for t in targets),
        {k: v for k, v in labels.items() if v},
    )


class PodLogsSD(Discoverer):
    """The containers of this node's pods, kept up to date by a list+watch in
    background threads (see KubernetesSD: nothing before the first list completed;
    survives API server restarts; ``close()`` stops the threads)."""

    def __init__(self, config: PodLogsSDConfig) -> None:
        from edge.discovery.kubernetes import KubernetesSD

        self.config = config
        node = node_name(config)
        if node is None:
            log.warning(
                "kubernetes_sd (logs): no node_name and no $%s: watching the pods of every node",
                NODE_NAME_ENV,
            )
        directory = config.pod_logs_directory

        def build(pod: Obj) -> TargetGroup:
            return build_pod_logs(pod, directory)

        self._sd = KubernetesSD(_with_node(config, node), build)

    def changed(self) -> bool:
        return self._sd.changed()

    def groups(self) -> list[TargetGroup]:
        return self._sd.groups()

    def close(self) -> None:
        self._sd.close()


def _with_node(config: PodLogsSDConfig, node: str | None) -> KubernetesSDConfig:
    """The metrics discoverer's config, the node's field selector added to any pod
    selector given (selectors of other roles are left for it to reject)."""
    selectors = list(config.selectors)
    if node is not None:
        at = next((i for i, s in enumerate(selectors) if s.role == "pod"), None)
        term = f"spec.nodeName={node}"
        if at is None:
            selectors.append(KubernetesSDSelector(role="pod", field=term))
        else:
            field = selectors[at].field
            selectors[at] = selectors[at].model_copy(
                update={"field": f"{field},{term}" if field else term}
            )
    return KubernetesSDConfig(
        role="pod",
        api_server=config.api_server,
        kubeconfig_file=config.kubeconfig_file,
        namespaces=config.namespaces,
        selectors=tuple(selectors),
    )


# --- one job's discovery -------------------------------------------------------------


class LogDiscovery:
    """Every discovered log target of one scrape config (job).

    Call ``changed()`` about once a second (cheap: a stat per file_sd file and a
    counter per Kubernetes config) and, when it says so, ``targets()``; then
    :func:`resolve` each target with the job's relabel rules. ``close()`` stops the
    Kubernetes threads.
    """

    def __init__(
        self,
        file_sd_configs: tuple[FileSDConfig, ...] = (),
        kubernetes_sd_configs: tuple[PodLogsSDConfig, ...] = (),
    ) -> None:
        self._pods = [PodLogsSD(c) for c in kubernetes_sd_configs]
        self._discoverers: list[Discoverer] = [*(FileSD(c) for c in file_sd_configs), *self._pods]

    def changed(self) -> bool:
        # Every discoverer is asked: changed() is also when each takes its news.
        return any([d.changed() for d in self._discoverers])

    def targets(self) -> list[LogTarget]:
        out = []
        for discoverer in self._discoverers:
            for group in discoverer.groups():
                for i, target in enumerate(group.targets):
                    out.append(LogTarget(f"{group.source}/{i}", {**group.labels, **target}))
        return out

    def close(self) -> None:
        for pods in self._pods:
            pods.close()


def resolve(target: LogTarget, rules: Relabeler, job_name: str) -> FileTarget | None:
    """Relabels one target (``job`` defaults to the job's name, as for static
    configs); None when relabeling dropped it or left it without ``__path__``."""
    labels = rules.apply({"job": job_name, **target.labels})
    if labels is None or not labels.get("__path__"):
        return None
    return FileTarget(
        labels["__path__"],
        labels.get("__path_exclude__") or None,
        {k: v for k, v in labels.items() if not k.startswith("__")},
    )
