from __future__ import annotations

from typing import Any

import pytest

from edge.discovery.group import TargetGroup
from edge.metrics.config import EdgeMetricsConfig
from edge.metrics.targets import TargetError, build_targets, populate
from ferryman.prom.relabel import compile_rules


def _setup(**job: Any) -> tuple[EdgeMetricsConfig, Any]:
    config = EdgeMetricsConfig.model_validate(
        {
            "global": {"scrape_interval": "30s", "scrape_timeout": "10s"},
            "scrape_configs": [{"job_name": "j", **job}],
        }
    )
    return config, config.scrape_configs[0]


def test_defaults_port_instance_and_url() -> None:
    config, job = _setup(params={"module": ["http_2xx"]})
    target = populate(
        job, config, compile_rules(job.relabel_configs), {"__address__": "web", "__meta_x": "1"}
    )
    assert target is not None
    assert target.url == "http://web:80/metrics?module=http_2xx"
    assert dict(target.labels) == {"instance": "web:80", "job": "j"}
    assert (target.interval, target.timeout) == (30.0, 10.0)


def test_relabel_sees_defaults_and_can_rewrite_everything() -> None:
    config, job = _setup(
        scheme="https",
        relabel_configs=[
            {"source_labels": ["__address__"], "target_label": "__param_target"},
            {"target_label": "__address__", "replacement": "prober:9115"},
            {"source_labels": ["__param_target"], "target_label": "instance"},
            {"target_label": "__metrics_path__", "replacement": "/probe"},
            {"target_label": "__scrape_interval__", "replacement": "1m"},
            {"source_labels": ["__scheme__"], "target_label": "scheme_seen"},
        ],
    )
    target = populate(
        job, config, compile_rules(job.relabel_configs), {"__address__": "example.org"}
    )
    assert target is not None
    assert target.url == "https://prober:9115/probe?target=example.org"
    assert dict(target.labels) == {"instance": "example.org", "job": "j", "scheme_seen": "https"}
    assert target.interval == 60.0


def test_dropped_and_broken_targets() -> None:
    config, job = _setup(
        relabel_configs=[
            {"source_labels": ["env"], "regex": "dev", "action": "drop"},
            {
                "source_labels": ["bad"],
                "regex": "yes",
                "target_label": "__scrape_timeout__",
                "replacement": "2m",
            },
        ]
    )
    rules = compile_rules(job.relabel_configs)
    assert populate(job, config, rules, {"__address__": "a:1", "env": "dev"}) is None
    with pytest.raises(TargetError, match="exceeds interval"):
        populate(job, config, rules, {"__address__": "a:1", "bad": "yes"})
    targets, errors = build_targets(
        job,
        config,
        rules,
        [
            TargetGroup(
                "g",
                (
                    {"__address__": "a:1"},
                    {"__address__": "b:2", "bad": "yes"},
                    {"__address__": "a:1"},
                ),
                {"env": "prod"},
            )
        ],
    )
    assert [t.url for t in targets] == ["http://a:1/metrics"]
    assert len(errors) == 1 and "exceeds interval" in errors[0]


def test_ipv6_address_keeps_or_gets_its_port() -> None:
    config, job = _setup()
    rules = compile_rules(())
    with_port = populate(job, config, rules, {"__address__": "[::1]:9100"})
    without = populate(job, config, rules, {"__address__": "[::1]"})
    assert with_port is not None and with_port.url == "http://[::1]:9100/metrics"
    assert without is not None and without.url == "http://[::1]:80/metrics"
