"""Jaeger v2 as the traces benchmark's peer: its configurations and start-up.

The binary is the stack's (``~/.cache/ferryman/bin/jaeger``, v2.12.0, whose bundled
OpenTelemetry Collector components include the ``kafka`` receiver and exporter). Every
instance listens on free ports of 127.0.0.1 and serves its own metrics
(``otelcol_exporter_sent_spans_total`` counts what its exporter handed on).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from bench.proctree import Measured, free_port, http_ok, slug, wait_until
from infra.local.paths import default_layout

JAEGER = default_layout().bin / "jaeger"
BOOTSTRAP = "127.0.0.1:9092"


def _telemetry(metrics_port: int) -> dict[str, Any]:
    return {
        "logs": {"level": "warn"},
        "metrics": {
            "level": "basic",
            "readers": [
                {"pull": {"exporter": {"prometheus": {"host": "127.0.0.1", "port": metrics_port}}}}
            ],
        },
    }


def _health(port: int) -> dict[str, Any]:
    return {"use_v2": True, "http": {"endpoint": f"127.0.0.1:{port}", "status": {"enabled": True}}}


def jaeger_collector(
    topic: str, otlp_port: int, metrics_port: int, health_port: int, *, upstream: bool
) -> dict[str, Any]:
    """Leg 1's peer: OTLP/HTTP receiver → kafka exporter. ``upstream``: with Jaeger's
    example's batch processor and the exporter's default queue (answers before Kafka)."""
    exporter: dict[str, Any] = {
        "brokers": [BOOTSTRAP],
        "traces": {"topic": topic, "encoding": "otlp_proto"},
        "partition_traces_by_id": True,
        "producer": {"required_acks": "all", "compression": "snappy"},
    }
    if not upstream:
        exporter["sending_queue"] = {"enabled": False}
    return {
        "service": {
            "extensions": ["healthcheckv2"],
            "pipelines": {
                "traces": {
                    "receivers": ["otlp"],
                    "processors": ["batch"] if upstream else [],
                    "exporters": ["kafka"],
                }
            },
            "telemetry": _telemetry(metrics_port),
        },
        "extensions": {"healthcheckv2": _health(health_port)},
        "receivers": {"otlp": {"protocols": {"http": {"endpoint": f"127.0.0.1:{otlp_port}"}}}},
        "processors": {"batch": {}} if upstream else {},
        "exporters": {"kafka": exporter},
    }


def jaeger_store(
    receiver: dict[str, Any], metrics_port: int, health_port: int, query_port: int
) -> dict[str, Any]:
    """Leg 2's store: ``receiver`` (kafka, or OTLP for ferryman's worker) → memory."""
    name = next(iter(receiver))
    return {
        "service": {
            "extensions": ["jaeger_storage", "jaeger_query", "healthcheckv2"],
            "pipelines": {
                "traces": {"receivers": [name], "exporters": ["jaeger_storage_exporter"]}
            },
            "telemetry": _telemetry(metrics_port),
        },
        "extensions": {
            "jaeger_storage": {"backends": {"memstore": {"memory": {"max_traces": 100000}}}},
            "jaeger_query": {
                "storage": {"traces": "memstore"},
                "enable_tracing": False,
                "http": {"endpoint": f"127.0.0.1:{query_port}"},
                "grpc": {"endpoint": f"127.0.0.1:{free_port()}"},
            },
            "healthcheckv2": _health(health_port),
        },
        "receivers": receiver,
        "exporters": {"jaeger_storage_exporter": {"trace_storage": "memstore"}},
    }


def start_jaeger(name: str, config: dict[str, Any], tmp: Path, health_port: int) -> Measured:
    path = tmp / f"{slug(name)}.yaml"
    path.write_text(yaml.safe_dump(config))
    proc = Measured(name, [str(JAEGER), f"--config={path}"], tmp)
    wait_until(lambda: http_ok(f"http://127.0.0.1:{health_port}/status"), name, [proc], 60)
    return proc
