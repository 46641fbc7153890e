"""``task bench:gateway``: remote write into ``ferryman gateway`` → Kafka, beside vmagent
receiving the same requests and forwarding them to a remote-write receiver. Not a test.

The load is a fixed set of remote-write requests built once: ``--series`` series (one
sample each) as a Kubernetes Prometheus scraping node-exporter sends them (node
metrics with ``cpu``/``mode``, ``device``/``mountpoint``/``fstype`` labels, and the
target labels ``cluster``, ``namespace``, ``pod``, ``node``, ``instance``, ``job``,
...), ``DISTINCT`` requests with different timestamps and values, snappy'd protobuf
(remote write 1.0, and the same series as 2.0 requests for the gateway's 2.0 row).
A loader process (``bench.loader``; its CPU counted for nobody) posts them over
several keep-alive connections with a bearer token, as fast as the candidate answers:

* ``ferryman gateway`` (tenant ``bench`` may claim cluster ``bench``; limits raised
  so that nothing is rate limited) → a topic of the stack's Kafka created for the
  run (and deleted after); it answers 204 only after Kafka acknowledged (acks=all);
* vmagent (``/usr/bin/vmagent``), which answers once the request is in its queue,
  forwarding to ``bench.sink``; its run ends when the sink has every sample.

Only samples of requests answered 2xx count. Afterwards the topic's messages and the
sink's requests are counted sample by sample (every sample value is one of
``VALUES``, whose encodings' common bytes are counted in the decompressed bytes): the
gateway's topic must hold every acknowledged sample and the sink every sample
vmagent acknowledged. CPU-seconds (user + system, the process tree, from /proc)
run from the end of a warm-up to the end; peak RSS is the tree's.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import socket
import struct
import subprocess
import sys
import tempfile
import time
from functools import partial
from pathlib import Path
from typing import Any

import yaml
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic

from bench import chart, loader
from bench.loader import Load
from bench.metrics import table
from bench.proctree import Measured, free_port, http_ok, tree_env, wait_until
from edge.gateway.auth import hash_token
from ferryman.wire import remote_write2
from ferryman.wire.remote_write import (
    HEADERS,
    Sample,
    TimeSeries,
    encode_write_request,
    snappy_compress,
    snappy_decompress,
)

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
BOOTSTRAP = "127.0.0.1:9092"
PARTITIONS = 4
TOKEN = "bench-token-5f0c2a7d"
CLUSTER = "bench"
DISTINCT = 8
V1 = "gateway remote write 1.0 (pass-through)"
V2 = "gateway remote write 2.0 (converted)"
VMAGENT = "vmagent (remote write in → out)"
V2_HEADERS = {
    **HEADERS,
    "Content-Type": "application/x-protobuf;proto=io.prometheus.write.v2.Request",
    "X-Prometheus-Remote-Write-Version": "2.0.0",
}

#: Every sample's value is one of these (1234.5 and a little more: the eight bytes of
#: each differ in the low four only, followed by the timestamp's tag 0x10). That
#: five-byte run holds a byte above 0x7F, so it cannot occur inside label text.
VALUES = tuple(1234.5 + k * 2**-20 for k in range(48))
_MARKER = struct.pack("<d", VALUES[0])[4:] + b"\x10"
assert all(struct.pack("<d", v)[4:] + b"\x10" == _MARKER for v in VALUES)
assert max(_MARKER) >= 0x80


def count_samples(raw: bytes) -> int:
    """The samples in a decompressed 1.0 WriteRequest whose values are all ``VALUES``."""
    return raw.count(_MARKER)


# --- the requests --------------------------------------------------------------------------

_MODES = ("idle", "iowait", "irq", "nice", "softirq", "steal", "system", "user")
_MOUNTS = (
    ("/", "/dev/nvme0n1p1", "ext4"),
    ("/boot", "/dev/nvme0n1p2", "vfat"),
    ("/run", "tmpfs", "tmpfs"),
    ("/var/lib/kubelet", "/dev/nvme1n1", "xfs"),
)
_NET = ("eth0", "lo", "cni0", "flannel.1")
_DISKS = ("nvme0n1", "nvme1n1")


def _node_series(node: int, per_node: int) -> list[dict[str, str]]:
    """What one node-exporter target exposes (about ``per_node`` series), labelled as
    Prometheus's Kubernetes service discovery and external labels leave it."""
    own: list[dict[str, str]] = []
    for cpu in range(4):
        own += [{"__name__": "node_cpu_seconds_total", "cpu": str(cpu), "mode": m} for m in _MODES]
    for mount, device, fstype in _MOUNTS:
        for what in ("avail_bytes", "free_bytes", "size_bytes", "files", "files_free"):
            own.append(
                {
                    "__name__": f"node_filesystem_{what}",
                    "device": device,
                    "fstype": fstype,
                    "mountpoint": mount,
                }
            )
    for dev in _NET:
        for way in ("receive", "transmit"):
            for what in ("bytes", "packets", "errs", "drop"):
                own.append({"__name__": f"node_network_{way}_{what}_total", "device": dev})
    for disk in _DISKS:
        for what in ("read_bytes", "written_bytes", "reads_completed", "writes_completed"):
            own.append({"__name__": f"node_disk_{what}_total", "device": disk})
        own.append({"__name__": "node_disk_io_time_seconds_total", "device": disk})
    k = 0
    while len(own) < per_node:
        family = ("memory", "vmstat", "netstat_Tcp", "sockstat")[k % 4]
        own.append({"__name__": f"node_{family}_field{k}_{'bytes' if k % 3 else 'total'}"})
        k += 1
    target = {
        "cluster": CLUSTER,
        "container": "node-exporter",
        "endpoint": "https",
        "instance": f"10.0.{node // 250}.{node % 250}:9100",
        "job": "node-exporter",
        "namespace": "monitoring",
        "node": f"ip-10-0-{node // 250}-{node % 250}.eu-west-1.compute.internal",
        "pod": f"node-exporter-{node * 7919 % 100000:05x}",
        "prometheus": "monitoring/k8s",
        "service": "node-exporter",
    }
    return [{**target, **labels} for labels in own[:per_node]]


