"""``task bench:logs``: the log path's speed, in one run. Not a test.

1. The edge log shipper vs rsyslog (imfile → omkafka): both read the same
   pre-written files from the start and produce every line to Kafka; a run ends
   when Kafka holds every line.
2. The ``loki`` (into VictoriaLogs' Loki API) and ``elasticsearch_logs`` functions
   over the messages the shipper produced: lines/s per core of the worker.
3. A slow sink: the shipper follows files written at a steady rate while a Kafka
   quota lets through about a tenth of it; its peak RSS must stay bounded.

CPU-seconds and peak RSS come from /proc of the measured process; Kafka and the
backends are shared and counted for nobody.
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import yaml
from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
from kafka.admin import NewTopic

from bench import chart
from bench.procstat import cpu_seconds, peak_rss_mib
from bench.worker import run_worker

ROOT = Path(__file__).resolve().parents[1]
BOOTSTRAP = "127.0.0.1:9092"
KAFKA_LIBS = Path.home() / ".cache" / "ferryman" / "opt" / "kafka-4.4.0"
SHIPPER_CLIENT_ID = "ferryman-edge-logs"


def line(f: int, i: int) -> str:
    return (
        f"2026-11-25T12:00:{i % 60:02d}.{i % 1000:03d}Z INFO [worker-{i % 8}] "
        f"request id={f}-{i} path=/api/v1/items/{i % 977} status=200 "
        f"duration_ms={i % 250}\n"
    )


def write_files(directory: Path, files: int, lines: int) -> int:
    directory.mkdir(parents=True)
    total = 0
    for f in range(files):
        with (directory / f"app-{f}.log").open("w") as out:
            out.writelines(line(f, i) for i in range(lines))
        total += (directory / f"app-{f}.log").stat().st_size
    return total


def _end_offsets(topic: str, partitions: int) -> int:
    consumer = KafkaConsumer(bootstrap_servers=BOOTSTRAP)
    try:
        return sum(
            consumer.end_offsets([TopicPartition(topic, p) for p in range(partitions)]).values()
        )
    finally:
        consumer.close()


def _measure(
    name: str, argv: list[str], done: Any, tmp: Path, timeout: float = 900
) -> dict[str, Any]:
    with (tmp / f"{name}.log").open("wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    start = time.monotonic()
    rss = 0.0
    try:
        while not done():
            if proc.poll() is not None:
                raise SystemExit(f"{name} exited early; see {tmp / (name + '.log')}")
            if time.monotonic() - start > timeout:
                raise SystemExit(f"{name} did not finish in {timeout}s")
            rss = max(rss, peak_rss_mib(proc.pid))
            time.sleep(0.2)
        elapsed = time.monotonic() - start
        cpu = cpu_seconds(proc.pid)
        rss = max(rss, peak_rss_mib(proc.pid))
    finally:
        proc.terminate()
        proc.wait(30)
    return {"peer": name, "seconds": elapsed, "cpu_s": cpu, "peak_rss_mib": rss}


def _shipper_config(tmp: Path, logs: Path, topic: str, port: int) -> Path:
    config = {
        "positions": {"filename": str(tmp / f"positions-{port}.json")},
        "scrape_configs": [
            {
                "job_name": "bench",
                "static_configs": [{"labels": {"job": "bench", "__path__": str(logs / "*.log")}}],
            }
        ],
        "ferryman": {
            "kafka": {"bootstrap_servers": BOOTSTRAP, "topic": topic},
            "listen": f"127.0.0.1:{port}",
            "batch_bytes": "1MB",
        },
    }
    path = tmp / f"edge-{port}.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def _shipped(port: int) -> float:
    """Lines Kafka acknowledged, from the shipper's own counter (-1 when unreachable)."""
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=2).text
    except httpx.HTTPError:
        return -1
    sent = [line for line in text.splitlines() if line.startswith("ferryman_records_sent_total ")]
    return float(sent[0].split()[1]) if sent else 0


def _started(argv: list[str], ready: Any, tmp: Path, name: str) -> float:
    """CPU-seconds a shipper spends starting up with nothing to read: until ``ready``,
    and one second more."""
    with (tmp / f"{name}-startup.log").open("wb") as log:
        proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=ROOT)
    try:
        deadline = time.monotonic() + 60
        while not ready():
            if proc.poll() is not None or time.monotonic() > deadline:
                raise SystemExit(f"{name} did not start; see {tmp / (name + '-startup.log')}")
            time.sleep(0.05)
        time.sleep(1.0)
        return cpu_seconds(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)


def _ferryman_argv(tmp: Path, logs: Path, topic: str, port: int) -> list[str]:
    return [
        sys.executable,
        "-m",
        "ferryman",
        "edge",
        "logs",
        "--config",
        str(_shipper_config(tmp, logs, topic, port)),
        "--log-level",
        "warning",
    ]


