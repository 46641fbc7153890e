"""``ferryman status``'s columns, read from the ``/metrics`` text the real processes
render: each kind's metrics are declared by the same classes the process builds them
with (the worker runtime's, the shippers', the receiver's, the gateway's), counted
through those objects, rendered by the project's registry and parsed back."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from edge.gateway.server import Metrics as GatewayMetrics
from edge.logs.shipper import LogShipper
from edge.metrics.shipper import MetricsShipper
from edge.traces.intake import Metrics as TracesMetrics
from ferryman.telemetry import Registry
from infra.local.paths import Layout
from infra.local.pipelinestatus import (
    COLUMNS,
    Row,
    Scrape,
    Target,
    format_table,
    kind_of,
    parse_metrics,
    parse_target,
    pipeline_targets,
    row,
)
from workers.runtime_metrics import RuntimeMetrics


@pytest.fixture
def metrics_shipper(tmp_path: Path) -> Iterator[MetricsShipper]:
    """An edge metrics shipper built as ``ferryman edge metrics`` builds it (not run)."""
    tmp = tmp_path
    config = tmp / "metrics.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "scrape_configs": [],
                "ferryman": {
                    "kafka": {"bootstrap_servers": "127.0.0.1:1", "topic": "t"},
                    "buffer": {"directory": str(tmp / "buffer")},
                    "listen": "127.0.0.1:0",
                },
            }
        )
    )
    shipper = MetricsShipper(config)
    yield shipper
    shipper.queue.close()


def _log_shipper(tmp: Path) -> LogShipper:
    config = tmp / "logs.yaml"
    config.write_text(
        yaml.safe_dump(
            {
                "positions": {"filename": str(tmp / "positions.json")},
                "scrape_configs": [],
                "ferryman": {
                    "kafka": {"bootstrap_servers": "127.0.0.1:1", "topic": "t"},
                    "listen": "127.0.0.1:0",
                },
            }
        )
    )
    return LogShipper(config)


def _read(registry: Registry, at: float, kind: str | None = None) -> Scrape:
    declared, series = parse_metrics(registry.render())
    return Scrape(at, kind or kind_of(declared), "yes", declared, series)


def _registries(tmp: Path, metrics_shipper: MetricsShipper) -> dict[str, Registry]:
    worker = Registry()
    RuntimeMetrics(worker, "loki", time.monotonic)
    traces, gateway = Registry(), Registry()
    TracesMetrics(traces)
    GatewayMetrics(gateway)
    return {
        "worker": worker,
        "edge-metrics": metrics_shipper.registry,
        "edge-logs": _log_shipper(tmp).registry,
        "edge-traces": traces,
        "gateway": gateway,
    }


def test_each_kind_is_told_from_its_series_and_declares_every_column_name(
    tmp_path: Path, metrics_shipper: MetricsShipper
) -> None:
    for kind, registry in _registries(tmp_path, metrics_shipper).items():
        declared, _ = parse_metrics(registry.render())
        assert kind_of(declared) == kind
        columns = COLUMNS[kind]
        names = (
            *columns.received,
            *columns.sent,
            *columns.requests,
            *columns.lag,
            *columns.errors,
            *columns.dead_letters,
            *columns.dropped,
        )
        assert names, kind
        missing = [name for name in names if name not in declared]
        assert not missing, f"{kind} serves no {missing}"
    assert kind_of({"node_cpu_seconds_total", "go_goroutines"}) == "other"


def test_worker_rates_lag_errors_and_dead_letters() -> None:
    registry = Registry()
    metrics = RuntimeMetrics(registry, "loki", time.monotonic)
    metrics.count_received(100)
    metrics.count_sent(90)
    before = _read(registry, 10.0)
    metrics.count_received(300)
    metrics.count_sent(250)
    metrics.count_dead(4)
    metrics.count_error("timeout", "deliver", 2)
    metrics.count_error("refused", "deliver")
    metrics.lag.labels(function="loki", topic="t", partition="0").set(7)
    metrics.lag.labels(function="loki", topic="t", partition="1").set(5)
    now = _read(registry, 12.0)
    got = row(Target("to-loki", "http://x"), before, now)
    assert got == Row(
        name="to-loki",
        kind="worker",
        ready="yes",
        in_rate=150.0,
        out_rate=125.0,
        lag=12.0,
        errors=3.0,
        dead_letters=4.0,
        shipped=340.0,
    )


def test_the_first_read_has_totals_and_no_rates() -> None:
    registry = Registry()
    RuntimeMetrics(registry, "loki", time.monotonic).count_sent(9)
    got = row(Target("w", "http://x"), None, _read(registry, 1.0))
    assert (got.in_rate, got.out_rate, got.shipped, got.errors) == (None, None, 9.0, 0.0)


def test_a_reset_counter_counts_from_zero() -> None:
    before = _read(_with_received(500), 1.0)
    now = _read(_with_received(30), 2.0)  # the process restarted in between
    assert row(Target("w", "http://x"), before, now).in_rate == 30.0


def _with_received(n: int) -> Registry:
    registry = Registry()
    RuntimeMetrics(registry, "loki", time.monotonic).count_received(n)
    return registry


def test_edge_shippers_shipped_dropped_and_backlog(
    tmp_path: Path, metrics_shipper: MetricsShipper
) -> None:
    shipper = metrics_shipper
    before = _read(shipper.registry, 0.0)
    shipper.m_samples.inc(1000)
    shipper.m_sent.inc(800)
    shipper.m_dropped.labels(reason="buffer_full").inc(20)
    shipper.m_backlog.set(3 * 2**20)
    metrics = row(Target("edge-metrics", "http://x"), before, _read(shipper.registry, 2.0))
    assert (metrics.in_rate, metrics.out_rate, metrics.shipped, metrics.dropped) == (
        500.0,
        400.0,
        800.0,
        20.0,
    )
    assert (metrics.lag, metrics.lag_unit, metrics.dead_letters) == (3 * 2**20, "B", None)

    logs = _log_shipper(tmp_path)
    before = _read(logs.registry, 0.0)
    logs.m_read.inc(40)
    logs.m_sent.inc(30)
    logs.m_dropped.labels(reason="drop_stage").inc(5)
    logs.m_lag.labels(filename="/var/log/a.log").set(100)
    logs.m_lag.labels(filename="/var/log/b.log").set(24)
    got = row(Target("edge-logs", "http://x"), before, _read(logs.registry, 4.0))
    assert (got.kind, got.in_rate, got.out_rate, got.dropped, got.lag) == (
        "edge-logs",
        10.0,
        7.5,
        5.0,
        124.0,
    )


def test_traces_receiver_and_gateway_requests_and_refusals() -> None:
    registry = Registry()
    traces = TracesMetrics(registry)
    before = _read(registry, 0.0)
    traces.received.labels(transport="grpc").inc(60)
    traces.received.labels(transport="http").inc(40)
    traces.produced.inc(90)
    traces.refused.labels(reason="invalid_trace_id").inc(10)
    traces.requests.labels(transport="grpc", status="0").inc(4)
    got = row(Target("edge-traces", "http://x"), before, _read(registry, 1.0))
    assert (got.in_rate, got.out_rate, got.request_rate, got.dropped) == (100.0, 90.0, 4.0, 10.0)

    registry = Registry()
    gateway = GatewayMetrics(registry)
    before = _read(registry, 0.0)
    gateway.requests.labels(endpoint="remote_write", tenant="demo", status="204").inc(8)
    gateway.requests.labels(endpoint="loki_push", tenant="", status="401").inc(2)
    gateway.refused.labels(endpoint="loki_push", reason="unauthenticated").inc(2)
    gateway.accepted.labels(endpoint="remote_write", tenant="demo").inc(400)
    got = row(Target("gateway", "http://x"), before, _read(registry, 2.0))
    assert (got.kind, got.in_rate, got.request_rate, got.out_rate, got.dropped) == (
        "gateway",
        None,
        5.0,
        200.0,
        2.0,
    )


def test_a_process_that_is_down_is_a_row_of_blanks() -> None:
    got = row(Target("to-loki", "http://x", "worker"), None, Scrape(1.0, "worker", "down"))
    assert got == Row("to-loki", "worker", "down")
    table = format_table([got, Row("w", "worker", "yes", in_rate=1500.0, lag=3.0)])
    lines = table.splitlines()
    assert lines[0].split() == [
        "NAME",
        "KIND",
        "READY",
        "IN/s",
        "OUT/s",
        "REQ/s",
        "LAG",
        "ERRORS",
        "DEAD",
        "SHIPPED",
        "DROPPED",
    ]
    assert lines[1].split() == ["to-loki", "worker", "down", *["-"] * 8]
    assert lines[2].split()[:4] == ["w", "worker", "yes", "1.5k"]
    assert "\x1b" not in table


def test_targets_from_the_command_line() -> None:
    assert parse_target("to-loki=http://127.0.0.1:9916/") == Target(
        "to-loki", "http://127.0.0.1:9916"
    )
    assert parse_target("w=http://h:1/metrics").url == "http://h:1"
    for bad in ("to-loki", "=http://h:1", "x=127.0.0.1:9916"):
        with pytest.raises(ValueError, match="NAME=http"):
            parse_target(bad)


def test_targets_from_the_state_file_of_ferryman_up(tmp_path: Path) -> None:
    layout = Layout(tmp_path)
    layout.run.mkdir(parents=True)
    py = ["/usr/bin/python3", "-m", "ferryman"]
    services: dict[str, Any] = {
        "kafka": {"pid": 1, "endpoints": {"bootstrap": "127.0.0.1:9092"}},
        "to-loki": {
            "command": [*py, "worker", "loki", "--config", "c.yaml"],
            "endpoints": {"http": "http://127.0.0.1:9916"},
        },
        "edge-metrics": {
            "command": [*py, "edge", "metrics", "--config", "c.yaml"],
            "endpoints": {"http": "http://127.0.0.1:9901"},
        },
        "gateway": {
            "command": [*py, "gateway", "--config", "c.yaml"],
            "endpoints": {"http": "http://127.0.0.1:8480", "otlp_grpc": "127.0.0.1:8481"},
        },
        "hotrod-demo": {"command": ["hotrod", "all"], "endpoints": {"frontend": "http://h:1"}},
    }
    layout.state_file.write_text(json.dumps({"services": services}))
    targets = pipeline_targets(layout)
    # Pipeline order; the stack's services and processes never started are left out.
    assert [(t.name, t.kind, t.url) for t in targets] == [
        ("edge-metrics", "edge-metrics", "http://127.0.0.1:9901"),
        ("to-loki", "worker", "http://127.0.0.1:9916"),
        ("hotrod-demo", "other", None),
        ("gateway", "gateway", "http://127.0.0.1:8480"),
    ]
    assert targets[2].probe is not None
