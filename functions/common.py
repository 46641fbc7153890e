"""What the metrics sinks share: auth and TLS configuration, reading a record, and
which sample values a store cannot take."""

from __future__ import annotations

import math
import ssl
import struct
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field

from ferryman import headers as h
from ferryman.tls import ssl_verify
from ferryman.wire.protobuf import DecodeError
from ferryman.wire.remote_write import TimeSeries, decode_write_request, snappy_decompress
from workers.records import Record

__all__ = ["STALE_MARKER", "BasicAuth", "TLSConfig", "UnsupportedRecord", "decode_record",
           "skip_reason"]


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


# --- reading metrics records -------------------------------------------------------

#: Bits of the NaN Prometheus writes as a staleness marker.
STALE_MARKER = 0x7FF0000000000002
_double = struct.Struct("<d")
_u64 = struct.Struct("<Q")


class UnsupportedRecord(ValueError):
    """Raised when a record is not a remote-write payload (wrong schema header, bad bytes)."""


def decode_record(record: Record) -> list[TimeSeries]:
    """The series of a metrics record; raises UnsupportedRecord for anything else."""
    schema = record.header(h.SCHEMA)
    if schema is not None and schema != h.SCHEMA_REMOTE_WRITE:
        raise UnsupportedRecord(f"schema {schema!r} is not {h.SCHEMA_REMOTE_WRITE!r}")
    try:
        return decode_write_request(snappy_decompress(record.value))
    except DecodeError as exc:
        raise UnsupportedRecord(f"not a remote-write message: {exc}") from exc


def skip_reason(value: float) -> str | None:
    """Why a sample value cannot be written to a store without NaN/Inf (None: it can)."""
    if math.isfinite(value):
        return None
    if math.isinf(value):
        return "inf"
    return "stale_marker" if _u64.unpack(_double.pack(value))[0] == STALE_MARKER else "nan"
