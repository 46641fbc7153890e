"""Configuration of the ``elasticsearch_metrics`` sink."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from functions.common import BasicAuth, TLSConfig

__all__ = ["BasicAuth", "ElasticsearchMetricsConfig", "TLSConfig", "TemplateConfig"]

# Directives whose value is fixed within one UTC hour, so index names can be cached per hour.
_INDEX_DIRECTIVES = frozenset("YymdHjGVu")
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
                                               "stream's name, or the index pattern's fixed "
                                               "prefix. Its component template is "
                                               "<name>@ferryman.")
    priority: int = Field(200, ge=0, description="Index template priority (default 200: above "
                                                 "the built-in metrics-*-* template's 100).")
    number_of_shards: int = Field(1, ge=1, description="Primary shards (default 1).")
    number_of_replicas: int = Field(0, ge=0, description="Replicas (default 0).")
    labels: Literal["keyword", "flattened"] = Field(
        "keyword", description="How `labels` is mapped: `keyword` (default) makes one keyword "
                               "field per label name, visible to Grafana's field lists; "
                               "`flattened` keeps all labels in one field, immune to mapping "
                               "explosion when label names are unbounded.")
    composed_of: tuple[str, ...] = Field((), description="Extra component templates applied "
                                                         "after ferryman's own (they win on "
                                                         "conflicts): lifecycle policy, "
                                                         "extra mappings. Must exist.")

    @field_validator("name")
    @classmethod
    def _valid_name(cls, name: str | None) -> str | None:
        return None if name is None else _check_name(name, "template name")


class ElasticsearchMetricsConfig(_Frozen):
    """Where and how to write metric samples, one document per sample.

    Writes go to a data stream by default; set ``data_stream: null`` and ``index`` to
    write to plain time-based indices instead (their names come from each sample's
    own timestamp, so a replay always lands in the same index and is deduplicated
    there, whatever the wall clock says).
    """

    url: str = Field(description="Elasticsearch base URL, e.g. http://elasticsearch:9200.")
    data_stream: str | None = Field("metrics-ferryman-default",
                                    description="Data stream written to (default "
                                                "metrics-ferryman-default); null to use "
                                                "`index`.")
    index: str | None = Field(None, description="Plain index name pattern with strftime "
                                                "directives over the sample's UTC time "
                                                "(%Y %y %m %d %H %j %G %V %u), e.g. "
                                                "ferryman-metrics-%Y.%m.%d. Default unset.")
    cluster_label: str = Field("cluster", description="Label holding the cluster (default "
                                                      "`cluster`); when a series lacks it, "
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
    def _valid_stream(cls, name: str | None) -> str | None:
        if name is not None and name.startswith(".ds-"):
            raise ValueError("a data stream name may not start with .ds-")
        return None if name is None else _check_name(name, "data stream")

    @field_validator("index")
    @classmethod
    def _valid_index(cls, pattern: str | None) -> str | None:
        if pattern is None:
            return None
        for directive in re.findall(r"%(.)", pattern):
            if directive not in _INDEX_DIRECTIVES:
                raise ValueError(f"index directive %{directive} is not one of "
                                 "%Y %y %m %d %H %j %G %V %u")
        _check_name(re.sub(r"%.", "0", pattern), "index")
        return pattern

    @model_validator(mode="after")
    def _one_target_one_auth(self) -> ElasticsearchMetricsConfig:
        if (self.data_stream is None) == (self.index is None):
            raise ValueError("set exactly one of data_stream and index "
                             "(data_stream: null to use index)")
        auths = [a for a in (self.basic_auth, self.api_key, self.bearer_token) if a is not None]
        if len(auths) > 1:
            raise ValueError("set at most one of basic_auth, api_key and bearer_token")
        return self

    @property
    def index_pattern(self) -> str:
        """The pattern the index template matches."""
        if self.data_stream is not None:
            return self.data_stream
        assert self.index is not None
        # Everything from the first directive to the last one varies: one wildcard.
        return re.sub(r"%.(?:.*%.)?", "*", self.index)

    @property
    def template_name(self) -> str:
        if self.template.name is not None:
            return self.template.name
        prefix = self.index_pattern.split("*", 1)[0].rstrip("-._")
        return self.data_stream or prefix or "ferryman-metrics"