def _rsyslog_argv(tmp: Path, logs: Path, topic: str, name: str) -> list[str]:
    work = tmp / f"{name}-work"
    work.mkdir()
    (tmp / f"{name}.conf").write_text(f"""
global(workDirectory="{work}")
module(load="imfile")
module(load="omkafka")
template(name="msgonly" type="string" string="%msg%")
input(type="imfile" File="{logs}/*.log" Tag="bench" ruleset="tokafka"
      freshStartTail="off" readMode="0")
ruleset(name="tokafka") {{
  action(type="omkafka" broker=["{BOOTSTRAP}"] topic="{topic}"
         template="msgonly" confParam=["queue.buffering.max.messages=200000"])
}}
""")
    return [
        "/usr/sbin/rsyslogd",
        "-n",
        "-f",
        str(tmp / f"{name}.conf"),
        "-i",
        str(tmp / f"{name}.pid"),
    ]


def bench_shippers(
    args: argparse.Namespace, tmp: Path, topics: dict[str, str], total_lines: int
) -> list[dict[str, Any]]:
    """Each shipper reads the files to their end; its start-up (the CPU it spends with
    no files at all) is measured on its own, so steady throughput can be told apart."""
    empty = tmp / "empty"
    empty.mkdir()
    rows = [
        _measure(
            "ferryman edge logs",
            _ferryman_argv(tmp, tmp / "logs", topics["ferryman"], 19902),
            lambda: _shipped(19902) >= total_lines,
            tmp,
        )
    ]
    rows[0]["startup_cpu_s"] = _started(
        _ferryman_argv(tmp, empty, topics["ferryman"], 19903),
        lambda: _shipped(19903) >= 0,
        tmp,
        "ferryman",
    )
    rows.append(
        _measure(
            "rsyslog imfile → omkafka",
            _rsyslog_argv(tmp, tmp / "logs", topics["rsyslog"], "rsyslog"),
            lambda: _end_offsets(topics["rsyslog"], 4) >= total_lines,
            tmp,
        )
    )
    rows[1]["startup_cpu_s"] = _started(
        _rsyslog_argv(tmp, empty, topics["rsyslog"], "rsyslog-idle"),
        lambda: (tmp / "rsyslog-idle.pid").exists(),
        tmp,
        "rsyslog",
    )
    return rows


def bench_functions(tmp: Path, topic: str, total_lines: int) -> list[dict[str, Any]]:
    """The log sinks over the shipper's messages, each from the first message to the last."""
    messages = _end_offsets(topic, 4)
    per_message = total_lines / messages
    stamp = int(time.time())
    batch = {"max_records": 50, "max_bytes": 8 << 20, "max_wait_s": 0.2}
    return [
        run_worker(
            "loki → VictoriaLogs",
            "loki",
            tmp,
            topic,
            {
                "url": "http://127.0.0.1:9428",
                "push_path": "/insert/loki/api/v1/push",
                "max_request_bytes": 4 << 20,
            },
            messages=messages,
            units_per_message=per_message,
            warmup=4,
            batch=batch,
        ),
        run_worker(
            "elasticsearch_logs → Elasticsearch",
            "elasticsearch_logs",
            tmp,
            topic,
            {"url": "http://127.0.0.1:9200", "data_stream": f"logs-ferrymanbench-b{stamp}"},
            messages=messages,
            units_per_message=per_message,
            warmup=4,
            batch=batch,
        ),
    ]


def _quota(rate: str) -> None:
    subprocess.run(
        [
            "java",
            "-cp",
            f"{KAFKA_LIBS}/*",
            str(ROOT / "bench" / "KafkaQuota.java"),
            BOOTSTRAP,
            SHIPPER_CLIENT_ID,
            rate,
        ],
        check=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )


