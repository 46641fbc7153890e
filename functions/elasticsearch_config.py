"""Configuration both Elasticsearch sinks share: connection, auth, bulk size, templates."""

from __future__ import annotations

import re
from typing import Self

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from functions.common import BasicAuth, TLSConfig

__all__ = ["BaseTemplateConfig", "ElasticsearchConnection", "check_name"]

_FORBIDDEN = re.compile(r'[\\/*?"<>| ,#:A-Z]')


def check_name(name: str, what: str) -> str:
    """``name`` if Elasticsearch accepts it as an index, data stream or template name."""
    if not name or _FORBIDDEN.search(name) or name.startswith(("-", "_", "+", ".")):
        raise ValueError(f"{what} {name!r} is not a valid Elasticsearch name (lowercase, "
                         "no spaces or \\/*?\"<>|,#:, not starting with -_+.)")
    return name


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BaseTemplateConfig(_Frozen):
    """The index template installed (idempotently, by PUT) before the first write."""

    install: bool = Field(True, description="Install the component and index templates before "
                                            "the first write (default true). Turn off when "
                                            "the operator manages templates.")
    name: str | None = Field(None, description="Index template name; default: the data "
                                               "stream's name (metrics: or the index "
                                               "pattern's fixed prefix). Its component "
                                               "template is <name>@ferryman.")
    priority: int = Field(200, ge=0, description="Index template priority (default 200: above "
                                                 "the built-in logs-*-* and metrics-*-* "
                                                 "templates' 100).")
    number_of_shards: int = Field(1, ge=1, description="Primary shards (default 1).")
    number_of_replicas: int = Field(0, ge=0, description="Replicas (default 0).")
    composed_of: tuple[str, ...] = Field((), description="Extra component templates applied "
                                                         "after ferryman's own (they win on "
                                                         "conflicts): lifecycle policy, "
                                                         "extra mappings. Must exist.")

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str | None) -> str | None:
        return None if name is None else check_name(name, "template name")


class ElasticsearchConnection(_Frozen):
    """Where Elasticsearch is and how to talk to it."""

    url: str = Field(description="Elasticsearch base URL, e.g. http://elasticsearch:9200.")
    cluster_label: str = Field("cluster", description="Label holding the cluster (default "
                                                      "`cluster`); when a series or stream "
                                                      "lacks it, the message's `cluster` "
                                                      "header is used.")
    max_bulk_bytes: int = Field(5 * 2**20, ge=1024, le=100 * 2**20,
                                description="Bulk bodies are cut at this size (default 5 MiB; "
                                            "at most Elasticsearch's default "
                                            "http.max_content_length, 100 MiB).")
    basic_auth: BasicAuth | None = Field(None, description="Basic auth; default none.")
    api_key: str | None = Field(None, description="API key, the base64 `encoded` form "
                                                  "Elasticsearch returns; default none.")
    bearer_token: str | None = Field(None, description="Bearer token; default none.")
    tls: TLSConfig = Field(default_factory=TLSConfig, description="TLS options.")
    timeout_s: float = Field(30.0, gt=0, description="Timeout of one request (default 30 s).")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra HTTP headers.")

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        return url.rstrip("/")

    @model_validator(mode="after")
    def _one_auth(self) -> Self:
        auths = [a for a in (self.basic_auth, self.api_key, self.bearer_token) if a is not None]
        if len(auths) > 1:
            raise ValueError("set at most one of basic_auth, api_key and bearer_token")
        return self
