"""Thin I/O: the HTTP client and one POST."""

from __future__ import annotations

import httpx

from workers.function import Context

from .config import LokiConfig

__all__ = ["make_client", "post"]


def make_client(config: LokiConfig, context: Context) -> httpx.Client:
    verify = config.tls.verify()
    auth: httpx.Auth | None = None
    if config.basic_auth is not None:
        auth = httpx.BasicAuth(config.basic_auth.username, config.basic_auth.password)
    headers = {"Authorization": f"Bearer {config.bearer_token}"} if config.bearer_token else {}
    return context.http_client(timeout=config.timeout_s, verify=verify, auth=auth,
                               headers=headers)


def post(client: httpx.Client, url: str, body: bytes,
         headers: dict[str, str]) -> httpx.Response:
    """POST ``body``; raises httpx.TransportError when Loki cannot be reached."""
    return client.post(url, content=body, headers=headers)
