"""What each endpoint makes of a request body: checked series, streams or spans, cut
into the Kafka messages the edge would have produced.

Every check raises :class:`Refusal` with the HTTP status the sending agent handles
(400 is final for Prometheus, vmagent, Promtail and OTLP exporters; 413 too; 429 and
5xx are retried), and the reason names the first offender.
"""

from __future__ import annotations

import gzip
import json
import re
import zlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial

from ferryman import headers as h
from ferryman.prom.relabel import Relabeler, is_valid_label_name
from ferryman.wire import loki, remote_write2
from ferryman.wire.protobuf import (
    FIXED32,
    FIXED64,
    LENGTH,
    VARINT,
    DecodeError,
    bytes_field,
    fields,
    varint_at,
)
from ferryman.wire.remote_write import (
    TimeSeries,
    decode_write_request,
    encode_write_request,
    snappy_compress,
    snappy_decompress,
    sorted_labels,
)

from .config import Tenant, TenantLimits

__all__ = [
    "Batch",
    "Refusal",
    "Relabelled",
    "gunzip",
    "loki_messages",
    "relabel_request2",
    "relabel_series",
    "relabelled_write_messages",
    "remote_write_messages",
    "unsnappy",
]

#: (key, value, headers) of one Kafka message
Message = tuple[bytes, bytes, Sequence[tuple[str, bytes]]]


