"""List + watch of one kind of object in one namespace (or all), kept up to date.

A Reflector lists the objects (in pages), hands the full list to its sink, then
watches from the list's resourceVersion and hands over every change. It runs until
its stop event is set and never raises:

- a watch that ends (server timeout, idle read timeout) is resumed from the last
  resourceVersion seen (bookmarks included);
- "410 Gone" (the resourceVersion was compacted away) leads to a fresh list;
- any other failure is logged and retried after an exponential backoff with jitter
  (0.8 s doubling to 30 s): a network failure (server restarting, connection reset)
  resumes the watch from the last resourceVersion, an error answer (5xx, 403, bad
  JSON) starts over with a list, as client-go's reflector does.

Objects travel as the API's JSON (``dict``), parsed here: the official client is
used for configuration, authentication and the request, not for models.
"""

from __future__ import annotations

import contextlib
import json
import logging
import random
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Protocol

import urllib3
from kubernetes.client import ApiClient, CoreV1Api, DiscoveryV1Api
from kubernetes.client.exceptions import ApiException

from .labels import Obj

__all__ = ["RESOURCES", "Reflector", "Resource", "Sink", "Stream"]

log = logging.getLogger("ferryman.edge.discovery")

CONNECT_TIMEOUT = 10.0
# A watch with no event (bookmarks included) for this long is re-opened from the
# last resourceVersion: it also bounds how long a silently dead connection is trusted.
IDLE_READ_TIMEOUT = 90.0
WATCH_TIMEOUT = (300, 600)  # seconds, random in range: servers end watches after this
LIST_TIMEOUT = 60.0
PAGE_SIZE = 500
BACKOFF_INITIAL, BACKOFF_MAX = 0.8, 30.0


@dataclass(frozen=True)
class Resource:
    """A kind of object and the client methods that list/watch it."""

    kind: str
    api: type[CoreV1Api] | type[DiscoveryV1Api]
    all_namespaces: str  # method listing every namespace (or the cluster-scoped list)
    namespaced: str | None  # method listing one namespace; None: cluster-scoped


RESOURCES = {
    "node": Resource("node", CoreV1Api, "list_node", None),
    "pod": Resource("pod", CoreV1Api, "list_pod_for_all_namespaces", "list_namespaced_pod"),
    "service": Resource(
        "service", CoreV1Api, "list_service_for_all_namespaces", "list_namespaced_service"
    ),
    "endpoints": Resource(
        "endpoints", CoreV1Api, "list_endpoints_for_all_namespaces", "list_namespaced_endpoints"
    ),
    "endpointslice": Resource(
        "endpointslice",
        DiscoveryV1Api,
        "list_endpoint_slice_for_all_namespaces",
        "list_namespaced_endpoint_slice",
    ),
}


@dataclass(frozen=True)
class Stream:
    """One list+watch: a kind, a namespace (None: all, or cluster-scoped) and the
    selectors passed to the API server."""

    kind: str
    namespace: str | None = None
    label_selector: str | None = None
    field_selector: str | None = None

    def describe(self) -> str:
        where = f"namespace {self.namespace}" if self.namespace else "all namespaces"
        return f"{self.kind} in {where}" if self.kind != "node" else "nodes"


class Sink(Protocol):
    def replace(self, stream: Stream, objects: list[Obj]) -> None:
        """The complete current list for ``stream`` (initial list or relist)."""

    def apply(self, stream: Stream, event: str, obj: Obj) -> None:
        """One watch event: ``ADDED``, ``MODIFIED`` or ``DELETED``."""


class Gone(Exception):
    """Raised when the server no longer has the requested resourceVersion (410)."""


class WatchError(Exception):
    """Raised when the watch stream carries an ERROR event other than 410."""


