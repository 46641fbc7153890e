"""Configuration of the ``loki`` sink."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from functions._http import BasicAuth, HttpAuthConfig, TLSConfig

__all__ = ["BasicAuth", "LokiConfig", "TLSConfig"]


class LokiConfig(HttpAuthConfig):
    """Where and how to push logs: Loki's push API (protobuf, snappy), which Grafana
    Loki, VictoriaLogs and other Loki-compatible stores accept. The limits mirror Loki's
    own ``limits_config`` defaults so that a request is not refused for them."""

    url: str = Field(description="Base URL, e.g. http://loki:3100; `push_path` is appended.")
    push_path: str = Field(
        "/loki/api/v1/push",
        description="Path of the push API (default "
        "/loki/api/v1/push; VictoriaLogs: /insert/loki/api/v1/push).",
    )
    tenant: str | None = Field(
        None, description="X-Scope-OrgID sent with every request. Default: none."
    )
    tenant_from_header: bool = Field(
        True, description="When `tenant` is unset, use the message's `tenant` header, if any."
    )
    cluster_from_header: bool = Field(
        True,
        description="Add label `cluster` from the "
        "message's `cluster` header to streams without one "
        "(default true).",
    )
    max_request_bytes: int = Field(
        1 << 20,
        ge=1024,
        description="Uncompressed protobuf bytes "
        "per request at most (default 1 MiB, Promtail's batch); "
        "a single larger entry gets a request of its own.",
    )
    max_line_bytes: int = Field(
        256 * 1024,
        ge=0,
        description="Longest line in UTF-8 bytes "
        "(Loki's max_line_size, default 256 KiB); 0: no limit.",
    )
    on_long_line: Literal["truncate", "drop"] = Field(
        "truncate",
        description="A longer line is cut to `max_line_bytes` ending with "
        "`truncation_marker` (default) or dropped; counted either way "
        "in ferryman_lines_truncated_total / ferryman_lines_dropped_total.",
    )
    truncation_marker: str = Field(
        "…[truncated]", description="Ends every truncated line (default `…[truncated]`)."
    )
    max_label_names_per_series: int = Field(
        15, ge=1, description="Labels per stream at most (Loki's default 15)."
    )
    max_label_name_length: int = Field(
        1024, ge=1, description="Longest label name in bytes (Loki's default 1024)."
    )
    max_label_value_length: int = Field(
        2048, ge=1, description="Longest label value in bytes (Loki's default 2048)."
    )
    on_label_limit: Literal["truncate", "drop"] = Field(
        "truncate",
        description="A stream over a label limit keeps its first labels by name "
        "and has long names/values cut (default), or has its lines "
        "dropped; counted either way in ferryman_labels_truncated_total "
        "/ ferryman_lines_dropped_total.",
    )

    @field_validator("push_path")
    @classmethod
    def _path(cls, path: str) -> str:
        if not path.startswith("/"):
            raise ValueError("push_path must start with /")
        return path

    @model_validator(mode="after")
    def _consistent(self) -> LokiConfig:
        if self.max_line_bytes and len(self.truncation_marker.encode()) >= self.max_line_bytes:
            raise ValueError("truncation_marker must be shorter than max_line_bytes")
        return self

    @property
    def push_url(self) -> str:
        return self.url + self.push_path
