"""Pure: traces records → OTLP export requests.

A record's value is one serialized ``ExportTraceServiceRequest``. That message has one
field, ``repeated ResourceSpans resource_spans``, and protobuf parses concatenated
messages as their merge, repeated fields appended: the bytes of several records joined
are the request holding all their spans. So records are merged without being encoded
again: grouped by tenant (in the order first seen), kept in batch order, and cut into
requests of at most ``max_request_bytes`` (a larger record gets a request of its own).
"""

from __future__ import annotations

import base64
import gzip
from collections.abc import Iterable
from dataclasses import dataclass

from ferryman import headers as h
from workers.records import Record

from .config import OtlpTracesConfig

__all__ = [
    "CONTENT_TYPE",
    "Chunk",
    "chunk",
    "grpc_metadata",
    "http_headers",
    "record_tenant",
    "request_body",
]

CONTENT_TYPE = "application/x-protobuf"


@dataclass(frozen=True, slots=True)
class Chunk:
    """One export request: ``parts`` are (record's batch index, its value), in order."""

    tenant: str
    parts: tuple[tuple[int, bytes], ...]

    @property
    def owners(self) -> frozenset[int]:
        return frozenset(owner for owner, _ in self.parts)

    @property
    def size(self) -> int:
        return sum(len(value) for _, value in self.parts)

    def request(self) -> bytes:
        """The serialized ``ExportTraceServiceRequest`` (uncompressed)."""
        return b"".join(value for _, value in self.parts)

    def by_owner(self) -> list[Chunk]:
        """This chunk split into one chunk per record, in record order."""
        return [Chunk(self.tenant, (part,)) for part in sorted(self.parts)]


def chunk(items: Iterable[tuple[int, str, bytes]], max_bytes: int) -> list[Chunk]:
    """``(owner, tenant, value)`` grouped by tenant and cut into chunks of at most
    ``max_bytes`` (a larger value alone in its chunk)."""
    grouped: dict[str, list[tuple[int, bytes]]] = {}
    for owner, tenant, value in items:
        grouped.setdefault(tenant, []).append((owner, value))
    chunks: list[Chunk] = []
    for tenant, parts in grouped.items():
        current: list[tuple[int, bytes]] = []
        size = 0
        for owner, value in parts:
            if current and size + len(value) > max_bytes:
                chunks.append(Chunk(tenant, tuple(current)))
                current, size = [], 0
            current.append((owner, value))
            size += len(value)
        if current:
            chunks.append(Chunk(tenant, tuple(current)))
    return chunks


def record_tenant(config: OtlpTracesConfig, record: Record) -> str:
    """The tenant of ``record``'s spans ("" = send none)."""
    if config.tenant is not None:
        return config.tenant
    if not config.tenant_from_header:
        return ""
    raw = record.header(h.TENANT)
    return raw.decode("utf-8", "replace") if raw else ""


def request_body(config: OtlpTracesConfig, chunk: Chunk) -> bytes:
    request = chunk.request()
    return gzip.compress(request, compresslevel=5) if config.compression == "gzip" else request


def http_headers(config: OtlpTracesConfig, tenant: str) -> dict[str, str]:
    """Per-request headers of OTLP/HTTP (the client carries the configured ones)."""
    out = {"Content-Type": CONTENT_TYPE}
    if config.compression == "gzip":
        out["Content-Encoding"] = "gzip"
    if tenant:
        out[config.tenant_header] = tenant
    return out


def grpc_metadata(config: OtlpTracesConfig, tenant: str) -> tuple[tuple[str, str], ...]:
    """The call's metadata for OTLP/gRPC: the configured headers, the credentials and
    the tenant (keys lower-cased, as gRPC requires)."""
    out = {name.lower(): value for name, value in config.headers.items()}
    credentials = config.credentials()
    if credentials.authorization is not None:
        out["authorization"] = credentials.authorization
    elif credentials.basic is not None:
        user, password = credentials.basic
        token = base64.b64encode(f"{user}:{password}".encode()).decode()
        out["authorization"] = f"Basic {token}"
    if tenant:
        out[config.tenant_header.lower()] = tenant
    return tuple(out.items())
