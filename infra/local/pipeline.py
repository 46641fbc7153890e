"""``ferryman up``: the local pipeline on top of the stack.

An edge metrics shipper scrapes this machine's node-exporter and the stack's own
``/metrics``, with ``cluster: local``; workers carry the metrics topic into
Prometheus, VictoriaMetrics (remote write and OpenTSDB), Elasticsearch and
InfluxDB. An edge log shipper tails this machine's ``/var/log`` (and its journal
where one runs or has left files); workers carry the logs topic into Loki (VictoriaLogs' Loki
API) and Elasticsearch. The edge traces receiver takes OTLP on 127.0.0.1:14317 (gRPC)
and :14318 (HTTP) — Jaeger holds 4317/4318 here — and a worker carries the traces
topic into Jaeger; HotROD, Jaeger's demo application, exports its traces to the
receiver, driven by a trickle of rides. The gateway takes remote write, Loki push and
OTLP from agents that are not ferryman's (http://127.0.0.1:8480, OTLP/gRPC :8481) for
the tenant ``demo``, whose token ``ferryman up`` prints. Each runs as its own process, exactly as it
would in a container, and is supervised like the services (``ferryman stack status``
lists them).
"""

from __future__ import annotations

import hashlib
import os
import secrets
import sys
from dataclasses import replace
from pathlib import Path
from typing import Any

import yaml

from ferryman import __version__

from .catalogue import HOST, HOTROD, HOTROD_PORTS, hotrod_argv
from .paths import Layout
from .probes import http_probe
from .service import Service

__all__ = ["PIPELINE"]

EDGE_PORT = 9901
EDGE_LOGS_PORT = 9902
EDGE_TRACES_PORT = 9903
#: The receiver's OTLP ports here (4317/4318 in a cluster; the stack's Jaeger has those).
OTLP_GRPC_PORT = 14317
OTLP_HTTP_PORT = 14318
TRICKLE_PORT = 9919
GATEWAY_PORT = 8480
GATEWAY_GRPC_PORT = 8481
#: The demo tenant of the local gateway, and the cluster it may write as.
GATEWAY_TENANT = "demo"
GATEWAY_CLUSTER = "demo"
METRICS_TOPIC = "ferryman.metrics"
LOGS_TOPIC = "ferryman.logs"
TRACES_TOPIC = "ferryman.traces"

#: (process name, function, listen port, function config)
_WORKERS: tuple[tuple[str, str, int, dict[str, Any]], ...] = (
    ("to-prometheus", "prometheus_remote_write", 9911, {"url": f"http://{HOST}:9090/api/v1/write"}),
    (
        "to-victoriametrics",
        "prometheus_remote_write",
        9912,
        {"url": f"http://{HOST}:8428/api/v1/write"},
    ),
    ("to-elasticsearch", "elasticsearch_metrics", 9913, {"url": f"http://{HOST}:9200"}),
    ("to-influxdb", "influxdb", 9914, {"url": f"http://{HOST}:8086", "database": "ferryman"}),
    ("to-opentsdb", "opentsdb", 9915, {"url": f"http://{HOST}:4242"}),
)

#: The same for the logs topic.
_LOG_WORKERS: tuple[tuple[str, str, int, dict[str, Any]], ...] = (
    (
        "to-loki",
        "loki",
        9916,
        # VictoriaLogs reads X-Scope-OrgID as a numeric account id: the gateway's
        # tenant names ("demo") would be refused, so every tenant shares its default.
        {
            "url": f"http://{HOST}:9428",
            "push_path": "/insert/loki/api/v1/push",
            "tenant_from_header": False,
        },
    ),
    (
        "to-elasticsearch-logs",
        "elasticsearch_logs",
        9917,
        {"url": f"http://{HOST}:9200", "data_stream": "logs-ferryman-local"},
    ),
)


#: The same for the traces topic.
_TRACE_WORKERS: tuple[tuple[str, str, int, dict[str, Any]], ...] = (
    ("to-jaeger", "otlp_traces", 9918, {"url": f"http://{HOST}:4318", "protocol": "http"}),
)


