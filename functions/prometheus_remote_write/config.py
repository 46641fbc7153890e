"""Configuration of the ``prometheus_remote_write`` sink."""

from __future__ import annotations

from pydantic import Field, field_validator

from ferryman.prom.relabel import RelabelConfig
from functions._http import BasicAuth, HttpAuthConfig, TLSConfig

__all__ = ["BasicAuth", "RemoteWriteConfig", "TLSConfig"]


class RemoteWriteConfig(HttpAuthConfig):
    """Where and how to remote-write. Works for Prometheus, Cortex, Mimir, Thanos
    receive and VictoriaMetrics (all speak remote write 1.0)."""

    url: str = Field(description="Remote write endpoint, e.g. http://prometheus:9090/api/v1/write.")
    tenant: str | None = Field(
        None, description="X-Scope-OrgID sent with every request (Cortex/Mimir). Default: none."
    )
    tenant_from_header: bool = Field(
        True, description="When `tenant` is unset, use the message's `tenant` header, if any."
    )
    metric_relabel_configs: tuple[RelabelConfig, ...] = Field(
        (),
        description="Relabel series before sending (decode + relabel + encode). "
        "Default none: the edge's payload is forwarded as is.",
    )

    @field_validator("url")
    @classmethod
    def _http_url(cls, url: str) -> str:
        # The endpoint is used as written: no trailing slash is taken off.
        if not url.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        return url
