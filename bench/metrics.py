"""``task bench:metrics``: the edge shipper and the remote-write worker against peers.

Not a test. Every peer runs alone, on this machine, in this run, against the same
synthetic targets (or the same remote-write payloads), and is measured from /proc:
CPU-seconds per million samples and peak RSS. Kafka, the targets and the receiving
sink are shared infrastructure and not counted for anyone.
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

from bench import chart
from bench.procstat import cpu_seconds, peak_rss_mib
from bench.targets import render

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable


def _get(url: str) -> str:
    return httpx.get(url, timeout=10).text


def _scrape_config(args: argparse.Namespace) -> dict[str, Any]:
    targets = [f"127.0.0.1:{args.port + i}" for i in range(args.targets)]
    return {
        "global": {
            "scrape_interval": f"{args.interval}s",
            "scrape_timeout": f"{args.interval - 1}s",
            "external_labels": {"cluster": "bench"},
        },
        "scrape_configs": [{"job_name": "bench", "static_configs": [{"targets": targets}]}],
    }


def _measure(
    name: str, argv: list[str], args: argparse.Namespace, tmp: Path, shipped: Any
) -> dict[str, Any]:
    log = (tmp / f"{name}.log").open("wb")
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
    try:
        time.sleep(args.warmup)
        if proc.poll() is not None:
            raise SystemExit(f"{name} exited: see {tmp / (name + '.log')}")
        scrapes0 = int(_get(f"http://127.0.0.1:{args.port - 1}/"))
        shipped0 = shipped()
        cpu0 = cpu_seconds(proc.pid)
        t0 = time.monotonic()
        time.sleep(args.duration)
        scrapes = int(_get(f"http://127.0.0.1:{args.port - 1}/")) - scrapes0
        cpu = cpu_seconds(proc.pid) - cpu0
        elapsed = time.monotonic() - t0
        shipped_delta = shipped() - shipped0
        rss = peak_rss_mib(proc.pid)
    finally:
        proc.terminate()
        proc.wait(30)
        log.close()
    samples = scrapes * args.series
    if shipped_delta <= 0:
        raise SystemExit(f"{name} shipped nothing during the window")
    return {
        "peer": name,
        "samples": samples,
        "samples_per_s": samples / elapsed,
        "cpu_s": cpu,
        "cpu_s_per_million": cpu / samples * 1e6 if samples else float("inf"),
        "per_core": samples / cpu if cpu else 0.0,
        "peak_rss_mib": rss,
        "expected_scrapes": args.targets * elapsed / args.interval,
        "scrapes": scrapes,
    }


def bench_edge(args: argparse.Namespace, tmp: Path, sink: str) -> list[dict[str, Any]]:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    topic = f"bench-edge-{int(time.time())}"
    admin = KafkaAdminClient(bootstrap_servers="127.0.0.1:9092")
    admin.create_topics([NewTopic(topic, 4, 1)])

    def kafka_offsets() -> int:
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(bootstrap_servers="127.0.0.1:9092")
        parts = [TopicPartition(topic, p) for p in range(4)]
        total = sum(consumer.end_offsets(parts).values())
        consumer.close()
        return int(total)

    results = []
    edge = {
        **_scrape_config(args),
        "ferryman": {
            "kafka": {"bootstrap_servers": "127.0.0.1:9092", "topic": topic},
            "buffer": {"directory": str(tmp / "edge-buffer")},
            "listen": "127.0.0.1:0",
        },
    }
    (tmp / "edge.yaml").write_text(yaml.safe_dump(edge))
    results.append(
        _measure(
            "ferryman edge",
            [
                PY,
                "-m",
                "ferryman",
                "edge",
                "metrics",
                "--config",
                str(tmp / "edge.yaml"),
                "--log-level",
                "warning",
            ],
            args,
            tmp,
            kafka_offsets,
        )
    )

    def sink_requests() -> int:
        return int(_get(f"{sink}/count").split()[0])

    (tmp / "vmagent.yaml").write_text(
        yaml.safe_dump(
            {
                "global": _scrape_config(args)["global"]
                | {"external_labels": {"cluster": "bench"}},
                "scrape_configs": _scrape_config(args)["scrape_configs"],
            }
        )
    )
    results.append(
        _measure(
            "vmagent",
            [
                "/usr/bin/vmagent",
                f"-promscrape.config={tmp / 'vmagent.yaml'}",
                f"-remoteWrite.url={sink}/api/v1/write",
                "-httpListenAddr=127.0.0.1:18429",
                f"-remoteWrite.tmpDataPath={tmp / 'vmagent-data'}",
                "-loggerLevel=WARN",
            ],
            args,
            tmp,
            sink_requests,
        )
    )

    prom = _scrape_config(args)
    prom["remote_write"] = [{"url": f"{sink}/api/v1/write"}]
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(prom))
    results.append(
        _measure(
            "Prometheus agent",
            [
                "/usr/bin/prometheus",
                "--enable-feature=agent",
                f"--config.file={tmp / 'prometheus.yml'}",
                f"--storage.agent.path={tmp / 'agent'}",
                "--web.listen-address=127.0.0.1:18430",
                "--log.level=warn",
            ],
            args,
            tmp,
            sink_requests,
        )
    )
    admin.delete_topics([topic])
    admin.close()
    return results


def table(title: str, rows: list[dict[str, Any]], base: str) -> str:
    ref = next(r for r in rows if r["peer"] == base)
    out = [
        f"### {title}",
        "",
        "| peer | samples/s | samples/s per core | CPU-s per 1M samples | vs ferryman "
        "(CPU) | peak RSS MiB |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = r["cpu_s_per_million"] / ref["cpu_s_per_million"]
        out.append(
            f"| {r['peer']} | {r['samples_per_s']:,.0f} | {r['per_core']:,.0f} | "
            f"{r['cpu_s_per_million']:.2f} | {ratio:.2f}x | {r['peak_rss_mib']:.0f} |"
        )
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--targets", type=int, default=200)
    parser.add_argument("--series", type=int, default=1000)
    parser.add_argument("--interval", type=int, default=5)
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--warmup", type=float, default=12)
    parser.add_argument("--port", type=int, default=21001)
    parser.add_argument("--only", choices=["edge", "worker"], default=None)
    parser.add_argument(
        "--chart",
        type=Path,
        default=None,
        help="PNG of the tables (default: docs/bench/metrics.png)",
    )
    args = parser.parse_args()
    assert len(render(0, args.series, 0).splitlines()) >= args.series
    subprocess.run(
        [PY, "-m", "ferryman", "stack", "up", "kafka"], check=True, stdout=subprocess.DEVNULL
    )
    with tempfile.TemporaryDirectory(prefix="ferryman-bench-") as directory:
        tmp = Path(directory)
        targets = subprocess.Popen(
            [PY, "-m", "bench.targets", str(args.port), str(args.targets), str(args.series)],
            cwd=ROOT,
        )
        sink_port = args.port - 2
        sink_proc = subprocess.Popen([PY, "-m", "bench.sink", str(sink_port)], cwd=ROOT)
        sink = f"http://127.0.0.1:{sink_port}"
        time.sleep(2)
        try:
            report = [
                f"Machine: {platform.node()} — {platform.processor() or platform.machine()}"
                f", 2 cores; Python {platform.python_version()}; "
                f"{time.strftime('%Y-%m-%d')}"
            ]
            results: dict[str, Any] = {"conditions": report[0]}
            if args.only in (None, "edge"):
                rows = bench_edge(args, tmp, sink)
                report.append(
                    table(
                        f"Edge: scrape {args.targets} targets x {args.series} "
                        f"series every {args.interval}s and ship",
                        rows,
                        "ferryman edge",
                    )
                )
                (ROOT / "bench" / "results-edge.json").write_text(json.dumps(rows, indent=1))
                results["edge"] = rows
            if args.only in (None, "worker"):
                from bench.worker import bench_worker

                rows = bench_worker(tmp, sink)
                report.append(
                    table(
                        "Worker: remote write from Kafka-equivalent input",
                        rows,
                        "ferryman pass-through",
                    )
                )
                (ROOT / "bench" / "results-worker.json").write_text(json.dumps(rows, indent=1))
                results["worker"] = rows
            print("\n\n".join(report))
            (ROOT / "bench" / "results-metrics.json").write_text(json.dumps(results, indent=1))
            chart.write("metrics", results, args.chart)
        finally:
            targets.terminate()
            sink_proc.terminate()


if __name__ == "__main__":
    main()
