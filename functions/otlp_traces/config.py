"""Configuration of the ``otlp_traces`` sink."""

from __future__ import annotations

import re
from typing import Literal, Self

from pydantic import Field, field_validator, model_validator

from functions._http import BasicAuth, HttpAuthConfig, TLSConfig

__all__ = ["DEFAULT_MAX_REQUEST_BYTES", "BasicAuth", "OtlpTracesConfig", "TLSConfig"]

#: Jaeger's OTLP/gRPC receiver (like every OpenTelemetry Collector) refuses a message
#: above 4 MiB; 64 KiB of headroom keep a request clear of it.
DEFAULT_MAX_REQUEST_BYTES = (4 << 20) - (64 << 10)

_HEADER_NAME = re.compile(r"[A-Za-z0-9!#$%&'*+.^_`|~-]+")


class OtlpTracesConfig(HttpAuthConfig):
    """Where and how to export spans: any OTLP receiver (Jaeger v2, the OpenTelemetry
    Collector, Tempo, ...), over OTLP/HTTP (protobuf body, ``POST <url><traces_path>``)
    or OTLP/gRPC (``TraceService/Export`` at the URL's host and port; ``https://``
    means TLS)."""

    url: str = Field(
        description="Base URL of the receiver, e.g. http://jaeger:4318 (HTTP) or "
        "http://jaeger:4317 (gRPC; https:// for TLS)."
    )
    protocol: Literal["http", "grpc"] = Field(
        "http", description="`http` (default): OTLP/HTTP protobuf; `grpc`: OTLP/gRPC."
    )
    traces_path: str = Field(
        "/v1/traces", description="Path appended to `url` for OTLP/HTTP (default /v1/traces)."
    )
    compression: Literal["none", "gzip"] = Field(
        "none",
        description="Compress request bodies (default none: the receiver is usually near; "
        "gzip trades CPU for network).",
    )
    tenant: str | None = Field(
        None, description="Tenant sent in `tenant_header` with every request. Default: none."
    )
    tenant_from_header: bool = Field(
        True, description="When `tenant` is unset, use the message's `tenant` header, if any."
    )
    tenant_header: str = Field(
        "X-Scope-OrgID",
        description="Header (gRPC: metadata key, lower-cased) naming the tenant "
        "(default X-Scope-OrgID, as Tempo and Mimir read it).",
    )
    max_request_bytes: int = Field(
        DEFAULT_MAX_REQUEST_BYTES,
        ge=1024,
        description="Protobuf bytes per request at most, before compression (default "
        "4 MiB - 64 KiB, under the 4 MiB a gRPC receiver takes); records are merged "
        "into requests up to it, a larger record is sent alone.",
    )

    @field_validator("traces_path")
    @classmethod
    def _path(cls, path: str) -> str:
        if not path.startswith("/"):
            raise ValueError("traces_path must start with /")
        return path

    @field_validator("tenant_header")
    @classmethod
    def _header(cls, name: str) -> str:
        if not _HEADER_NAME.fullmatch(name):
            raise ValueError(f"{name!r} is not a header name")
        return name

    @model_validator(mode="after")
    def _grpc_options(self) -> Self:
        if self.protocol != "grpc":
            return self
        if self.tls.insecure_skip_verify:
            raise ValueError("tls.insecure_skip_verify is not available with protocol grpc")
        bad = [name for name in self.headers if not _HEADER_NAME.fullmatch(name)]
        if bad:
            raise ValueError(f"not valid as gRPC metadata keys: {', '.join(bad)}")
        return self

    @property
    def export_url(self) -> str:
        return self.url + self.traces_path

    @property
    def grpc_target(self) -> str:
        """``host:port`` of the URL (port 4317 when it names none)."""
        rest = self.url.split("://", 1)[1].split("/", 1)[0]
        if rest.startswith("["):  # [v6]:port
            return rest if "]:" in rest else f"{rest}:4317"
        return rest if ":" in rest else f"{rest}:4317"

    @property
    def grpc_tls(self) -> bool:
        return self.url.startswith("https://")
