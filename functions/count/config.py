"""Configuration of the ``count`` transform."""

from __future__ import annotations

import os
import re
import socket

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["CountConfig"]

_METRIC = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class CountConfig(BaseModel):
    """Count log lines (and optionally bytes) by a set of labels into counter series,
    published as remote-write messages."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    metric: str = Field(
        "ferryman_log_lines_total",
        description="Name of the line counter (default ferryman_log_lines_total).",
    )
    bytes_metric: str | None = Field(
        None,
        description="Name of a counter of line bytes "
        "(UTF-8), e.g. ferryman_log_bytes_total; default: "
        "none.",
    )
    by: tuple[str, ...] = Field(
        (),
        description="Labels the lines are counted by, besides "
        "`cluster` which is always kept (default: none). A line "
        "without one of them has it empty (left out of the series).",
    )
    from_metadata: bool = Field(
        True,
        description="Look a `by` name up in the entry's "
        "structured metadata when the stream has no such label "
        "(default true), so fields from `parse` can be counted.",
    )
    instance_label: str = Field(
        "instance",
        description="Label naming this worker process, "
        "so that replicas never write the same series (default "
        "instance).",
    )
    instance: str | None = Field(None, description="Its value; default hostname:pid.")
    max_series: int = Field(
        10_000,
        ge=1,
        description="Label sets counted per process at "
        "most (default 10000); lines of further label sets go to one "
        '`overflow="true"` series per cluster and are counted in '
        "ferryman_count_overflow_lines_total.",
    )

    @field_validator("metric", "bytes_metric")
    @classmethod
    def _metric_names(cls, name: str | None) -> str | None:
        if name is not None and not _METRIC.fullmatch(name):
            raise ValueError(f"{name!r} is not a valid metric name")
        return name

    @field_validator("by")
    @classmethod
    def _label_names(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        for name in names:
            if not _LABEL.fullmatch(name) or name.startswith("__"):
                raise ValueError(f"{name!r} is not a valid label name")
        if len(set(names)) != len(names):
            raise ValueError("by lists a label twice")
        return names

    @model_validator(mode="after")
    def _consistent(self) -> CountConfig:
        if not _LABEL.fullmatch(self.instance_label):
            raise ValueError(f"{self.instance_label!r} is not a valid label name")
        reserved = {"cluster", "overflow", self.instance_label}
        if reserved & set(self.by):
            raise ValueError(
                f"by may not list {sorted(reserved & set(self.by))}: they are always set"
            )
        if self.bytes_metric == self.metric:
            raise ValueError("bytes_metric must differ from metric")
        return self

    def instance_value(self) -> str:
        return self.instance or f"{socket.gethostname()}:{os.getpid()}"
