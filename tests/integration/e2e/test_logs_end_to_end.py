"""The logs path end to end on the real stack: files → edge log shipper → Kafka →
``loki`` (a private VictoriaLogs on its Loki API) and ``elasticsearch_logs`` (the
stack's Elasticsearch), with rotation of both kinds mid-stream, a Kubernetes pod log
in CRI format with partial lines and multiline Java stack traces (``cri`` and
``multiline`` stages), a 1 MiB line, invalid UTF-8, kill -9 of the shipper and of
each worker at random points, and the Loki backend down for 60 s. Every line must
arrive in both, in order per file, and in Elasticsearch exactly once.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import time
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import httpx
from kafka import KafkaAdminClient
from kafka.admin import NewTopic

from tests.integration.pipeline import (
    EdgeLogs,
    PrivateVictoriaLogs,
    Worker,
    free_port,
    wait_for,
)

MiB = 1 << 20
FILES = 3


def _topics(bootstrap: str, topic: str) -> None:
    # A topic that takes 4 MiB messages, as an operator shipping 1 MiB lines would set.
    admin = KafkaAdminClient(bootstrap_servers=bootstrap)
    try:
        admin.create_topics(
            [
                NewTopic(topic, 4, 1, topic_configs={"max.message.bytes": str(4 * MiB)}),
                NewTopic(f"{topic}-loki-dlq", 1, 1),
                NewTopic(f"{topic}-es-dlq", 1, 1),
            ]
        )
    finally:
        admin.close()


class Writer:
    """Appends numbered lines to app-N.log; remembers what every file must contain."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        directory.mkdir(parents=True)
        self.expected: dict[int, list[str]] = defaultdict(list)
        self.seq = [0] * FILES

    def path(self, f: int) -> Path:
        return self.directory / f"app-{f}.log"

    def write(self, f: int, count: int, *, payload: str = "") -> None:
        lines = []
        for _ in range(count):
            text = f"f{f} seq={self.seq[f]:06d} GET /api/items/{self.seq[f] % 97} {payload}"
            lines.append(text)
            self.expected[f].append(text)
            self.seq[f] += 1
        with self.path(f).open("a") as out:
            out.write("".join(line + "\n" for line in lines))

    def write_raw(self, f: int, body: bytes, shipped_as: str) -> None:
        with self.path(f).open("ab") as out:
            out.write(body + b"\n")
        self.expected[f].append(shipped_as)
        self.seq[f] += 1


