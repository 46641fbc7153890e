"""What the metrics sinks share: auth and TLS configuration, reading a record, and
which sample values a store cannot take."""

from __future__ import annotations

import logging
import math
import ssl
import struct
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Protocol, Self, TypeVar

import httpx
from pydantic import BaseModel, ConfigDict, Field

from ferryman import headers as h
from ferryman.tls import ssl_verify
from ferryman.wire.protobuf import DecodeError
from ferryman.wire.remote_write import TimeSeries, decode_write_request, snappy_decompress
from workers.outcome import Outcome
from workers.records import Record

__all__ = ["STALE_MARKER", "BasicAuth", "OwnedChunk", "TLSConfig", "UnsupportedRecord",
           "decode_record", "deliver_chunks", "skip_reason"]


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


# --- sending chunks that mix records ------------------------------------------------


class OwnedChunk(Protocol):
    """A request body built from several records (``owners``: their batch indexes)."""

    @property
    def owners(self) -> frozenset[int]: ...

    def by_owner(self) -> Sequence[Self]: ...


_C = TypeVar("_C", bound=OwnedChunk)


def deliver_chunks(chunks: Sequence[_C], send: Callable[[_C], httpx.Response], *,
                   classify: Callable[[int, Mapping[str, str], str], Outcome],
                   data_at_fault: Callable[[int], bool], dead: dict[int, str],
                   backend: str, log: logging.Logger) -> tuple[set[int], float | None]:
    """Send ``chunks`` in order and decide the fate of every record in them.

    A refusal of the data in a request that mixes records is retried one record at
    a time, so only the records still refused are dead-lettered (``dead`` collects
    them with the reason). On a retryable answer or an unreachable backend, the
    records of that chunk and of every chunk not sent yet are returned for retry,
    with the delay the backend asked for.
    """
    queue = deque(chunks)
    while queue:
        current = queue.popleft()
        owners = current.owners
        if owners <= dead.keys():
            continue
        try:
            response = send(current)
        except httpx.TransportError as exc:
            return _hand_back(current, queue, dead, backend, f"unreachable: {exc!r}", log), None
        outcome = classify(response.status_code, response.headers, response.text)
        if outcome.kind == "ok":
            continue
        if outcome.kind == "retry":
            return _hand_back(current, queue, dead, backend, outcome.reason, log), outcome.delay
        if data_at_fault(response.status_code) and len(owners) > 1:
            log.warning("%s refused a request holding %d records (%s); sending them one by "
                        "one to find the bad ones", backend, len(owners), outcome.reason)
            queue.extendleft(reversed(current.by_owner()))
            continue
        for owner in owners:
            dead.setdefault(owner, outcome.reason)
    return set(), None


def _hand_back(current: OwnedChunk, queue: deque[_C], dead: dict[int, str], backend: str,
               reason: str, log: logging.Logger) -> set[int]:
    retry = set(current.owners).union(*(c.owners for c in queue)) - dead.keys()
    log.warning("%d records wait for %s: %s", len(retry), backend, reason)
    return retry
