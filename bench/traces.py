"""``task bench:traces``: the traces path's two legs against Jaeger v2 itself. Not a test.

Leg 1, receiver → Kafka: OTLP/HTTP protobuf requests (a fixed corpus, 100 spans of
5 traces each, fresh trace ids on every post) are posted over several connections as
fast as the receiver acknowledges, ``--spans`` in all, into a topic of the stack's
Kafka. Candidates:

* ``ferryman edge traces`` (answers after Kafka acknowledged, acks=all, snappy);
* Jaeger v2 (``jaeger``, the stack's binary) with the same guarantee: its ``otlp``
  receiver → ``kafka`` exporter (``otlp_proto``, keyed by trace id, acks=all, snappy),
  no batch processor and no sending queue, so a request is answered after Kafka;
* Jaeger v2 as its own Kafka example ships (``batch`` processor and the exporter's
  queue): it answers before Kafka has the spans, which ferryman never does. The run
  ends when its exporter counted every span sent.

Leg 2, Kafka → storage: a topic holding ``--spans`` spans as ferryman's edge writes
them (one trace per message, keyed by trace id, schema and cluster headers) is read
from the start. Candidates:

* Jaeger v2's ``kafka`` receiver (``otlp_proto``) → its memory store, in one process;
* ``ferryman worker otlp_traces`` → OTLP/HTTP → a private Jaeger v2 with the same
  memory store; the worker is measured, and the worker with that Jaeger.

Each run ends when the store's exporter counted every span. CPU-seconds (the process
tree, from /proc) and wall time run from the end of a warm-up to the end; peak RSS is
the process tree's. Kafka and the load generator are shared and counted for nobody.
The ferryman candidates run when the tree has them (``ferryman edge traces`` and
the ``otlp_traces`` function; ``--tree`` names another checkout to measure); the
report says which legs ran.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic

from bench import chart
from bench.jaegerpeer import BOOTSTRAP, jaeger_collector, jaeger_store, start_jaeger
from bench.proctree import Measured, counter, free_port, http_ok, tree_env, wait_until
from bench.spans import SPANS_PER_REQUEST, TRACES_PER_REQUEST, Template, corpus, fill, post

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
PARTITIONS = 2  # as the stack's ferryman.traces
#: The peer rows the ratios are taken against: the same guarantees as ferryman's.
LEG1_BASE = "Jaeger otlp → kafka (answers after Kafka)"
LEG2_BASE = "Jaeger kafka → memory store"


# --- leg 1: receiver → Kafka ---------------------------------------------------------------


@dataclass(frozen=True)
class Receiver:
    name: str
    proc: Measured
    url: str
    topic: str
    #: Spans the candidate has handed to Kafka so far (None: the answers say it).
    sent: Callable[[], float] | None = None


def _row(leg: str, name: str, spans: int, seconds: float, cpu: float, rss: float) -> dict[str, Any]:
    return {
        "leg": leg,
        "peer": name,
        "spans": spans,
        "seconds": seconds,
        "spans_per_s": spans / seconds,
        "cpu_s": cpu,
        "cpu_s_per_million": cpu / spans * 1e6,
        "per_core": spans / cpu if cpu else 0.0,
        "peak_rss_mib": rss,
    }


def run_leg1(
    receiver: Receiver, args: argparse.Namespace, templates: list[Template]
) -> dict[str, Any]:
    requests = args.spans // SPANS_PER_REQUEST
    warm = max(requests // 50, 20)
    try:
        post(receiver.url, templates, warm, 1, 2)
        if receiver.sent is not None:
            sent = receiver.sent
            wait_until(lambda: sent() >= warm * SPANS_PER_REQUEST, "warm-up", [receiver.proc], 120)
        cpu0, t0 = receiver.proc.cpu(), time.monotonic()
        retried = post(receiver.url, templates, requests, args.loaders, args.connections)
        if receiver.sent is not None:
            sent = receiver.sent
            total = (warm + requests) * SPANS_PER_REQUEST
            wait_until(lambda: sent() >= total, f"{receiver.name} sending", [receiver.proc], 600)
        cpu, elapsed = receiver.proc.cpu() - cpu0, time.monotonic() - t0
        receiver.proc.check()
    finally:
        receiver.proc.stop()
    row = _row(
        "receiver → Kafka",
        receiver.name,
        requests * SPANS_PER_REQUEST,
        elapsed,
        cpu,
        receiver.proc.peak_rss,
    )
    row["retried_requests"] = retried
    row["kafka_messages"] = _messages(receiver.topic)
    return row


def _messages(topic: str) -> int:
    consumer = KafkaConsumer(bootstrap_servers=BOOTSTRAP)
    try:
        parts = [TopicPartition(topic, p) for p in range(PARTITIONS)]
        return sum(consumer.end_offsets(parts).values())
    finally:
        consumer.close()


def leg1(
    args: argparse.Namespace,
    tmp: Path,
    templates: list[Template],
    ferryman: bool,
    topics: list[str],
) -> list[dict[str, Any]]:
    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    stamp = int(time.time())
    rows = []

    def topic(kind: str) -> str:
        name = f"bench-traces-{kind}-{stamp}"
        admin.create_topics([NewTopic(name, PARTITIONS, 1)])
        topics.append(name)
        return name

    try:
        if ferryman:
            http, listen, out = free_port(), free_port(), topic("ferryman")
            config = {
                "external_labels": {"cluster": "bench"},
                "ferryman": {
                    "kafka": {"bootstrap_servers": BOOTSTRAP, "topic": out},
                    "grpc": {"listen": f"127.0.0.1:{free_port()}"},
                    "http": {"listen": f"127.0.0.1:{http}"},
                    "listen": f"127.0.0.1:{listen}",
                },
            }
            path = tmp / "edge-traces.yaml"
            path.write_text(yaml.safe_dump(config))
            proc = Measured(
                "ferryman edge traces",
                [
                    PY,
                    "-m",
                    "ferryman",
                    "edge",
                    "traces",
                    "--config",
                    str(path),
                    "--log-level",
                    "warning",
                ],
                tmp,
                cwd=args.tree,
                env=tree_env(args.tree),
            )
            wait_until(
                lambda: http_ok(f"http://127.0.0.1:{listen}/readyz"),
                "ferryman edge traces",
                [proc],
                60,
            )
            rows.append(
                run_leg1(
                    Receiver(proc.name, proc, f"http://127.0.0.1:{http}/v1/traces", out),
                    args,
                    templates,
                )
            )
        for upstream in (False, True):
            otlp, metrics, health = free_port(), free_port(), free_port()
            name = (
                "Jaeger otlp → kafka (batch + queue: answers before Kafka)"
                if upstream
                else LEG1_BASE
            )
            out = topic("jaeger-queued" if upstream else "jaeger")
            config = jaeger_collector(
                out,
                otlp,
                metrics,
                health,
                upstream=upstream,
            )
            proc = start_jaeger(name, config, tmp, health)

            def sent(port: int = metrics) -> float:
                return counter(port, "otelcol_exporter_sent_spans_total", exporter="kafka")

            rows.append(
                run_leg1(
                    Receiver(name, proc, f"http://127.0.0.1:{otlp}/v1/traces", out, sent),
                    args,
                    templates,
                )
            )
    finally:
        admin.close()
    return rows


# --- leg 2: Kafka → storage -------------------------------------------------------------------


def _run_leg2(
    name: str, procs: list[Measured], stored: Callable[[], float], spans: int, warm: int
) -> dict[str, Any]:
    """From ``warm`` spans stored to all ``spans``: CPU of ``procs`` (the first is the
    candidate; the rest, a backend it feeds, are reported besides)."""
    wait_until(lambda: stored() >= warm, f"{name} warm-up", procs, 300)
    cpu0 = [p.cpu() for p in procs]
    t0, start = time.monotonic(), stored()
    wait_until(lambda: stored() >= spans, f"{name} storing", procs, 1200)
    elapsed = time.monotonic() - t0
    cpu = [p.cpu() - c for p, c in zip(procs, cpu0, strict=True)]
    for p in procs:
        p.check()
    done = int(stored() - start)
    if done <= 0 or elapsed < 1:
        raise SystemExit(f"{name} stored everything during the warm-up: raise --spans")
    row = _row("Kafka → storage", name, done, elapsed, cpu[0], procs[0].peak_rss)
    if len(procs) > 1:
        row["backend_cpu_s"] = sum(cpu[1:])
        row["with_backend_cpu_s_per_million"] = sum(cpu) / done * 1e6
        row["with_backend_per_core"] = done / sum(cpu)
        row["backend_peak_rss_mib"] = sum(p.peak_rss for p in procs[1:])
    return row


def _stored(port: int) -> Callable[[], float]:
    return lambda: counter(
        port, "otelcol_exporter_sent_spans_total", exporter="jaeger_storage_exporter"
    )


def leg2(
    args: argparse.Namespace,
    tmp: Path,
    templates: list[Template],
    ferryman: bool,
    topics: list[str],
) -> list[dict[str, Any]]:
    topic = f"bench-traces-in-{int(time.time())}"
    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    admin.create_topics([NewTopic(topic, PARTITIONS, 1)])
    topics.append(topic)
    admin.close()
    t0 = time.monotonic()
    messages = fill(BOOTSTRAP, topic, templates, args.spans)
    print(
        f"leg 2 input: {messages:,} messages, {args.spans:,} spans written in "
        f"{time.monotonic() - t0:.0f}s",
        file=sys.stderr,
    )
    warm = args.spans // 50
    rows = []

    metrics, health = free_port(), free_port()
    receiver = {
        "kafka": {
            "brokers": [BOOTSTRAP],
            "traces": {"topic": topic, "encoding": "otlp_proto"},
            "group_id": f"bench-jaeger-{int(time.time())}",
            "initial_offset": "earliest",
            # Mark a message consumed only once the store has its spans, as ferryman
            # commits only after the backend acknowledged.
            "message_marking": {"after": True},
        }
    }
    name = LEG2_BASE
    jaeger = start_jaeger(name, jaeger_store(receiver, metrics, health, free_port()), tmp, health)
    try:
        rows.append(_run_leg2(name, [jaeger], _stored(metrics), args.spans, warm))
    finally:
        jaeger.stop()

    if ferryman:
        otlp, metrics, health = free_port(), free_port(), free_port()
        receiver = {"otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{otlp}"}}}}
        backend = start_jaeger(
            "Jaeger otlp → memory store (ferryman's backend)",
            jaeger_store(receiver, metrics, health, free_port()),
            tmp,
            health,
        )
        settings = {
            "kafka": {
                "bootstrap_servers": BOOTSTRAP,
                "input_topic": topic,
                "group_id": f"bench-ferryman-{int(time.time())}",
                "max_poll_records": 500,
            },
            "batch": {"max_records": 200, "max_wait_s": 0.05},
            "http": {"listen": f"127.0.0.1:{free_port()}"},
            "config": {"url": f"http://127.0.0.1:{otlp}", "protocol": "http"},
        }
        path = tmp / "otlp_traces.yaml"
        path.write_text(yaml.safe_dump(settings))
        worker = Measured(
            "ferryman worker otlp_traces",
            [
                PY,
                "-m",
                "ferryman",
                "worker",
                "otlp_traces",
                "--config",
                str(path),
                "--log-level",
                "warning",
            ],
            tmp,
            cwd=args.tree,
            env=tree_env(args.tree),
        )
        try:
            rows.append(
                _run_leg2(worker.name, [worker, backend], _stored(metrics), args.spans, warm)
            )
        finally:
            worker.stop()
            backend.stop()
    return rows


# --- which ferryman legs exist ----------------------------------------------------------------


def ferryman_has(tree: Path) -> dict[str, bool]:
    """Whether ``tree`` has ``ferryman edge traces`` and the ``otlp_traces`` function."""
    env = tree_env(tree)
    edge = subprocess.run(
        [PY, "-m", "ferryman", "edge", "traces", "--help"],
        cwd=tree,
        env=env,
        capture_output=True,
        check=False,
    )
    functions = subprocess.run(
        [PY, "-m", "ferryman", "functions", "list"],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    names = {line.split()[0] for line in functions.stdout.splitlines() if line.strip()}
    return {"edge traces": edge.returncode == 0, "otlp_traces": "otlp_traces" in names}


def table(title: str, rows: list[dict[str, Any]], base: str) -> str:
    """Markdown rows; ``vs Jaeger`` is spans per core over the ``base`` row's."""
    ref = next(r["per_core"] for r in rows if r["peer"] == base)
    out = [
        f"### {title}",
        "",
        "| candidate | spans/s | spans/s per core | per core vs Jaeger | CPU-s per 1M spans "
        "| peak RSS MiB |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['peer']} | {r['spans_per_s']:,.0f} | {r['per_core']:,.0f} | "
            f"{r['per_core'] / ref:.2f}x | {r['cpu_s_per_million']:.2f} | "
            f"{r['peak_rss_mib']:.0f} |"
        )
        if "backend_cpu_s" in r:
            out.append(
                f"| {r['peer']} + its Jaeger | | {r['with_backend_per_core']:,.0f} | "
                f"{r['with_backend_per_core'] / ref:.2f}x | "
                f"{r['with_backend_cpu_s_per_million']:.2f} | "
                f"{r['peak_rss_mib'] + r['backend_peak_rss_mib']:.0f} |"
            )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--spans", type=int, default=1_000_000, help="spans per candidate")
    parser.add_argument(
        "--connections", type=int, default=8, help="concurrent connections per loader process"
    )
    parser.add_argument("--loaders", type=int, default=2, help="loader processes")
    parser.add_argument("--only", choices=["leg1", "leg2"], default=None)
    parser.add_argument(
        "--tree",
        type=Path,
        default=ROOT,
        help="checkout whose ferryman runs the ferryman candidates (default: this one)",
    )
    parser.add_argument(
        "--chart",
        type=Path,
        default=None,
        help="PNG of the tables (default: docs/bench/traces.png)",
    )
    parser.add_argument(
        "--peers-only",
        action="store_true",
        help="skip the ferryman candidates even where they exist",
    )
    args = parser.parse_args()
    args.spans -= args.spans % SPANS_PER_REQUEST
    subprocess.run(
        [PY, "-m", "ferryman", "stack", "up", "kafka", "jaeger"],
        check=True,
        stdout=subprocess.DEVNULL,
        cwd=ROOT,
    )
    has = ferryman_has(args.tree)
    why_not = "skipped (--peers-only)" if args.peers_only else "not in this tree, not run"
    if args.peers_only:
        has = dict.fromkeys(has, False)
    templates = corpus()
    size = sum(len(t.body) for t in templates) / len(templates)
    report = [
        f"Machine: {platform.node()}, {os.cpu_count()} cores, load average "
        f"{os.getloadavg()[0]:.1f} at the start; Python "
        f"{platform.python_version()}; {time.strftime('%Y-%m-%d')}; {args.spans:,} spans per "
        f"candidate in requests of {SPANS_PER_REQUEST} spans ({TRACES_PER_REQUEST} traces, "
        f"{size / 1024:.1f} KiB protobuf); {args.loaders}x{args.connections} connections",
        "ferryman legs: " + "; ".join(f"{k}: {'ran' if v else why_not}" for k, v in has.items()),
    ]
    results: dict[str, Any] = {
        "conditions": report[0],
        "spans": args.spans,
        "ferryman": has,
    }
    topics: list[str] = []
    try:
        with tempfile.TemporaryDirectory(prefix="ferryman-bench-traces-") as directory:
            tmp = Path(directory)
            if args.only in (None, "leg1"):
                rows = leg1(args, tmp, templates, has["edge traces"], topics)
                results["receiver_to_kafka"] = rows
                report.append(table("Leg 1: OTLP/HTTP receiver → Kafka", rows, LEG1_BASE))
            if args.only in (None, "leg2"):
                rows = leg2(args, tmp, templates, has["otlp_traces"], topics)
                results["kafka_to_storage"] = rows
                report.append(table("Leg 2: Kafka → storage", rows, LEG2_BASE))
    finally:
        if topics:
            admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP)
            admin.delete_topics(topics)
            admin.close()
    print("\n\n".join(report))
    (ROOT / "bench" / "results-traces.json").write_text(json.dumps(results, indent=1))
    chart.write("traces", results, args.chart)


if __name__ == "__main__":
    main()
