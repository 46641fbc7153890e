"""Thin I/O: the HTTP client and one POST to ``/api/put``."""

from __future__ import annotations

import httpx

from functions._http import make_client as _make_client
from workers.function import Context

from .config import OpenTSDBConfig

__all__ = ["make_client", "post", "put_params"]


def make_client(config: OpenTSDBConfig, context: Context) -> httpx.Client:
    return _make_client(config, context, {"Content-Type": "application/json"})


def put_params(config: OpenTSDBConfig) -> dict[str, str]:
    """``details`` always (per-datapoint errors); ``sync`` to be told only once stored."""
    params = {"details": ""}
    if config.sync:
        params["sync"] = ""
        if config.sync_timeout_s:
            params["sync_timeout"] = str(int(config.sync_timeout_s * 1000))
    return params


def post(client: httpx.Client, config: OpenTSDBConfig, body: bytes) -> httpx.Response:
    """POST ``body``; raises httpx.TransportError when OpenTSDB cannot be reached."""
    return client.post(f"{config.url}/api/put", params=put_params(config), content=body)
