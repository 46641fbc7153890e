"""The pod-label cache over a stand-in pod feed (groups built from objects a real API
server served, ``tests/unit/edge/kubernetes_sd_objects.json``); the real list+watch
is exercised in tests/integration/edge/test_logs_discovery.py."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from pydantic import ValidationError

from edge.discovery.files import Discoverer
from edge.discovery.group import TargetGroup
from edge.logs import podlabels
from edge.logs.discovery import build_pod_logs
from edge.logs.podlabels import PodLabels, PodLabelsConfig

RECORDED = json.loads((Path(__file__).parents[1] / "kubernetes_sd_objects.json").read_text())
WEB_UID = "8091fdfd-c7be-42b1-9c0f-d9809ecc8a93"
BATCH_UID = "e894dddc-7434-40cb-a779-1886e84a1e38"


def pod(name: str) -> dict[str, Any]:
    return copy.deepcopy(next(p for p in RECORDED["pods"] if p["metadata"]["name"] == name))


class Feed(Discoverer):
    """What PodLogsSD reports, set by the test."""

    def __init__(self) -> None:
        self.pods: list[dict[str, Any]] = []
        self.fresh = False

    def set(self, *pods: dict[str, Any]) -> None:
        self.pods, self.fresh = list(pods), True

    def changed(self) -> bool:
        fresh, self.fresh = self.fresh, False
        return fresh

    def groups(self) -> list[TargetGroup]:
        return [build_pod_logs(p) for p in self.pods]


def cache(feed: Feed, **settings: Any) -> PodLabels:
    return PodLabels(PodLabelsConfig.model_validate(settings), feed)


def test_chosen_labels_are_added_under_sanitized_names() -> None:
    feed = Feed()
    labels = cache(feed, labels=["app.kubernetes.io/name", "missing"], prefix="pod_")
    assert not labels.synced
    assert labels.enrich({"pod_uid": WEB_UID}) == {"pod_uid": WEB_UID}  # not known yet
    feed.set(pod("web-7d4b9"), pod("batch-x"))
    assert labels.synced
    assert labels.enrich({"pod_uid": WEB_UID, "filename": "/f"}) == {
        "pod_uid": WEB_UID,
        "filename": "/f",
        "pod_app_kubernetes_io_name": "web",
    }
    assert labels.enrich({"pod_uid": BATCH_UID}) == {"pod_uid": BATCH_UID}  # no such label
    assert labels.enrich({"filename": "/f"}) == {"filename": "/f"}  # not a pod's file


def test_every_label_and_the_files_own_labels_win() -> None:
    feed = Feed()
    labels = cache(feed, labels=["*"])
    feed.set(pod("web-7d4b9"))
    assert labels.enrich({"pod_uid": WEB_UID, "app": "mine"}) == {
        "pod_uid": WEB_UID,
        "app": "mine",
        "app_kubernetes_io_name": "web",
        "topology_kubernetes_io_zone": "z1",
    }
    meta = labels.meta_labels(WEB_UID)
    assert meta is not None and meta["__meta_kubernetes_pod_name"] == "web-7d4b9"
    assert meta["__meta_kubernetes_namespace"] == "shop"
    assert meta["__meta_kubernetes_pod_controller_name"] == "web-7d4b"


def test_label_changes_are_followed() -> None:
    feed = Feed()
    labels = cache(feed, labels=["app"])
    feed.set(pod("web-7d4b9"))
    assert labels.labels(WEB_UID) == {"app": "web"}
    changed = pod("web-7d4b9")
    changed["metadata"]["labels"]["app"] = "shop"
    feed.set(changed)
    assert labels.labels(WEB_UID) == {"app": "shop"}


def test_a_deleted_pod_stays_known_for_keep_deleted(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1000.0]
    monkeypatch.setattr(podlabels, "time", SimpleNamespace(monotonic=lambda: clock[0]))
    feed = Feed()
    labels = cache(feed, labels=["app"], keep_deleted="1m")
    feed.set(pod("web-7d4b9"))
    assert labels.labels(WEB_UID) == {"app": "web"}
    feed.set()
    assert labels.labels(WEB_UID) == {"app": "web"}  # the deletion is seen at 1000
    clock[0] += 59
    assert labels.labels(WEB_UID) == {"app": "web"}
    clock[0] += 2
    assert labels.labels(WEB_UID) == {}
    assert labels.meta_labels(WEB_UID) is None


def test_the_cache_is_bounded() -> None:
    feed = Feed()
    labels = cache(feed, labels=["app"], max_pods=1)
    web, batch = pod("web-7d4b9"), pod("batch-x")
    feed.set(web, batch)
    known = [uid for uid in (WEB_UID, BATCH_UID) if labels.meta_labels(uid) is not None]
    assert len(known) == 1
    # Deleted pods are bounded too: only the most recently deleted one stays.
    others = []
    for i in range(3):
        other = copy.deepcopy(batch)
        other["metadata"]["uid"] = f"uid-{i}"
        others.append(other)
    for other in others:
        feed.set(other)
        labels.synced  # noqa: B018  (refreshes)
    feed.set()
    labels.synced  # noqa: B018
    assert [labels.meta_labels(f"uid-{i}") is not None for i in range(3)] == [False, False, True]


def test_config() -> None:
    config = PodLabelsConfig.model_validate(
        {"labels": ["app"], "node_name": "n", "keep_deleted": "10m"}
    )
    assert config.keep_deleted == 600
    assert PodLabelsConfig.model_validate(config.model_dump()) == config
    with pytest.raises(ValidationError):
        PodLabelsConfig.model_validate({"label": ["typo"]})
    assert all(f.description for f in PodLabelsConfig.model_fields.values())
