"""Thin I/O: the HTTP client and one POST."""

from __future__ import annotations

import httpx

from functions._http import make_client as _make_client
from workers.function import Context

from .config import RemoteWriteConfig

__all__ = ["make_client", "post"]


def make_client(config: RemoteWriteConfig, context: Context) -> httpx.Client:
    return _make_client(config, context)


def post(client: httpx.Client, url: str, body: bytes, headers: dict[str, str]) -> httpx.Response:
    """POST ``body``; raises httpx.TransportError when the receiver cannot be reached."""
    return client.post(url, content=body, headers=headers)
