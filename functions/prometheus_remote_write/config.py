"""Configuration of the ``prometheus_remote_write`` sink."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ferryman.prom.relabel import RelabelConfig
from functions.common import BasicAuth, TLSConfig

__all__ = ["BasicAuth", "RemoteWriteConfig", "TLSConfig"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class RemoteWriteConfig(_Frozen):
    """Where and how to remote-write. Works for Prometheus, Cortex, Mimir, Thanos
    receive and VictoriaMetrics (all speak remote write 1.0)."""

    url: str = Field(description="Remote write endpoint, e.g. http://prometheus:9090/api/v1/write.")
    tenant: str | None = Field(None, description="X-Scope-OrgID sent with every request "
                                                 "(Cortex/Mimir). Default: none.")
    tenant_from_header: bool = Field(True, description="When `tenant` is unset, use the "
                                                       "message's `tenant` header, if any.")
    basic_auth: BasicAuth | None = Field(None, description="Basic auth; default none.")
    bearer_token: str | None = Field(None, description="Bearer token; default none.")
    tls: TLSConfig = Field(default_factory=TLSConfig, description="TLS options.")
    timeout_s: float = Field(30.0, gt=0, description="Timeout of one request (default 30 s).")
    headers: dict[str, str] = Field(default_factory=dict, description="Extra HTTP headers.")
    metric_relabel_configs: tuple[RelabelConfig, ...] = Field(
        (), description="Relabel series before sending (decode + relabel + encode). "
                        "Default none: the edge's payload is forwarded as is.")

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        return url

    @model_validator(mode="after")
    def _one_auth(self) -> RemoteWriteConfig:
        if self.basic_auth is not None and self.bearer_token is not None:
            raise ValueError("set basic_auth or bearer_token, not both")
        return self
