"""The shipped alert rules, loaded by a real Prometheus, fire on a real worker.

A Prometheus of the test's own (the stack's binary, PrivatePrometheus) loads
infra/alerts/ferryman.rules.yml as shipped (``rule_files``; FerrymanDeadLetters has
``for: 0m``, so no shortened copy is needed) with 1 s scrape and evaluation intervals,
and scrapes a real ``ferryman worker filter``. Before anything goes wrong the worker is
ready and no alert is active; a garbage record produced to its input topic is
dead-lettered, and FerrymanDeadLetters fires for that function, read from
``/api/v1/alerts``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from ferryman import headers as h
from tests.integration.pipeline import (
    PrivatePrometheus,
    create_topics,
    dead_letters,
    produce,
    raw,
    wait_for,
)

pytestmark = pytest.mark.integration

RULES = Path(__file__).resolve().parents[3] / "infra" / "alerts" / "ferryman.rules.yml"
GARBAGE = b"\x00\xffnot a push request"


def _get(prometheus: PrivatePrometheus, path: str, **params: str) -> Any:
    response = httpx.get(f"{prometheus.base}{path}", params=params, timeout=10)
    response.raise_for_status()
    return response.json()["data"]


def _query(prometheus: PrivatePrometheus, expr: str) -> list[dict[str, Any]]:
    result: list[dict[str, Any]] = _get(prometheus, "/api/v1/query", query=expr)["result"]
    return result


def _alerts(prometheus: PrivatePrometheus, name: str) -> list[dict[str, Any]]:
    return [
        a for a in _get(prometheus, "/api/v1/alerts")["alerts"] if a["labels"]["alertname"] == name
    ]


def _all_evaluated(prometheus: PrivatePrometheus) -> bool:
    rules = [r for g in _get(prometheus, "/api/v1/rules")["groups"] for r in g["rules"]]
    # a rule never evaluated reports Go's zero time, 0001-01-01T00:00:00Z
    return all(r["health"] == "ok" and not r["lastEvaluation"].startswith("0001") for r in rules)


def test_a_dead_letter_fires_the_shipped_rule(
    stack: Any, unique: str, worker: Any, tmp_path: Path
) -> None:
    bootstrap = stack("kafka", "bootstrap")
    source, kept = unique, f"{unique}-kept"
    create_topics(bootstrap, (source, 1), (kept, 1))
    running = worker(
        "filter",
        source,
        {"action": "drop", "line_regex": "/healthz"},
        kafka={"output_topic": kept},
    )

    prometheus = PrivatePrometheus(tmp_path)
    prometheus.config.write_text(
        yaml.safe_dump(
            {
                "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                "rule_files": [str(RULES)],
                "scrape_configs": [
                    {
                        "job_name": f"ferryman-{unique}",
                        "static_configs": [{"targets": [running.settings["http"]["listen"]]}],
                    }
                ],
            }
        )
    )
    prometheus.start()
    try:
        groups = _get(prometheus, "/api/v1/rules")["groups"]
        loaded = {r["name"]: r["health"] for g in groups for r in g["rules"]}
        assert set(loaded) >= {"FerrymanDeadLetters", "FerrymanWorkerNotReady"}
        assert len(loaded) == 8

        # Scraped at 0 and ready, and the rules evaluated on that: nothing active.
        selector = '{function="filter"}'
        wait_for(
            lambda: (
                [float(r["value"][1]) for r in _query(prometheus, f"ferryman_ready{selector}")]
                == [1.0]
                and _query(prometheus, f"ferryman_records_dead_lettered_total{selector}")
            ),
            60,
            "Prometheus scraped the ready worker and its dead-letter counter",
        )
        wait_for(lambda: _all_evaluated(prometheus), 30, "every rule evaluated")
        [counter] = _query(prometheus, f"ferryman_records_dead_lettered_total{selector}")
        assert float(counter["value"][1]) == 0.0
        assert _get(prometheus, "/api/v1/alerts")["alerts"] == []

        produce(bootstrap, source, [raw(GARBAGE, schema=h.SCHEMA_LOKI_PUSH, cluster=unique)])
        wait_for(
            lambda: running.metric("ferryman_records_dead_lettered_total") == 1,
            60,
            "the worker dead-lettered the garbage record",
        )
        [alert] = wait_for(
            lambda: [
                a for a in _alerts(prometheus, "FerrymanDeadLetters") if a["state"] == "firing"
            ],
            60,
            "FerrymanDeadLetters firing",
        )
        assert alert["labels"] == {
            "alertname": "FerrymanDeadLetters",
            "function": "filter",
            "severity": "warning",
        }
        assert alert["annotations"]["summary"] == "filter dead-lettered records"
        assert float(alert["value"]) > 0
        # the record's cluster header stamped the series FerrymanClusterSilent reads
        [stamp] = _query(
            prometheus, f'ferryman_cluster_last_received_timestamp_seconds{{cluster="{unique}"}}'
        )
        assert stamp["metric"]["function"] == "filter" and float(stamp["value"][1]) > 0
        # the other alerts stay quiet: this worker is ready and nothing else went wrong
        assert [a["labels"]["alertname"] for a in _get(prometheus, "/api/v1/alerts")["alerts"]] == [
            "FerrymanDeadLetters"
        ]
    finally:
        prometheus.stop()

    [dead] = dead_letters(bootstrap, running.dead_letter_topic)
    assert dead.value == GARBAGE