class Refusal(Exception):
    """A request answered with ``status``; ``reason`` labels the counter."""

    def __init__(
        self, status: int, message: str, reason: str, retry_after: float | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.retry_after = retry_after


@dataclass
class Batch:
    """The messages of one request and what they hold."""

    messages: list[Message] = field(default_factory=list)
    #: samples, lines or spans
    items: int = 0
    histograms: int = 0
    exemplars: int = 0


def unsnappy(body: bytes, limit: int) -> bytes:
    """A snappy block decompressed; 413 when it claims more than ``limit`` bytes (checked
    before anything is allocated), 400 when it is not snappy."""
    try:
        claimed, _ = varint_at(body, 0)
    except (IndexError, DecodeError):
        raise Refusal(400, "body is not snappy block data", "decode") from None
    if claimed > limit:
        raise Refusal(
            413, f"body decompresses to {claimed} bytes, above {limit}", "decompressed_size"
        )
    try:
        return snappy_decompress(body)
    except DecodeError as exc:
        raise Refusal(400, str(exc), "decode") from None


def gunzip(body: bytes, limit: int) -> bytes:
    """A gzip body decompressed, stopping past ``limit`` bytes (413); 400 if not gzip."""
    inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
    try:
        out = inflater.decompress(body, limit + 1)
    except zlib.error as exc:
        raise Refusal(400, f"body is not gzip: {exc}", "decode") from None
    if len(out) > limit:
        raise Refusal(413, f"body decompresses to more than {limit} bytes", "decompressed_size")
    if not inflater.eof:
        raise Refusal(400, "gzip body is truncated", "decode")
    return out


def check_labels(
    labels: Sequence[tuple[str, str]], limits: TenantLimits, what: str | Callable[[], str]
) -> None:
    """400 naming the first label set beyond the count or length limits (``what`` names
    it; a callable is called only then)."""
    if len(labels) > limits.max_labels_per_series:
        raise Refusal(
            400,
            f"{_text(what)} has {len(labels)} labels, more than {limits.max_labels_per_series}",
            "label_count",
        )
    name_limit = limits.max_label_name_length
    value_limit = limits.max_label_value_length
    for name, value in labels:
        # a str's UTF-8 form is at most 4 bytes a character: encode only when it may matter
        if len(name) * 4 > name_limit and len(name.encode()) > name_limit:
            raise Refusal(
                400,
                f"{_text(what)}: label name {name[:64]!r}... longer than {name_limit} bytes",
                "label_name_length",
            )
        if len(value) * 4 > value_limit and len(value.encode()) > value_limit:
            raise Refusal(
                400,
                f"{_text(what)}: value of label {name!r} longer than {value_limit} bytes",
                "label_value_length",
            )


def _text(what: str | Callable[[], str]) -> str:
    return what if isinstance(what, str) else what()


def check_cluster(cluster: str | None, tenant: Tenant, what: str | Callable[[], str]) -> str:
    """The cluster when ``tenant`` may write as it: 400 without one, 403 for another."""
    if cluster in tenant.clusters:
        return cluster
    if not cluster:
        raise Refusal(400, f"{_text(what)} has no cluster label", "no_cluster")
    if cluster not in tenant.clusters:
        raise Refusal(403, f"tenant {tenant.name} may not write as cluster {cluster!r}", "cluster")
    return cluster


def headers_for(schema: bytes, cluster: str, tenant: Tenant) -> list[tuple[str, bytes]]:
    return [(h.SCHEMA, schema), (h.CLUSTER, cluster.encode()), (h.TENANT, tenant.name.encode())]


def _describe(labels: Sequence[tuple[str, str]]) -> str:
    name = next((v for k, v in labels if k == "__name__"), "")
    return f"series {name}{{{', '.join(f'{k}={v!r}' for k, v in labels if k != '__name__')[:200]}}}"


def series_messages(
    series: Sequence[TimeSeries],
    tenant: Tenant,
    max_message_bytes: int,
    received: bytes | None = None,
    encoded: Sequence[bytes] | None = None,
    raw: bytes | None = None,
) -> Batch:
    """Check ``series`` and cut them into remote-write messages, one cluster each.

    ``received`` (the snappy body as it came) is produced as it is when its series are
    all of one cluster and it fits a message: no re-encoding on the common path.
    ``encoded[i]`` is ``series[i]`` as WriteRequest fields; without it, taken from
    ``raw`` (``received`` decompressed: each series as received, with its exemplars
    and histograms) or, failing both, encoded here from ``series``."""
    limits = tenant.limits
    by_cluster: dict[str, list[int]] = {}
    batch = Batch()
    for index, one in enumerate(series):
        what = partial(_describe, one.labels)
        check_labels(one.labels, limits, what)
        cluster = check_cluster(one.label("cluster"), tenant, what)
        by_cluster.setdefault(cluster, []).append(index)
        batch.items += len(one.samples)
    if received is not None and len(by_cluster) == 1 and len(received) <= max_message_bytes:
        cluster = next(iter(by_cluster))
        batch.messages.append(
            (
                f"{tenant.name}/{cluster}".encode(),
                received,
                headers_for(h.SCHEMA_REMOTE_WRITE, cluster, tenant),
            )
        )
        return batch
    if encoded is None and raw is not None:
        encoded = [
            bytes_field(1, bytes(value))
            for number, wire_type, value in fields(raw)
            if number == 1 and wire_type == LENGTH and isinstance(value, memoryview)
        ]
    for cluster, indexes in by_cluster.items():
        key = f"{tenant.name}/{cluster}".encode()
        headers = headers_for(h.SCHEMA_REMOTE_WRITE, cluster, tenant)
        members: list[bytes | TimeSeries] = [
            encoded[i] if encoded is not None else series[i] for i in indexes
        ]
        for part in _cut(members, max_message_bytes):
            batch.messages.append((key, snappy_compress(b"".join(part)), headers))
    return batch


def _cut(series: list[bytes | TimeSeries], budget: int) -> Iterable[list[bytes]]:
    """Encoded series in groups under ``budget`` bytes (a lone series may exceed it: a
    message holds at least one)."""
    part: list[bytes] = []
    size = 0
    for item in series:
        one = item if isinstance(item, bytes) else encode_write_request([item])
        if part and size + len(one) > budget:
            yield part
            part, size = [], 0
        part.append(one)
        size += len(one)
    if part:
        yield part


def remote_write_messages(
    body: bytes, tenant: Tenant, max_message_bytes: int
) -> tuple[Batch, bytes]:
    """A remote write 1.0 body (snappy) checked and cut; also the decompressed bytes.

    A body of the common shape (series of labels and one sample each, all of one
    cluster, fitting a message) is checked without being decoded: each series' label
    bytes are looked up among those already checked for the same clusters and limits
    (:func:`_pass_through`). Anything else, and every refusal, takes the decoding path,
    so the answers are the same either way."""
    raw = unsnappy(body, tenant.limits.max_decompressed_bytes)
    if len(body) <= max_message_bytes:
        passed = _pass_through(raw, tenant)
        if passed is not None:
            cluster, samples = passed
            batch = Batch(items=samples)
            batch.messages.append(
                (
                    f"{tenant.name}/{cluster}".encode(),
                    body,
                    headers_for(h.SCHEMA_REMOTE_WRITE, cluster, tenant),
                )
            )
            return batch, raw
    try:
        series = decode_write_request(raw)
    except DecodeError as exc:
        raise Refusal(400, f"not a remote write 1.0 WriteRequest: {exc}", "decode") from None
    return series_messages(series, tenant, max_message_bytes, body, raw=raw), raw


@dataclass
class Relabelled:
    """What a tenant's relabel rules kept of a request: ``series[i]`` with its new
    labels and ``encoded[i]``, it as a WriteRequest field (its samples, exemplars and
    histograms as received); the histograms and exemplars kept, the series dropped."""

    series: list[TimeSeries] = field(default_factory=list)
    encoded: list[bytes] = field(default_factory=list)
    histograms: int = 0
    exemplars: int = 0
    dropped: int = 0


# Label sets repeat every scrape: remember what a tenant's rules make of each, with the
# new labels' encoded fields. Keyed by the Relabeler itself, so a reload starts afresh.
_RELABELLED: dict[
    tuple[Relabeler, tuple[tuple[str, str], ...]],
    tuple[tuple[tuple[str, str], ...], bytes] | None,
] = {}
_RELABELLED_MAX = 200_000


def _relabel_labels(
    relabeler: Relabeler, labels: tuple[tuple[str, str], ...]
) -> tuple[tuple[tuple[str, str], ...], bytes] | None:
    """The new labels (sorted) and their Label fields, or None to drop the series."""
    key = (relabeler, labels)
    try:
        return _RELABELLED[key]
    except KeyError:
        pass
    applied = relabeler.apply(dict(labels))
    result = None
    if applied and all(is_valid_label_name(name) for name in applied):
        new = sorted_labels(applied)
        encoded = b"".join(
            bytes_field(1, bytes_field(1, k.encode()) + bytes_field(2, v.encode())) for k, v in new
        )
        result = (new, encoded)
    if len(_RELABELLED) >= _RELABELLED_MAX:
        _RELABELLED.clear()
    _RELABELLED[key] = result
    return result


def _other_fields(body: bytes) -> tuple[bytes, int, int]:
    """A TimeSeries message's fields but its labels (field 1), byte for byte as received;
    also its exemplars (field 3) and histograms (field 4) counted."""
    kept: list[bytes] = []
    exemplars = histograms = 0
    pos, end = 0, len(body)
    try:
        while pos < end:
            start = pos
            tag, pos = varint_at(body, pos)
            number, wire_type = tag >> 3, tag & 7
            if wire_type == LENGTH:
                length, pos = varint_at(body, pos)
                pos += length
            elif wire_type == VARINT:
                _, pos = varint_at(body, pos)
            elif wire_type in {FIXED64, FIXED32}:
                pos += 8 if wire_type == FIXED64 else 4
            else:
                raise DecodeError(f"wire type {wire_type} in a series")
            if pos > end:
                raise DecodeError("a series field runs past its end")
            if number != 1:
                kept.append(body[start:pos])
                exemplars += number == 3
                histograms += number == 4
    except (IndexError, DecodeError) as exc:
        raise Refusal(400, f"a series is not a TimeSeries message: {exc}", "decode") from None
    return b"".join(kept), exemplars, histograms


def relabel_series(
    series: Sequence[TimeSeries],
    bodies: Sequence[bytes | memoryview],
    relabeler: Relabeler,
) -> Relabelled:
    """Apply ``relabeler`` to each series (``bodies[i]``: ``series[i]``'s TimeSeries
    message). A series the rules drop, leave without labels, or give a name that is
    not a valid label name is left out and counted in ``dropped``; the others keep
    their samples, exemplars and histograms byte for byte."""
    out = Relabelled()
    for one, body in zip(series, bodies, strict=True):
        result = _relabel_labels(relabeler, one.labels)
        if result is None:
            out.dropped += 1
            continue
        new, label_fields = result
        data = bytes(body)
        rest, exemplars, histograms = _other_fields(data)
        out.exemplars += exemplars
        out.histograms += histograms
        out.encoded.append(bytes_field(1, data if new == one.labels else label_fields + rest))
        out.series.append(TimeSeries(new, one.samples))
    return out


def relabel_request2(request: remote_write2.Request, relabeler: Relabeler) -> Relabelled:
    """A remote write 2.0 request's series relabelled (see :func:`relabel_series`)."""
    bodies = []
    for one in request.encoded:  # each is a WriteRequest field 1 holding the series
        for _, _, value in fields(one):
            bodies.append(value if isinstance(value, memoryview) else memoryview(b""))
    return relabel_series(request.series, bodies, relabeler)


def relabelled_write_messages(
    body: bytes, tenant: Tenant, relabeler: Relabeler, max_message_bytes: int
) -> tuple[Batch, Relabelled]:
    """A remote write 1.0 body (snappy) relabelled, checked and cut: the path of a
    tenant with ``write_relabel_configs`` (the body is decoded and re-encoded)."""
    raw = unsnappy(body, tenant.limits.max_decompressed_bytes)
    try:
        series = decode_write_request(raw)
        bodies = [
            value
            for number, wire_type, value in fields(raw)
            if number == 1 and wire_type == LENGTH and isinstance(value, memoryview)
        ]
    except DecodeError as exc:
        raise Refusal(400, f"not a remote write 1.0 WriteRequest: {exc}", "decode") from None
    kept = relabel_series(series, bodies, relabeler)
    return series_messages(kept.series, tenant, max_message_bytes, encoded=kept.encoded), kept


#: One sample ending a series: 0x12 + its length, the value (0x09 + 8 bytes of double;
#: left out when 0, as Prometheus's encoder does), then 0x10 + the timestamp, a 6-byte
#: varint (milliseconds of 1971 to 2109).
_SAMPLE = re.compile(
    rb"(\x12\x10\x09.{8}\x10[\x80-\xff]{5}[\x00-\x7f]|\x12\x07\x10[\x80-\xff]{5}[\x00-\x7f])",
    re.DOTALL,
)

#: Per (clusters, label limits), per cluster: the bytes of series up to their sample
#: (``0x0A``, length, Label fields) that passed the checks, and that sample's length.
#: Series repeat every scrape, so a sender's label sets are checked once. At most
#: ``_CHECKED_MAX`` in all (a few hundred bytes each); then it starts afresh.
_CHECKED: dict[tuple[object, ...], dict[str, dict[bytes, int]]] = {}
_CHECKED_MAX = 200_000
_remembered = [0]


def _checked(tenant: Tenant) -> dict[str, dict[bytes, int]]:
    limits = tenant.limits
    key = (
        tenant.clusters,
        limits.max_labels_per_series,
        limits.max_label_name_length,
        limits.max_label_value_length,
    )
    found = _CHECKED.get(key)
    if found is None:
        found = _CHECKED[key] = {}
    return found


def _pass_through(data: bytes, tenant: Tenant) -> tuple[str, int] | None:
    """(cluster, samples) when ``data`` (a decompressed WriteRequest) is only series of
    labels and one sample each, every label set passing the checks, all of one
    cluster; else None.

    ``data`` is split (in C) after every byte run that is a well-formed sample; each
    piece before one must be a series' start whose length covers exactly its Label
    fields and that sample. Pieces seen before were parsed and checked then; so when
    every piece is known with its sample's length, ``data`` is a sequence of such
    series, wherever the split fell."""
    parts = _SAMPLE.split(data)
    if len(parts) < 3 or parts[-1]:
        return None
    heads, samples = parts[0:-1:2], parts[1::2]
    known = _checked(tenant)
    first = heads[0]
    for cluster, lengths in known.items():
        if first in lengths:
            if list(map(lengths.get, heads)) == list(map(len, samples)):
                return cluster, len(samples)
            break
    # Series not seen before: check each, remember those that pass.
    found: str | None = None
    for head, sample in zip(heads, samples, strict=True):
        checked = _check_head(head, len(sample), tenant)
        if checked is None or (found is not None and checked != found):
            return None  # the decoding path refuses, or cuts per cluster
        found = checked
        if _remembered[0] >= _CHECKED_MAX:
            _CHECKED.clear()
            _remembered[0] = 0
            known = _checked(tenant)
        known.setdefault(checked, {})[head] = len(sample)
        _remembered[0] += 1
    return (found, len(samples)) if found is not None else None


def _check_head(head: bytes, sample: int, tenant: Tenant) -> str | None:
    """The cluster of a series whose bytes up to its ``sample``-byte sample are
    ``head`` (``0x0A``, the series' length, its Label fields), when that is what they
    are and the labels pass the checks; else None (the decoding path decides)."""
    try:
        if head[0] != 0x0A:
            return None
        length, pos = varint_at(head, 1)
        if length != len(head) - pos + sample:
            return None
        labels = head[pos:]
        at = 0
        while at < len(labels):
            if labels[at] != 0x0A:
                return None
            n, at = varint_at(labels, at + 1)
            at += n
        if at != len(labels):
            return None
        (one,) = decode_write_request(bytes_field(1, labels))
        check_labels(one.labels, tenant.limits, "")
        return check_cluster(one.label("cluster"), tenant, "")
    except (IndexError, DecodeError, Refusal, ValueError):
        return None


def decode_loki_json(raw: bytes) -> list[loki.Stream]:
    """Loki's documented JSON push payload:
    ``{"streams": [{"stream": {labels}, "values": [["<ns>", "line", {meta}?], ...]}]}``."""
    try:
        document = json.loads(raw)
        streams = []
        for item in document["streams"]:
            labels = item["stream"]
            if not isinstance(labels, dict) or not all(
                isinstance(k, str) and isinstance(v, str) for k, v in labels.items()
            ):
                raise ValueError("stream labels must be a map of strings")
            entries = []
            for value in item["values"]:
                stamp, line = value[0], value[1]
                if not isinstance(stamp, str) or not isinstance(line, str):
                    raise ValueError('each value is ["<unix ns>", "<line>"]')
                metadata: tuple[tuple[str, str], ...] = ()
                if len(value) > 2 and isinstance(value[2], dict):
                    metadata = tuple((str(k), str(v)) for k, v in value[2].items())
                entries.append(loki.Entry(int(stamp), line, metadata))
            streams.append(loki.Stream(dict(labels), entries))
    except (ValueError, KeyError, TypeError, IndexError) as exc:
        raise Refusal(400, f"not a Loki JSON push: {exc}", "decode") from None
    return streams


def decode_loki_protobuf(body: bytes, limit: int) -> list[loki.Stream]:
    raw = unsnappy(body, limit)
    try:
        return loki.decode_push_request(raw)
    except (DecodeError, ValueError) as exc:
        raise Refusal(400, f"not a Loki PushRequest: {exc}", "decode") from None


def loki_messages(
    streams: Sequence[loki.Stream], tenant: Tenant, max_message_bytes: int
) -> tuple[Batch, int]:
    """Check ``streams`` and cut them into Loki push messages, one stream each keyed
    by its labels' text (as the edge produces them); also the lines truncated."""
    limits = tenant.limits
    batch = Batch()
    truncated = 0
    merged: dict[str, tuple[Mapping[str, str], list[loki.Entry]]] = {}
    for stream in streams:
        text = loki.format_labels(stream.labels)
        check_labels(sorted(stream.labels.items()), limits, f"stream {text[:200]}")
        check_cluster(stream.labels.get("cluster"), tenant, f"stream {text[:200]}")
        entries = merged.setdefault(text, (stream.labels, []))[1]
        for entry in stream.entries:
            size = len(entry.line.encode())
            if size > limits.max_line_bytes:
                if limits.line_too_long == "refuse":
                    raise Refusal(
                        400,
                        f"stream {text[:200]}: a line of {size} bytes, longer than "
                        f"{limits.max_line_bytes}",
                        "line_too_long",
                    )
                cut = entry.line.encode()[: limits.max_line_bytes].decode(errors="ignore")
                entry = loki.Entry(entry.timestamp_ns, cut, entry.metadata)
                truncated += 1
            entries.append(entry)
            batch.items += 1
    for text, (labels, entries) in merged.items():
        if not entries:
            continue
        headers = headers_for(h.SCHEMA_LOKI_PUSH, labels["cluster"], tenant)
        part: list[loki.Entry] = []
        size = 0
        for entry in entries:
            cost = len(entry.line.encode()) + 32
            if part and size + cost > max_message_bytes:
                batch.messages.append((text.encode(), _push(labels, part), headers))
                part, size = [], 0
            part.append(entry)
            size += cost
        batch.messages.append((text.encode(), _push(labels, part), headers))
    return batch, truncated


def _push(labels: Mapping[str, str], entries: list[loki.Entry]) -> bytes:
    return snappy_compress(loki.encode_push_request([loki.Stream(labels, entries)]))


def gzip_compress(body: bytes) -> bytes:
    return gzip.compress(body, compresslevel=1)
