"""KubernetesSD: Prometheus' kubernetes_sd_config as a ferryman discoverer.

The shipper's asyncio loop asks ``changed()`` about once a second, so the API is
never touched from it: background daemon threads (one Reflector per kind and
namespace) list and watch the API server and feed a store, which rebuilds the
target group of every object an event touches. ``changed()`` only compares a
version counter; ``groups()`` copies the current groups.

Nothing is reported before every list of the role has completed once (Prometheus
waits for all its informers to sync too), so an endpoints group never appears
without the pod labels of its pods. The threads end when ``close()`` is called or
when the KubernetesSD is garbage-collected (a configuration reload drops it).
"""

from __future__ import annotations

import logging
import random
import threading
import weakref
from collections.abc import Callable
from pathlib import Path

from kubernetes import config as kube_config
from kubernetes.client import ApiClient, Configuration

from ..config import KubernetesSDConfig
from ..files import Discoverer
from ..group import TargetGroup
from .labels import (
    Obj,
    build_endpoints,
    build_endpointslice,
    build_node,
    build_pod,
    build_service,
    dependencies,
    service_key,
)
from .reflector import BACKOFF_INITIAL, BACKOFF_MAX, RESOURCES, Reflector, Stream

__all__ = ["KubernetesSD", "TargetStore", "plan_streams"]

log = logging.getLogger("ferryman.edge.discovery")

OWN_NAMESPACE_FILE = Path("/var/run/secrets/kubernetes.io/serviceaccount/namespace")

# The kinds each role lists and watches, the role's own kind first.
ROLE_KINDS = {
    "node": ("node",),
    "pod": ("pod",),
    "service": ("service",),
    "endpoints": ("endpoints", "service", "pod"),
    "endpointslice": ("endpointslice", "service", "pod"),
}
# The selector roles Prometheus accepts for each role. A pod role's node selector
# only narrows attach_metadata's node watch, which ferryman does not implement.
ALLOWED_SELECTORS = {
    "node": ("node",),
    "pod": ("pod", "node"),
    "service": ("service",),
    "endpoints": ("endpoints", "service", "pod"),
    "endpointslice": ("endpointslice", "service", "pod"),
}

Key = tuple[str, str]  # (namespace, name); namespace "" for nodes


def _key(obj: Obj) -> Key:
    meta = obj.get("metadata") or {}
    return str(meta.get("namespace") or ""), str(meta.get("name") or "")


