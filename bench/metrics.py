"""``task bench:metrics``: the edge shipper and the remote-write worker against peers.

Not a test. Every peer runs alone, on this machine, in this run, against the same
synthetic targets (or the same remote-write payloads), and is measured from /proc:
CPU-seconds per million samples and peak RSS. Kafka, the targets and the receiving
sink are shared infrastructure and not counted for anyone.

The edge runs one table per scenario (``--scenario``, default ``all``):

- ``default``: 200 targets x 1,000 counter samples;
- ``many-targets``: 2,000 targets x 100 counter samples (the per-target overhead);
- ``histograms``: 200 targets x about 1,000 samples of classic histograms
  (``_bucket{le}``, ``_sum``, ``_count``; see :mod:`bench.targets`).

Then the cold start (``--cold-starts N`` runs, 0 to skip): each peer is started with
one target scraped every second, and timed from the spawn to its first batch
acknowledged downstream (ferryman: ``ferryman_records_sent_total`` above 0, i.e.
Kafka acknowledged; the peers: the first remote-write request the sink received),
with the first scrape the target saw in between. The load average is recorded with
every row: the machine may be shared.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench import chart
from bench.procstat import cpu_seconds, peak_rss_mib
from bench.targets import KINDS, samples_per_body

ROOT = Path(__file__).resolve().parents[1]
PY = sys.executable
COLD_START_PORT = 18431


@dataclass(frozen=True)
class Scenario:
    """One edge table: ``targets`` targets of ``series`` samples of ``kind`` each;
    ``key`` names its rows in results-metrics.json."""

    name: str
    targets: int
    series: int
    kind: str
    key: str


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("default", 200, 1000, "counters", "edge"),
        Scenario("many-targets", 2000, 100, "counters", "edge_many_targets"),
        Scenario("histograms", 200, 1000, "histograms", "edge_histograms"),
    )
}


def load_average() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


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
        stop_s = _stop(proc)
        log.close()
    samples = scrapes * args.samples
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
        "load_average": load_average(),
        "stop_s": stop_s,
    }


def _stop(proc: subprocess.Popen[bytes], grace: float = 60) -> float | None:
    """SIGTERM, then SIGKILL after ``grace`` seconds; the seconds the peer took to
    exit on SIGTERM, or None when it had to be killed."""
    t0 = time.monotonic()
    proc.terminate()
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(30)
        return None
    return time.monotonic() - t0


def bench_edge(args: argparse.Namespace, tmp: Path, sink: str) -> list[dict[str, Any]]:
    from kafka import KafkaAdminClient
    from kafka.admin import NewTopic

    topic = f"bench-edge-{args.kind}-{args.targets}-{int(time.time())}"
    admin = KafkaAdminClient(bootstrap_servers="127.0.0.1:9092")
    admin.create_topics([NewTopic(topic, 4, 1)])

    def kafka_offsets() -> int:
        from kafka import KafkaConsumer, TopicPartition

        consumer = KafkaConsumer(bootstrap_servers="127.0.0.1:9092")
        parts = [TopicPartition(topic, p) for p in range(4)]
        total = sum(consumer.end_offsets(parts).values())
        consumer.close()
        return int(total)

    results: list[dict[str, Any]] = []

    def attempt(name: str, measure: Any) -> None:
        """Measure one peer unless --peers leaves it out; a peer that exits or ships
        nothing is reported (its log's tail printed) and left out of the table."""
        if not any(name.lower().startswith(p) for p in args.peers):
            return
        try:
            results.append(measure())
        except SystemExit as exc:
            logs = sorted(tmp.glob("*.log"), key=lambda f: f.stat().st_mtime)
            tail = logs[-1].read_text(errors="replace")[-1500:] if logs else ""
            print(f"{name} left out: {exc}\n{tail}", file=sys.stderr, flush=True)

    edge = {
        **_scrape_config(args),
        "ferryman": {
            "kafka": {"bootstrap_servers": "127.0.0.1:9092", "topic": topic},
            "buffer": {"directory": str(tmp / "edge-buffer")},
            "listen": "127.0.0.1:0",
        },
    }
    (tmp / "edge.yaml").write_text(yaml.safe_dump(edge))
    attempt(
        "ferryman edge",
        lambda: _measure(
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
        ),
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
    attempt(
        "vmagent",
        lambda: _measure(
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
        ),
    )

    prom = _scrape_config(args)
    prom["remote_write"] = [{"url": f"{sink}/api/v1/write"}]
    (tmp / "prometheus.yml").write_text(yaml.safe_dump(prom))
    attempt(
        "Prometheus agent",
        lambda: _measure(
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
        ),
    )
    admin.delete_topics([topic])
    admin.close()
    return results


def table(title: str, rows: list[dict[str, Any]], base: str) -> str:
    ref = next((r for r in rows if r["peer"] == base), None)
    out = [
        f"### {title}",
        "",
        "| peer | samples/s | samples/s per core | CPU-s per 1M samples | vs ferryman "
        "(CPU) | peak RSS MiB | exit on SIGTERM, s | load average |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        ratio = r["cpu_s_per_million"] / ref["cpu_s_per_million"] if ref else float("nan")
        stop = r.get("stop_s", "")
        stopped = "killed after 60" if stop is None else stop and f"{stop:.1f}"
        out.append(
            f"| {r['peer']} | {r['samples_per_s']:,.0f} | {r['per_core']:,.0f} | "
            f"{r['cpu_s_per_million']:.2f} | {ratio:.2f}x | {r['peak_rss_mib']:.0f} | "
            f"{stopped} | {r.get('load_average', '')} |"
        )
    return "\n".join(out)


def cold_start_table(rows: list[dict[str, Any]]) -> str:
    out = [
        "### Cold start: process start to the first batch acknowledged downstream",
        "",
        "| peer | to first ack, s (median) | min-max | HTTP up, s (median) "
        "| first scrape, s (median) | runs | load average |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        out.append(
            f"| {r['peer']} | {r['median_s']:.2f} | {min(r['runs_s']):.2f}-"
            f"{max(r['runs_s']):.2f} | {r['up_median_s']:.2f} | "
            f"{r['first_scrape_median_s']:.2f} | "
            f"{len(r['runs_s'])} | {r['load_average']} |"
        )
    return "\n".join(out)


def _answer(url: str) -> str | None:
    try:
        response = httpx.get(url, timeout=1)
    except httpx.HTTPError:
        return None
    return response.text if response.status_code == 200 else None


def _sent(metrics: str | None) -> float:
    for line in (metrics or "").splitlines():
        if line.startswith("ferryman_records_sent_total "):
            return float(line.split()[1])
    return 0.0


def _cold_once(
    name: str,
    argv: list[str],
    tmp: Path,
    health: str,
    acked: Any,
    scrapes_url: str,
) -> dict[str, float]:
    """Spawn one peer and time its HTTP endpoint up, the target's first scrape and the
    first batch acknowledged (``acked()`` true), polling every 10 ms."""
    scrapes0 = int(_get(scrapes_url))
    log = (tmp / f"cold-{name}.log").open("ab")
    t0 = time.monotonic()
    proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=tmp)
    marks: dict[str, float] = {}
    try:
        while True:
            elapsed = time.monotonic() - t0
            if elapsed > 30:
                raise SystemExit(f"{name}: nothing acknowledged 30 s after its start")
            if proc.poll() is not None:
                raise SystemExit(f"{name} exited: see {tmp / f'cold-{name}.log'}")
            if "up" not in marks and _answer(health) is not None:
                marks["up"] = time.monotonic() - t0
            if "scrape" not in marks and int(_get(scrapes_url)) > scrapes0:
                marks["scrape"] = time.monotonic() - t0
            if acked():
                marks["ack"] = time.monotonic() - t0
                marks.setdefault("scrape", marks["ack"])
                marks.setdefault("up", marks["ack"])
                return marks
            time.sleep(0.01)
    finally:
        _stop(proc)
        log.close()


def bench_cold_start(
    args: argparse.Namespace, tmp: Path, sink: str, runs: int
) -> list[dict[str, Any]]:
    """Each peer ``runs`` times, with one target (``args.port``) scraped every second."""
    from kafka import KafkaAdminClient, KafkaConsumer, TopicPartition
    from kafka.admin import NewTopic

    scrapes_url = f"http://127.0.0.1:{args.port - 1}/"
    one = {
        "global": {
            "scrape_interval": "1s",
            "scrape_timeout": "1s",
            "external_labels": {"cluster": "bench"},
        },
        "scrape_configs": [
            {"job_name": "bench", "static_configs": [{"targets": [f"127.0.0.1:{args.port}"]}]}
        ],
    }
    topic = f"bench-cold-{int(time.time())}"
    admin = KafkaAdminClient(bootstrap_servers="127.0.0.1:9092")
    admin.create_topics([NewTopic(topic, 1, 1)])

    def sink_requests() -> int:
        return int(_get(f"{sink}/count").split()[0])

    peers: dict[str, list[dict[str, float]]] = {}
    for run in range(runs):
        d = tmp / f"cold-{run}"
        d.mkdir()
        edge = {
            **one,
            "ferryman": {
                "kafka": {"bootstrap_servers": "127.0.0.1:9092", "topic": topic},
                "buffer": {"directory": str(d / "edge-buffer")},
                "listen": f"127.0.0.1:{COLD_START_PORT}",
            },
        }
        (d / "edge.yaml").write_text(yaml.safe_dump(edge))
        argv = [PY, "-m", "ferryman", "edge", "metrics", "--config", str(d / "edge.yaml")]
        peers.setdefault("ferryman edge", []).append(
            _cold_once(
                "ferryman-edge",
                [*argv, "--log-level", "warning"],
                tmp,
                f"http://127.0.0.1:{COLD_START_PORT}/-/healthy",
                lambda: _sent(_answer(f"http://127.0.0.1:{COLD_START_PORT}/metrics")) > 0,
                scrapes_url,
            )
        )
        (d / "vmagent.yaml").write_text(yaml.safe_dump(one))
        base = sink_requests()
        peers.setdefault("vmagent", []).append(
            _cold_once(
                "vmagent",
                [
                    "/usr/bin/vmagent",
                    f"-promscrape.config={d / 'vmagent.yaml'}",
                    f"-remoteWrite.url={sink}/api/v1/write",
                    "-httpListenAddr=127.0.0.1:18429",
                    f"-remoteWrite.tmpDataPath={d / 'vmagent-data'}",
                    "-loggerLevel=WARN",
                ],
                tmp,
                "http://127.0.0.1:18429/health",
                lambda base=base: sink_requests() > base,
                scrapes_url,
            )
        )
        prom = {**one, "remote_write": [{"url": f"{sink}/api/v1/write"}]}
        (d / "prometheus.yml").write_text(yaml.safe_dump(prom))
        base = sink_requests()
        peers.setdefault("Prometheus agent", []).append(
            _cold_once(
                "prometheus-agent",
                [
                    "/usr/bin/prometheus",
                    "--enable-feature=agent",
                    f"--config.file={d / 'prometheus.yml'}",
                    f"--storage.agent.path={d / 'agent'}",
                    "--web.listen-address=127.0.0.1:18430",
                    "--log.level=warn",
                ],
                tmp,
                "http://127.0.0.1:18430/-/healthy",
                lambda base=base: sink_requests() > base,
                scrapes_url,
            )
        )
    consumer = KafkaConsumer(bootstrap_servers="127.0.0.1:9092")
    in_kafka = sum(consumer.end_offsets([TopicPartition(topic, 0)]).values())
    consumer.close()
    admin.delete_topics([topic])
    admin.close()
    if in_kafka < runs:  # the counter said acknowledged: Kafka must hold them
        raise SystemExit(f"cold start: {in_kafka} messages in Kafka after {runs} runs")
    return [
        {
            "peer": peer,
            "runs_s": [m["ack"] for m in marks],
            "median_s": statistics.median(m["ack"] for m in marks),
            "up_median_s": statistics.median(m["up"] for m in marks),
            "first_scrape_median_s": statistics.median(m["scrape"] for m in marks),
            "load_average": load_average(),
        }
        for peer, marks in peers.items()
    ]


def _edge_code() -> str:
    """Where the ``ferryman`` the bench spawns comes from (PYTHONPATH or the installed
    tree), and that tree's commit."""
    where = subprocess.run(
        [PY, "-c", "import edge.metrics.scrape as s; print(s.__file__)"],
        capture_output=True,
        text=True,
        cwd=tempfile.gettempdir(),
        check=True,
    ).stdout.strip()
    tree = Path(where).parents[2]
    commit = subprocess.run(
        ["git", "-C", str(tree), "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()
    return f"{tree} at {commit or 'unknown commit'}"


def _targets(args: argparse.Namespace, targets: int, series: int, kind: str) -> Any:
    """The synthetic targets' process, serving once its ports are bound."""
    proc = subprocess.Popen(
        [PY, "-m", "bench.targets", str(args.port), str(targets), str(series), kind],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    print(proc.stdout.readline().strip(), flush=True)
    return proc


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument(
        "--scenario",
        choices=[*SCENARIOS, "all"],
        nargs="+",
        default=["all"],
        help="edge table(s) to run (default all)",
    )
    parser.add_argument("--targets", type=int, default=None, help="override the scenario's")
    parser.add_argument("--series", type=int, default=None, help="override the scenario's")
    parser.add_argument("--kind", choices=KINDS, default=None, help="override the scenario's")
    parser.add_argument("--interval", type=int, default=5)
    parser.add_argument("--duration", type=float, default=60)
    parser.add_argument("--warmup", type=float, default=12)
    parser.add_argument("--port", type=int, default=21001)
    parser.add_argument("--cold-starts", type=int, default=5, help="runs per peer, 0 to skip")
    parser.add_argument("--only", choices=["edge", "worker", "cold-start"], default=None)
    parser.add_argument(
        "--peers",
        nargs="+",
        choices=["ferryman", "vmagent", "prometheus"],
        default=["ferryman", "vmagent", "prometheus"],
        help="edge peers to measure (default all three)",
    )
    parser.add_argument(
        "--chart",
        type=Path,
        default=None,
        help="PNG of the tables (default: docs/bench/metrics.png)",
    )
    args = parser.parse_args()
    names = list(SCENARIOS) if "all" in args.scenario else args.scenario
    subprocess.run(
        [PY, "-m", "ferryman", "stack", "up", "kafka"], check=True, stdout=subprocess.DEVNULL
    )
    with tempfile.TemporaryDirectory(prefix="ferryman-bench-") as directory:
        tmp = Path(directory)
        sink_port = args.port - 2
        sink_proc = subprocess.Popen([PY, "-m", "bench.sink", str(sink_port)], cwd=ROOT)
        sink = f"http://127.0.0.1:{sink_port}"
        time.sleep(1)
        try:
            report = [
                f"Machine: {platform.node()} — {platform.processor() or platform.machine()}"
                f", {os.cpu_count()} cores; Python {platform.python_version()}; "
                f"{time.strftime('%Y-%m-%d')}; load average at start {load_average()}; "
                f"ferryman from {_edge_code()}"
            ]
            results: dict[str, Any] = {"conditions": report[0]}
            for name in names if args.only in (None, "edge") else []:
                scenario = SCENARIOS[name]
                run = argparse.Namespace(**vars(args))
                run.targets = args.targets or scenario.targets
                run.series = args.series or scenario.series
                run.kind = args.kind or scenario.kind
                run.samples = samples_per_body(run.series, run.kind)
                targets = _targets(args, run.targets, run.series, run.kind)
                (tmp / name).mkdir()
                try:
                    rows = bench_edge(run, tmp / name, sink)
                finally:
                    targets.terminate()
                    targets.wait(30)
                report.append(
                    table(
                        f"Edge ({name}): scrape {run.targets} targets x {run.samples} "
                        f"{run.kind.removesuffix('s')} samples every {run.interval}s and ship",
                        rows,
                        "ferryman edge",
                    )
                )
                suffix = "" if name == "default" else f"-{name}"
                (ROOT / "bench" / f"results-edge{suffix}.json").write_text(
                    json.dumps(rows, indent=1)
                )
                results[scenario.key] = rows
                results.setdefault("scenarios", {})[scenario.key] = {
                    "targets": run.targets,
                    "samples_per_target": run.samples,
                    "kind": run.kind,
                    "interval_s": run.interval,
                }
            if args.only in (None, "cold-start") and args.cold_starts > 0:
                targets = _targets(args, 1, 1000, "counters")
                try:
                    (tmp / "cold").mkdir()
                    rows = bench_cold_start(args, tmp / "cold", sink, args.cold_starts)
                finally:
                    targets.terminate()
                    targets.wait(30)
                report.append(cold_start_table(rows))
                results["cold_start"] = rows
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
            if set(results) - {"conditions", "scenarios", "cold_start"}:
                chart.write("metrics", results, args.chart)
        finally:
            sink_proc.terminate()


if __name__ == "__main__":
    main()
