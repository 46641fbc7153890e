"""Pure: a Kafka record → the remote-write request headers, and the check of a payload's
label sets before it is sent.

Records the edge produced already hold ``snappy(WriteRequest)``, so the body is the
record's value as is: no re-encode. The payload is still read once, cheaply, to check
every series' labels the way Prometheus does (:class:`LabelCheck`): a receiver answers
a duplicate label name with 500 (Prometheus 2.42), which is retryable and would hold the
partition for ever, so such a record is dead-lettered here instead of being sent.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from ferryman import headers as h
from ferryman.wire import remote_write
from ferryman.wire.protobuf import bytes_field, varint_at
from ferryman.wire.remote_write import decode_write_request
from functions._records import unreadable
from workers.records import Record

from .config import RemoteWriteConfig

__all__ = ["LabelCheck", "label_problem", "request_headers"]

_LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_CACHE_SIZE = 100_000
_WHAT = "remote-write message"


def request_headers(config: RemoteWriteConfig, record: Record) -> dict[str, str]:
    out = {**remote_write.HEADERS, **config.headers}
    tenant = config.tenant
    if tenant is None and config.tenant_from_header:
        raw = record.header(h.TENANT)
        tenant = raw.decode("utf-8", "replace") if raw else None
    if tenant:
        out["X-Scope-OrgID"] = tenant
    return out


def label_problem(labels: Sequence[tuple[str, str]]) -> str | None:
    """Why Prometheus would refuse a series with ``labels`` (None: it would not): every
    name valid, sorted by name with no name twice, ``__name__`` among them."""
    previous = ""
    named = False
    for name, _ in labels:
        if not _LABEL_NAME.fullmatch(name):
            return f"invalid label name {name!r}"
        if previous and name <= previous:
            return f"label {name!r} {'twice' if name == previous else 'out of order'}"
        named = named or name == "__name__"
        previous = name
    return None if named else "no __name__ label"


def _describe(labels: Sequence[tuple[str, str]]) -> str:
    text = ", ".join(f"{name}={value!r}" for name, value in labels)
    return "{" + (text if len(text) <= 200 else text[:200] + "…") + "}"


class LabelCheck:
    """Checks the label sets of uncompressed WriteRequests, remembering the verdict for
    each label set's raw bytes (the same series come back in every scrape, so most
    series cost one dict lookup and no decoding)."""

    def __init__(self, cache_size: int = _CACHE_SIZE) -> None:
        self._verdicts: dict[bytes, str] = {}
        self._cache_size = cache_size

    def problem(self, payload: bytes) -> str | None:
        """Why ``payload`` must not be sent (the first bad series), or None. Raises
        UnsupportedRecord when it is not a WriteRequest at all."""
        with unreadable(_WHAT):
            try:
                return self._scan(payload)
            except (IndexError, _Unusual):
                # Not the shape Prometheus and the edge write (metadata, unknown fields,
                # fields out of order) or cut short: the full decoder decides.
                return self._careful(payload)

    def _scan(self, data: bytes) -> str | None:
        """One pass over the common shape: each TimeSeries holds its labels, then its
        samples; only label bytes not seen before are decoded. Lengths below 128 (one
        byte) are read inline: a call per field would double the cost."""
        pos, end = 0, len(data)
        verdicts = self._verdicts
        index = 0
        while pos < end:
            if data[pos] != 0x0A:
                raise _Unusual
            length = data[pos + 1]
            if length < 0x80:
                pos += 2
            else:
                length, pos = varint_at(data, pos + 1)
            stop = pos + length
            if stop > end:
                raise _Unusual
            start = pos
            while pos < stop and data[pos] == 0x0A:
                n = data[pos + 1]
                pos = pos + 2 + n if n < 0x80 else sum(varint_at(data, pos + 1))
            key = data[start:pos]
            while pos < stop and data[pos] == 0x12:
                n = data[pos + 1]
                pos = pos + 2 + n if n < 0x80 else sum(varint_at(data, pos + 1))
            if pos != stop:
                raise _Unusual
            verdict = verdicts.get(key)
            if verdict is None:
                verdict = self._judge(key)
            if verdict:
                return f"series {index}: {verdict}"
            index += 1
        return None

    def _judge(self, label_fields: bytes) -> str:
        """The verdict on one series' label fields: "" when good, else the problem."""
        [series] = decode_write_request(bytes_field(1, label_fields))
        problem = label_problem(series.labels)
        verdict = "" if problem is None else f"{problem} in {_describe(series.labels)}"
        if len(self._verdicts) >= self._cache_size:
            self._verdicts.clear()
        self._verdicts[label_fields] = verdict
        return verdict

    @staticmethod
    def _careful(payload: bytes) -> str | None:
        for index, series in enumerate(decode_write_request(payload)):
            problem = label_problem(series.labels)
            if problem is not None:
                return f"series {index}: {problem} in {_describe(series.labels)}"
        return None


class _Unusual(Exception):
    """Raised by the one-pass scan on a shape it does not read; the decoder decides."""