class TargetStore:
    """Objects by kind, and the role's target groups kept in step with them.

    Reflector threads feed it (``expect``, ``replace``, ``apply``); every change
    rebuilds only the groups it touches: the object's own, or for a Service or Pod
    the endpoints/endpointslice groups that use it. ``version`` grows whenever a
    group changed; nothing counts as synced before every expected stream listed.
    ``build``, for a role whose groups come from its own objects alone (node, pod,
    service), replaces Prometheus' group of an object (the log shipper's pod logs).
    """

    def __init__(self, role: str, build: Callable[[Obj], TargetGroup] | None = None) -> None:
        self.role = role
        self._custom_build = build
        self._lock = threading.Lock()
        self._objects: dict[str, dict[Key, Obj]] = {kind: {} for kind in ROLE_KINDS[role]}
        self._groups: dict[Key, TargetGroup] = {}
        self._deps: dict[Key, set[tuple[str, str, str]]] = {}
        self._dependents: dict[tuple[str, str, str], set[Key]] = {}
        self._unsynced: set[Stream] | None = None  # None: streams not known yet
        self.version = 0

    # --- called by the reflector threads --------------------------------------------

    def expect(self, streams: list[Stream]) -> None:
        with self._lock:
            self._unsynced = set(streams)

    def replace(self, stream: Stream, objects: list[Obj]) -> None:
        fresh = {_key(o): o for o in objects}
        with self._lock:
            current = self._objects[stream.kind]
            gone = [k for k in current if stream.namespace in (None, k[0]) and k not in fresh]
            touched = set()
            for key in gone:
                del current[key]
                touched |= self._affected(stream.kind, key)
            for key, obj in fresh.items():
                old = current.get(key)
                if old is not None and _version(old) == _version(obj) and _version(obj):
                    continue
                current[key] = obj
                touched |= self._affected(stream.kind, key)
            changed = self._rebuild(touched)
            if self._unsynced is not None and stream in self._unsynced:
                self._unsynced.discard(stream)
                if not self._unsynced:
                    log.info(
                        "kubernetes_sd: role %s synced: %d groups", self.role, len(self._groups)
                    )
                    changed = True
            if changed:
                self.version += 1

    def apply(self, stream: Stream, event: str, obj: Obj) -> None:
        key = _key(obj)
        with self._lock:
            if event == "DELETED":
                self._objects[stream.kind].pop(key, None)
            else:
                self._objects[stream.kind][key] = obj
            if self._rebuild(self._affected(stream.kind, key)):
                self.version += 1

    # --- called by the shipper -------------------------------------------------------

    def groups(self) -> list[TargetGroup]:
        with self._lock:
            return [self._groups[k] for k in sorted(self._groups)]

    def synced_version(self) -> int | None:
        with self._lock:
            if self._unsynced is None or self._unsynced:
                return None
            return self.version

    # --- internals (lock held) -------------------------------------------------------

    def _affected(self, kind: str, key: Key) -> set[Key]:
        if kind == self.role:
            return {key}
        return set(self._dependents.get((kind, *key), ()))

    def _rebuild(self, keys: set[Key]) -> bool:
        changed = False
        for key in keys:
            obj = self._objects[self.role].get(key)
            self._index(key, set() if obj is None else dependencies(self.role, obj))
            group = None if obj is None else self._build_logged(key, obj)
            if group is None:
                changed |= self._groups.pop(key, None) is not None
            elif self._groups.get(key) != group:
                self._groups[key] = group
                changed = True
        return changed

    def _build_logged(self, key: Key, obj: Obj) -> TargetGroup | None:
        try:
            return self._build(obj)
        except Exception:  # a malformed object must not stop discovery
            log.exception(
                "kubernetes_sd: cannot build the target group of %s %s",
                self.role,
                "/".join(k for k in key if k),
            )
            return None

    def _index(self, key: Key, deps: set[tuple[str, str, str]]) -> None:
        old = self._deps.pop(key, set())
        for dep in old - deps:
            dependents = self._dependents.get(dep)
            if dependents is not None:
                dependents.discard(key)
                if not dependents:
                    del self._dependents[dep]
        for dep in deps - old:
            self._dependents.setdefault(dep, set()).add(key)
        if deps:
            self._deps[key] = deps

    def _build(self, obj: Obj) -> TargetGroup:
        if self._custom_build is not None:
            return self._custom_build(obj)
        if self.role == "node":
            return build_node(obj)
        if self.role == "pod":
            return build_pod(obj)
        if self.role == "service":
            return build_service(obj)
        service_at = service_key(self.role, obj)
        service = self._objects["service"].get(service_at) if service_at else None
        pods = self._objects["pod"]

        def pod(namespace: str, name: str) -> Obj | None:
            return pods.get((namespace, name))

        if self.role == "endpoints":
            return build_endpoints(obj, service, pod)
        return build_endpointslice(obj, service, pod)


def _version(obj: Obj) -> str:
    return str((obj.get("metadata") or {}).get("resourceVersion") or "")


class KubernetesSD(Discoverer):
    """Targets from the Kubernetes API for one ``kubernetes_sd_configs`` entry.

    Connects with ``kubeconfig_file`` when set (``api_server``, when also set,
    overrides its server URL), else to ``api_server`` without credentials, else with
    the in-cluster service account. Configuration problems Prometheus would reject
    at load time (selectors for another role, own_namespace outside a cluster) are
    logged and the offending setting ignored: a shipper keeps running. ``build``: see
    TargetStore.
    """

    def __init__(
        self, config: KubernetesSDConfig, build: Callable[[Obj], TargetGroup] | None = None
    ) -> None:
        self.config = config
        if build is not None and len(ROLE_KINDS[config.role]) > 1:
            raise ValueError(f"role {config.role} builds its groups from several kinds")
        self._store = TargetStore(config.role, build)
        self._stop = threading.Event()
        self._reflectors: list[Reflector] = []
        self._reported: int | None = None
        # The thread gets no reference to self, so that dropping the discoverer
        # (configuration reload) lets the finalizer below stop the threads.
        threading.Thread(
            target=_start,
            args=(config, self._store, self._stop, self._reflectors),
            name=f"kubernetes-sd-{config.role}",
            daemon=True,
        ).start()
        self._finalizer = weakref.finalize(self, _shutdown, self._stop, self._reflectors)

    def changed(self) -> bool:
        version = self._store.synced_version()
        if version is None or version == self._reported:
            return False
        self._reported = version
        return True

    def groups(self) -> list[TargetGroup]:
        if self._store.synced_version() is None:
            return []
        return self._store.groups()

    def close(self) -> None:
        """Stops the list/watch threads (they finish within moments)."""
        self._finalizer()