def bench_slow_sink(args: argparse.Namespace, tmp: Path, topic: str) -> dict[str, Any]:
    """Files grow at ``--slow-rate`` lines/s while Kafka takes about a tenth: the
    shipper must stop reading (the files are the buffer), not grow."""
    logs = tmp / "slow"
    logs.mkdir()
    rate, seconds = args.slow_rate, args.slow_seconds
    # Bytes on the wire per line, snappy-compressed and framed, measured once: ~20 B.
    _quota(str(rate * 20 // 10))
    config = _shipper_config(tmp, logs, topic, 19903)
    with (tmp / "slow-shipper.log").open("wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "ferryman",
                "edge",
                "logs",
                "--config",
                str(config),
                "--log-level",
                "warning",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            cwd=ROOT,
        )
    written = 0
    rss = 0.0
    try:
        outs = [(logs / f"app-{f}.log").open("w") for f in range(4)]
        start = time.monotonic()
        while (elapsed := time.monotonic() - start) < seconds:
            due = int(rate * elapsed)
            while written < due:
                outs[written % 4].write(line(written % 4, written))
                written += 1
            for out in outs:
                out.flush()
            rss = max(rss, peak_rss_mib(proc.pid))
            time.sleep(0.05)
        shipped = _shipped(19903)
        rss = max(rss, peak_rss_mib(proc.pid))
        cpu = cpu_seconds(proc.pid)
        for out in outs:
            out.close()
    finally:
        proc.terminate()
        proc.wait(30)
        _quota("none")
    backlog = sum(p.stat().st_size for p in logs.iterdir())
    return {
        "peer": "ferryman edge logs, slow sink",
        "written_lines": written,
        "shipped_lines": shipped,
        "ratio": shipped / written,
        "seconds": seconds,
        "cpu_s": cpu,
        "peak_rss_mib": rss,
        "files_mib": backlog / 2**20,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--lines", type=int, default=1_000_000, help="lines per file")
    parser.add_argument("--slow-rate", type=int, default=50_000, help="lines/s written")
    parser.add_argument("--slow-seconds", type=float, default=60)
    parser.add_argument("--only", choices=["shippers", "functions", "slow"], default=None)
    parser.add_argument(
        "--chart", type=Path, default=None, help="PNG of the tables (default: docs/bench/logs.png)"
    )
    args = parser.parse_args()
    subprocess.run(
        [
            sys.executable,
            "-m",
            "ferryman",
            "stack",
            "up",
            "kafka",
            "rsyslog",
            "elasticsearch",
            "victorialogs",
        ],
        check=True,
        stdout=subprocess.DEVNULL,
    )
    total_lines = args.files * args.lines
    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    stamp = int(time.time())
    topics = {
        "ferryman": f"bench-logs-ferryman-{stamp}",
        "rsyslog": f"bench-logs-rsyslog-{stamp}",
        "slow": f"bench-logs-slow-{stamp}",
    }
    admin.create_topics([NewTopic(t, 4, 1) for t in topics.values()])
    report = [
        f"Machine: {platform.node()}, 2 cores; Python {platform.python_version()}; "
        f"{time.strftime('%Y-%m-%d')}"
    ]
    results: dict[str, Any] = {"conditions": report[0], "lines": total_lines}
    try:
        with tempfile.TemporaryDirectory(prefix="ferryman-bench-logs-") as directory:
            tmp = Path(directory)
            if args.only in (None, "shippers", "functions"):
                size = write_files(tmp / "logs", args.files, args.lines)
                mib = size / 2**20
                rows = bench_shippers(args, tmp, topics, total_lines)
                if args.only != "functions":
                    results["shippers"] = rows
                    report += [
                        "",
                        f"Shippers: {args.files} files, {total_lines:,} lines, "
                        f"{mib:.0f} MiB, read from the start into Kafka",
                        "",
                        "| shipper | MiB/s | lines/s | MiB/s per core | "
                        "lines/s per core | CPU-s per 1M lines | CPU vs ferryman | "
                        "start-up CPU-s | MiB/s per core past start-up | "
                        "peak RSS MiB |",
                        "|---|---|---|---|---|---|---|---|---|---|",
                    ]
                    for r in rows:
                        steady = r["cpu_s"] - r["startup_cpu_s"]
                        report.append(
                            f"| {r['peer']} | {mib / r['seconds']:.1f} | "
                            f"{total_lines / r['seconds']:,.0f} | {mib / r['cpu_s']:.1f} | "
                            f"{total_lines / r['cpu_s']:,.0f} | "
                            f"{r['cpu_s'] / total_lines * 1e6:.2f} | "
                            f"{r['cpu_s'] / rows[0]['cpu_s']:.2f}x | "
                            f"{r['startup_cpu_s']:.2f} | {mib / steady:.1f} | "
                            f"{r['peak_rss_mib']:.0f} |"
                        )
            if args.only in (None, "functions"):
                rows = bench_functions(tmp, topics["ferryman"], total_lines)
                results["functions"] = rows
                report += [
                    "",
                    "Functions: the shipper's messages from Kafka into the backend",
                    "",
                    "| function | lines/s | lines/s per core | CPU-s per 1M lines | peak RSS MiB |",
                    "|---|---|---|---|---|",
                ]
                for r in rows:
                    report.append(
                        f"| {r['peer']} | {r['per_s']:,.0f} | {r['per_core']:,.0f} | "
                        f"{r['cpu_s_per_million']:.2f} | {r['peak_rss_mib']:.0f} |"
                    )
            if args.only in (None, "slow"):
                r = bench_slow_sink(args, tmp, topics["slow"])
                results["slow_sink"] = r
                report += [
                    "",
                    f"Slow sink: files written at {args.slow_rate:,} lines/s for "
                    f"{args.slow_seconds:.0f} s while a Kafka quota takes a fraction",
                    "",
                    "| written lines | shipped lines | sink/source | "
                    "backlog in files MiB | peak RSS MiB |",
                    "|---|---|---|---|---|",
                    f"| {r['written_lines']:,} | {r['shipped_lines']:,.0f} | "
                    f"{r['ratio']:.2f} | {r['files_mib']:.0f} | "
                    f"{r['peak_rss_mib']:.0f} |",
                ]
    finally:
        admin.delete_topics(list(topics.values()))
        admin.close()
    print("\n".join(report))
    (ROOT / "bench" / "results-logs.json").write_text(json.dumps(results, indent=1))
    if results.get("shippers") or results.get("functions"):
        chart.write("logs", results, args.chart)


if __name__ == "__main__":
    main()
