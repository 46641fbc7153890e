"""Which files the shipper tails with which labels: static globs (pod path labels,
pod labels), file_sd targets (globs, __path_exclude__, no path parsing), relabeling,
and discovery kept across a reload."""

from __future__ import annotations

import json
import os
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from edge.discovery.files import Discoverer
from edge.discovery.group import TargetGroup
from edge.logs import filetargets
from edge.logs.config import EdgeLogsConfig, load_config
from edge.logs.filetargets import FileTargets, file_labels
from edge.logs.podlabels import PodLabels

UID = "0a1b2c3d"


class Pods(Discoverer):
    """One pod, as PodLogsSD would report it."""

    def changed(self) -> bool:
        return True

    def groups(self) -> list[TargetGroup]:
        return [
            TargetGroup(
                "pod/shop/cart",
                (),
                {
                    "__meta_kubernetes_pod_uid": UID,
                    "__meta_kubernetes_pod_label_app_kubernetes_io_name": "cart",
                    "__meta_kubernetes_pod_label_tier": "back",
                },
            )
        ]


@pytest.fixture(autouse=True)
def pods(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(filetargets, "PodLabels", lambda config: PodLabels(config, Pods()))


@pytest.fixture
def made() -> Iterator[list[FileTargets]]:
    started: list[FileTargets] = []
    yield started
    for targets in started:
        targets.close()


def config(tmp_path: Path, text: str) -> EdgeLogsConfig:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text).replace("TMP", str(tmp_path)))
    return load_config(path)


def touch(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("x\n")
    return str(path)


def labels_of(targets: FileTargets) -> dict[str, dict[str, str]]:
    return {path: dict(wanted.labels) for path, wanted in targets.wanted().items()}


def test_static_pod_globs_get_path_and_pod_labels(tmp_path: Path, made) -> None:
    log = touch(tmp_path / f"var/log/pods/shop_cart_{UID}/app/0.log")
    other = touch(tmp_path / "var/log/pods/shop_gone_ffff/app/0.log")
    targets = FileTargets(
        config(
            tmp_path,
            """
        scrape_configs:
          - job_name: pods
            static_configs: [{labels: {__path__: TMP/var/log/pods/*/*/*.log}}]
            pod_labels: {labels: [app.kubernetes.io/name], prefix: pod_}
            relabel_configs: [{action: labeldrop, regex: pod_uid}]
        ferryman: {host: node-1}
    """,
        )
    )
    made.append(targets)
    found = labels_of(targets)
    assert found[log] == {
        "job": "pods",
        "filename": log,
        "namespace": "shop",
        "pod": "cart",
        "container": "app",
        "pod_app_kubernetes_io_name": "cart",
        "host": "node-1",
    }
    assert "pod_app_kubernetes_io_name" not in found[other]  # a pod not known


def test_file_sd_targets_globs_excludes_and_relabeling(tmp_path: Path, made) -> None:
    a = touch(tmp_path / "logs/a.log")
    touch(tmp_path / "logs/skip.log")
    pod_like = touch(tmp_path / f"sd/var/log/pods/ns_p_{UID}/c/0.log")
    sd = tmp_path / "targets.json"
    sd.write_text(
        json.dumps(
            [
                {
                    "targets": ["localhost"],
                    "labels": {
                        "__path__": f"{tmp_path}/logs/*.log",
                        "__path_exclude__": f"{tmp_path}/logs/skip*",
                        "app": "shop",
                    },
                },
                {
                    "targets": ["localhost"],
                    "labels": {"__path__": f"{tmp_path}/sd/**/*.log", "app": "drop-me"},
                },
                {"targets": ["localhost"], "labels": {"__path__": pod_like, "app": "pod"}},
            ]
        )
    )
    settings = """
        global: {external_labels: {cluster: alpha}}
        scrape_configs:
          - job_name: apps
            file_sd_configs: [{files: [TMP/targets.json]}]
            relabel_configs:
              - {source_labels: [app], regex: drop-me, action: drop}
              - {source_labels: [__meta_filepath], target_label: sd_file}
        ferryman: {host: node-1}
    """
    targets = FileTargets(config(tmp_path, settings))
    made.append(targets)
    assert labels_of(targets) == {}  # nothing until discovery was asked
    assert targets.refresh()
    assert not targets.refresh()  # at most once a second
    found = labels_of(targets)
    assert found == {
        a: {
            "job": "apps",
            "app": "shop",
            "filename": a,
            "sd_file": str(sd),
            "host": "node-1",
            "cluster": "alpha",
        },
        # a pod log path found by discovery: no labels parsed from the path
        pod_like: {
            "job": "apps",
            "app": "pod",
            "filename": pod_like,
            "sd_file": str(sd),
            "host": "node-1",
            "cluster": "alpha",
        },
    }

    sd.write_text(json.dumps([{"targets": ["x"], "labels": {"__path__": a, "app": "new"}}]))
    os.utime(sd, (time.time() + 2, time.time() + 2))
    time.sleep(filetargets.DISCOVERY_POLL)
    assert targets.refresh()
    assert list(labels_of(targets)) == [a]

    # A reload that leaves discovery alone keeps its targets (and watches).
    relabeled = settings.replace("target_label: sd_file", "target_label: from")
    targets.reconfigure(config(tmp_path, relabeled))
    assert labels_of(targets)[a]["from"] == str(sd)


def test_file_labels_read_kubelet_paths() -> None:
    assert file_labels(f"/var/log/pods/shop_cart_{UID}/app/3.log", {"job": "x"}) == {
        "job": "x",
        "filename": f"/var/log/pods/shop_cart_{UID}/app/3.log",
        "namespace": "shop",
        "pod": "cart",
        "pod_uid": UID,
        "container": "app",
    }
    assert file_labels("/var/log/syslog", {}) == {"filename": "/var/log/syslog"}


def test_a_file_claimed_by_an_earlier_job_is_not_claimed_again(tmp_path: Path, made) -> None:
    a = touch(tmp_path / "a.log")
    settings: dict[str, Any] = {
        "scrape_configs": [
            {"job_name": "first", "static_configs": [{"labels": {"__path__": a}}]},
            {"job_name": "second", "static_configs": [{"labels": {"__path__": a}}]},
        ]
    }
    targets = FileTargets(EdgeLogsConfig.model_validate(settings))
    made.append(targets)
    assert targets.wanted()[a].job.job_name == "first"
