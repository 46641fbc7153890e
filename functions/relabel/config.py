"""Configuration of the ``relabel`` transform."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from ferryman.prom.relabel import RelabelConfig

__all__ = ["RelabelTransformConfig"]


class RelabelTransformConfig(BaseModel):
    """Apply ``metric_relabel_configs`` centrally, between the metrics topic and a
    second topic that the sinks read (drop a label, add a tenant label, drop series)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    metric_relabel_configs: tuple[RelabelConfig, ...] = Field(
        description="Prometheus relabel rules applied to every series, in order."
    )
    cache_size: int = Field(
        100_000, ge=0, description="Label sets whose result is remembered (default 100000)."
    )
