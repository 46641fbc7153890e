"""Helpers for tests that run real workers against the real stack."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml
from kafka import KafkaAdminClient, KafkaConsumer, KafkaProducer, TopicPartition
from kafka.admin import NewTopic

from ferryman import headers as h
from ferryman.wire.loki import Stream, encode_push_request
from ferryman.wire.remote_write import Sample, TimeSeries, encode_write_request, snappy_compress

ROOT = Path(__file__).resolve().parents[2]

Headers = tuple[tuple[str, bytes], ...]
#: one ``name="value"`` of a series in the text exposition format
_LABEL = re.compile(r'([A-Za-z_][A-Za-z0-9_]*)="((?:[^"\\]|\\.)*)"')


@dataclass(frozen=True, slots=True)
class Message:
    """One Kafka message to produce."""

    value: bytes
    key: bytes | None = None
    headers: Headers = ()


def message_headers(
    schema: bytes | None, *, cluster: str | None = None, tenant: str | bytes | None = None
) -> Headers:
    """The ``schema``/``cluster``/``tenant`` headers the edge sets (absent when None)."""
    out: list[tuple[str, bytes]] = []
    if schema is not None:
        out.append((h.SCHEMA, schema))
    if cluster is not None:
        out.append((h.CLUSTER, cluster.encode()))
    if tenant is not None:
        out.append((h.TENANT, tenant.encode() if isinstance(tenant, str) else tenant))
    return tuple(out)


def time_series(labels: dict[str, str], *samples: tuple[float, int]) -> TimeSeries:
    """A series of ``(value, timestamp in ms)`` samples."""
    return TimeSeries(tuple(sorted(labels.items())), tuple(Sample(v, t) for v, t in samples))


def remote_write(
    series: Iterable[TimeSeries],
    *,
    cluster: str | None = None,
    tenant: str | bytes | None = None,
    key: bytes | None = None,
) -> Message:
    """A remote-write message as the edge produces it: snappy(WriteRequest)."""
    return Message(
        snappy_compress(encode_write_request(list(series))),
        key,
        message_headers(h.SCHEMA_REMOTE_WRITE, cluster=cluster, tenant=tenant),
    )


def loki_push(
    streams: Iterable[Stream],
    *,
    cluster: str | None = None,
    tenant: str | bytes | None = None,
    key: bytes | None = None,
    lines: bytes | None = None,
) -> Message:
    """A Loki push message as the edge produces it: snappy(PushRequest), with a
    ``ferryman.lines`` header when ``lines`` is given."""
    headers = message_headers(h.SCHEMA_LOKI_PUSH, cluster=cluster, tenant=tenant)
    if lines is not None:
        headers += ((h.LINES, lines),)
    return Message(snappy_compress(encode_push_request(list(streams))), key, headers)


def raw(
    value: bytes,
    *,
    key: bytes | None = None,
    schema: bytes | None = None,
    cluster: str | None = None,
    tenant: str | bytes | None = None,
) -> Message:
    """Bytes as they are, with whichever headers are given (none by default)."""
    return Message(value, key, message_headers(schema, cluster=cluster, tenant=tenant))


def produce(bootstrap: str, topic: str, messages: Iterable[Message]) -> None:
    """Produce ``messages`` in order and wait until the broker acknowledged them all."""
    producer = KafkaProducer(bootstrap_servers=bootstrap, compression_type="snappy", acks="all")
    try:
        for message in messages:
            producer.send(
                topic, value=message.value, key=message.key, headers=list(message.headers)
            )
        producer.flush(timeout=30)
    finally:
        producer.close()


def dead_letters(bootstrap: str, topic: str, *, timeout_ms: int = 5000) -> list[Any]:
    """Every message on ``topic`` (a dead-letter topic), read from the start until it
    has been quiet for ``timeout_ms``."""
    consumer = KafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        auto_offset_reset="earliest",
        consumer_timeout_ms=timeout_ms,
    )
    try:
        return list(consumer)
    finally:
        consumer.close()


def create_topics(bootstrap: str, *topics: tuple[str, int]) -> None:
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics([NewTopic(name, partitions, 1) for name, partitions in topics])
    finally:
        admin.close()


def produce_series(
    bootstrap: str,
    topic: str,
    metric: str,
    messages: int,
    series_per_message: int,
    *,
    cluster: str = "alpha",
    start: int = 0,
    extra: Iterable[tuple[bytes, bytes | None]] = (),
) -> set[str]:
    """Produce remote-write messages the way the edge does, series ``sid`` = ``m-s`` of
    ``metric``, then ``extra`` (value, key) as raw bytes; returns the series ids sent."""
    now_ms = int(time.time() * 1000)
    sent = set()
    out = []
    for m in range(start, start + messages):
        batch = []
        for s in range(series_per_message):
            sid = f"{m}-{s}"
            sent.add(sid)
            batch.append(
                time_series(
                    {"__name__": metric, "cluster": cluster, "sid": sid}, (float(m), now_ms)
                )
            )
        out.append(remote_write(batch, cluster=cluster, key=f"{metric}-{m}".encode()))
    out += [raw(value, key=key) for value, key in extra]
    produce(bootstrap, topic, out)
    return sent


def committed_by_partition(bootstrap: str, group: str, topic: str) -> dict[int, int]:
    """The offsets ``group`` committed on ``topic``, by partition (those it committed)."""
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        offsets = admin.list_group_offsets(group).get(group, {})
    finally:
        admin.close()
    return {
        tp.partition: meta.offset
        for tp, meta in offsets.items()
        if isinstance(tp, TopicPartition) and tp.topic == topic and meta.offset > 0
    }


def committed_total(bootstrap: str, group: str, topic: str) -> int:
    return sum(committed_by_partition(bootstrap, group, topic).values())


def topic_size(bootstrap: str, topic: str) -> int:
    """Messages on ``topic`` (end offsets summed): an empty check that does not wait."""
    consumer = KafkaConsumer(bootstrap_servers=bootstrap)
    try:
        partitions = [TopicPartition(topic, p) for p in consumer.partitions_for_topic(topic) or ()]
        return sum(consumer.end_offsets(partitions).values()) if partitions else 0
    finally:
        consumer.close()


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
    response = httpx.get(
        f"{base}/api/v1/series",
        params={"match[]": metric, "start": str(time.time() - 3600)},
        timeout=30,
    )
    response.raise_for_status()
    return {s["sid"] for s in response.json()["data"]}


class Process:
    """A ferryman command as a real subprocess, as a container or systemd would run it."""

    def __init__(
        self,
        tmp: Path,
        argv: list[str],
        settings: dict[str, Any],
        *,
        config_flag: str = "--config",
        flags: Sequence[str] = (),
        env: Mapping[str, str] | None = None,
    ) -> None:
        """``argv`` (the subcommand), then ``flags`` and ``config_flag`` naming the
        YAML of ``settings``; ``env`` is laid over this process's environment."""
        self.config = tmp / f"{'-'.join(argv)}-{time.monotonic_ns()}.yaml"
        self.config.write_text(yaml.safe_dump(settings))
        self.settings = settings
        self.log = self.config.with_suffix(".log")
        self.argv = argv
        self.flags = list(flags)
        self.config_flag = config_flag
        self.env = dict(env or {})
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> Process:
        with self.log.open("ab") as out:
            self.proc = subprocess.Popen(
                [
                    sys.executable,
                    "-m",
                    "ferryman",
                    *self.argv,
                    *self.flags,
                    self.config_flag,
                    str(self.config),
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
                env={**os.environ, **self.env},
            )
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
        self.name = name

    @property
    def bootstrap(self) -> str:
        return str(self.settings["kafka"].get("bootstrap_servers", "127.0.0.1:9092"))

    @property
    def input_topic(self) -> str:
        return str(self.settings["kafka"]["input_topic"])

    @property
    def group(self) -> str:
        return str(self.settings["kafka"].get("group_id") or f"ferryman-{self.name}")

    @property
    def dead_letter_topic(self) -> str:
        return str(self.settings["kafka"].get("dead_letter_topic", "ferryman.dlq"))

    @property
    def api(self) -> str:
        """Base URL of its /metrics, /healthz and /readyz (needs ``http.listen`` set)."""
        return f"http://{self.settings['http']['listen']}"

    def committed(self) -> int:
        """Offsets its group committed on its input topic, summed over partitions."""
        return committed_total(self.bootstrap, self.group, self.input_topic)

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.api}/readyz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def wait_ready(self, timeout: float = 60) -> Worker:
        """Wait until /readyz answers 200 (partitions assigned); fails with the worker's
        output if it exits or takes longer."""
        deadline = time.monotonic() + timeout
        while not self.ready():
            if not self.alive():
                raise AssertionError(
                    f"worker {self.name} exited before it was ready:\n{self.output()[-3000:]}"
                )
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"worker {self.name} not ready after {timeout}s:\n{self.output()[-3000:]}"
                )
            time.sleep(0.1)
        return self

    def metrics(self) -> dict[str, float]:
        """Its /metrics: ``name{labels}`` → value."""
        text = httpx.get(f"{self.api}/metrics", timeout=5).text
        return {
            line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line and not line.startswith("#")
        }

    def metric(self, name: str, **labels: str) -> float:
        """The sum of every series of ``name`` carrying ``labels`` (0 when none)."""
        total = 0.0
        for series, value in self.metrics().items():
            metric, _, rest = series.partition("{")
            found = dict(_LABEL.findall(rest))
            if metric == name and all(found.get(k) == v for k, v in labels.items()):
                total += value
        return total

    def errors_but_rebalance_quirk(self) -> dict[str, float]:
        """``ferryman_errors_total``'s nonzero series, but ``rebalance_unfinished``: the
        worker finishing a rebalance kafka-python left unfinished (workers/rebalance.py),
        which a group rebalancing while the test's worker joins can cause now and then,
        and which touches no record."""
        return {
            series: value
            for series, value in self.metrics().items()
            if series.startswith("ferryman_errors_total{")
            and 'error_type="rebalance_unfinished"' not in series
            and value
        }


