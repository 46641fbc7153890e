"""Configuration of the ``elasticsearch_metrics`` sink."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import Field, field_validator, model_validator

from functions._elasticsearch import BaseTemplateConfig, ElasticsearchConnection, check_name
from functions._http import BasicAuth, TLSConfig

__all__ = ["BasicAuth", "ElasticsearchMetricsConfig", "TLSConfig", "TemplateConfig"]

# Directives whose value is fixed within one UTC hour, so index names can be cached per hour.
_INDEX_DIRECTIVES = frozenset("YymdHjGVu")


class TemplateConfig(BaseTemplateConfig):
    """The index template installed (idempotently, by PUT) before the first write."""

    labels: Literal["keyword", "flattened"] = Field(
        "keyword",
        description="How `labels` is mapped: `keyword` (default) makes one keyword "
        "field per label name, visible to Grafana's field lists; "
        "`flattened` keeps all labels in one field, immune to mapping "
        "explosion when label names are unbounded.",
    )


class ElasticsearchMetricsConfig(ElasticsearchConnection):
    """Where and how to write metric samples, one document per sample.

    Writes go to a data stream by default; set ``data_stream: null`` and ``index`` to
    write to plain time-based indices instead (their names come from each sample's
    own timestamp, so a replay always lands in the same index and is deduplicated
    there, whatever the wall clock says).
    """

    data_stream: str | None = Field(
        "metrics-ferryman-default",
        description="Data stream written to (default "
        "metrics-ferryman-default); null to use "
        "`index`.",
    )
    index: str | None = Field(
        None,
        description="Plain index name pattern with strftime "
        "directives over the sample's UTC time "
        "(%Y %y %m %d %H %j %G %V %u), e.g. "
        "ferryman-metrics-%Y.%m.%d. Default unset.",
    )
    template: TemplateConfig = Field(
        default_factory=TemplateConfig, description="Index template options."
    )

    @field_validator("data_stream")
    @classmethod
    def _valid_stream(cls, name: str | None) -> str | None:
        if name is not None and name.startswith(".ds-"):
            raise ValueError("a data stream name may not start with .ds-")
        return None if name is None else check_name(name, "data stream")

    @field_validator("index")
    @classmethod
    def _valid_index(cls, pattern: str | None) -> str | None:
        if pattern is None:
            return None
        for directive in re.findall(r"%(.)", pattern):
            if directive not in _INDEX_DIRECTIVES:
                raise ValueError(
                    f"index directive %{directive} is not one of %Y %y %m %d %H %j %G %V %u"
                )
        check_name(re.sub(r"%.", "0", pattern), "index")
        return pattern

    @model_validator(mode="after")
    def _one_target(self) -> ElasticsearchMetricsConfig:
        if (self.data_stream is None) == (self.index is None):
            raise ValueError(
                "set exactly one of data_stream and index (data_stream: null to use index)"
            )
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
