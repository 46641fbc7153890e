"""Pipeline stages in a real shipper process against the real Kafka: CRI partial
lines, a multiline Java stack trace, docker json-file pieces; and a kill -9 while
a multiline record is held."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

from kafka import KafkaConsumer

from ferryman.wire.loki import decode_push_request
from ferryman.wire.remote_write import snappy_decompress
from tests.integration.pipeline import EdgeLogs, create_topics, wait_for


@dataclass(frozen=True)
class Shipped:
    labels: dict[str, str]
    timestamp_ns: int
    line: str


class Consumed:
    """Every entry shipped to a topic, decoded, in arrival order per label set."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = KafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest"
        )
        self.entries: list[Shipped] = []

    def poll(self) -> Consumed:
        batches = self.consumer.poll(timeout_ms=500, max_records=10_000)
        for message in (m for records in batches.values() for m in records):
            for stream in decode_push_request(snappy_decompress(message.value)):
                self.entries += [
                    Shipped(dict(stream.labels), e.timestamp_ns, e.line) for e in stream.entries
                ]
        return self

    def of(self, filename: Path, **labels: str) -> list[Shipped]:
        return [
            e
            for e in self.entries
            if e.labels["filename"] == str(filename)
            and all(e.labels.get(k) == v for k, v in labels.items())
        ]

    def lines(self, filename: Path, **labels: str) -> list[str]:
        return [e.line for e in self.of(filename, **labels)]


def _cri_time(second: int) -> tuple[str, int]:
    text = f"2024-05-01T10:00:{second:02d}.{second:09d}Z"
    return text, (1_714_557_600 + second) * 1_000_000_000 + second


def _append(path: Path, lines: list[str]) -> None:
    with path.open("a") as f:
        f.write("".join(line + "\n" for line in lines))


def _cri_lines(pieces: list[tuple[str, str, str]], first_second: int) -> list[str]:
    return [
        f"{_cri_time(first_second + i)[0]} {stream} {flag} {content}"
        for i, (stream, flag, content) in enumerate(pieces)
    ]


FIRSTLINE = r"^\d{4}-\d{2}-\d{2} "
LEVEL = {"regex": {"expression": r"^\S+ \S+ (?P<level>[A-Z]+) "}}
TRACE = [
    "2024-05-01 10:00:06 ERROR request failed",
    "java.lang.IllegalStateException: cart is empty",
    "\tat com.shop.Cart.checkout(Cart.java:42)",
    "\tat com.shop.Api.post(Api.java:7)",
]


