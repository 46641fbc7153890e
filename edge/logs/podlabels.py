"""Pod labels for files found by static globs over the kubelet's pod log directory.

A static glob such as ``/var/log/pods/*/*/*.log`` yields files whose path names the
pod's namespace, name and uid (the shipper's ``file_labels`` reads them) but not the
pod's labels. :class:`PodLabels` keeps a watch-based cache, pod uid → the pod's
``__meta_kubernetes_*`` labels (namespace, name, uid, labels, annotations,
controller, ...), from the same list+watch the metrics shipper uses (this node's
pods only; relists after an API server restart or a 410 Gone), and adds the chosen
pod labels to a file's labels.

Bounds: the pods of one node (field selector ``spec.nodeName``), at most
``max_pods`` of them; a deleted pod stays known for ``keep_deleted`` (its last
lines are usually still being read), at most ``max_pods`` such pods, oldest first
out. Calls come from the shipper's thread; the API is only touched from the
list/watch threads.
"""

from __future__ import annotations

import collections
import logging
import time
from collections.abc import Mapping
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from edge.discovery.config import KubernetesSDNamespaces
from edge.discovery.files import Discoverer
from ferryman.units import Duration

from .discovery import PodLogsSD, PodLogsSDConfig

__all__ = ["PodLabels", "PodLabelsConfig"]

log = logging.getLogger("ferryman.edge.logs")

META = "__meta_kubernetes_"
LABEL = META + "pod_label_"
UID = META + "pod_uid"


class PodLabelsConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    labels: tuple[str, ...] = Field(
        (),
        description="Pod label keys to add to a pod's files, e.g. "
        "app.kubernetes.io/name; '*': every label. Default: none.",
    )
    prefix: str = Field(
        "",
        description="Put before each added label's name (default "
        "none); the name is the key with every character "
        "outside [a-zA-Z0-9_] made _.",
    )
    api_server: str | None = Field(None, description="API server URL (default: in-cluster).")
    kubeconfig_file: Path | None = Field(None, description="kubeconfig to use instead.")
    node_name: str | None = Field(None, description="This node (default: $NODE_NAME).")
    namespaces: KubernetesSDNamespaces = Field(
        default_factory=KubernetesSDNamespaces, description="Namespaces to watch (default: all)."
    )
    keep_deleted: Duration = Field(
        300.0, description="How long a deleted pod's labels stay known (default 5m)."
    )
    max_pods: int = Field(
        1000,
        ge=1,
        description="Pods known at most, and deleted pods kept at most (default 1000 each).",
    )


class PodLabels:
    """Pod uid → labels, for enriching the labels of pod log files.

    ``pods``: where pod groups come from; default a PodLogsSD for ``config`` (pass
    one to share it with log discovery, or a stand-in in tests).
    """

    def __init__(self, config: PodLabelsConfig, pods: Discoverer | None = None) -> None:
        # Imported here: it loads the Kubernetes client (see edge.logs.discovery).
        from edge.discovery.kubernetes.labels import sanitize_label_name

        self.config = config
        self._sd = (
            pods
            if pods is not None
            else PodLogsSD(
                PodLogsSDConfig(
                    api_server=config.api_server,
                    kubeconfig_file=config.kubeconfig_file,
                    node_name=config.node_name,
                    namespaces=config.namespaces,
                )
            )
        )
        self._pods: dict[str, Mapping[str, str]] = {}
        self._deleted: collections.OrderedDict[str, tuple[float, Mapping[str, str]]] = (
            collections.OrderedDict()
        )
        self._synced = False
        self._over_bound_logged = False
        wanted = config.labels
        self._all = "*" in wanted
        self._chosen = {
            LABEL + sanitize_label_name(k): config.prefix + sanitize_label_name(k)
            for k in wanted
            if k != "*"
        }

    @property
    def synced(self) -> bool:
        """Whether the first list of pods has completed."""
        self._refresh()
        return self._synced

    def meta_labels(self, uid: str) -> Mapping[str, str] | None:
        """The pod's ``__meta_kubernetes_*`` labels (as the pod role gives them), or
        None for a pod not known (yet, or any more)."""
        self._refresh()
        found = self._pods.get(uid)
        if found is None and uid in self._deleted:
            found = self._deleted[uid][1]
        return found

    def labels(self, uid: str) -> dict[str, str]:
        """The chosen labels of the pod with this uid; empty when it is not known."""
        meta = self.meta_labels(uid)
        if meta is None:
            return {}
        if self._all:
            return {
                self.config.prefix + name[len(LABEL) :]: value
                for name, value in meta.items()
                if name.startswith(LABEL)
            }
        return {out: meta[name] for name, out in self._chosen.items() if name in meta}

    def enrich(self, labels: Mapping[str, str], uid_label: str = "pod_uid") -> dict[str, str]:
        """``labels`` plus the chosen pod labels of the pod named by ``labels[uid_label]``
        (the shipper's ``file_labels`` sets ``pod_uid`` for kubelet paths); a label the
        file already has is left as it is."""
        uid = labels.get(uid_label)
        if not uid:
            return dict(labels)
        return {**self.labels(uid), **labels}

    def close(self) -> None:
        """Stops the list/watch threads."""
        if isinstance(self._sd, PodLogsSD):
            self._sd.close()

    def _refresh(self) -> None:
        now = time.monotonic()
        while self._deleted:
            oldest, (since, _) = next(iter(self._deleted.items()))
            if now - since < self.config.keep_deleted:
                break
            del self._deleted[oldest]
        if not self._sd.changed():
            return
        self._synced = True
        fresh: dict[str, Mapping[str, str]] = {}
        for group in self._sd.groups():
            uid = group.labels.get(UID)
            if not uid:
                continue
            if len(fresh) >= self.config.max_pods:
                if not self._over_bound_logged:
                    self._over_bound_logged = True
                    log.warning(
                        "pod labels: more than max_pods (%d) pods on this node; "
                        "the others' files get no pod labels",
                        self.config.max_pods,
                    )
                break
            fresh[uid] = group.labels
        for uid, labels in self._pods.items():
            if uid not in fresh:
                self._deleted[uid] = (now, labels)
                self._deleted.move_to_end(uid)
        for uid in fresh:
            self._deleted.pop(uid, None)
        while len(self._deleted) > self.config.max_pods:
            self._deleted.popitem(last=False)
        self._pods = fresh
