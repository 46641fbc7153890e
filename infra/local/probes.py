"""Health probes: each answers True only when the service does real work."""

from __future__ import annotations

import socket
from collections.abc import Callable

import httpx

__all__ = ["Probe", "http_probe", "kafka_probe", "redis_probe"]

Probe = Callable[[], bool]


def http_probe(url: str, *, status: int = 200, contains: str | None = None) -> Probe:
    def probe() -> bool:
        try:
            response = httpx.get(url, timeout=2.0)
        except httpx.HTTPError:
            return False
        if response.status_code != status:
            return False
        return contains is None or contains in response.text

    return probe


def redis_probe(host: str, port: int) -> Probe:
    def probe() -> bool:
        try:
            with socket.create_connection((host, port), timeout=1.0) as conn:
                conn.sendall(b"*1\r\n$4\r\nPING\r\n")
                return conn.recv(16).startswith(b"+PONG")
        except OSError:
            return False

    return probe


def kafka_probe(bootstrap: str) -> Probe:
    """Healthy once the broker answers a metadata request with itself as a live broker."""

    def probe() -> bool:
        host, _, port = bootstrap.rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=1.0).close()
        except OSError:
            return False
        from kafka import KafkaAdminClient
        from kafka.errors import KafkaError

        try:
            admin = KafkaAdminClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
        except (KafkaError, OSError, ValueError):
            return False
        try:
            return bool(admin.describe_cluster().get("brokers"))
        except (KafkaError, OSError, ValueError):
            return False
        finally:
            admin.close()

    return probe
