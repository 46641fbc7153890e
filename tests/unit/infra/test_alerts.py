"""The alert rules (infra/alerts/ferryman.rules.yml) pass ``promtool check rules`` and
their unit tests (infra/alerts/tests/*.yml) pass ``promtool test rules``, the real
Prometheus rule engine; every alert has a case where it fires and one where it does not;
and every series the rules read is one a ferryman process declares.

Never skipped: promtool comes with Debian's ``prometheus`` package (the stack's
Prometheus); where it is missing the project's apt installer puts it there, and where
that fails, the test fails.
"""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import yaml

from infra.local.install import apt_install

ROOT = Path(__file__).parents[3]
ALERTS = ROOT / "infra" / "alerts"
RULES = ALERTS / "ferryman.rules.yml"
TESTS = sorted((ALERTS / "tests").glob("*.yml"))

#: Every series the rules read, and the source file that declares it.
EXPOSED = {
    "ferryman_consumer_lag": "workers/runtime_metrics.py",
    "ferryman_records_dead_lettered_total": "workers/runtime_metrics.py",
    "ferryman_ready": "workers/runtime_metrics.py",
    "ferryman_cluster_last_received_timestamp_seconds": "workers/runtime_metrics.py",
    "ferryman_samples_dropped_total": "edge/metrics/shipper.py",
    # the edge metrics shipper's report series for each target it scrapes
    "up": "edge/metrics/scrape.py",
}
ALERT_NAMES = {
    "FerrymanConsumerLagGrowing",
    "FerrymanDeadLetters",
    "FerrymanEdgeBufferDropping",
    "FerrymanClusterTargetsDown",
    "FerrymanClusterJobDown",
    "FerrymanWorkerNotReady",
    "FerrymanClusterSilent",
}


def _promtool() -> str:
    if shutil.which("promtool") is None:
        apt_install("promtool", ["prometheus"])
    found = shutil.which("promtool")
    assert found is not None, "promtool is still missing after installing prometheus"
    return found


def _rules() -> list[dict[str, Any]]:
    doc = yaml.safe_load(RULES.read_text())
    return [rule for group in doc["groups"] for rule in group["rules"]]


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, cwd=ALERTS, timeout=120)


def test_promtool_check_rules_accepts_the_file() -> None:
    done = _run(_promtool(), "check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS: 8 rules found" in done.stdout


def test_promtool_unit_tests_pass() -> None:
    assert TESTS, "no rule unit tests in infra/alerts/tests"
    done = _run(_promtool(), "test", "rules", *map(str, TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "FAILED" not in done.stdout


def test_each_alert_is_tested_firing_and_not_firing() -> None:
    alerts = {r["alert"] for r in _rules() if "alert" in r}
    assert alerts == ALERT_NAMES
    firing: set[str] = set()
    quiet: set[str] = set()
    for path in TESTS:
        for case in yaml.safe_load(path.read_text())["tests"]:
            for check in case.get("alert_rule_test", []):
                (firing if check["exp_alerts"] else quiet).add(check["alertname"])
    assert firing == ALERT_NAMES, f"never seen firing: {ALERT_NAMES - firing}"
    assert quiet == ALERT_NAMES, f"never seen quiet: {ALERT_NAMES - quiet}"


def test_alerts_carry_severity_for_and_the_three_annotations() -> None:
    for rule in _rules():
        if "alert" not in rule:
            continue
        assert "for" in rule, rule["alert"]
        assert rule["labels"]["severity"] in {"warning", "critical"}, rule["alert"]
        assert set(rule["annotations"]) == {"summary", "description", "runbook"}, rule["alert"]


def test_the_rules_read_only_series_ferryman_declares() -> None:
    recorded = {r["record"] for r in _rules() if "record" in r}
    read: set[str] = set()
    for rule in _rules():
        expr = re.sub(r"\{[^}]*\}", "", rule["expr"])  # label matchers
        expr = re.sub(r"\[[^\]]*\]", "", expr)  # ranges
        expr = re.sub(r"\b(?:by|on|without|ignoring)\s*\([^)]*\)", "", expr)  # grouping
        for name in re.findall(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
            if re.search(rf"(?<![A-Za-z0-9_:]){re.escape(name)}\s*\(", expr):
                continue  # a function, or an aggregation
            if name not in {"and", "or", "unless"}:
                read.add(name)
    assert read - recorded == set(EXPOSED)
    for name, source in EXPOSED.items():
        assert f'"{name}"' in (ROOT / source).read_text(), f"{name} not declared in {source}"
