"""Configuration pieces every HTTP sink shares: auth and TLS."""

from __future__ import annotations

import ssl
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from ferryman.tls import ssl_verify

__all__ = ["BasicAuth", "TLSConfig"]


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class BasicAuth(_Frozen):
    username: str = Field(description="Basic auth user.")
    password: str = Field(description="Basic auth password.")


class TLSConfig(_Frozen):
    ca_file: Path | None = Field(None, description="CA bundle to verify the server; "
                                                   "default: the system store.")
    cert_file: Path | None = Field(None, description="Client certificate (mTLS).")
    key_file: Path | None = Field(None, description="Client key (mTLS).")
    insecure_skip_verify: bool = Field(False, description="Do not verify the server. Tests only.")

    def verify(self) -> ssl.SSLContext | bool:
        """The ``verify`` argument for httpx."""
        return ssl_verify(ca_file=self.ca_file, cert_file=self.cert_file,
                          key_file=self.key_file,
                          insecure_skip_verify=self.insecure_skip_verify)
