"""Thin I/O: the HTTP client and one POST."""

from __future__ import annotations

import ssl

import httpx

from workers.function import Context

from .config import InfluxDBConfig
from .encode import Target

__all__ = ["make_client", "post"]


def make_client(config: InfluxDBConfig, context: Context) -> httpx.Client:
    verify: ssl.SSLContext | bool = True
    if config.tls.insecure_skip_verify:
        verify = False
    elif config.tls.ca_file or config.tls.cert_file:
        ctx = ssl.create_default_context(cafile=str(config.tls.ca_file)
                                         if config.tls.ca_file else None)
        if config.tls.cert_file:
            ctx.load_cert_chain(str(config.tls.cert_file),
                                str(config.tls.key_file) if config.tls.key_file else None)
        verify = ctx
    auth: httpx.Auth | None = None
    if config.username is not None and config.password is not None:
        auth = httpx.BasicAuth(config.username, config.password)
    return context.http_client(timeout=config.timeout_s, verify=verify, auth=auth)


def post(client: httpx.Client, target: Target, body: bytes) -> httpx.Response:
    """POST ``body``; raises httpx.TransportError when InfluxDB cannot be reached."""
    return client.post(target.url, params=target.params, headers=target.headers, content=body)
