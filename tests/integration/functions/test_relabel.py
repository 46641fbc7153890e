"""relabel (topic → topic) and remote write with its own relabeling, on the real stack."""

from __future__ import annotations

import httpx

from tests.integration.pipeline import (
    create_topics,
    dead_letters,
    produce_series,
    wait_for,
)

RULES = [
    {"source_labels": ["sid"], "regex": r"\d+-[05]", "action": "drop"},
    {"target_label": "tenant", "replacement": "team-a"},
    {"action": "labeldrop", "regex": "cluster"},
]


def _series(base: str, metric: str) -> list[dict[str, str]]:
    response = httpx.get(f"{base}/api/v1/series", params={"match[]": metric}, timeout=10)
    response.raise_for_status()
    found: list[dict[str, str]] = response.json()["data"]
    return found


def _expected(sent: set[str]) -> set[str]:
    return {sid for sid in sent if not sid.endswith(("-0", "-5"))}


def test_relabel_transform_between_topics(stack, unique, worker):
    bootstrap = stack("kafka", "bootstrap")
    raw, relabeled = unique, f"{unique}-out"
    create_topics(bootstrap, (raw, 2), (relabeled, 2))
    metric = f"rl_{unique}"
    sent = produce_series(
        bootstrap, raw, metric, messages=10, series_per_message=10, extra=[(b"garbage", None)]
    )
    relabel = worker(
        "relabel",
        raw,
        {"metric_relabel_configs": RULES},
        kafka={"output_topic": relabeled},
        batch={"max_records": 500},
    )
    worker(
        "prometheus_remote_write",
        relabeled,
        {"url": stack("prometheus", "remote_write")},
        batch={"max_records": 500},
    )
    wait_for(lambda: relabel.committed() == 11, 60, "input committed")
    found = wait_for(
        lambda: (
            len(_series(stack("prometheus", "http"), metric)) == len(_expected(sent))
            and _series(stack("prometheus", "http"), metric)
        ),
        60,
        "relabeled series in Prometheus",
    )
    assert {s["sid"] for s in found} == _expected(sent)
    assert all(s["tenant"] == "team-a" and "cluster" not in s for s in found)
    dead = dead_letters(bootstrap, relabel.dead_letter_topic, timeout_ms=4000)
    assert [d.value for d in dead] == [b"garbage"]
    assert dict(dead[0].headers)["ferryman.error"].startswith(b"not a remote-write message")


def test_remote_write_with_its_own_relabeling(stack, unique, worker):
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (unique, 1))
    metric = f"rl_{unique}"
    sent = produce_series(bootstrap, unique, metric, messages=4, series_per_message=10)
    running = worker(
        "prometheus_remote_write",
        unique,
        {"url": stack("victoriametrics", "remote_write"), "metric_relabel_configs": RULES},
        batch={"max_records": 500},
    )
    wait_for(lambda: running.committed() == 4, 60, "committed")
    base = stack("victoriametrics", "http")

    def found() -> list[dict[str, str]]:
        httpx.get(f"{base}/internal/force_flush", timeout=10)
        return _series(base, metric)

    series = wait_for(
        lambda: len(found()) == len(_expected(sent)) and found(),
        60,
        "relabeled series in VictoriaMetrics",
    )
    assert {s["sid"] for s in series} == _expected(sent)
    assert all(s["tenant"] == "team-a" and "cluster" not in s for s in series)
