"""Pure: a Kafka record → the remote-write request body and headers.

Records the edge produced already hold ``snappy(WriteRequest)``, so the body is the
record's value as is: no decode, no re-encode.
"""

from __future__ import annotations

from ferryman import headers as h
from ferryman.wire import remote_write
from workers.records import Record

from .config import RemoteWriteConfig

__all__ = ["UnsupportedRecord", "request_headers"]


class UnsupportedRecord(ValueError):
    """Raised when a record is not a remote-write payload (wrong schema header)."""


def request_headers(config: RemoteWriteConfig, record: Record) -> dict[str, str]:
    schema = record.header(h.SCHEMA)
    if schema is not None and schema != h.SCHEMA_REMOTE_WRITE:
        raise UnsupportedRecord(f"schema {schema!r} is not {h.SCHEMA_REMOTE_WRITE!r}")
    out = {**remote_write.HEADERS, **config.headers}
    tenant = config.tenant
    if tenant is None and config.tenant_from_header:
        raw = record.header(h.TENANT)
        tenant = raw.decode("utf-8", "replace") if raw else None
    if tenant:
        out["X-Scope-OrgID"] = tenant
    return out
