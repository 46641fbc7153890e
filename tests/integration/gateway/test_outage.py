"""Kafka away for 60 s while Prometheus writes through the gateway: 503s, Prometheus
retries, and afterwards every sample Prometheus scraped is in Kafka."""

from __future__ import annotations

import time

import httpx
from kafka import KafkaConsumer

from ferryman.wire.remote_write import decode_write_request, snappy_decompress
from tests.integration.gateway.helpers import TOKEN_A, start_gateway
from tests.integration.pipeline import PrivateKafka, PrivatePrometheus, wait_for


def _prometheus_metric(base: str, name: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith((name + "{", name + " "))
    )


def _scraped(base: str, at: float) -> set[int]:
    """Timestamps (ms) of Prometheus's own ``up`` samples in the 15 minutes to ``at``."""
    response = httpx.get(
        f"{base}/api/v1/query", params={"query": 'up{job="node"}[15m]', "time": str(at)}
    )
    response.raise_for_status()
    (series,) = response.json()["data"]["result"]
    return {round(float(ts) * 1000) for ts, _ in series["values"]}


class _Reader:
    """Reads a topic from its start, keeping what it read between calls."""

    def __init__(self, bootstrap: str, topic: str) -> None:
        self.consumer = KafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest"
        )
        self.stamps: set[int] = set()

    def up_stamps(self) -> set[int]:
        """Timestamps (ms) of the ``up`` samples read so far."""
        for records in self.consumer.poll(timeout_ms=2000, max_records=100_000).values():
            for record in records:
                for series in decode_write_request(snappy_decompress(record.value)):
                    if series.label("__name__") == "up" and series.label("job") == "node":
                        self.stamps.update(s.timestamp_ms for s in series.samples)
        return self.stamps


def test_kafka_away_for_a_minute_loses_no_sample(stack, tmp_path, processes, unique):
    kafka = PrivateKafka(tmp_path).start()
    prometheus = PrivatePrometheus(tmp_path)
    try:
        setup = start_gateway(tmp_path, processes, kafka.bootstrap, unique, ack_timeout="2s")
        setup.gateway.wait_ready()
        node = stack("node-exporter", "metrics").split("/")[2]
        prometheus.config.write_text(
            f"""
global:
  scrape_interval: 1s
  external_labels: {{cluster: alpha}}
scrape_configs:
  - job_name: node
    static_configs: [{{targets: ["{node}"]}}]
remote_write:
  - url: {setup.url}/api/v1/write
    authorization: {{credentials: {TOKEN_A}}}
    queue_config: {{batch_send_deadline: 1s, max_backoff: 2s}}
"""
        )
        prometheus.start()
        wait_for(
            lambda: setup.gateway.metric("ferryman_gateway_requests_total", status="204") > 3,
            60,
            "Prometheus writing through the gateway",
        )
        kafka.stop()
        time.sleep(60)
        assert setup.gateway.metric("ferryman_gateway_requests_total", status="503") > 0
        assert setup.gateway.metric("ferryman_gateway_requests_total", status="204") > 0
        kafka.start()
        at = time.time()
        time.sleep(2)
        want = _scraped(prometheus.base, at)
        assert len(want) > 60  # scraped through the outage
        reader = _Reader(kafka.bootstrap, setup.metrics)
        try:
            wait_for(
                lambda: want <= reader.up_stamps(),
                180,
                "every scraped sample in Kafka",
                interval=1,
            )
        finally:
            reader.consumer.close()
        retried = _prometheus_metric(
            prometheus.base, "prometheus_remote_storage_samples_retried_total"
        )
        failed = _prometheus_metric(
            prometheus.base, "prometheus_remote_storage_samples_failed_total"
        )
        assert retried > 0
        assert failed == 0
    finally:
        prometheus.stop()
        kafka.stop()
