"""Thin I/O: the HTTP client, the template PUTs and one ``_bulk`` POST."""

from __future__ import annotations

import httpx

from functions import _elasticsearch
from functions._http import make_client as _make_client
from workers.function import Context

from .classify import FILTER_PATH
from .config import ElasticsearchMetricsConfig
from .encode import component_template, component_template_name, index_template

__all__ = ["install_templates", "make_client", "post_bulk"]

_NDJSON = {"Content-Type": "application/x-ndjson"}


def make_client(config: ElasticsearchMetricsConfig, context: Context) -> httpx.Client:
    return _make_client(config, context)


def install_templates(client: httpx.Client, config: ElasticsearchMetricsConfig) -> None:
    """PUT the component template, then the index template using it (see
    :func:`functions._elasticsearch.install_templates` for what is raised)."""
    _elasticsearch.install_templates(
        client,
        config.url,
        [
            (f"_component_template/{component_template_name(config)}", component_template(config)),
            (f"_index_template/{config.template_name}", index_template(config)),
        ],
    )


def post_bulk(
    client: httpx.Client, config: ElasticsearchMetricsConfig, body: bytes
) -> httpx.Response:
    """POST one bulk body; raises httpx.TransportError when the node is unreachable."""
    target = (
        f"{config.url}/{config.data_stream}/_bulk" if config.data_stream else f"{config.url}/_bulk"
    )
    return client.post(target, content=body, headers=_NDJSON, params={"filter_path": FILTER_PATH})