def requests(series: int) -> tuple[list[bytes], list[bytes]]:
    """``DISTINCT`` remote write 1.0 bodies of ``series`` series x 1 sample, and the
    same requests as 2.0 bodies (snappy'd)."""
    per_node = 200
    labels: list[dict[str, str]] = []
    node = 0
    while len(labels) < series:
        labels += _node_series(node, min(per_node, series - len(labels)))
        node += 1
    now = int(time.time() * 1000)
    v1, v2 = [], []
    for r in range(DISTINCT):
        stamp = now - (DISTINCT - r) * 15_000
        one = [
            TimeSeries(
                tuple(sorted(ls.items())),
                (Sample(VALUES[(i + r) % len(VALUES)], stamp),),
            )
            for i, ls in enumerate(labels)
        ]
        raw = encode_write_request(one)
        assert count_samples(raw) == series
        v1.append(snappy_compress(raw))
        v2.append(snappy_compress(remote_write2.encode_request(one)))
    return v1, v2


def _nth(bodies: list[bytes], i: int) -> bytes:
    return bodies[i % len(bodies)]


# --- a run ---------------------------------------------------------------------------------


def _measure(
    name: str, proc: Measured, load: Load, args: argparse.Namespace, requests: int, done: Any
) -> dict[str, Any]:
    """Warm up, then post ``requests`` requests; ``done(acked_requests)`` waits until
    the candidate's output holds them (or returns at once)."""
    warm = max(requests // 20, 20)
    try:
        loader.post(load, warm, 1, args.connections)
        done(warm)
        cpu0, t0 = proc.cpu(), time.monotonic()
        retried = loader.post(load, requests, args.loaders, args.connections)
        done(warm + requests)
        cpu, elapsed = proc.cpu() - cpu0, time.monotonic() - t0
        proc.check()
    finally:
        proc.stop()
    samples = requests * args.series
    return {
        "peer": name,
        "requests": requests,
        "samples": samples,
        "seconds": elapsed,
        "samples_per_s": samples / elapsed,
        "cpu_s": cpu,
        "cpu_s_per_million": cpu / samples * 1e6,
        "per_core": samples / cpu if cpu else 0.0,
        "peak_rss_mib": proc.peak_rss,
        "retried_requests": retried,
        "acknowledged_samples": (warm + requests) * args.series,
    }


def _topic_samples(topic: str) -> tuple[int, int]:
    """Messages and samples in ``topic`` (each distinct value decoded once)."""
    consumer = KafkaConsumer(
        bootstrap_servers=BOOTSTRAP, enable_auto_commit=False, fetch_max_bytes=64 << 20
    )
    parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
    ends = consumer.end_offsets(parts)
    consumer.assign(parts)
    consumer.seek_to_beginning(*parts)
    counted: dict[bytes, int] = {}
    messages = samples = 0
    try:
        while any(consumer.position(tp) < ends[tp] for tp in parts):
            for records in consumer.poll(timeout_ms=2000).values():
                for record in records:
                    value = record.value
                    if value not in counted:
                        counted[value] = count_samples(snappy_decompress(value))
                    samples += counted[value]
                    messages += 1
    finally:
        consumer.close()
    return messages, samples


def run_gateway(
    name: str,
    bodies: list[bytes],
    headers: dict[str, str],
    args: argparse.Namespace,
    requests: int,
    tmp: Path,
) -> dict[str, Any]:
    topic = f"bench-gateway-{re.sub(r'[^a-z0-9]+', '-', name.lower())[:24]}-{int(time.time())}"
    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    port = free_port()
    tenant = {
        "name": "bench",
        "bearer_token_hash": hash_token(TOKEN),
        "clusters": [CLUSTER],
        "limits": {"samples_per_second": 1e9, "max_body_bytes": "16MiB"},
    }
    config = {
        "listen": f"127.0.0.1:{port}",
        "kafka": {
            "bootstrap_servers": BOOTSTRAP,
            "topics": {"metrics": topic, "logs": topic, "traces": topic},
        },
        "tenants": [tenant],
    }
    path = tmp / f"{topic}.yaml"
    path.write_text(yaml.safe_dump(config))
    argv = [PY, "-m", "ferryman", "gateway", "--config", str(path), "--log-level", "warning"]
    try:
        proc = Measured(name, argv, tmp, cwd=args.tree, env=tree_env(args.tree))
        wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/readyz"), name, [proc], 60)
        load = Load(
            f"http://127.0.0.1:{port}/api/v1/write",
            partial(_nth, bodies),
            {**headers, "Authorization": f"Bearer {TOKEN}"},
            204,
        )
        row = _measure(name, proc, load, args, requests, lambda _: None)
        row["kafka_messages"], row["kafka_samples"] = _topic_samples(topic)
    finally:
        admin.delete_topics([topic])
        admin.close()
    if row["kafka_samples"] < row["acknowledged_samples"]:
        raise SystemExit(f"{name}: {row['kafka_samples']} samples in Kafka, fewer than acked")
    return row


def _sink_samples(sink: str) -> int:
    import httpx

    return int(httpx.get(f"{sink}/count", timeout=10).text.split()[2])


def run_vmagent(bodies: list[bytes], args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    sink_port, port = free_port(), free_port()
    sink_proc = subprocess.Popen([PY, "-m", "bench.sink", str(sink_port), "--samples"], cwd=ROOT)
    sink = f"http://127.0.0.1:{sink_port}"
    argv = [
        "/usr/bin/vmagent",
        f"-httpListenAddr=127.0.0.1:{port}",
        f"-remoteWrite.url={sink}/api/v1/write",
        f"-remoteWrite.tmpDataPath={tmp / 'vmagent-data'}",
        "-loggerLevel=WARN",
    ]
    try:
        deadline = time.monotonic() + 60
        while not http_ok(f"{sink}/count") and time.monotonic() < deadline:
            time.sleep(0.2)
        proc = Measured(VMAGENT, argv, tmp)
        wait_until(lambda: http_ok(f"http://127.0.0.1:{port}/health"), VMAGENT, [proc], 60)
        load = Load(
            f"http://127.0.0.1:{port}/api/v1/write",
            partial(_nth, bodies),
            {**HEADERS, "Authorization": f"Bearer {TOKEN}"},
            204,
        )

        def forwarded(acked: int) -> None:
            want = acked * args.series
            wait_until(lambda: _sink_samples(sink) >= want, "vmagent forwarding", [proc], 300)

        row = _measure(VMAGENT, proc, load, args, args.requests, forwarded)
        row["sink_samples"] = _sink_samples(sink)
    finally:
        sink_proc.terminate()
        sink_proc.wait(30)
    return row


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--series", type=int, default=2000, help="series (1 sample) a request")
    parser.add_argument("--requests", type=int, default=3000, help="requests for 1.0 and vmagent")
    parser.add_argument(
        "--v2-requests", type=int, default=500, help="requests for 2.0 (converted: slower)"
    )
    parser.add_argument("--connections", type=int, default=8, help="connections per loader")
    parser.add_argument("--loaders", type=int, default=1, help="loader processes")
    parser.add_argument(
        "--only", choices=["v1", "v2", "vmagent"], action="append", help="run only these rows"
    )
    parser.add_argument(
        "--tree", type=Path, default=ROOT, help="checkout whose gateway runs (default: this)"
    )
    parser.add_argument(
        "--chart",
        type=Path,
        default=None,
        help="PNG of the tables (default: docs/bench/gateway.png)",
    )
    args = parser.parse_args()
    only = set(args.only or ["v1", "v2", "vmagent"])
    try:
        socket.create_connection(("127.0.0.1", 9092), timeout=2).close()
    except OSError:
        subprocess.run(
            [PY, "-m", "ferryman", "stack", "up", "kafka"],
            check=True,
            stdout=subprocess.DEVNULL,
            cwd=ROOT,
        )
    v1, v2 = requests(args.series)
    report = [
        f"Machine: {platform.node()}, {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f} at the start; Python {platform.python_version()}; "
        f"{time.strftime('%Y-%m-%d')}; {args.requests:,} requests (2.0: {args.v2_requests:,}) of "
        f"{args.series:,} series x 1 sample ({len(v1[0]) / 1024:.1f} KiB 1.0, "
        f"{len(v2[0]) / 1024:.1f} KiB 2.0, snappy); {args.loaders}x{args.connections} "
        "connections"
    ]
    rows = []
    with tempfile.TemporaryDirectory(prefix="ferryman-bench-gateway-") as directory:
        tmp = Path(directory)
        if "v1" in only:
            rows.append(run_gateway(V1, v1, dict(HEADERS), args, args.requests, tmp))
        if "v2" in only:
            rows.append(run_gateway(V2, v2, V2_HEADERS, args, args.v2_requests, tmp))
        if "vmagent" in only:
            rows.append(run_vmagent(v1, args, tmp))
    if any(r["peer"] == V1 for r in rows):
        report.append(table("Remote write into the gateway → Kafka, and vmagent", rows, V1))
    else:
        report.append(json.dumps(rows, indent=1))
    print("\n\n".join(report))
    results = {"conditions": report[0], "rows": rows}
    (ROOT / "bench" / "results-gateway.json").write_text(json.dumps(results, indent=1))
    chart.write("gateway", results, args.chart)


if __name__ == "__main__":
    main()