def _edge_config(layout: Layout) -> dict[str, Any]:
    own = [f"{HOST}:9090", f"{HOST}:8428", f"{HOST}:9428", f"{HOST}:8888"]
    return {
        "global": {
            "scrape_interval": "15s",
            "scrape_timeout": "10s",
            "external_labels": {"cluster": "local"},
        },
        "scrape_configs": [
            {"job_name": "node", "static_configs": [{"targets": [f"{HOST}:9100"]}]},
            {"job_name": "stack", "static_configs": [{"targets": own}]},
            {
                "job_name": "ferryman",
                "static_configs": [
                    {
                        "targets": [
                            f"{HOST}:{port}"
                            for _, _, port, _ in (*_WORKERS, *_LOG_WORKERS, *_TRACE_WORKERS)
                        ]
                        + [f"{HOST}:{EDGE_LOGS_PORT}", f"{HOST}:{EDGE_TRACES_PORT}"]
                    }
                ],
            },
        ],
        "ferryman": {
            "kafka": {"bootstrap_servers": f"{HOST}:9092", "topic": METRICS_TOPIC},
            "buffer": {"directory": str(layout.data("edge-metrics") / "buffer")},
            "listen": f"{HOST}:{EDGE_PORT}",
        },
    }


def _has_journal() -> bool:
    """A journald runs here (its socket) or has left journal files."""
    return Path("/run/systemd/journal/socket").exists() or any(
        Path("/var/log/journal").glob("*/*.journal")
    )


def _edge_logs_config(layout: Layout) -> dict[str, Any]:
    jobs: list[dict[str, Any]] = [
        {
            "job_name": "varlog",
            "static_configs": [
                {"labels": {"job": "varlog", "__path__": "/var/log/**/*.log"}},
                {"labels": {"job": "varlog", "__path__": "/var/log/syslog"}},
                {"labels": {"job": "varlog", "__path__": "/var/log/messages"}},
            ],
        },
    ]
    if _has_journal():
        jobs.append(
            {
                "job_name": "journal",
                "journal": {"max_age": "12h", "labels": {"job": "journal"}},
                "relabel_configs": [
                    {"source_labels": ["__journal__systemd_unit"], "target_label": "unit"},
                    {"source_labels": ["__journal_priority_keyword"], "target_label": "level"},
                ],
            }
        )
    return {
        "global": {"external_labels": {"cluster": "local"}},
        "positions": {"filename": str(layout.data("edge-logs") / "positions.json")},
        "scrape_configs": jobs,
        "ferryman": {
            "kafka": {"bootstrap_servers": f"{HOST}:9092", "topic": LOGS_TOPIC},
            "listen": f"{HOST}:{EDGE_LOGS_PORT}",
        },
    }


def _edge_traces_config(layout: Layout) -> dict[str, Any]:
    del layout
    return {
        "external_labels": {"cluster": "local"},
        "ferryman": {
            "kafka": {"bootstrap_servers": f"{HOST}:9092", "topic": TRACES_TOPIC},
            "grpc": {"listen": f"{HOST}:{OTLP_GRPC_PORT}"},
            "http": {"listen": f"{HOST}:{OTLP_HTTP_PORT}"},
            "listen": f"{HOST}:{EDGE_TRACES_PORT}",
        },
    }


def gateway_token_file(layout: Layout) -> Path:
    """Where the local gateway's demo token is kept (mode 0600, made once)."""
    return layout.conf("pipeline") / "gateway-token"


def _gateway_token(layout: Layout) -> str:
    path = gateway_token_file(layout)
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as file:
            file.write(secrets.token_urlsafe(24) + "\n")
    return path.read_text().strip()


def _gateway_config(layout: Layout) -> dict[str, Any]:
    token = _gateway_token(layout)
    return {
        "listen": f"{HOST}:{GATEWAY_PORT}",
        "grpc_listen": f"{HOST}:{GATEWAY_GRPC_PORT}",
        "kafka": {
            "bootstrap_servers": f"{HOST}:9092",
            "topics": {"metrics": METRICS_TOPIC, "logs": LOGS_TOPIC, "traces": TRACES_TOPIC},
        },
        "tenants": [
            {
                "name": GATEWAY_TENANT,
                "bearer_token_hash": "sha256:" + hashlib.sha256(token.encode()).hexdigest(),
                "clusters": [GATEWAY_CLUSTER],
            }
        ],
    }


def _worker_config(
    name: str, port: int, config: dict[str, Any], topic: str = METRICS_TOPIC
) -> dict[str, Any]:
    return {
        "kafka": {
            "bootstrap_servers": f"{HOST}:9092",
            "input_topic": topic,
            "group_id": f"ferryman-local-{name}",
        },
        "http": {"listen": f"{HOST}:{port}"},
        "config": config,
    }