def test_cri_docker_and_multiline_end_to_end_and_kill_9_while_held(
    stack, unique, tmp_path, processes
):
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (unique, 2))
    shop = tmp_path / "var/log/pods/shop_cart-7d_0a1b/cart/0.log"
    bank = tmp_path / "var/log/pods/bank_ledger-5c_9f8e/ledger/0.log"
    docker = tmp_path / "docker/containers/abc123/abc123-json.log"
    for path in (shop, bank, docker):
        path.parent.mkdir(parents=True)
        path.touch()
    positions = tmp_path / "positions.json"
    multiline = {"firstline": FIRSTLINE}
    settings = {
        "global": {"external_labels": {"cluster": "alpha"}},
        "positions": {"filename": str(positions)},
        "scrape_configs": [
            {
                "job_name": "shop",
                "static_configs": [
                    {"labels": {"__path__": str(tmp_path / "var/log/pods/shop_*/*/*.log")}}
                ],
                "pipeline_stages": [
                    {"cri": {}},
                    {"multiline": {**multiline, "max_wait_time": "1s"}},
                    LEVEL,
                    {"labels": {"level": None}},
                ],
            },
            # Held for an hour unless a next first line comes: only a restart's re-read
            # can complete the record cut by the kill -9.
            {
                "job_name": "bank",
                "static_configs": [
                    {"labels": {"__path__": str(tmp_path / "var/log/pods/bank_*/*/*.log")}}
                ],
                "pipeline_stages": [
                    {"cri": {}},
                    {"multiline": {**multiline, "max_wait_time": "1h"}},
                ],
            },
            {
                "job_name": "docker",
                "static_configs": [{"labels": {"__path__": str(docker)}}],
                "pipeline_stages": [{"docker": {}}],
            },
        ],
        "ferryman": {
            "kafka": {"bootstrap_servers": bootstrap, "topic": unique},
            "listen": "127.0.0.1:0",
            "host": "node-1",
            "batch_wait": "200ms",
            "rescan_interval": "300ms",
        },
    }
    shipper = processes(EdgeLogs(tmp_path, settings))
    shipped = Consumed(bootstrap, unique)

    # CRI: a line split in three (P, P, F) with a stderr line between its pieces, then a
    # Java stack trace as separate F lines, then a record that only the wait flushes.
    _append(
        shop,
        _cri_lines(
            [
                ("stdout", "F", "2024-05-01 10:00:00 INFO started"),
                ("stdout", "P", "2024-05-01 10:00:01 INFO a very long li"),
                ("stderr", "F", "2024-05-01 10:00:02 WARN low disk"),
                ("stdout", "P", "ne that the runtime split "),
                ("stdout", "F", "in three"),
                *(("stdout", "F", line) for line in TRACE),
                ("stdout", "F", "2024-05-01 10:00:09 INFO done"),
            ],
            0,
        ),
    )
    # docker json-file: a long line split into pieces without their trailing newline.
    docker_lines = [
        ("first\n", "stdout", 0),
        ("split ", "stdout", 1),
        ("err\n", "stderr", 2),
        ("in two\n", "stdout", 3),
    ]
    _append(
        docker,
        [
            json.dumps({"log": log, "stream": stream, "time": _cri_time(s)[0]})
            for log, stream, s in docker_lines
        ],
    )
    # bank: a complete record, then a stack trace whose third line is cut mid-way (P).
    bank_before = _cri_lines(
        [
            ("stdout", "F", "2024-05-01 10:00:00 INFO ledger up"),
            ("stdout", "F", TRACE[0]),
            ("stdout", "F", TRACE[1]),
            ("stdout", "P", TRACE[2][:12]),
        ],
        0,
    )
    _append(bank, bank_before)

    def shop_done() -> bool:
        shipped.poll()
        return (
            len(shipped.of(shop)) >= 5
            and len(shipped.of(docker)) >= 3
            and len(shipped.of(bank)) >= 1
        )

    wait_for(shop_done, 30, "shop, docker and bank entries in Kafka")

    stdout = sorted(shipped.of(shop, stream="stdout"), key=lambda e: e.timestamp_ns)
    assert [(e.line, e.labels["level"], e.timestamp_ns) for e in stdout] == [
        ("2024-05-01 10:00:00 INFO started", "INFO", _cri_time(0)[1]),
        (
            "2024-05-01 10:00:01 INFO a very long line that the runtime split in three",
            "INFO",
            _cri_time(1)[1],
        ),
        ("\n".join(TRACE), "ERROR", _cri_time(5)[1]),
        ("2024-05-01 10:00:09 INFO done", "INFO", _cri_time(9)[1]),
    ]
    assert shipped.lines(shop, stream="stderr") == ["2024-05-01 10:00:02 WARN low disk"]
    info = shipped.lines(shop, stream="stdout", level="INFO")
    assert info == [e.line for e in stdout if e.labels["level"] == "INFO"], "order"
    labels = stdout[0].labels
    assert (
        labels["namespace"],
        labels["pod"],
        labels["container"],
        labels["cluster"],
        labels["host"],
        labels["job"],
    ) == ("shop", "cart-7d", "cart", "alpha", "node-1", "shop")
    assert [
        (e.line, e.labels["stream"], e.timestamp_ns)
        for e in shipped.of(docker)
        if e.labels["stream"] == "stdout"
    ] == [("first", "stdout", _cri_time(0)[1]), ("split in two", "stdout", _cri_time(1)[1])]
    assert shipped.lines(docker, stream="stderr") == ["err"]

    # bank: "ledger up" went out when the trace's first line came; the trace is held, so
    # the saved position stops where the trace starts.
    assert shipped.lines(bank) == ["2024-05-01 10:00:00 INFO ledger up"]
    trace_start = len(bank_before[0]) + 1

    def position_of(path: Path) -> int | None:
        try:
            files = json.loads(positions.read_text())["files"]
        except (FileNotFoundError, ValueError):
            return None
        return next((f["offset"] for f in files if f["path"] == str(path)), None)

    wait_for(lambda: position_of(bank) == trace_start, 10, "bank position at the trace")
    wait_for(lambda: position_of(shop) == shop.stat().st_size, 10, "shop position at its end")
    time.sleep(0.5)
    assert position_of(bank) == trace_start
    shipper.kill9()

    _append(
        bank,
        _cri_lines(
            [
                ("stdout", "F", TRACE[2][12:]),
                ("stdout", "F", TRACE[3]),
                ("stdout", "F", "2024-05-01 10:00:20 INFO next"),
            ],
            4,
        ),
    )
    processes(EdgeLogs(tmp_path, settings))
    wait_for(lambda: len(shipped.poll().of(bank)) >= 2, 30, "the held trace after restart")
    assert shipped.lines(bank) == ["2024-05-01 10:00:00 INFO ledger up", "\n".join(TRACE)]
    assert shipped.of(bank)[1].timestamp_ns == _cri_time(1)[1]
    # Nothing shipped twice: positions were saved after each acknowledged batch.
    time.sleep(1.0)
    shipped.poll()
    assert len(shipped.of(shop)) == 5 and len(shipped.of(docker)) == 3
    shipped.consumer.close()
