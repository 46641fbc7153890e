"""Configuration of the ``elasticsearch_logs`` sink."""

from __future__ import annotations

import re

from pydantic import Field, field_validator

from functions._elasticsearch import BaseTemplateConfig, ElasticsearchConnection, check_name
from functions._http import BasicAuth, TLSConfig

__all__ = ["BasicAuth", "ElasticsearchLogsConfig", "TLSConfig", "TemplateConfig"]


#: Top-level fields the documents already have.
_WRITTEN = frozenset({"message", "log", "host", "kubernetes", "cluster", "labels"})


class TemplateConfig(BaseTemplateConfig):
    """The index template installed (idempotently, by PUT) before the first write."""


class ElasticsearchLogsConfig(ElasticsearchConnection):
    """Where and how to write log lines, one ECS-style document per line."""

    data_stream: str = Field(
        "logs-ferryman-default",
        description="Data stream written to (default logs-ferryman-default).",
    )
    template: TemplateConfig = Field(
        default_factory=TemplateConfig, description="Index template options."
    )
    metadata_field: str = Field(
        "fields",
        description="Object holding each line's structured "
        "metadata (fields from the `parse` transform), one keyword "
        "per name: `fields.trace_id` (default fields).",
    )

    @field_validator("data_stream")
    @classmethod
    def _valid_stream(cls, name: str) -> str:
        if name.startswith(".ds-"):
            raise ValueError("a data stream name may not start with .ds-")
        return check_name(name, "data stream")

    @field_validator("metadata_field")
    @classmethod
    def _metadata_field(cls, name: str) -> str:
        if not re.fullmatch(r"[a-zA-Z_][a-zA-Z0-9_]*", name):
            raise ValueError("metadata_field must be a plain field name")
        if name in _WRITTEN:
            raise ValueError(f"metadata_field may not be one of {sorted(_WRITTEN)}")
        return name

    @property
    def template_name(self) -> str:
        return self.template.name or self.data_stream
