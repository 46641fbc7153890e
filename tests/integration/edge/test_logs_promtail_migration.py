"""Swapping Promtail for ``ferryman edge logs``: the same command line, and Promtail's
positions.yaml carried over, so nothing Promtail shipped is shipped again."""

from __future__ import annotations

import json
import textwrap
import time
from pathlib import Path
from typing import Any

from kafka import KafkaConsumer

from ferryman.wire.loki import decode_push_request
from ferryman.wire.remote_write import snappy_decompress
from tests.integration.pipeline import EdgeLogs, create_topics, wait_for

#: Promtail's command line in its container manifests
PROMTAIL_FLAGS = {"config_flag": "-config.file", "flags": ["-config.expand-env=true"]}


class Shipped:
    """Lines on a topic per ``filename`` label, in arrival order, and each file's labels."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = KafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest"
        )
        self.lines: dict[str, list[str]] = {}
        self.labels: dict[str, dict[str, str]] = {}

    def poll(self) -> Shipped:
        batches = self.consumer.poll(timeout_ms=500, max_records=10_000)
        for message in (m for records in batches.values() for m in records):
            for stream in decode_push_request(snappy_decompress(message.value)):
                name = stream.labels["filename"]
                self.labels[name] = dict(stream.labels)
                self.lines.setdefault(name, []).extend(e.line for e in stream.entries)
        return self

    def settle(self, shipper: EdgeLogs, expected: dict[str, list[str]]) -> dict[str, list[str]]:
        """Once every expected line arrived, a few batch waits more for any extra."""

        def arrived() -> bool:
            assert shipper.alive(), f"the shipper exited:\n{shipper.output()[-3000:]}"
            self.poll()
            return all(len(self.lines.get(k, [])) >= len(v) for k, v in expected.items())

        wait_for(arrived, 60, "the expected lines")
        deadline = time.monotonic() + 2.0
        while time.monotonic() < deadline:
            self.poll()
        return {name: lines for name, lines in self.lines.items() if lines}


def _lines(path: Path, prefix: str, numbers: range) -> list[str]:
    lines = [f"{prefix} {i}" for i in numbers]
    with path.open("a") as f:
        f.write("".join(line + "\n" for line in lines))
    return lines


def _settings(tmp_path: Path, positions: Path, glob: Path) -> dict[str, Any]:
    return {
        "positions": {"filename": str(positions)},
        "scrape_configs": [
            {
                "job_name": "varlogs",
                "static_configs": [{"labels": {"job": "varlogs", "__path__": str(glob)}}],
            }
        ],
        "ferryman": {
            # Given by the environment, as a Promtail manifest would.
            "kafka": {"bootstrap_servers": "${KAFKA}", "topic": "${TOPIC}"},
            "host": "${NODE_NAME:-unnamed}",
            "listen": "127.0.0.1:0",
            "batch_wait": "200ms",
            "rescan_interval": "300ms",
        },
    }


def test_promtail_positions_are_carried_over(stack, unique, tmp_path, processes):
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (unique, 1))
    logs = tmp_path / "logs"
    logs.mkdir()
    done, half, rotated = logs / "done.log", logs / "half.log", logs / "rotated.log"
    _lines(done, "done", range(30))
    half_read = _lines(half, "half", range(20))
    half_offset = half.stat().st_size
    expected = {
        str(done): [],
        str(half): _lines(half, "half", range(20, 40)),
        # Promtail read 4,000 bytes of a file rotated since: the new one has fewer.
        str(rotated): _lines(rotated, "rotated", range(10)),
    }
    assert rotated.stat().st_size < 4000
    # As Promtail writes it: sorted keys, offsets quoted, other targets' entries beside.
    positions = tmp_path / "positions.yaml"
    promtail_positions = textwrap.dedent(
        f"""\
        positions:
          {done}: "{done.stat().st_size}"
          {half}: "{half_offset}"
          {rotated}: "4000"
          cursor-3f9a1c2e4b5d: "1712345678"
        """
    )
    positions.write_text(promtail_positions)

    shipper = processes(
        EdgeLogs(
            tmp_path,
            _settings(tmp_path, positions, logs / "*.log"),
            **PROMTAIL_FLAGS,
            env={"KAFKA": bootstrap, "TOPIC": unique, "NODE_NAME": "node-7"},
        )
    )
    shipped = Shipped(bootstrap, unique)
    try:
        shipped.settle(shipper, {str(half): expected[str(half)]})
        # Tailing goes on from Promtail's offsets.
        expected[str(done)] += _lines(done, "done", range(30, 35))
        expected[str(half)] += _lines(half, "half", range(40, 43))

        got = shipped.settle(shipper, expected)
        assert got == expected, "lines before Promtail's offsets were shipped again"
        assert not set(half_read) & set(got[str(half)])
        assert shipped.labels[str(half)]["host"] == "node-7"

        # Promtail's file is kept for a rollback; ferryman's own positions replace it.
        kept = positions.with_name("positions.yaml.promtail")
        assert kept.read_text() == promtail_positions

        def saved() -> dict[str, int] | None:
            try:
                files = json.loads(positions.read_text())["files"]
            except (ValueError, KeyError):
                return None
            offsets = {f["path"]: f["offset"] for f in files}
            sizes = {name: Path(name).stat().st_size for name in expected}
            return offsets if offsets == sizes else None

        wait_for(saved, 30, "ferryman's positions at the end of every file")
        assert shipper.terminate() == 0
    finally:
        shipped.consumer.close()


def test_promtails_command_line_expands_the_environment(stack, unique, tmp_path, processes):
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (unique, 1))
    app = tmp_path / "app.log"
    expected = {str(app): _lines(app, "app", range(3))}
    shipper = processes(
        EdgeLogs(
            tmp_path,
            _settings(tmp_path, tmp_path / "positions.json", app),
            config_flag="-config.file",
            flags=["-config.expand-env"],
            env={"KAFKA": bootstrap, "TOPIC": unique, "NODE_NAME": ""},
        )
    )
    shipped = Shipped(bootstrap, unique)
    try:
        assert shipped.settle(shipper, expected) == expected
        # NODE_NAME is empty: the default applies, as in Promtail.
        assert shipped.labels[str(app)]["host"] == "unnamed"
        assert shipper.terminate() == 0
    finally:
        shipped.consumer.close()