#: HotROD's demo services, on ports of their own in the pipeline (the stack's entry
#: keeps 8080-8083 for a HotROD an operator starts by hand).
DEMO_PORTS = {service: port + 100 for service, port in HOTROD_PORTS.items()}
DEMO_FRONTEND = f"http://{HOST}:{DEMO_PORTS['frontend']}"

#: HotROD exporting OTLP/HTTP to the edge receiver, which labels it cluster "local".
HOTROD_DEMO = Service(
    name="hotrod-demo",
    endpoints={"frontend": DEMO_FRONTEND},
    install=HOTROD.install,
    command=lambda layout: hotrod_argv(layout.bin / "hotrod", DEMO_PORTS),
    env=lambda layout: {"OTEL_EXPORTER_OTLP_ENDPOINT": f"http://{HOST}:{OTLP_HTTP_PORT}"},
    probe=http_probe(f"{DEMO_FRONTEND}/config", contains="jaeger"),
)

#: A ride every 5 seconds, so Jaeger keeps showing fresh traces.
TRICKLE = Service(
    name="hotrod-trickle",
    endpoints={"http": f"http://{HOST}:{TRICKLE_PORT}"},
    install=lambda layout: __version__,
    command=lambda layout: [
        sys.executable,
        "-m",
        "infra.local.trickle",
        "--frontend",
        DEMO_FRONTEND,
        "--every",
        "5",
        "--listen",
        f"{HOST}:{TRICKLE_PORT}",
    ],
    probe=http_probe(f"http://{HOST}:{TRICKLE_PORT}/healthz"),
)


def _process(name: str, argv: list[str], settings: Any, probe_url: str) -> Service:
    def prepare(layout: Layout) -> None:
        path = layout.conf("pipeline") / f"{name}.yaml"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(settings(layout) if callable(settings) else settings))

    return Service(
        name=name,
        endpoints={"http": probe_url.split("/-/")[0].removesuffix("/readyz")},
        install=lambda layout: __version__,
        prepare=prepare,
        command=lambda layout: [
            sys.executable,
            "-m",
            "ferryman",
            *argv,
            "--config",
            str(layout.conf("pipeline") / f"{name}.yaml"),
        ],
        probe=http_probe(probe_url),
        # Started beside the stack: a worker is ready once its group has joined, which
        # waits for Kafka to listen and then to load its group coordinator (after a day
        # of tests here: 40 s to listen, then more than 20 s of NotCoordinator).
        start_timeout=300,
    )


PIPELINE: tuple[Service, ...] = (
    _process(
        "edge-metrics", ["edge", "metrics"], _edge_config, f"http://{HOST}:{EDGE_PORT}/-/ready"
    ),
    *(
        _process(
            name,
            ["worker", function],
            _worker_config(name, port, config),
            f"http://{HOST}:{port}/readyz",
        )
        for name, function, port, config in _WORKERS
    ),
    _process(
        "edge-logs", ["edge", "logs"], _edge_logs_config, f"http://{HOST}:{EDGE_LOGS_PORT}/-/ready"
    ),
    *(
        _process(
            name,
            ["worker", function],
            _worker_config(name, port, config, LOGS_TOPIC),
            f"http://{HOST}:{port}/readyz",
        )
        for name, function, port, config in _LOG_WORKERS
    ),
    _process(
        "edge-traces",
        ["edge", "traces"],
        _edge_traces_config,
        f"http://{HOST}:{EDGE_TRACES_PORT}/readyz",
    ),
    *(
        _process(
            name,
            ["worker", function],
            _worker_config(name, port, config, TRACES_TOPIC),
            f"http://{HOST}:{port}/readyz",
        )
        for name, function, port, config in _TRACE_WORKERS
    ),
    HOTROD_DEMO,
    TRICKLE,
    replace(
        _process("gateway", ["gateway"], _gateway_config, f"http://{HOST}:{GATEWAY_PORT}/readyz"),
        endpoints={
            "http": f"http://{HOST}:{GATEWAY_PORT}",
            "otlp_grpc": f"{HOST}:{GATEWAY_GRPC_PORT}",
        },
        layout_endpoints=lambda layout: {"token_file": str(gateway_token_file(layout))},
    ),
)
