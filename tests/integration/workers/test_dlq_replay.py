"""``ferryman dlq replay`` against the real Kafka, with the real ``loki`` sink writing to
VictoriaLogs: a worker pointed at a wrong push path dead-letters every record (the
backend answers 400 for each), the path is fixed, the dead letters are replayed into
the source topic and a worker with the right path delivers them."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from kafka import KafkaConsumer, KafkaProducer, TopicPartition

from ferryman import headers as h
from ferryman.wire.loki import Entry, Stream, encode_push_request
from ferryman.wire.remote_write import snappy_compress
from tests.integration.pipeline import ROOT, Worker, committed_total, create_topics, wait_for

GARBAGE = b"\x00\xffnot snappy at all"


def _settings(stack, topic: str, push_path: str) -> dict[str, Any]:
    return {
        "kafka": {
            "bootstrap_servers": stack("kafka", "bootstrap"),
            "input_topic": topic,
            "group_id": f"g-{topic}",
            "dead_letter_topic": f"{topic}-dlq",
        },
        "batch": {"max_records": 50, "max_wait_s": 0.2},
        "retry": {"initial_backoff_s": 0.2, "max_backoff_s": 1.0},
        "shutdown_deadline_s": 10,
        "config": {"url": stack("victorialogs", "http"), "push_path": push_path},
    }


def _produce(bootstrap: str, topic: str, job: str, messages: int) -> set[str]:
    """Loki push messages of one line each, then one record that is not one; returns the
    lines sent."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, acks="all")
    base = time.time_ns() - 60 * 10**9
    lines = set()
    for m in range(messages):
        line = f"replayed line {m}"
        lines.add(line)
        producer.send(
            topic,
            key=f"k{m}".encode(),
            value=snappy_compress(
                encode_push_request([Stream({"job": job}, [Entry(base + m, line)])])
            ),
            headers=[(h.SCHEMA, h.SCHEMA_LOKI_PUSH), (h.CLUSTER, b"alpha")],
        )
    producer.send(topic, key=b"garbage", value=GARBAGE)
    producer.flush(timeout=30)
    producer.close()
    return lines


def _stored(stack, job: str) -> list[str]:
    response = httpx.get(
        f"{stack('victorialogs', 'http')}/select/logsql/query",
        params={"query": f'job:="{job}"', "limit": "10000"},
        timeout=30,
    )
    response.raise_for_status()
    return sorted(json.loads(row)["_msg"] for row in response.text.splitlines() if row.strip())


def _records(bootstrap: str, topic: str) -> list[Any]:
    consumer = KafkaConsumer(
        bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=3000
    )
    tp = TopicPartition(topic, 0)
    consumer.assign([tp])
    end = consumer.end_offsets([tp])[tp]
    got: list[Any] = []
    while consumer.position(tp) < end:
        got.extend(consumer.poll(timeout_ms=1000).get(tp, []))
    consumer.close()
    return got


def _replay(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ferryman", "dlq", "replay", "--config", str(config), *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture
def dead_lettered(stack, unique, tmp_path, processes):
    """Six good records and one garbage record, all dead-lettered by a loki worker
    with a wrong push path; returns (lines, config path of the fixed worker)."""
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (unique, 1), (f"{unique}-dlq", 1))
    lines = _produce(bootstrap, unique, unique, 6)
    broken = processes(Worker(tmp_path, "loki", _settings(stack, unique, "/wrong/path")))
    wait_for(lambda: committed_total(bootstrap, f"g-{unique}", unique) == 7, 60, "all 7 committed")
    wait_for(lambda: len(_records(bootstrap, f"{unique}-dlq")) == 7, 30, "7 dead letters")
    assert broken.terminate() == 0
    fixed = tmp_path / "fixed.yaml"
    fixed.write_text(yaml.safe_dump(_settings(stack, unique, "/insert/loki/api/v1/push")))
    return lines, fixed


def test_dead_letters_are_replayed_once_and_delivered(
    stack, unique, tmp_path, processes, dead_lettered
):
    bootstrap = stack("kafka", "bootstrap")
    lines, config = dead_lettered
    dlq = _records(bootstrap, f"{unique}-dlq")
    assert {dict(d.headers)["ferryman.error"][:8] for d in dlq[:-1]} == {b"HTTP 400"}
    select = ["--function", "loki", "--error", "^HTTP 400"]

    dry = _replay(config, *select, "--dry-run")
    assert dry.returncode == 0, dry.stderr
    assert "would replay 6, skipped 1 (1 by error)" in dry.stdout
    assert f"    {6:8d}  loki" in dry.stdout
    assert f"{unique}-dlq/0/0 -> {unique} (loki): HTTP 400" in dry.stdout
    assert len(_records(bootstrap, unique)) == 7, "a dry run produced"

    # Interrupted after two records: run again, the rest follows, nothing twice.
    first = _replay(config, *select, "--limit", "2")
    assert first.returncode == 0, first.stderr
    assert "replayed 2" in first.stdout
    assert "2 selected" in first.stderr  # progress lines (stderr is not a terminal)
    second = _replay(config, *select)
    assert second.returncode == 0, second.stderr
    assert "replayed 4, skipped 1 (1 by error)" in second.stdout
    again = _replay(config, *select)
    assert "scanned 0, replayed 0" in again.stdout

    source = _records(bootstrap, unique)
    replayed = source[7:]
    assert len(replayed) == 6
    assert sorted(dict(r.headers)["ferryman.replayed-from"] for r in replayed) == sorted(
        f"{unique}-dlq/0/{d.offset}".encode() for d in dlq[:6]
    )
    for record in replayed:
        names = [name for name, _ in record.headers]
        assert not {"ferryman.error", "ferryman.function", "ferryman.source"} & set(names)
        assert dict(record.headers)[h.SCHEMA] == h.SCHEMA_LOKI_PUSH
    assert sorted(r.value for r in replayed) == sorted(d.value for d in dlq[:6])

    processes(Worker(tmp_path, "loki", yaml.safe_load(config.read_text())))
    wait_for(
        lambda: committed_total(bootstrap, f"g-{unique}", unique) == 13,
        60,
        "the 6 replayed records committed",
    )
    assert wait_for(
        lambda: _stored(stack, unique) == sorted(lines), 30, "every replayed line stored once"
    )
    assert len(_records(bootstrap, f"{unique}-dlq")) == 7  # nothing dead-lettered again


def test_selection_by_offsets_and_time_and_another_destination(stack, unique, dead_lettered):
    bootstrap = stack("kafka", "bootstrap")
    _, config = dead_lettered
    other = f"{unique}-other"
    create_topics(bootstrap, (other, 1))
    future = _replay(config, "--since", "2099-01-01T00:00:00Z", "--dry-run")
    assert "scanned 0, would replay 0" in future.stdout, future.stdout + future.stderr
    window = _replay(
        config, "--from-offset", "2", "--until-offset", "4", "--until", "0s", "--to", other
    )
    assert window.returncode == 0, window.stderr
    assert "replayed 2, skipped 0" in window.stdout
    assert [dict(r.headers)["ferryman.replayed-from"] for r in _records(bootstrap, other)] == [
        f"{unique}-dlq/0/2".encode(),
        f"{unique}-dlq/0/3".encode(),
    ]
    bad = _replay(config, "--error", "(")
    assert bad.returncode == 2 and "missing )" in bad.stderr
