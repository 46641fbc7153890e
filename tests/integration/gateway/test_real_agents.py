"""Real agents write through the gateway: Prometheus and vmagent remote write (node
exporter's series end in VictoriaMetrics through Kafka and the prometheus_remote_write
worker), and python-logging-loki's handler pushes log lines."""

from __future__ import annotations

import logging
import subprocess
import time

import httpx
import logging_loki
import pytest

from ferryman import headers as h
from ferryman.wire import loki
from ferryman.wire.remote_write import snappy_decompress
from tests.integration.gateway.helpers import PASSWORD_B, TOKEN_A, messages
from tests.integration.pipeline import PrivatePrometheus, free_port, wait_for


def _node_exporter(stack) -> str:
    return str(stack("node-exporter", "metrics").split("/")[2])


def _vm_series(vm: str, match: str) -> int:
    response = httpx.get(
        f"{vm}/api/v1/series",
        params={"match[]": match, "start": str(time.time() - 3600)},
        timeout=30,
    )
    response.raise_for_status()
    return len(response.json()["data"])


def _prometheus_metric(base: str, name: str) -> float:
    text = httpx.get(f"{base}/metrics", timeout=10).text
    total = 0.0
    for line in text.splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def test_prometheus_remote_writes_node_exporter_series_through_the_gateway(
    gw, stack, tmp_path, worker, unique
):
    vm = stack("victoriametrics", "http")
    worker("prometheus_remote_write", gw.metrics, {"url": stack("victoriametrics", "remote_write")})
    prometheus = PrivatePrometheus(tmp_path)
    prometheus.config.write_text(
        f"""
global:
  scrape_interval: 1s
  external_labels: {{cluster: alpha, gwtest: {unique}}}
scrape_configs:
  - job_name: node
    static_configs: [{{targets: ["{_node_exporter(stack)}"]}}]
remote_write:
  - url: {gw.url}/api/v1/write
    authorization: {{credentials: {TOKEN_A}}}
    queue_config: {{batch_send_deadline: 1s}}
"""
    )
    prometheus.start()
    try:
        wait_for(
            lambda: _vm_series(vm, f'node_cpu_seconds_total{{gwtest="{unique}"}}') > 0,
            90,
            "node exporter's series in VictoriaMetrics through the gateway",
        )
        wait_for(
            lambda: (
                _prometheus_metric(prometheus.base, "prometheus_remote_storage_samples_total")
                > 1000
            ),
            60,
            "Prometheus sending samples",
        )
        failed = _prometheus_metric(
            prometheus.base, "prometheus_remote_storage_samples_failed_total"
        )
        dropped = _prometheus_metric(
            prometheus.base, "prometheus_remote_storage_samples_dropped_total"
        )
    finally:
        prometheus.stop()
    assert failed == 0
    assert dropped == 0
    found = messages(gw.bootstrap, gw.metrics)
    assert found
    assert {dict(m.headers)[h.TENANT] for m in found} == {b"team-a"}
    assert {dict(m.headers)[h.CLUSTER] for m in found} == {b"alpha"}
    assert _vm_series(vm, f'up{{gwtest="{unique}",job="node",cluster="alpha"}}') == 1


def test_vmagent_remote_writes_through_the_gateway(gw, stack, tmp_path, worker, unique):
    vm = stack("victoriametrics", "http")
    worker("prometheus_remote_write", gw.metrics, {"url": stack("victoriametrics", "remote_write")})
    scrape = tmp_path / "vmagent-scrape.yml"
    target = _node_exporter(stack)
    scrape.write_text(
        "global: {scrape_interval: 1s}\n"
        f"scrape_configs: [{{job_name: node, static_configs: [{{targets: ['{target}']}}]}}]\n"
    )
    log = (tmp_path / "vmagent.log").open("wb")
    agent = subprocess.Popen(
        [
            "/usr/bin/vmagent",
            f"-promscrape.config={scrape}",
            f"-remoteWrite.url={gw.url}/api/v1/write",
            f"-remoteWrite.bearerToken={TOKEN_A}",
            "-remoteWrite.label=cluster=alpha",
            f"-remoteWrite.label=gwtest={unique}",
            "-remoteWrite.flushInterval=1s",
            f"-remoteWrite.tmpDataPath={tmp_path / 'vmagent-data'}",
            f"-httpListenAddr=127.0.0.1:{free_port()}",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(
            lambda: _vm_series(vm, f'node_cpu_seconds_total{{gwtest="{unique}"}}') > 0,
            90,
            "vmagent's series in VictoriaMetrics through the gateway",
        )
    finally:
        agent.terminate()
        agent.wait(30)
        log.close()
    assert gw.gateway.metric("ferryman_gateway_requests_total", status="401") == 0
    assert gw.gateway.metric("ferryman_gateway_requests_total", status="204") > 0
    found = messages(gw.bootstrap, gw.metrics)
    assert {dict(m.headers)[h.TENANT] for m in found} == {b"team-a"}


def test_python_logging_loki_handler_pushes_through_the_gateway(gw, unique):
    """python-logging-loki's handler (Loki's JSON push with basic auth, as many
    applications ship their logs) writes as team-b; a wrong password is its error."""
    url = f"{gw.url}/loki/api/v1/push"
    tags = {"cluster": "beta", "job": f"py-{unique}"}
    handler = logging_loki.LokiHandler(url=url, tags=tags, auth=("bob", PASSWORD_B), version="1")
    logger = logging.getLogger(f"ferryman.tests.loki.{unique}")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        logger.info("payment accepted")
        logger.warning("payment slow")
    finally:
        logger.removeHandler(handler)
    found = messages(gw.bootstrap, gw.logs)
    streams = [
        (stream, dict(record.headers))
        for record in found
        for stream in loki.decode_push_request(snappy_decompress(record.value))
    ]
    lines = {(s.labels["severity"], entry.line) for s, _ in streams for entry in s.entries}
    assert lines == {("info", "payment accepted"), ("warning", "payment slow")}
    for stream, headers in streams:
        assert stream.labels["cluster"] == "beta"
        assert stream.labels["job"] == f"py-{unique}"
        assert headers[h.TENANT] == b"team-b"
        assert headers[h.CLUSTER] == b"beta"
    wrong = logging_loki.LokiHandler(url=url, tags=tags, auth=("bob", "nope"), version="1")
    record = logging.LogRecord("x", logging.INFO, __file__, 1, "refused", None, None)
    with pytest.raises(ValueError, match="401"):
        wrong.emitter(record, "refused")
    assert len(messages(gw.bootstrap, gw.logs)) == len(found)
