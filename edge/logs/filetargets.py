"""Which files the edge log shipper tails, and with which labels.

Per scrape config (job), in this order (a file already claimed is not claimed
again):

- ``static_configs``: each ``__path__`` glob (``**`` allowed) is expanded; a file's
  labels are the static ones, ``filename`` and, for a kubelet pod log path, the
  namespace, pod, pod uid and container read from the path (:func:`file_labels`),
  plus the pod's chosen labels when the job has ``pod_labels``; then the job's
  ``relabel_configs`` run. Such a job's files wait for the first list of pods (at
  most :data:`POD_LABELS_WAIT`), so their first lines do not go out without them.
- ``file_sd_configs`` and ``kubernetes_sd_configs``: discovered label sets are
  relabeled once, when discovery reports a change (:func:`edge.logs.discovery.resolve`),
  into globs; each glob's files, less those of ``__path_exclude__``, get the
  target's labels and ``filename``. No path parsing: their labels come from
  discovery (the pod's ``__meta_kubernetes_*`` labels).

``host`` and the external labels are added where relabeling did not set them.
"""

from __future__ import annotations

import glob
import logging
import os
import re
import time
from dataclasses import dataclass, field

from ferryman.prom.relabel import Relabeler, compile_rules

from .batch import stream_labels
from .config import EdgeLogsConfig, LogScrapeConfig
from .discovery import FileTarget, LogDiscovery, resolve
from .podlabels import PodLabels

__all__ = ["FileTargets", "WantedFile", "file_labels"]

log = logging.getLogger("ferryman.edge.logs")

# /var/log/pods/<namespace>_<pod>_<uid>/<container>/<n>.log
_POD_LOG = re.compile(r"/var/log/pods/([^_/]+)_([^_/]+)_([^/]+)/([^/]+)/[^/]+\.log$")
#: how often discovery is asked whether anything changed
DISCOVERY_POLL = 1.0
#: how long files of a job with pod_labels wait for the first list of pods
POD_LABELS_WAIT = 30.0


def file_labels(path: str, static: dict[str, str]) -> dict[str, str]:
    """Labels of one file before relabeling: the static ones, ``filename`` and, for a
    Kubernetes pod log path, namespace, pod, pod uid and container."""
    labels = {**static, "filename": path}
    match = _POD_LOG.search(path)
    if match:
        labels.update(
            namespace=match.group(1),
            pod=match.group(2),
            pod_uid=match.group(3),
            container=match.group(4),
        )
    return labels


@dataclass(frozen=True, slots=True)
class WantedFile:
    labels: dict[str, str]
    job: LogScrapeConfig


@dataclass
class _Job:
    config: LogScrapeConfig
    rules: Relabeler
    discovery: LogDiscovery | None = None
    pod_labels: PodLabels | None = None
    resolved: list[FileTarget] = field(default_factory=list)
    started: float = field(default_factory=time.monotonic)
    gave_up: bool = False  # waiting for the first list of pods


class FileTargets:
    """The files of every scrape config; :meth:`reconfigure` on reload, :meth:`close`
    at the end (stops Kubernetes watches)."""

    def __init__(self, config: EdgeLogsConfig) -> None:
        self.config = config
        self._jobs: list[_Job] = []
        self._polled = 0.0
        self.reconfigure(config)

    def reconfigure(self, config: EdgeLogsConfig) -> None:
        """A job whose discovery (or pod labels) settings did not change keeps its
        watches, so a reload neither relists nor loses its targets for a moment."""
        old: dict[str, list[_Job]] = {}
        for known in self._jobs:
            old.setdefault(known.config.job_name, []).append(known)
        self._jobs = []
        self.config = config
        for job in config.scrape_configs:
            state = _Job(job, compile_rules(job.relabel_configs))
            previous = old[job.job_name].pop(0) if old.get(job.job_name) else None
            if job.file_sd_configs or job.kubernetes_sd_configs:
                if (
                    previous is not None
                    and previous.discovery is not None
                    and (previous.config.file_sd_configs, previous.config.kubernetes_sd_configs)
                    == (job.file_sd_configs, job.kubernetes_sd_configs)
                ):
                    state.discovery, previous.discovery = previous.discovery, None
                    self._resolve(state)
                else:
                    state.discovery = LogDiscovery(job.file_sd_configs, job.kubernetes_sd_configs)
            if job.pod_labels is not None:
                if (
                    previous is not None
                    and previous.pod_labels is not None
                    and previous.config.pod_labels == job.pod_labels
                ):
                    state.pod_labels, previous.pod_labels = previous.pod_labels, None
                    state.started, state.gave_up = previous.started, previous.gave_up
                else:
                    state.pod_labels = PodLabels(job.pod_labels)
            if previous is not None:
                _close(previous)
            self._jobs.append(state)
        for gone in old.values():
            for state in gone:
                _close(state)

    def refresh(self) -> bool:
        """Asks discovery (at most once a :data:`DISCOVERY_POLL`) whether targets
        changed and relabels them if so; True when the files should be found again."""
        now = time.monotonic()
        if now - self._polled < DISCOVERY_POLL:
            return False
        self._polled = now
        changed = False
        for state in self._jobs:
            if state.discovery is not None and state.discovery.changed():
                self._resolve(state)
                changed = True
        return changed

    def _resolve(self, state: _Job) -> None:
        assert state.discovery is not None
        name = state.config.job_name
        found = [resolve(t, state.rules, name) for t in state.discovery.targets()]
        state.resolved = [t for t in found if t is not None]
        log.info(
            "job %s: %d discovered log targets (%d dropped by relabeling)",
            name,
            len(state.resolved),
            len(found) - len(state.resolved),
        )

    def wanted(self) -> dict[str, WantedFile]:
        """Every file to tail now, with its labels and job."""
        host = self.config.ferryman.host
        external = self.config.global_.external_labels
        out: dict[str, WantedFile] = {}
        for state in self._jobs:
            job = state.config
            for static in job.static_configs if self._pods_known(state) else ():
                for path in _files(static.labels.get("__path__", ""), out):
                    labels = file_labels(path, static.labels)
                    if state.pod_labels is not None:
                        labels = state.pod_labels.enrich(labels)
                    relabeled = state.rules.apply(
                        {**labels, "job": static.labels.get("job", job.job_name)}
                    )
                    if relabeled is not None:
                        out[path] = WantedFile(stream_labels(relabeled, host, external), job)
            for target in state.resolved:
                excluded = set(_files(target.exclude, {})) if target.exclude else set()
                for path in _files(target.path, out):
                    if path not in excluded:
                        out[path] = WantedFile(
                            stream_labels({**target.labels, "filename": path}, host, external), job
                        )
        return out

    @staticmethod
    def _pods_known(state: _Job) -> bool:
        if state.pod_labels is None or state.pod_labels.synced:
            return True
        if time.monotonic() - state.started < POD_LABELS_WAIT:
            return False
        if not state.gave_up:
            state.gave_up = True
            log.warning(
                "job %s: no list of pods after %.0fs; tailing its files without "
                "pod labels until there is one",
                state.config.job_name,
                POD_LABELS_WAIT,
            )
        return True

    def close(self) -> None:
        for state in self._jobs:
            _close(state)
        self._jobs = []


def _files(pattern: str, taken: dict[str, WantedFile]) -> list[str]:
    return [
        p
        for p in sorted(glob.glob(pattern, recursive=True))
        if p not in taken and os.path.isfile(p)
    ]


def _close(state: _Job) -> None:
    if state.discovery is not None:
        state.discovery.close()
    if state.pod_labels is not None:
        state.pod_labels.close()
