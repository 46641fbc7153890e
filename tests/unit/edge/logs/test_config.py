"""The shipper's configuration: journal, file_sd, Kubernetes pod discovery and pod
labels sections, and every error by its dotted path."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from edge.logs.config import EdgeLogsConfig, load_config
from ferryman.errors import ConfigError

FULL = """
positions: {filename: /var/lib/ferryman/positions.json}
scrape_configs:
  - job_name: journal
    journal:
      max_age: 12h
      path: /var/log/journal
      json: false
      matches: _TRANSPORT=kernel + PRIORITY=3
      units: [kubelet.service]
      labels: {job: systemd-journal}
    relabel_configs:
      - source_labels: [__journal__systemd_unit]
        target_label: unit
  - job_name: apps
    file_sd_configs:
      - files: [/etc/ferryman/logs/*.json]
        refresh_interval: 1m
  - job_name: pods
    kubernetes_sd_configs:
      - role: pod
        node_name: node-a
        pod_logs_directory: /var/log/pods
        namespaces: {names: [shop]}
    relabel_configs:
      - {source_labels: [__meta_kubernetes_namespace], target_label: namespace}
  - job_name: static-pods
    static_configs:
      - labels: {__path__: /var/log/pods/*/*/*.log}
    pod_labels:
      labels: [app.kubernetes.io/name, tier]
      prefix: pod_
      keep_deleted: 10m
"""


def _load(tmp_path: Path, text: str) -> EdgeLogsConfig:
    path = tmp_path / "config.yaml"
    path.write_text(textwrap.dedent(text))
    return load_config(path)


def _errors(tmp_path: Path, text: str) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        _load(tmp_path, text)
    return caught.value.errors


def test_journal_discovery_and_pod_labels_sections_parse(tmp_path: Path) -> None:
    config = _load(tmp_path, FULL)
    journal, apps, pods, static = config.scrape_configs
    assert journal.journal is not None
    assert journal.journal.max_age == 12 * 3600
    assert journal.journal.path == Path("/var/log/journal")
    assert journal.journal.units == ("kubelet.service",)
    assert journal.journal.labels == {"job": "systemd-journal"}
    assert apps.file_sd_configs[0].files == ("/etc/ferryman/logs/*.json",)
    assert apps.file_sd_configs[0].refresh_interval == 60
    [sd] = pods.kubernetes_sd_configs
    assert (sd.role, sd.node_name, sd.pod_logs_directory) == (
        "pod",
        "node-a",
        Path("/var/log/pods"),
    )
    assert static.pod_labels is not None
    assert static.pod_labels.labels == ("app.kubernetes.io/name", "tier")
    assert static.pod_labels.keep_deleted == 600
    assert (static.journal, static.file_sd_configs, static.kubernetes_sd_configs) == (None, (), ())


def test_defaults_of_the_new_sections(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        """
        scrape_configs:
          - job_name: j
            journal: {}
          - job_name: k
            kubernetes_sd_configs: [{}]
    """,
    )
    journal, pods = config.scrape_configs
    assert journal.journal is not None and journal.journal.max_age == 7 * 3600
    assert journal.journal.path is None and not journal.journal.json_
    [sd] = pods.kubernetes_sd_configs
    assert (sd.role, sd.node_name, sd.pod_logs_directory) == ("pod", None, Path("/var/log/pods"))
    assert pods.pod_labels is None


def test_every_pod_label_as_a_plain_star(tmp_path: Path) -> None:
    config = _load(
        tmp_path,
        """
        scrape_configs:
          - job_name: p
            static_configs: [{labels: {__path__: /var/log/pods/*/*/*.log}}]
            pod_labels: {labels: '*'}
    """,
    )
    pod_labels = config.scrape_configs[0].pod_labels
    assert pod_labels is not None and pod_labels.labels == ("*",)


def test_errors_are_listed_by_dotted_path(tmp_path: Path) -> None:
    errors = _errors(
        tmp_path,
        """
        scrape_configs:
          - job_name: j
            journal: {max_age: forever, matches: lower=case, colour: blue}
          - job_name: k
            kubernetes_sd_configs: [{role: node}]
            file_sd_configs: [{refresh_interval: 1m}]
          - job_name: p
            static_configs: [{labels: {__path__: /x}}]
            pod_labels: {labels: [app], max_pods: 0}
    """,
    )
    assert sorted(e.split(":")[0] for e in errors) == [
        "scrape_configs.0.journal.colour",
        "scrape_configs.0.journal.matches",
        "scrape_configs.0.journal.max_age",
        "scrape_configs.1.file_sd_configs.0.files",
        "scrape_configs.1.kubernetes_sd_configs.0.role",
        "scrape_configs.2.pod_labels.max_pods",
    ]


def test_a_journal_takes_no_pipeline_stages_and_one_job_name_once(tmp_path: Path) -> None:
    errors = _errors(
        tmp_path,
        """
        scrape_configs:
          - job_name: j
            journal: {path: /var/log/journal, files: [/x.journal]}
          - job_name: s
            journal: {}
            pipeline_stages: [{json: {expressions: {level: }}}]
    """,
    )
    assert errors == [
        "scrape_configs.0.journal: Value error, set either path or files, not both",
        "scrape_configs.1: Value error, pipeline_stages do not run on journal entries: "
        "give the journal a scrape config of its own, without pipeline_stages",
    ]
    errors = _errors(
        tmp_path,
        """
        scrape_configs:
          - {job_name: j, journal: {}}
          - {job_name: j, journal: {units: [a.service]}}
    """,
    )
    assert errors == [
        "<root>: Value error, scrape_configs: job_name j is used by more "
        "than one journal scrape config"
    ]