def _shutdown(stop: threading.Event, reflectors: list[Reflector]) -> None:
    stop.set()
    for reflector in list(reflectors):
        reflector.interrupt()


def _start(
    config: KubernetesSDConfig,
    store: TargetStore,
    stop: threading.Event,
    reflectors: list[Reflector],
) -> None:
    """Builds the API client (retrying until it can) and starts one thread per stream."""
    streams = plan_streams(config, _own_namespace(config))
    client = None
    failures = 0
    while client is None:
        try:
            client = _api_client(config, pool_size=len(streams) + 2)
        except Exception as exc:  # bad kubeconfig, not in a cluster, ...
            delay = min(BACKOFF_MAX, BACKOFF_INITIAL * 2**failures) * random.uniform(1, 1.5)
            failures += 1
            log.error(
                "kubernetes_sd: cannot configure the API client (%s: %s); retrying in %.1fs",
                type(exc).__name__,
                exc,
                delay,
            )
            if stop.wait(delay):
                return
    store.expect(streams)
    for stream in streams:
        reflector = Reflector(client, stream, store, stop)
        reflectors.append(reflector)
        threading.Thread(
            target=reflector.run,
            daemon=True,
            name=f"kubernetes-sd-{stream.kind}-{stream.namespace or 'all'}",
        ).start()
    if stop.is_set():  # stopped while starting: make sure nothing stays blocked
        _shutdown(stop, reflectors)


def _api_client(config: KubernetesSDConfig, pool_size: int) -> ApiClient:
    configuration = Configuration()
    if config.kubeconfig_file is not None:
        kube_config.load_kube_config(  # type: ignore[no-untyped-call]
            config_file=str(config.kubeconfig_file),
            client_configuration=configuration,
            persist_config=False,
        )
    elif config.api_server is None:
        kube_config.load_incluster_config(  # type: ignore[no-untyped-call]
            client_configuration=configuration
        )
    if config.api_server is not None:
        configuration.host = config.api_server.rstrip("/")
    # Every watch holds a connection for minutes; size the pool for all of them.
    configuration.connection_pool_maxsize = pool_size
    client = ApiClient(configuration)
    client.user_agent = "ferryman-edge-metrics/kubernetes-sd"
    return client


def _own_namespace(config: KubernetesSDConfig) -> str | None:
    if not config.namespaces.own_namespace:
        return None
    if config.api_server is not None or config.kubeconfig_file is not None:
        log.error(
            "kubernetes_sd: namespaces.own_namespace needs the in-cluster "
            "configuration (no api_server, no kubeconfig_file); ignoring it"
        )
        return None
    try:
        namespace = OWN_NAMESPACE_FILE.read_text().strip()
    except OSError as exc:
        log.error(
            "kubernetes_sd: cannot read the pod's namespace (%s); ignoring "
            "namespaces.own_namespace",
            exc,
        )
        return None
    return namespace or None


def _namespaces(config: KubernetesSDConfig, own: str | None) -> list[str | None]:
    names = list(dict.fromkeys(config.namespaces.names))
    if own is not None and own not in names:
        names.append(own)
    if not names and not config.namespaces.own_namespace:
        return [None]  # all namespaces
    return list(names)


def plan_streams(config: KubernetesSDConfig, own_namespace: str | None) -> list[Stream]:
    """The list+watch streams a configuration needs: each kind of the role, once per
    namespace (once in all for nodes), with the selectors of that kind."""
    selectors: dict[str, tuple[str | None, str | None]] = {}
    for selector in config.selectors:
        if selector.role not in ALLOWED_SELECTORS[config.role]:
            log.error(
                "kubernetes_sd: role %s supports only %s selectors; ignoring the %s selector",
                config.role,
                ", ".join(ALLOWED_SELECTORS[config.role]),
                selector.role,
            )
        elif selector.role in selectors:
            log.error(
                "kubernetes_sd: duplicated selector role %s; ignoring all but the first",
                selector.role,
            )
        else:
            selectors[selector.role] = (selector.label or None, selector.field or None)
    namespaces = _namespaces(config, own_namespace)
    streams = []
    for kind in ROLE_KINDS[config.role]:
        label, field = selectors.get(kind, (None, None))
        scopes: list[str | None] = namespaces if RESOURCES[kind].namespaced is not None else [None]
        streams += [Stream(kind, namespace, label, field) for namespace in scopes]
    return streams
