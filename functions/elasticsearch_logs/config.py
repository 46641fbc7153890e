"""Configuration of the ``elasticsearch_logs`` sink."""

from __future__ import annotations

from pydantic import Field, field_validator

from functions.common import BasicAuth, TLSConfig
from functions.elasticsearch_config import (
    BaseTemplateConfig,
    ElasticsearchConnection,
    check_name,
)

__all__ = ["BasicAuth", "ElasticsearchLogsConfig", "TLSConfig", "TemplateConfig"]


class TemplateConfig(BaseTemplateConfig):
    """The index template installed (idempotently, by PUT) before the first write."""


class ElasticsearchLogsConfig(ElasticsearchConnection):
    """Where and how to write log lines, one ECS-style document per line."""

    data_stream: str = Field("logs-ferryman-default",
                             description="Data stream written to (default "
                                         "logs-ferryman-default).")
    template: TemplateConfig = Field(default_factory=TemplateConfig,
                                     description="Index template options.")

    @field_validator("data_stream")
    @classmethod
    def _valid_stream(cls, name: str) -> str:
        if name.startswith(".ds-"):
            raise ValueError("a data stream name may not start with .ds-")
        return check_name(name, "data stream")

    @property
    def template_name(self) -> str:
        return self.template.name or self.data_stream
