"""Configuration of the ``opentsdb`` sink."""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from functions._http import BasicAuth, HttpAuthConfig, TLSConfig

__all__ = ["BasicAuth", "OpenTSDBConfig", "PlaceholderTag", "TLSConfig"]

#: Characters OpenTSDB accepts in metric names, tag keys and tag values.
ALLOWED = re.compile(r"[A-Za-z0-9\-_./]+")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class PlaceholderTag(_Frozen):
    key: str = Field("cluster", description="Tag key (default `cluster`).")
    value: str = Field("unknown", description="Tag value (default `unknown`).")

    @field_validator("key", "value")
    @classmethod
    def _allowed(cls, text: str) -> str:
        if not ALLOWED.fullmatch(text):
            raise ValueError("must be non-empty and use only A-Z a-z 0-9 - _ . /")
        return text


class OpenTSDBConfig(HttpAuthConfig):
    """Where and how to put datapoints: OpenTSDB 2.x ``/api/put`` (VictoriaMetrics' OpenTSDB
    HTTP listener speaks it too)."""

    url: str = Field(description="Base URL, e.g. http://opentsdb:4242; /api/put is appended.")
    max_datapoints: int = Field(
        50, ge=1, description="Datapoints per request at most (default 50, OpenTSDB's advice)."
    )
    max_tags: int = Field(
        8,
        ge=1,
        description="Tags per datapoint at most (default 8, "
        "OpenTSDB's tsd.storage.max_tags). Extra tags "
        "are dropped: `keep_tags` first, then the "
        "others in name order; each drop is counted.",
    )
    keep_tags: tuple[str, ...] = Field(
        ("cluster",),
        description="Tags kept first when `max_tags` applies, in this order (default [cluster]).",
    )
    placeholder_tag: PlaceholderTag = Field(
        default_factory=PlaceholderTag,
        description="Added to a series that has no tag at all, since OpenTSDB requires one "
        "(default cluster=unknown).",
    )
    replacement: str = Field(
        "_",
        description="Replaces each character OpenTSDB does not "
        "accept in names and tag values (default _).",
    )
    cluster_from_header: bool = Field(
        True,
        description="Tag a series that has no `cluster` label with the message's "
        "`cluster` header (default true).",
    )
    sync: bool = Field(
        True,
        description="Ask OpenTSDB to answer only once the datapoints are "
        "stored (`?sync`, default true). Without it a 204 "
        "means queued, not stored.",
    )
    sync_timeout_s: float = Field(
        20.0,
        ge=0,
        description="How long OpenTSDB may wait for "
        "storage with `sync` (default 20 s, "
        "0 = no limit); below timeout_s.",
    )

    @field_validator("replacement")
    @classmethod
    def _replacement(cls, text: str) -> str:
        if len(text) != 1 or not ALLOWED.fullmatch(text):
            raise ValueError("must be one of A-Z a-z 0-9 - _ . /")
        return text

    @model_validator(mode="after")
    def _timeouts(self) -> OpenTSDBConfig:
        if self.sync and self.sync_timeout_s >= self.timeout_s:
            raise ValueError(
                "sync_timeout_s must be below timeout_s, so that OpenTSDB "
                "reports what it stored before the request times out"
            )
        return self
