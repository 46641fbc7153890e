"""Thin I/O: the HTTP client, the template PUTs and one ``_bulk`` POST."""

from __future__ import annotations

import httpx

from workers.errors import DeliveryError
from workers.function import Context

from .classify import FILTER_PATH
from .config import ElasticsearchLogsConfig
from .encode import component_template, component_template_name, index_template

__all__ = ["install_templates", "make_client", "post_bulk"]

_NDJSON = {"Content-Type": "application/x-ndjson"}


def make_client(config: ElasticsearchLogsConfig, context: Context) -> httpx.Client:
    auth: httpx.Auth | None = None
    if config.basic_auth is not None:
        auth = httpx.BasicAuth(config.basic_auth.username, config.basic_auth.password)
    headers = dict(config.headers)
    if config.api_key:
        headers["Authorization"] = f"ApiKey {config.api_key}"
    elif config.bearer_token:
        headers["Authorization"] = f"Bearer {config.bearer_token}"
    return context.http_client(timeout=config.timeout_s, verify=config.tls.verify(), auth=auth,
                               headers=headers)


def install_templates(client: httpx.Client, config: ElasticsearchLogsConfig) -> None:
    """PUT the component template, then the index template using it. Both are upserts
    that leave cluster state alone when nothing changed, so every worker may do this
    at start. Raises DeliveryError (retryable): nothing is written before they exist."""
    puts = [(f"_component_template/{component_template_name(config)}",
             component_template(config)),
            (f"_index_template/{config.template_name}", index_template(config))]
    for path, body in puts:
        try:
            response = client.put(f"{config.url}/{path}", json=body)
        except httpx.TransportError as exc:
            raise DeliveryError(f"PUT {path}: {type(exc).__name__}: {exc}") from exc
        if not response.is_success:
            raise DeliveryError(f"PUT {path}: HTTP {response.status_code}: "
                                f"{response.text[:500]}")


def post_bulk(client: httpx.Client, config: ElasticsearchLogsConfig,
              body: bytes) -> httpx.Response:
    """POST one bulk body; raises httpx.TransportError when the node is unreachable."""
    return client.post(f"{config.url}/{config.data_stream}/_bulk", content=body,
                       headers=_NDJSON, params={"filter_path": FILTER_PATH})
