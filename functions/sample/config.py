"""Configuration of the ``sample`` transform."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

__all__ = ["SampleConfig"]


class SampleConfig(BaseModel):
    """Keep a fixed share of traces, decided by trace id alone, plus every trace with an
    error span or a slow span."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    ratio: float = Field(
        ge=0.0,
        le=1.0,
        description="Share of traces kept by the trace id (0: none, 1: all), e.g. 0.1. "
        "The decision compares the id's lower 56 bits with a threshold (OpenTelemetry's "
        "consistent probability sampling), so every replica and every retry decide alike.",
    )
    keep_errors: bool = Field(
        True,
        description="Always keep a trace with a span whose status is ERROR in the batch "
        "(default true).",
    )
    keep_slower_than_s: float | None = Field(
        None,
        gt=0,
        description="Always keep a trace with a span that lasted longer than this many "
        "seconds in the batch. Default: no such rule.",
    )