class PodWriter:
    """A container's CRI log under /var/log/pods/<ns>_<pod>_<uid>/<container>/0.log:
    records of one or more lines (stack traces), some lines split into partials."""

    def __init__(self, root: Path, rng: random.Random) -> None:
        self.path = root / "pods" / "shop_cart-7d9f_0a1b2c3d" / "cart" / "0.log"
        self.path.parent.mkdir(parents=True)
        self.rng = rng
        self.records: list[str] = []
        self.clock = time.time_ns() - 3600 * 10**9
        self.n = 0

    def _cri(self, content: str) -> str:
        pieces = [content]
        if len(content) > 30 and self.rng.random() < 0.4:  # the runtime split it
            cut = sorted(self.rng.sample(range(1, len(content)), 2))
            pieces = [content[: cut[0]], content[cut[0] : cut[1]], content[cut[1] :]]
        self.clock += 1_000_000
        stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.clock // 10**9))
        stamp += f".{self.clock % 10**9:09d}Z"
        return "".join(
            f"{stamp} stdout {'F' if i == len(pieces) - 1 else 'P'} {piece}\n"
            for i, piece in enumerate(pieces)
        )

    def write(self, count: int, *, trace: bool = False) -> None:
        out = []
        for _ in range(count):
            day = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(self.clock // 10**9))
            first = f"{day} INFO cart request n={self.n:05d} items={self.n % 7}"
            lines = [first]
            if trace and not out:
                lines = [
                    f"{day} ERROR cart failed n={self.n:05d}",
                    "java.lang.IllegalStateException: basket is closed",
                    "\tat com.example.cart.Basket.add(Basket.java:42)",
                    "\tat com.example.cart.Api.post(Api.java:17)",
                    "Caused by: java.io.IOException: broken pipe",
                    "\t... 12 more",
                ]
            self.n += 1
            self.records.append("\n".join(lines))
            out.extend(self._cri(line) for line in lines)
        with self.path.open("a") as f:
            f.write("".join(out))


def _metric(port: int, name: str) -> float:
    try:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
    except httpx.HTTPError:
        return -1.0
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


def _position(positions: Path, path: Path) -> int:
    """The acknowledged offset of the file now at ``path`` (-1 when none)."""
    try:
        files = json.loads(positions.read_text())["files"]
    except (FileNotFoundError, ValueError):
        return -1
    inode = path.stat().st_ino
    return next((f["offset"] for f in files if f["inode"] == inode), -1)


def _es_documents(es: str, stream: str) -> list[dict[str, Any]]:
    httpx.post(f"{es}/{stream}/_refresh", timeout=30)
    docs: list[dict[str, Any]] = []
    body: dict[str, Any] = {
        "size": 5000,
        "sort": [{"@timestamp": "asc"}, {"_doc": "asc"}],
        "_source": ["message", "log.file.path", "cluster", "@timestamp", "kubernetes"],
    }
    while True:
        response = httpx.post(f"{es}/{stream}/_search", json=body, timeout=60)
        if response.status_code == 404:
            return []
        response.raise_for_status()
        hits = response.json()["hits"]["hits"]
        if not hits:
            return docs
        docs.extend(hit["_source"] for hit in hits)
        body["search_after"] = hits[-1]["sort"]


def _vl_rows(base: str) -> list[dict[str, str]]:
    response = httpx.get(
        f"{base}/select/logsql/query",
        params={"query": "* | sort by (_time)", "limit": "1000000"},
        timeout=60,
    )
    response.raise_for_status()
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def _by_file(rows: list[tuple[str, str]]) -> dict[int, list[str]]:
    """(filename, message) in time order → per file tag (from the message), in order."""
    out: dict[int, list[str]] = defaultdict(list)
    for filename, message in rows:
        f = int(message[1 : message.index(" ")])
        assert filename.endswith(f"app-{f}.log"), (filename, message[:40])
        out[f].append(message)
    return out


def _in_order(expected: list[str], got: list[str]) -> bool:
    """``got`` holds every expected line, first occurrences in order (repeats allowed)."""
    first: list[str] = []
    seen: set[str] = set()
    for line in got:
        if line not in seen:
            seen.add(line)
            first.append(line)
    return first == expected


def test_every_line_arrives_through_rotation_kills_and_a_loki_outage(stack, unique, tmp_path):
    rng = random.Random(unique)
    bootstrap = stack("kafka", "bootstrap")
    es = stack("elasticsearch", "http")
    _topics(bootstrap, unique)
    loki = PrivateVictoriaLogs(tmp_path, f"-insert.maxLineSizeBytes={3 * MiB}").start()
    writer = Writer(tmp_path / "logs")
    pods = PodWriter(tmp_path / "var" / "log", rng)
    data_stream = f"logs-e2e-{unique}"
    edge_port = free_port()
    edge = EdgeLogs(
        tmp_path,
        {
            "global": {"external_labels": {"cluster": "e2e"}},
            "positions": {"filename": str(tmp_path / "positions.json")},
            "scrape_configs": [
                {
                    "job_name": "e2e",
                    "static_configs": [
                        {"labels": {"job": unique, "__path__": str(writer.directory / "*.log")}}
                    ],
                },
                {
                    "job_name": "pods",
                    "static_configs": [
                        {
                            "labels": {
                                "job": unique,
                                "__path__": str(pods.path.parents[2] / "*" / "*" / "*.log"),
                            }
                        }
                    ],
                    "pipeline_stages": [
                        {"cri": {}},
                        {
                            "multiline": {
                                "firstline": r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d",
                                "max_wait_time": "1s",
                            }
                        },
                    ],
                },
            ],
            "ferryman": {
                "kafka": {
                    "bootstrap_servers": bootstrap,
                    "topic": unique,
                    "max_message_bytes": 4 * MiB,
                },
                "listen": f"127.0.0.1:{edge_port}",
                "max_line_bytes": 2 * MiB,
                "batch_wait": 0.2,
                "rescan_interval": 0.5,
            },
        },
    )

    def worker_settings(name: str, config: dict[str, Any]) -> dict[str, Any]:
        return {
            "kafka": {
                "bootstrap_servers": bootstrap,
                "input_topic": unique,
                "group_id": f"{unique}-{name}",
                "dead_letter_topic": f"{unique}-{name}-dlq",
            },
            "batch": {"max_records": 50, "max_wait_s": 0.2},
            "retry": {"initial_backoff_s": 0.2, "max_backoff_s": 2.0},
            "shutdown_deadline_s": 10,
            "http": {"listen": f"127.0.0.1:{free_port()}"},
            "config": config,
        }

    to_loki = Worker(
        tmp_path,
        "loki",
        worker_settings(
            "loki",
            {
                "url": loki.base,
                "push_path": "/insert/loki/api/v1/push",
                "max_line_bytes": 2 * MiB,
                "max_request_bytes": 8 * MiB,
            },
        ),
    )
    to_es = Worker(
        tmp_path,
        "elasticsearch_logs",
        worker_settings("es", {"url": es, "data_stream": data_stream, "max_bulk_bytes": 8 * MiB}),
    )
    everything = [edge, to_loki, to_es]
    try:
        for process in everything:
            process.start()
        # A file renamed before the shipper first saw it is beyond any tailer: start
        # writing once it runs.
        wait_for(lambda: _metric(edge_port, "ferryman_files") >= 0, 30, "the shipper up")
        # Phase 1: steady writes, both rotations, a 1 MiB line and invalid UTF-8, with a
        # kill -9 of each process at a random step.
        kill_at = {id(p): rng.randrange(2, 10) for p in everything}
        for step in range(12):
            for f in range(FILES):
                writer.write(f, rng.randrange(50, 150), payload="x" * rng.randrange(0, 200))
            pods.write(rng.randrange(5, 40), trace=step % 2 == 0)
            if step == 3:
                os.rename(writer.path(0), writer.path(0).with_suffix(".log.1"))
                writer.write(0, 100)  # a new app-0.log, followed from its start
            if step == 5:
                writer.write_raw(
                    2,
                    b"f2 seq=%06d huge " % writer.seq[2] + os.urandom(MiB // 2).hex().encode(),
                    shipped_as="",
                )  # replaced below, once we know the text
                with writer.path(2).open("rb") as fh:
                    writer.expected[2][-1] = fh.read().splitlines()[-1].decode()
                writer.write_raw(
                    2,
                    b"f2 seq=%06d bad \xff\xfe utf-8 \xc3(" % writer.seq[2],
                    shipped_as=f"f2 seq={writer.seq[2]:06d} bad \ufffd\ufffd utf-8 \ufffd(",
                )
            if step == 7:
                # copytruncate, as logrotate does it: copy, then truncate in place. Lines
                # not read before the truncation would be lost by any tailer, so wait
                # until the shipper has them all (as logrotate's delaycompress window).
                path = writer.path(1)
                size = path.stat().st_size
                wait_for(
                    lambda p=path, n=size: (
                        _position(tmp_path / "positions.json", p) == n and edge.alive()
                    ),
                    60,
                    "app-1.log fully shipped before copytruncate",
                )
                shutil.copyfile(path, path.with_suffix(".log.1"))
                os.truncate(path, 0)
                writer.write(1, 80)
            for process in everything:
                if kill_at[id(process)] == step:
                    process.kill9()
                    time.sleep(rng.uniform(0.2, 1.5))
                    process.start()
            time.sleep(rng.uniform(0.3, 1.0))

        # Phase 2: the Loki backend away for 60 s while lines keep coming.
        loki.stop()
        stopped = time.monotonic()
        while time.monotonic() - stopped < 60:
            for f in range(FILES):
                writer.write(f, 40)
            pods.write(10, trace=True)
            time.sleep(2)
        loki.start()
        for f in range(FILES):
            writer.write(f, 25)
        pods.write(5, trace=True)

        total = sum(len(lines) for lines in writer.expected.values()) + len(pods.records)

        seen: dict[str, Any] = {}

        def es_complete() -> bool:
            seen["docs"] = _es_documents(es, data_stream)
            return len(seen["docs"]) >= total

        try:
            wait_for(es_complete, 240, f"{total} documents in Elasticsearch", interval=2)
        except AssertionError:
            have = {d["message"] for d in seen["docs"]}
            missing = {
                f: [line[:40] for line in writer.expected[f] if line not in have]
                for f in range(FILES)
            }
            raise AssertionError(
                f"{len(seen['docs'])} of {total} in Elasticsearch; missing "
                f"{ {f: (len(m), m[:3]) for f, m in missing.items()} }"
            ) from None
        docs = seen["docs"]
        messages = Counter(d["message"] for d in docs)
        assert [m for m, n in messages.items() if n > 1] == []  # exactly once
        assert len(docs) == total
        pod_docs = [d for d in docs if "/pods/" in d["log"]["file"]["path"]]
        assert [d["message"] for d in pod_docs] == pods.records  # whole, in order, once
        assert {
            (
                d["kubernetes"]["namespace"],
                d["kubernetes"]["pod"]["name"],
                d["kubernetes"]["container"]["name"],
            )
            for d in pod_docs
        } == {("shop", "cart-7d9f", "cart")}
        docs = [d for d in docs if "/pods/" not in d["log"]["file"]["path"]]
        es_files = _by_file([(d["log"]["file"]["path"], d["message"]) for d in docs])
        for f in range(FILES):
            assert es_files[f] == writer.expected[f], f"app-{f}.log differs in Elasticsearch"
        assert {d["cluster"] for d in docs} == {"e2e"}

        def loki_complete() -> bool:
            rows = _vl_rows(loki.base)
            got = _by_file(
                [(r["filename"], r["_msg"]) for r in rows if "/pods/" not in r["filename"]]
            )
            pod_rows = [r["_msg"] for r in rows if "/pods/" in r["filename"]]
            return all(_in_order(writer.expected[f], got[f]) for f in range(FILES)) and _in_order(
                pods.records, pod_rows
            )

        wait_for(loki_complete, 240, "every line in order in Loki", interval=2)
        rows = _vl_rows(loki.base)
        assert {r["cluster"] for r in rows} == {"e2e"}
        assert {
            (r["namespace"], r["pod"], r["container"], r["stream"])
            for r in rows
            if "/pods/" in r["filename"]
        } == {("shop", "cart-7d9f", "cart", "stdout")}
        assert {r["job"] for r in rows} == {unique}
        huge = [r["_msg"] for r in rows if " huge " in r["_msg"]]
        assert huge and len(huge[0]) == MiB + len("f2 seq=000000 huge ")
    finally:
        for process in everything:
            if process.alive():
                process.kill9()
        loki.stop()
