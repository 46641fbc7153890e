"""The prometheus_remote_write worker (pass-through and decode+relabel) vs vmagent
forwarding the same remote-write payloads to the same receiver."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from kafka import KafkaAdminClient, KafkaProducer
from kafka.admin import NewTopic

from bench.procstat import cpu_seconds, peak_rss_mib
from ferryman import headers as h
from ferryman.wire.remote_write import (
    HEADERS,
    Sample,
    TimeSeries,
    encode_write_request,
    snappy_compress,
)

MESSAGES = 1500
SERIES = 2000
RULES = [
    {"action": "labeldrop", "regex": "pod_template_hash"},
    {"target_label": "tenant", "replacement": "team-a"},
    {"source_labels": ["__name__"], "regex": "go_gc_.*", "action": "drop"},
]


def payload() -> bytes:
    now = int(time.time() * 1000)
    series = []
    for i in range(SERIES):
        labels = {
            "__name__": f"http_requests_total_{i % 20}",
            "cluster": "bench",
            "namespace": f"ns-{i % 7}",
            "pod": f"api-{i % 50}-5d9c7",
            "pod_template_hash": "5d9c7",
            "job": "api",
            "instance": f"10.0.0.{i % 250}:8080",
            "code": str(200 + i % 5),
        }
        series.append(TimeSeries(tuple(sorted(labels.items())), (Sample(float(i), now),)))
    return snappy_compress(encode_write_request(series))


def _committed(admin: KafkaAdminClient, group: str, topic: str) -> int:
    offsets = admin.list_group_offsets(group).get(group, {})
    return sum(m.offset for tp, m in offsets.items() if tp.topic == topic and m.offset > 0)


def run_worker(
    name: str,
    function: str,
    tmp: Path,
    topic: str,
    config: dict[str, Any],
    *,
    messages: int,
    units_per_message: float,
    warmup: int = 20,
    batch: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Run ``ferryman worker FUNCTION`` over ``topic`` (``messages`` long) and measure
    CPU, wall time and peak RSS from its ``warmup``-th committed message to the last."""
    admin = KafkaAdminClient(bootstrap_servers="127.0.0.1:9092")
    group = f"bench-{name.replace(' ', '-').replace('+', '-')}-{int(time.time())}"
    settings = {
        "kafka": {
            "bootstrap_servers": "127.0.0.1:9092",
            "input_topic": topic,
            "group_id": group,
            "max_poll_records": 500,
        },
        "batch": batch or {"max_records": 100, "max_wait_s": 0.05},
        "config": config,
    }
    path = tmp / f"{group}.yaml"
    path.write_text(yaml.safe_dump(settings))
    with (tmp / f"{group}.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ferryman",
                "worker",
                function,
                "--config",
                str(path),
                "--log-level",
                "warning",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        while (start := _committed(admin, group, topic)) < warmup:
            if proc.poll() is not None:
                raise SystemExit(f"{name} exited; see {tmp / (group + '.log')}")
            time.sleep(0.05)
        cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
        while (done := _committed(admin, group, topic)) < messages:
            if proc.poll() is not None:
                raise SystemExit(f"{name} exited; see {tmp / (group + '.log')}")
            time.sleep(0.1)
        cpu, elapsed = cpu_seconds(proc.pid) - cpu0, time.monotonic() - t0
        rss = peak_rss_mib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)
        admin.close()
    units = (done - start) * units_per_message
    return {
        "peer": name,
        "units": units,
        "per_s": units / elapsed,
        "cpu_s": cpu,
        "cpu_s_per_million": cpu / units * 1e6,
        "per_core": units / cpu,
        "peak_rss_mib": rss,
    }


def _run_worker(name: str, tmp: Path, topic: str, config: dict[str, Any]) -> dict[str, Any]:
    row = run_worker(
        name,
        "prometheus_remote_write",
        tmp,
        topic,
        config,
        messages=MESSAGES,
        units_per_message=SERIES,
    )
    return {**row, "samples": row["units"], "samples_per_s": row["per_s"]}


def _vmagent(tmp: Path, sink: str, body: bytes) -> dict[str, Any]:
    port = 18431
    with (tmp / "vmagent-fwd.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                "/usr/bin/vmagent",
                f"-httpListenAddr=127.0.0.1:{port}",
                f"-remoteWrite.url={sink}/api/v1/write",
                f"-remoteWrite.tmpDataPath={tmp / 'vmagent-fwd'}",
                "-loggerLevel=WARN",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}/api/v1/write"
        with httpx.Client(timeout=30) as client:
            for _ in range(50):
                try:
                    if client.post(url, content=body, headers=HEADERS).status_code == 204:
                        break
                except httpx.TransportError:
                    time.sleep(0.2)
            before = int(httpx.get(f"{sink}/count").text.split()[0])
            cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
            for _ in range(MESSAGES):
                client.post(url, content=body, headers=HEADERS).raise_for_status()
        # Wait until vmagent's queue has drained into the sink.
        last, still = -1, 0
        while still < 5:
            now = int(httpx.get(f"{sink}/count").text.split()[0])
            still = still + 1 if now == last else 0
            last = now
            time.sleep(0.2)
        cpu, elapsed = cpu_seconds(proc.pid) - cpu0, time.monotonic() - t0 - 1.0
        rss = peak_rss_mib(proc.pid)
        if last <= before:
            raise SystemExit("vmagent forwarded nothing")
    finally:
        proc.terminate()
        proc.wait(30)
    samples = MESSAGES * SERIES
    return {
        "peer": "vmagent (remote write in → out)",
        "samples": samples,
        "samples_per_s": samples / elapsed,
        "cpu_s": cpu,
        "cpu_s_per_million": cpu / samples * 1e6,
        "per_core": samples / cpu,
        "peak_rss_mib": rss,
    }


def bench_worker(tmp: Path, sink: str) -> list[dict[str, Any]]:
    body = payload()
    topic = f"bench-worker-{int(time.time())}"
    admin = KafkaAdminClient(bootstrap_servers="127.0.0.1:9092")
    admin.create_topics([NewTopic(topic, 1, 1)])
    producer = KafkaProducer(
        bootstrap_servers="127.0.0.1:9092", acks="all", max_request_size=16 * 2**20
    )
    for _ in range(MESSAGES):
        producer.send(topic, value=body, headers=[(h.SCHEMA, h.SCHEMA_REMOTE_WRITE)])
    producer.flush()
    producer.close()
    url = f"{sink}/api/v1/write"
    rows = [
        _run_worker("ferryman pass-through", tmp, topic, {"url": url}),
        _run_worker(
            "ferryman decode+relabel", tmp, topic, {"url": url, "metric_relabel_configs": RULES}
        ),
        _vmagent(tmp, sink, body),
    ]
    admin.delete_topics([topic])
    admin.close()
    return rows