class EdgeMetrics(Process):
    """``ferryman edge metrics``."""

    def __init__(self, tmp: Path, settings: dict[str, Any]) -> None:
        super().__init__(tmp, ["edge", "metrics"], settings)


class EdgeLogs(Process):
    """``ferryman edge logs``; ``options`` as :class:`Process` takes them (Promtail's
    ``config_flag="-config.file"``, ``flags=["-config.expand-env"]``, ``env``)."""

    def __init__(self, tmp: Path, settings: dict[str, Any], **options: Any) -> None:
        super().__init__(tmp, ["edge", "logs"], settings, **options)


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
        self.proc = subprocess.Popen(
            self.argv(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
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
        self.config.write_text(
            "storage:\n  tsdb:\n    out_of_order_time_window: 2h\nscrape_configs: []\n"
        )

    def argv(self) -> list[str]:
        return [
            "/usr/bin/prometheus",
            f"--config.file={self.config}",
            f"--storage.tsdb.path={self.data}",
            f"--web.listen-address=127.0.0.1:{self.port}",
            "--web.enable-remote-write-receiver",
        ]


class PrivateKafka:
    """A single-node Kafka of the test's own (same install as the stack's) it may stop."""

    def __init__(self, tmp: Path) -> None:
        from infra.local import default_layout
        from infra.local.catalogue import prepare_kafka

        self.port = free_port()
        self.bootstrap = f"127.0.0.1:{self.port}"
        self.log = tmp / "private-kafka.log"
        self.command = prepare_kafka(
            default_layout(), tmp / "kafka", tmp / "kafka.properties", self.port, free_port()
        )
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
        return [
            str(self.binary),
            f"-httpListenAddr=127.0.0.1:{self.port}",
            f"-storageDataPath={self.data}",
            "-loggerLevel=WARN",
            *self.args,
        ]


class EdgeTraces(Process):
    """``ferryman edge traces``: the OTLP receiver. ``settings`` as its config file
    takes them; ``grpc``, ``http`` and ``api`` name its three listeners (set them in
    ``settings``, free ports from :func:`free_port`)."""

    def __init__(self, tmp: Path, settings: dict[str, Any]) -> None:
        super().__init__(tmp, ["edge", "traces"], settings)

    @property
    def grpc(self) -> str:
        return str(self.settings["ferryman"]["grpc"]["listen"])

    @property
    def http(self) -> str:
        return str(self.settings["ferryman"]["http"]["listen"])

    @property
    def api(self) -> str:
        """Base URL of its /metrics, /healthz and /readyz."""
        return f"http://{self.settings['ferryman']['listen']}"

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.api}/readyz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def wait_listening(self, timeout: float = 60) -> EdgeTraces:
        """Wait until /healthz answers (the listeners are up; Kafka may not be)."""
        deadline = time.monotonic() + timeout
        while True:
            try:
                if httpx.get(f"{self.api}/healthz", timeout=2).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            self._check_alive(deadline, timeout)

    def wait_ready(self, timeout: float = 60) -> EdgeTraces:
        """Wait until /readyz answers 200 (Kafka metadata for the topic fetched)."""
        deadline = time.monotonic() + timeout
        while not self.ready():
            self._check_alive(deadline, timeout)
        return self

    def _check_alive(self, deadline: float, timeout: float) -> None:
        if not self.alive():
            raise AssertionError(f"edge traces exited:\n{self.output()[-3000:]}")
        if time.monotonic() > deadline:
            raise AssertionError(
                f"edge traces not ready after {timeout}s:\n{self.output()[-3000:]}"
            )
        time.sleep(0.1)

    def metric(self, name: str, **labels: str) -> float:
        """The sum of every series of ``name`` carrying ``labels`` (0 when none)."""
        text = httpx.get(f"{self.api}/metrics", timeout=5).text
        total = 0.0
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            series, _, value = line.rpartition(" ")
            metric, _, rest = series.partition("{")
            found = dict(_LABEL.findall(rest))
            if metric == name and all(found.get(k) == v for k, v in labels.items()):
                total += float(value)
        return total


class Gateway(Process):
    """``ferryman gateway``; ``settings`` as its config file takes them (set ``listen``
    to a free port from :func:`free_port`)."""

    def __init__(self, tmp: Path, settings: dict[str, Any]) -> None:
        super().__init__(tmp, ["gateway"], settings)

    @property
    def url(self) -> str:
        return f"http://{self.settings['listen']}"

    def ready(self) -> bool:
        try:
            return httpx.get(f"{self.url}/readyz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    def wait_ready(self, timeout: float = 60) -> Gateway:
        """Wait until /readyz answers 200 (every topic's metadata seen)."""
        deadline = time.monotonic() + timeout
        while not self.ready():
            if not self.alive():
                raise AssertionError(f"gateway exited:\n{self.output()[-3000:]}")
            if time.monotonic() > deadline:
                raise AssertionError(
                    f"gateway not ready after {timeout}s:\n{self.output()[-3000:]}"
                )
            time.sleep(0.1)
        return self

    def metric(self, name: str, **labels: str) -> float:
        """The sum of every series of ``name`` carrying ``labels`` (0 when none)."""
        text = httpx.get(f"{self.url}/metrics", timeout=5).text
        total = 0.0
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            series, _, value = line.rpartition(" ")
            metric, _, rest = series.partition("{")
            found = dict(_LABEL.findall(rest))
            if metric == name and all(found.get(k) == v for k, v in labels.items()):
                total += float(value)
        return total
