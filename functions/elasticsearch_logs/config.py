"""Configuration of the ``elasticsearch_logs`` sink."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from functions.common import BasicAuth, TLSConfig

__all__ = ["BasicAuth", "ElasticsearchLogsConfig", "TLSConfig", "TemplateConfig"]

_FORBIDDEN = re.compile(r'[\\/*?"<>| ,#:A-Z]')


def _check_name(name: str, what: str) -> str:
    if not name or _FORBIDDEN.search(name) or name.startswith(("-", "_", "+", ".")):
        raise ValueError(f"{what} {name!r} is not a valid Elasticsearch name (lowercase, "
                         "no spaces or \\/*?\"<>|,#:, not starting with -_+.)")
    return name


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class TemplateConfig(_Frozen):
    """The index template installed (idempotently, by PUT) before the first write."""

    install: bool = Field(True, description="Install the component and index templates before "
                                            "the first write (default true). Turn off when "
                                            "the operator manages templates.")
    name: str | None = Field(None, description="Index template name; default: the data "
                                               "stream's name. Its component template is "
                                               "<name>@ferryman.")
    priority: int = Field(200, ge=0, description="Index template priority (default 200: above "
                                                 "the built-in logs-*-* template's 100).")
    number_of_shards: int = Field(1, ge=1, description="Primary shards (default 1).")
    number_of_replicas: int = Field(0, ge=0, description="Replicas (default 0).")
    composed_of: tuple[str, ...] = Field((), description="Extra component templates applied "
                                                         "after ferryman's own (they win on "
                                                         "conflicts): lifecycle policy, "
                                                         "extra mappings. Must exist.")

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str | None) -> str | None:
        return None if name is None else _check_name(name, "template name")


class ElasticsearchLogsConfig(_Frozen):
    """Where and how to write log lines, one ECS-style document per line."""

    url: str = Field(description="Elasticsearch base URL, e.g. http://elasticsearch:9200.")
    data_stream: str = Field("logs-ferryman-default",
                             description="Data stream written to (default "
                                         "logs-ferryman-default).")
    cluster_label: str = Field("cluster", description="Label holding the cluster (default "
                                                      "`cluster`); when a stream lacks it, "
                                                      "the message's `cluster` header is "
                                                      "used.")
    max_bulk_bytes: int = Field(5 * 2**20, ge=1024, le=100 * 2**20,
                                description="Bulk bodies are cut at this size (default 5 MiB; "
                                            "at most Elasticsearch's default "
                                            "http.max_content_length, 100 MiB).")
    template: TemplateConfig = Field(default_factory=TemplateConfig,
                                     description="Index template options.")
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

    @field_validator("data_stream")
    @classmethod
    def _valid_stream(cls, name: str) -> str:
        if name.startswith(".ds-"):
            raise ValueError("a data stream name may not start with .ds-")
        return _check_name(name, "data stream")

    @model_validator(mode="after")
    def _one_auth(self) -> ElasticsearchLogsConfig:
        auths = [a for a in (self.basic_auth, self.api_key, self.bearer_token) if a is not None]
        if len(auths) > 1:
            raise ValueError("set at most one of basic_auth, api_key and bearer_token")
        return self

    @property
    def template_name(self) -> str:
        return self.template.name or self.data_stream
