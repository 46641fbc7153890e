"""``task bench:logs``: the edge log shipper vs rsyslog (imfile → omkafka), same files,
same Kafka, one after the other in one run. Not a test.

Both read the same pre-written files from the start and produce every line to
Kafka; a run ends when Kafka holds every line. CPU-seconds and peak RSS come from
/proc of the shipper's process; Kafka is shared and counted for nobody.
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

from bench.procstat import cpu_seconds, peak_rss_mib

ROOT = Path(__file__).resolve().parents[1]
BOOTSTRAP = "127.0.0.1:9092"


def write_files(directory: Path, files: int, lines: int) -> int:
    directory.mkdir(parents=True)
    total = 0
    for f in range(files):
        with (directory / f"app-{f}.log").open("w") as out:
            for i in range(lines):
                out.write(f"2026-11-25T12:00:{i % 60:02d}.{i % 1000:03d}Z INFO [worker-{i % 8}] "
                          f"request id={f}-{i} path=/api/v1/items/{i % 977} status=200 "
                          f"duration_ms={i % 250}\n")
        total += (directory / f"app-{f}.log").stat().st_size
    return total


def _end_offsets(topic: str, partitions: int) -> int:
    consumer = KafkaConsumer(bootstrap_servers=BOOTSTRAP)
    try:
        return sum(consumer.end_offsets(
            [TopicPartition(topic, p) for p in range(partitions)]).values())
    finally:
        consumer.close()


def _measure(name: str, argv: list[str], done: Any, tmp: Path,
             timeout: float = 900) -> dict[str, Any]:
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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--files", type=int, default=4)
    parser.add_argument("--lines", type=int, default=250_000)
    args = parser.parse_args()
    subprocess.run([sys.executable, "-m", "ferryman", "stack", "up", "kafka", "rsyslog"],
                   check=True, stdout=subprocess.DEVNULL)
    total_lines = args.files * args.lines
    admin = KafkaAdminClient(bootstrap_servers=BOOTSTRAP)
    stamp = int(time.time())
    topics = {"ferryman": f"bench-logs-ferryman-{stamp}", "rsyslog": f"bench-logs-rsyslog-{stamp}"}
    admin.create_topics([NewTopic(t, 4, 1) for t in topics.values()])
    rows = []
    with tempfile.TemporaryDirectory(prefix="ferryman-bench-logs-") as directory:
        tmp = Path(directory)
        size = write_files(tmp / "logs", args.files, args.lines)

        config = {"positions": {"filename": str(tmp / "positions.json")},
                  "scrape_configs": [{"job_name": "bench", "static_configs": [
                      {"labels": {"job": "bench", "__path__": str(tmp / "logs" / "*.log")}}]}],
                  "ferryman": {"kafka": {"bootstrap_servers": BOOTSTRAP,
                                         "topic": topics["ferryman"]},
                               "listen": "127.0.0.1:19902", "batch_bytes": "1MB"}}
        (tmp / "edge.yaml").write_text(yaml.safe_dump(config))
        def ferryman_done() -> bool:
            # Lines Kafka acknowledged, from the shipper's own counter.
            try:
                text = httpx.get("http://127.0.0.1:19902/metrics", timeout=2).text
            except httpx.HTTPError:
                return False
            sent = [line for line in text.splitlines()
                    if line.startswith("ferryman_records_sent_total ")]
            return bool(sent) and float(sent[0].split()[1]) >= total_lines

        rows.append(_measure("ferryman edge logs", [
            sys.executable, "-m", "ferryman", "edge", "logs", "--config", str(tmp / "edge.yaml"),
            "--log-level", "warning"], ferryman_done, tmp))

        (tmp / "rsyslog-work").mkdir()
        (tmp / "rsyslog.conf").write_text(f"""
global(workDirectory="{tmp / 'rsyslog-work'}")
module(load="imfile")
module(load="omkafka")
template(name="msgonly" type="string" string="%msg%")
input(type="imfile" File="{tmp / 'logs'}/*.log" Tag="bench" ruleset="tokafka"
      freshStartTail="off" readMode="0")
ruleset(name="tokafka") {{
  action(type="omkafka" broker=["{BOOTSTRAP}"] topic="{topics['rsyslog']}"
         template="msgonly" confParam=["queue.buffering.max.messages=200000"])
}}
""")
        rows.append(_measure("rsyslog imfile → omkafka", [
            "/usr/sbin/rsyslogd", "-n", "-f", str(tmp / "rsyslog.conf"),
            "-i", str(tmp / "rsyslog.pid")],
            lambda: _end_offsets(topics["rsyslog"], 4) >= total_lines, tmp))
    admin.delete_topics(list(topics.values()))
    admin.close()
    mib = size / 2**20
    ref = rows[0]
    lines_out = [f"Machine: {platform.node()}, 2 cores; Python {platform.python_version()}; "
                 f"{args.files} files, {total_lines:,} lines, {mib:.0f} MiB", "",
                 "| shipper | MiB/s | lines/s | MiB/s per core | lines/s per core | "
                 "CPU vs ferryman | peak RSS MiB |", "|---|---|---|---|---|---|---|"]
    for r in rows:
        lines_out.append(
            f"| {r['peer']} | {mib / r['seconds']:.1f} | {total_lines / r['seconds']:,.0f} | "
            f"{mib / r['cpu_s']:.1f} | {total_lines / r['cpu_s']:,.0f} | "
            f"{r['cpu_s'] / ref['cpu_s']:.2f}x | {r['peak_rss_mib']:.0f} |")
    print("\n".join(lines_out))
    (ROOT / "bench" / "results-logs.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
