"""Thin I/O: the HTTP client and one POST."""

from __future__ import annotations

import httpx

from workers.function import Context

from .config import InfluxDBConfig
from .encode import Target

__all__ = ["make_client", "post"]


def make_client(config: InfluxDBConfig, context: Context) -> httpx.Client:
    verify = config.tls.verify()
    auth: httpx.Auth | None = None
    if config.username is not None and config.password is not None:
        auth = httpx.BasicAuth(config.username, config.password)
    return context.http_client(timeout=config.timeout_s, verify=verify, auth=auth)


def post(client: httpx.Client, target: Target, body: bytes) -> httpx.Response:
    """POST ``body``; raises httpx.TransportError when InfluxDB cannot be reached."""
    return client.post(target.url, params=target.params, headers=target.headers, content=body)