class Reflector:
    """Keeps ``sink`` in step with one Stream until ``stop`` is set.

    ``resource_version``, when given, makes the first step a watch from that version
    instead of a list (resuming where an earlier run left off); if the server has
    compacted it away the reflector lists, as after any 410.
    """

    def __init__(
        self,
        client: ApiClient,
        stream: Stream,
        sink: Sink,
        stop: threading.Event,
        resource_version: str | None = None,
    ) -> None:
        self.stream = stream
        self._resume_from = resource_version
        self._sink = sink
        self._stop = stop
        resource = RESOURCES[stream.kind]
        api = resource.api(client)
        if stream.namespace is None or resource.namespaced is None:
            self._call: Any = getattr(api, resource.all_namespaces)
            self._args: tuple[str, ...] = ()
        else:
            self._call = getattr(api, resource.namespaced)
            self._args = (stream.namespace,)
        self._response: urllib3.BaseHTTPResponse | None = None
        self._lock = threading.Lock()

    def run(self) -> None:
        """The thread's body: list, watch, repeat until stopped; never raises."""
        failures = 0
        version = self._resume_from
        while not self._stop.is_set():
            try:
                if version is None:
                    version = self._list()
                version = self._watch(version)
                failures = 0
            except Gone:
                log.info(
                    "kubernetes_sd: watch of %s expired (410 Gone); listing again",
                    self.stream.describe(),
                )
                version = None
            except Exception as exc:  # keep discovering whatever went wrong
                if self._stop.is_set():
                    break
                delay = min(BACKOFF_MAX, BACKOFF_INITIAL * 2**failures)
                delay *= random.uniform(1.0, 1.5)
                failures += 1
                log.warning(
                    "kubernetes_sd: list/watch of %s failed (%s); retrying in %.1fs",
                    self.stream.describe(),
                    _describe(exc),
                    delay,
                )
                if not isinstance(exc, urllib3.exceptions.HTTPError):
                    # An answer we did not expect: start over from a list. A network
                    # failure (server away, connection reset) resumes the watch
                    # instead, as client-go does; a 410 then leads to the list.
                    version = None
                self._stop.wait(delay)

    def interrupt(self) -> None:
        """Unblock a read in progress (from another thread) so ``run`` sees the stop."""
        with self._lock:
            response = self._response
        if response is not None:
            # Already released or closed: nothing to interrupt.
            with contextlib.suppress(Exception):
                response.shutdown()

    # --- one list, one watch ---------------------------------------------------------

    def _request(self, **params: Any) -> urllib3.BaseHTTPResponse:
        selectors = {
            "label_selector": self.stream.label_selector,
            "field_selector": self.stream.field_selector,
        }
        params.update({k: v for k, v in selectors.items() if v})
        try:
            response: urllib3.BaseHTTPResponse = self._call(
                *self._args, _preload_content=False, **params
            )
        except ApiException as exc:
            if exc.status == 410:
                raise Gone(exc.reason) from None
            raise
        return response

    def _list(self) -> str:
        objects: list[Obj] = []
        token: str | None = None
        while True:
            response = self._request(
                limit=PAGE_SIZE, _continue=token, _request_timeout=(CONNECT_TIMEOUT, LIST_TIMEOUT)
            )
            try:
                body = json.loads(response.data)
            finally:
                response.release_conn()
            objects += [_trim(o) for o in body.get("items") or ()]
            meta = body.get("metadata") or {}
            token = meta.get("continue") or None
            if token is None:
                break
        version = str(meta.get("resourceVersion") or "")
        self._sink.replace(self.stream, objects)
        return version

    def _watch(self, version: str) -> str:
        """Watch from ``version`` until the server ends the watch or it goes idle;
        returns the last resourceVersion seen."""
        started = time.monotonic()
        response = self._request(
            watch=True,
            resource_version=version,
            allow_watch_bookmarks=True,
            timeout_seconds=random.randint(*WATCH_TIMEOUT),
            _request_timeout=(CONNECT_TIMEOUT, IDLE_READ_TIMEOUT),
        )
        with self._lock:
            self._response = response
        events = 0
        try:
            for line in _lines(response):
                if self._stop.is_set():
                    break
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        raise Gone(obj.get("message"))
                    raise WatchError(f"{obj.get('code')} {obj.get('reason')}: {obj.get('message')}")
                if kind in ("ADDED", "MODIFIED", "DELETED"):
                    self._sink.apply(self.stream, kind, _trim(obj))
                events += 1
                version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
        except urllib3.exceptions.ReadTimeoutError:
            pass  # idle: re-open from the last version
        except urllib3.exceptions.ProtocolError:
            if not self._stop.is_set() and events == 0:
                raise
        finally:
            with self._lock:
                self._response = None
            response.release_conn()
        if events == 0 and time.monotonic() - started < 1.0 and not self._stop.is_set():
            # A server that closes every watch at once would otherwise be hammered.
            raise WatchError("the server closed the watch immediately")
        return version


def _lines(response: urllib3.BaseHTTPResponse) -> Iterator[bytes]:
    """The newline-delimited JSON events of a watch, as they arrive."""
    pending = b""
    for chunk in response.stream(amt=None, decode_content=True):
        pending += chunk
        *complete, pending = pending.split(b"\n")
        yield from (line for line in complete if line.strip())
    if pending.strip():
        yield pending


def _trim(obj: Any) -> Obj:
    """Drops metadata.managedFields: never used and often the bulk of an object."""
    if not isinstance(obj, dict):
        return {}
    trimmed: dict[str, Any] = obj
    meta = trimmed.get("metadata")
    if isinstance(meta, dict) and "managedFields" in meta:
        trimmed = {**trimmed, "metadata": {k: v for k, v in meta.items() if k != "managedFields"}}
    return trimmed


def _describe(exc: Exception) -> str:
    if isinstance(exc, ApiException):
        detail = ""
        with contextlib.suppress(ValueError, AttributeError):
            detail = str(json.loads(exc.body or "{}").get("message", ""))
        return f"HTTP {exc.status} {exc.reason}" + (f": {detail}" if detail else "")
    return f"{type(exc).__name__}: {exc}"
