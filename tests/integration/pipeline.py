"""Helpers for tests that run real workers against the real stack."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import httpx
import yaml
from kafka import KafkaAdminClient, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from ferryman import headers as h
from ferryman.wire.remote_write import Sample, TimeSeries, encode_write_request, snappy_compress

ROOT = Path(__file__).resolve().parents[2]


def create_topics(bootstrap: str, *topics: tuple[str, int]) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, partitions, 1) for name, partitions in topics])
    finally:
        admin.close()


def produce_series(bootstrap: str, topic: str, metric: str, messages: int,
                   series_per_message: int, *, cluster: str = "alpha",
                   start: int = 0, extra: Iterable[tuple[bytes, bytes | None]] = ()) -> set[str]:
    """Produce remote-write messages the way the edge does; returns the series ids sent."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, compression_type="snappy", acks="all")
    now_ms = int(time.time() * 1000)
    sent = set()
    for m in range(start, start + messages):
        batch = []
        for s in range(series_per_message):
            sid = f"{m}-{s}"
            sent.add(sid)
            labels = {"__name__": metric, "cluster": cluster, "sid": sid}
            batch.append(TimeSeries(tuple(sorted(labels.items())), (Sample(float(m), now_ms),)))
        producer.send(topic, key=f"{metric}-{m}".encode(),
                      value=snappy_compress(encode_write_request(batch)),
                      headers=[(h.SCHEMA, h.SCHEMA_REMOTE_WRITE), (h.CLUSTER, cluster.encode())])
    for value, key in extra:
        producer.send(topic, value=value, key=key)
    producer.flush(timeout=30)
    producer.close()
    return sent


def committed_total(bootstrap: str, group: str, topic: str) -> int:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
    finally:
        admin.close()
    return sum(meta.offset for tp, meta in offsets.items()
               if isinstance(tp, TopicPartition) and tp.topic == topic and meta.offset > 0)


def wait_for(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.5) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {what}; last: {last!r}")


def series_ids(base: str, metric: str) -> set[str]:
    response = httpx.get(f"{base}/api/v1/series", params={"match[]": metric,
                                                         "start": str(time.time() - 3600)},
                         timeout=30)
    response.raise_for_status()
    return {s["sid"] for s in response.json()["data"]}


class Process:
    """A ferryman command as a real subprocess, as a container or systemd would run it."""

    def __init__(self, tmp: Path, argv: list[str], settings: dict[str, Any]) -> None:
        self.config = tmp / f"{'-'.join(argv)}-{time.monotonic_ns()}.yaml"
        self.config.write_text(yaml.safe_dump(settings))
        self.log = self.config.with_suffix(".log")
        self.argv = argv
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ferryman", *self.argv, "--config", str(self.config)],
                stdout=out, stderr=subprocess.STDOUT, cwd=ROOT, env=dict(os.environ))
        return self

    def kill9(self) -> None:
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def signal(self, signum: int) -> None:
        assert self.proc is not None
        self.proc.send_signal(signum)

    def terminate(self, timeout: float = 30) -> int:
        assert self.proc is not None
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None


class Worker(Process):
    """``ferryman worker NAME``."""

    def __init__(self, tmp: Path, name: str, settings: dict[str, Any]) -> None:
        super().__init__(tmp, ["worker", name], settings)


class EdgeMetrics(Process):
    """``ferryman edge metrics``."""

    def __init__(self, tmp: Path, settings: dict[str, Any]) -> None:
        super().__init__(tmp, ["edge", "metrics"], settings)


class EdgeLogs(Process):
    """``ferryman edge logs``."""

    def __init__(self, tmp: Path, settings: dict[str, Any]) -> None:
        super().__init__(tmp, ["edge", "logs"], settings)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class _PrivateHTTPService:
    """A service binary of the test's own on a free port, which the test may stop; its
    data directory survives a stop, like a real outage."""

    name = "service"
    ready_path = "/"

    def __init__(self) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None

    def argv(self) -> list[str]:
        raise NotImplementedError

    def start(self) -> Any:
        self.proc = subprocess.Popen(self.argv(), stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        wait_for(self._ready, 30, f"private {self.name} ready", interval=0.2)
        return self

    def _ready(self) -> bool:
        try:
            return httpx.get(f"{self.base}{self.ready_path}", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(30)


class PrivatePrometheus(_PrivateHTTPService):
    """A Prometheus of the test's own (same binary as the stack's)."""

    name = "prometheus"
    ready_path = "/-/ready"

    def __init__(self, tmp: Path) -> None:
        super().__init__()
        self.data = tmp / "prometheus-data"
        self.config = tmp / "prometheus.yml"
        self.config.write_text("storage:\n  tsdb:\n    out_of_order_time_window: 2h\n"
                               "scrape_configs: []\n")

    def argv(self) -> list[str]:
        return ["/usr/bin/prometheus", f"--config.file={self.config}",
                f"--storage.tsdb.path={self.data}",
                f"--web.listen-address=127.0.0.1:{self.port}",
                "--web.enable-remote-write-receiver"]


class PrivateKafka:
    """A single-node Kafka of the test's own (same install as the stack's) it may stop."""

    def __init__(self, tmp: Path) -> None:
        from infra.local import default_layout
        from infra.local.catalogue import prepare_kafka

        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.log = tmp / "private-kafka.log"
        self.command = prepare_kafka(default_layout(), tmp / "kafka", tmp / "kafka.properties",
                                     self.port, free_port())
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> PrivateKafka:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(self.command, stdout=out, stderr=subprocess.STDOUT)
        from infra.local.probes import kafka_probe

        wait_for(kafka_probe(self.bootstrap), 60, "private kafka ready", interval=0.3)
        return self

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(60)


class PrivateVictoriaLogs(_PrivateHTTPService):
    """A VictoriaLogs (the stack's Loki stand-in) of the test's own."""

    name = "victorialogs"
    ready_path = "/health"

    def __init__(self, tmp: Path, *args: str) -> None:
        from infra.local import default_layout

        super().__init__()
        self.binary = default_layout().bin / "victoria-logs"
        self.data = tmp / "victorialogs-data"
        self.args = args

    def argv(self) -> list[str]:
        return [str(self.binary), f"-httpListenAddr=127.0.0.1:{self.port}",
                f"-storageDataPath={self.data}", "-loggerLevel=WARN", *self.args]
