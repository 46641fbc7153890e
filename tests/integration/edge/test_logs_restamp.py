"""A restarted shipper gives re-read lines the timestamps it gave them before the
crash, so sinks that identify lines by timestamp store nothing twice."""

from __future__ import annotations

import json
from pathlib import Path

from kafka import KafkaAdminClient, KafkaConsumer
from kafka.admin import NewTopic

from ferryman.wire.loki import decode_push_request
from ferryman.wire.remote_write import snappy_decompress
from tests.integration.pipeline import PrivateKafka, Process, free_port, wait_for


def _shipped(bootstrap: str, topic: str) -> dict[str, int]:
    consumer = KafkaConsumer(
        topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", consumer_timeout_ms=3000
    )
    out: dict[str, int] = {}
    try:
        for message in consumer:
            for stream in decode_push_request(snappy_decompress(message.value)):
                for entry in stream.entries:
                    assert out.setdefault(entry.line, entry.timestamp_ns) == entry.timestamp_ns
    finally:
        consumer.close()
    return out


def _ends(path: Path) -> dict[str, int]:
    ends, offset = {}, 0
    for raw in path.read_bytes().splitlines(keepends=True):
        offset += len(raw)
        ends[raw.decode().rstrip("\n")] = offset
    return ends


def test_lines_read_before_a_kill_9_keep_their_timestamps(unique, tmp_path):
    kafka = PrivateKafka(tmp_path).start()
    try:
        admin = KafkaAdminClient(bootstrap_servers=kafka.bootstrap)
        admin.create_topics([NewTopic(unique, 1, 1)])
        admin.close()
        log = tmp_path / "app.log"
        positions = tmp_path / "positions.json"
        settings = {
            "positions": {"filename": str(positions)},
            "scrape_configs": [
                {"job_name": "j", "static_configs": [{"labels": {"__path__": str(log)}}]}
            ],
            "ferryman": {
                "kafka": {"bootstrap_servers": kafka.bootstrap, "topic": unique, "acks_timeout": 2},
                "listen": f"127.0.0.1:{free_port()}",
                "batch_wait": 0.2,
                "rescan_interval": 0.5,
            },
        }
        shipper = Process(tmp_path, ["edge", "logs"], settings).start()
        log.write_text("".join(f"first {i}\n" for i in range(100)))
        wait_for(lambda: len(_shipped(kafka.bootstrap, unique)) == 100, 60, "first lines")

        kafka.stop()
        with log.open("a") as out:
            out.write("".join(f"second {i}\n" for i in range(100)))

        def anchored() -> list[list[int]]:
            files = json.loads(positions.read_text())["files"]
            return [s for f in files for s in f.get("stamps", ())]

        anchors = wait_for(anchored, 60, "anchors saved before the produce attempt")
        shipper.kill9()
        kafka.start()
        shipper.start()
        shipped = wait_for(
            lambda: (s := _shipped(kafka.bootstrap, unique)) and len(s) == 200 and s,
            90,
            "all 200 lines after the restart",
        )
        assert shipper.terminate() == 0
    finally:
        kafka.stop()

    ends = _ends(log)
    for i in range(100):
        line = f"second {i}"
        [(start, _end, ts)] = [a for a in anchors if a[0] < ends[line] <= a[1]]
        assert shipped[line] == ts + ends[line] - start
    stamps = [shipped[f"first {i}"] for i in range(100)] + [
        shipped[f"second {i}"] for i in range(100)
    ]
    assert stamps == sorted(stamps) and len(set(stamps)) == 200
