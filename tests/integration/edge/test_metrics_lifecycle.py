"""Discovery, reload and staleness of the edge shipper, read straight from Kafka."""

from __future__ import annotations

import json
import math
import signal
import struct
import time

import yaml
from kafka import KafkaConsumer

from ferryman.wire.remote_write import decode_write_request, snappy_decompress
from tests.integration.exporter import TEXT, Exporter
from tests.integration.pipeline import EdgeMetrics, create_topics, wait_for

STALE_BITS = 0x7FF0000000000002


class Topic:
    """Accumulates every sample shipped to a topic: {(name, instance): [values...]}."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = KafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest"
        )
        self.samples: dict[tuple[str, str], list[float]] = {}
        self.labels: dict[tuple[str, str], dict[str, str]] = {}

    def poll(self) -> Topic:
        """Take what has arrived so far (the shipper never stops producing)."""
        batches = self.consumer.poll(timeout_ms=500, max_records=10_000)
        for message in (m for records in batches.values() for m in records):
            for series in decode_write_request(snappy_decompress(message.value)):
                key = (series.label("__name__") or "", series.label("instance") or "")
                self.labels[key] = dict(series.labels)
                self.samples.setdefault(key, []).extend(s.value for s in series.samples)
        return self

    def close(self) -> None:
        self.consumer.close()


def _is_stale(value: float) -> bool:
    return math.isnan(value) and struct.unpack("<Q", struct.pack("<d", value))[0] == STALE_BITS


def test_file_sd_reload_and_staleness(stack, unique, tmp_path, processes):
    bootstrap = stack("kafka", "bootstrap")
    create_topics(bootstrap, (unique, 2))
    first, second = Exporter(), Exporter()
    try:
        first.routes["/metrics"] = lambda n: (
            200,
            TEXT,
            (
                "# TYPE lc_gauge gauge\nlc_gauge 1\n" + ("lc_vanishing 7\n" if n <= 3 else "")
            ).encode(),
        )
        second.routes["/metrics"] = lambda n: (200, TEXT, b"lc_gauge 2\n")
        sd_file = tmp_path / "targets.json"
        sd_file.write_text(json.dumps([{"targets": [first.address], "labels": {"env": "a"}}]))
        settings = {
            "global": {
                "scrape_interval": "300ms",
                "scrape_timeout": "300ms",
                "external_labels": {"cluster": "alpha"},
            },
            "scrape_configs": [
                {
                    "job_name": "files",
                    "file_sd_configs": [
                        {"files": [str(tmp_path / "*.json")], "refresh_interval": "1m"}
                    ],
                }
            ],
            "ferryman": {
                "kafka": {"bootstrap_servers": bootstrap, "topic": unique},
                "buffer": {"directory": str(tmp_path / "buffer")},
                "listen": "127.0.0.1:0",
                "flush_interval": "200ms",
            },
        }
        edge = processes(EdgeMetrics(tmp_path, settings))
        topic = Topic(bootstrap, unique)

        # A series that leaves the exposition gets exactly Prometheus' stale marker.
        vanishing = ("lc_vanishing", first.address)
        wait_for(
            lambda: any(_is_stale(v) for v in topic.poll().samples.get(vanishing, [])),
            30,
            "a staleness marker for lc_vanishing",
        )
        assert topic.labels[vanishing]["env"] == "a"
        assert topic.labels[vanishing]["job"] == "files"
        assert "__meta_filepath" not in topic.labels[vanishing]

        # file_sd: a target added to the file is picked up without a restart.
        sd_file.write_text(
            json.dumps([{"targets": [first.address, second.address], "labels": {"env": "a"}}])
        )
        wait_for(
            lambda: ("lc_gauge", second.address) in topic.poll().samples,
            30,
            "the target added to the file_sd file",
        )

        # Removing a target marks all its series, and its up, stale.
        sd_file.write_text(json.dumps([{"targets": [first.address], "labels": {"env": "a"}}]))
        wait_for(
            lambda: (
                _is_stale(topic.poll().samples[("lc_gauge", second.address)][-1])
                and _is_stale(topic.samples[("up", second.address)][-1])
            ),
            30,
            "stale markers for the removed target",
        )

        # SIGHUP reloads the configuration: a new static job starts, the edge keeps running.
        settings["scrape_configs"].append(
            {
                "job_name": "static",
                "static_configs": [{"targets": [second.address], "labels": {"source": "reload"}}],
            }
        )
        edge.config.write_text(yaml.safe_dump(settings))
        edge.signal(signal.SIGHUP)
        wait_for(
            lambda: (
                topic.poll().labels.get(("lc_gauge", second.address), {}).get("source") == "reload"
            ),
            30,
            "the job added by SIGHUP",
        )
        assert edge.alive()
        assert "configuration reloaded" in edge.output()

        # A broken file on reload keeps the running configuration.
        edge.config.write_text("scrape_configs: [ {job_name: 1, bogus: true} ]\n")
        edge.signal(signal.SIGHUP)
        wait_for(lambda: "reload failed" in edge.output(), 15, "the reload failure logged")
        before = len(topic.poll().samples[("lc_gauge", first.address)])
        time.sleep(1.5)
        assert len(topic.poll().samples[("lc_gauge", first.address)]) > before
        topic.close()
    finally:
        first.close()
        second.close()
