"""Thin I/O: the HTTP client and one POST."""

from __future__ import annotations

import httpx

from functions._http import make_client as _make_client
from workers.function import Context

from .config import InfluxDBConfig
from .encode import Target

__all__ = ["make_client", "post"]


def make_client(config: InfluxDBConfig, context: Context) -> httpx.Client:
    return _make_client(config, context)


def post(client: httpx.Client, target: Target, body: bytes) -> httpx.Response:
    """POST ``body``; raises httpx.TransportError when InfluxDB cannot be reached."""
    return client.post(target.url, params=target.params, headers=target.headers, content=body)
