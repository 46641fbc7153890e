"""Start a gateway on a Kafka, with topics and tenants of the test's own."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from edge.gateway.auth import hash_password, hash_token
from tests.integration.pipeline import Gateway, create_topics, dead_letters, free_port

TOKEN_A = "token-of-team-a-0123456789"
PASSWORD_B = "password of team b"


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


@dataclass
class Setup:
    gateway: Gateway
    bootstrap: str
    metrics: str
    logs: str
    traces: str

    @property
    def url(self) -> str:
        return self.gateway.url


def tenants(limits_a: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    return [
        {
            "name": "team-a",
            "bearer_token_hash": hash_token(TOKEN_A),
            "clusters": ["alpha", "alpha-2"],
            "limits": limits_a or {},
        },
        {
            "name": "team-b",
            "basic_auth": {"username": "bob", "password_hash": hash_password(PASSWORD_B)},
            "clusters": ["beta"],
        },
    ]


def start_gateway(
    tmp_path: Path,
    processes: Any,
    bootstrap: str,
    unique: str,
    *,
    limits_a: dict[str, Any] | None = None,
    create: bool = True,
    **settings: Any,
) -> Setup:
    topics = {"metrics": f"{unique}-m", "logs": f"{unique}-l", "traces": f"{unique}-t"}
    if create:
        create_topics(bootstrap, *((t, 2) for t in topics.values()))
    tenants_file = tmp_path / f"tenants-{unique}.yaml"
    tenants_file.write_text(yaml.safe_dump({"tenants": tenants(limits_a)}))
    config = {
        "listen": f"127.0.0.1:{free_port()}",
        "kafka": {"bootstrap_servers": bootstrap, "topics": topics},
        "ack_timeout": "5s",
        "tenants_file": str(tenants_file),
        **settings,
    }
    gateway = processes(Gateway(tmp_path, config))
    return Setup(gateway, bootstrap, topics["metrics"], topics["logs"], topics["traces"])


def messages(bootstrap: str, topic: str, timeout_ms: int = 3000) -> list[Any]:
    """Every message on ``topic`` so far."""
    return dead_letters(bootstrap, topic, timeout_ms=timeout_ms)


def sdk_spans(service: str, cluster: str, count: int) -> list[Any]:
    """``count`` finished spans of the OpenTelemetry SDK, with ``service`` and ``cluster``
    (``k8s.cluster.name``) as resource attributes."""
    memory = InMemorySpanExporter()
    provider = TracerProvider(
        resource=Resource.create({"service.name": service, "k8s.cluster.name": cluster})
    )
    provider.add_span_processor(SimpleSpanProcessor(memory))
    tracer = provider.get_tracer("ferryman.tests")
    for i in range(count):
        with tracer.start_as_current_span(f"op-{i}"):
            pass
    provider.shutdown()
    return list(memory.get_finished_spans())
