"""How every sink talks HTTP: one client configuration model (auth, TLS, timeout, extra
headers) and one factory that turns it into the ``httpx.Client`` the runtime injects.

A sink's config inherits :class:`HttpClientConfig` (its fields stay flat in YAML) and,
when its backend authenticates differently from basic auth or a bearer token (an
Elasticsearch API key, an InfluxDB token or v1 user), overrides :meth:`credentials`.
"""

from __future__ import annotations

import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar, Self

import httpx
from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ferryman.tls import ssl_verify
from workers.function import Context

__all__ = [
    "BasicAuth",
    "Credentials",
    "HttpAuthConfig",
    "HttpClientConfig",
    "TLSConfig",
    "make_client",
]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BasicAuth(_Frozen):
    username: str = Field(description="Basic auth user.")
    password: str = Field(description="Basic auth password.")


class TLSConfig(_Frozen):
    ca_file: Path | None = Field(
        None, description="CA bundle to verify the server; default: the system store."
    )
    cert_file: Path | None = Field(None, description="Client certificate (mTLS).")
    key_file: Path | None = Field(None, description="Client key (mTLS).")
    insecure_skip_verify: bool = Field(False, description="Do not verify the server. Tests only.")

    def verify(self) -> ssl.SSLContext | bool:
        """The ``verify`` argument for httpx."""
        return ssl_verify(
            ca_file=self.ca_file,
            cert_file=self.cert_file,
            key_file=self.key_file,
            insecure_skip_verify=self.insecure_skip_verify,
        )


@dataclass(frozen=True, slots=True)
class Credentials:
    """What a client authenticates with: basic auth, or a whole ``Authorization`` value."""

    basic: tuple[str, str] | None = None
    authorization: str | None = None


class HttpClientConfig(_Frozen):
    """Connection options every sink shares; a subclass adds the ways its backend
    authenticates (their field names in ``auth_fields``: at most one may be set) and says
    how in :meth:`credentials`. ``url``, when the subclass has one, must be http(s)."""

    auth_fields: ClassVar[tuple[str, ...]] = ()

    tls: TLSConfig = Field(default_factory=TLSConfig, description="TLS options.")
    timeout_s: float = Field(30.0, gt=0, description="Timeout of one request (default 30 s).")
    headers: dict[str, str] = Field(
        default_factory=dict, description="Extra HTTP headers sent with every request."
    )

    @field_validator("url", check_fields=False)
    @classmethod
    def _http_url(cls, url: str) -> str:
        if not url.startswith(("http://", "https://")):
            raise ValueError("url must start with http:// or https://")
        return url.rstrip("/")

    @model_validator(mode="after")
    def _one_auth(self) -> Self:
        chosen = [name for name in self.auth_fields if getattr(self, name) is not None]
        if len(chosen) > 1:
            raise ValueError(
                f"set at most one of {', '.join(self.auth_fields)} (got {', '.join(chosen)})"
            )
        return self

    def credentials(self) -> Credentials:
        """How to authenticate (default: not at all)."""
        return Credentials()


class HttpAuthConfig(HttpClientConfig):
    """:class:`HttpClientConfig` with the two usual ways to authenticate."""

    auth_fields: ClassVar[tuple[str, ...]] = ("basic_auth", "bearer_token")

    basic_auth: BasicAuth | None = Field(None, description="Basic auth; default none.")
    bearer_token: str | None = Field(None, description="Bearer token; default none.")

    def credentials(self) -> Credentials:
        if self.basic_auth is not None:
            return Credentials(basic=(self.basic_auth.username, self.basic_auth.password))
        if self.bearer_token is not None:
            return Credentials(authorization=f"Bearer {self.bearer_token}")
        return Credentials()


def make_client(
    config: HttpClientConfig, context: Context, headers: Mapping[str, str] | None = None
) -> httpx.Client:
    """The client a sink sends with: ``headers`` (the backend's fixed ones), then the
    configured extra headers, then the credentials' ``Authorization``."""
    credentials = config.credentials()
    auth = httpx.BasicAuth(*credentials.basic) if credentials.basic is not None else None
    merged = {**(headers or {}), **config.headers}
    if credentials.authorization is not None:
        merged["Authorization"] = credentials.authorization
    return context.http_client(
        timeout=config.timeout_s, verify=config.tls.verify(), auth=auth, headers=merged
    )
