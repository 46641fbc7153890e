"""Pure: log records → Loki push requests, within Loki's limits.

A record holds ``snappy(PushRequest)``. Its streams are checked against the limits of
:class:`~.config.LokiConfig`, then the entries of every record of a batch are grouped by
tenant and label set (streams with the same labels in several records become one stream)
and cut into requests of at most ``max_request_bytes``. Within a stream entries are sorted
by time (stable), as Loki before unordered writes requires and as readers expect. An
entry's structured metadata travel with it unchanged and count towards the request size.

Limits, each counted by reason once per stream and record (see the sink's counters):

* a line longer than ``max_line_bytes`` is cut at a character boundary and ends with the
  truncation marker (``lines_truncated{reason="line_too_long"}``), or dropped
  (``lines_dropped{reason="line_too_long"}``);
* a stream over ``max_label_names_per_series`` (``too_many_labels``), with a label name over
  ``max_label_name_length`` (``label_name_too_long``) or a value over
  ``max_label_value_length`` (``label_value_too_long``) keeps its first labels by name and
  has long names and values cut (``labels_truncated{reason}``), or has all its lines
  dropped (``lines_dropped{reason}``). Streams whose labels become equal are merged.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from itertools import accumulate, chain, islice, repeat
from operator import is_, le

from ferryman import headers as h
from ferryman.wire.loki import HEADERS, Entries, Entry, Stream, encode_push_request
from ferryman.wire.remote_write import snappy_compress
from workers.records import Record

from .config import LokiConfig

__all__ = [
    "Chunk",
    "Labels",
    "Limiter",
    "Tally",
    "chunk",
    "chunk_streams",
    "cut_utf8",
    "record_cluster",
    "record_tenant",
    "request_body",
    "request_headers",
]

Labels = tuple[tuple[str, str], ...]
_CACHE_SIZE = 1 << 16
# Protobuf framing around one entry (tags, lengths, timestamp) and one stream, at most.
_ENTRY_OVERHEAD = 24
_STREAM_OVERHEAD = 16


def _header_text(record: Record, name: str) -> str:
    raw = record.header(name)
    return raw.decode("utf-8", "replace") if raw else ""


def record_tenant(config: LokiConfig, record: Record) -> str:
    """The X-Scope-OrgID of ``record``'s entries ("" = send none)."""
    if config.tenant is not None:
        return config.tenant
    return _header_text(record, h.TENANT) if config.tenant_from_header else ""


def record_cluster(config: LokiConfig, record: Record) -> str:
    return _header_text(record, h.CLUSTER) if config.cluster_from_header else ""


def cut_utf8(text: str, limit: int) -> str:
    """The longest prefix of ``text`` of at most ``limit`` UTF-8 bytes."""
    return text.encode()[:limit].decode("utf-8", "ignore")


def utf8_length(text: str) -> int:
    return len(text) if text.isascii() else len(text.encode())


@dataclass(slots=True)
class Tally:
    """What the limits changed in one record; counted once the record is finished."""

    lines_truncated: Counter[str] = field(default_factory=Counter)
    lines_dropped: Counter[str] = field(default_factory=Counter)
    labels_truncated: Counter[str] = field(default_factory=Counter)


class Limiter:
    """Applies the line and label limits of ``config`` (see the module docstring)."""

    def __init__(self, config: LokiConfig) -> None:
        self._max_line = config.max_line_bytes
        self._drop_lines = config.on_long_line == "drop"
        self._marker = config.truncation_marker
        self._keep = config.max_line_bytes - utf8_length(config.truncation_marker)
        self._max_names = config.max_label_names_per_series
        self._max_name = config.max_label_name_length
        self._max_value = config.max_label_value_length
        self._drop_streams = config.on_label_limit == "drop"
        # The same streams come back in every message: their labels are worked out once.
        self._labels: dict[tuple[Labels, str], tuple[Labels | None, tuple[str, ...]]] = {}

    def line(self, line: str, tally: Tally) -> str | None:
        """``line`` within the size limit, or None when it is dropped."""
        # A character is at most four UTF-8 bytes: most lines need no encoding to know.
        if not self._max_line or len(line) * 4 <= self._max_line:
            return line
        if utf8_length(line) <= self._max_line:
            return line
        if self._drop_lines:
            tally.lines_dropped["line_too_long"] += 1
            return None
        tally.lines_truncated["line_too_long"] += 1
        return cut_utf8(line, self._keep) + self._marker

    def entries(self, entries: Sequence[Entry], tally: Tally) -> Sequence[Entry]:
        """``entries`` with every line within the size limit (see :meth:`line`): the
        same object when no line needs a change."""
        if isinstance(entries, Entries):
            lines = entries.lines
            # A character is at most four UTF-8 bytes: most streams need no look at a line.
            if not self._max_line or max(map(len, lines), default=0) * 4 <= self._max_line:
                return entries
            limited = list(map(self.line, lines, repeat(tally)))
            if all(map(is_, limited, lines)):
                return entries
            kept = [
                (ts, line)
                for ts, line in zip(entries.timestamps, limited, strict=True)
                if line is not None
            ]
            return Entries([ts for ts, _ in kept], [line for _, line in kept])
        out: list[Entry] = []
        for entry in entries:
            line = self.line(entry.line, tally)
            if line is None:
                continue
            if line is not entry.line:
                entry = Entry(entry.timestamp_ns, line, entry.metadata)
            out.append(entry)
        return out

    def labels(
        self, labels: Mapping[str, str], cluster: str, entries: int, tally: Tally
    ) -> Labels | None:
        """The label set to send for a stream of ``entries`` lines, or None when the
        stream is dropped; ``cluster`` is added as label ``cluster`` when missing."""
        key = (tuple(sorted(labels.items())), cluster)
        cached = self._labels.get(key)
        if cached is None:
            cached = self._limit(*key)
            if len(self._labels) >= _CACHE_SIZE:
                self._labels.clear()
            self._labels[key] = cached
        limited, reasons = cached
        for reason in reasons:
            if limited is None:
                tally.lines_dropped[reason] += entries
            else:
                tally.labels_truncated[reason] += 1
        return limited

    def _limit(self, labels: Labels, cluster: str) -> tuple[Labels | None, tuple[str, ...]]:
        items = dict(labels)
        if cluster and not items.get("cluster"):
            items["cluster"] = cluster
        reasons: list[str] = []
        if len(items) > self._max_names:
            reasons.append("too_many_labels")
        if any(utf8_length(name) > self._max_name for name in items):
            reasons.append("label_name_too_long")
        if any(utf8_length(value) > self._max_value for value in items.values()):
            reasons.append("label_value_too_long")
        if reasons and self._drop_streams:
            return None, tuple(reasons)
        out: dict[str, str] = {}
        for name in sorted(items)[: self._max_names]:
            # On a clash of cut names the first by name wins.
            out.setdefault(cut_utf8(name, self._max_name), cut_utf8(items[name], self._max_value))
        return tuple(sorted(out.items())), tuple(reasons)


# --- grouping and cutting into requests ---------------------------------------------


Part = tuple[Labels, tuple[int, ...], Sequence[Entry]]
"""A stream of a request: its labels, then its entries and for each the batch index of
the record it came from (``owners[i]`` for ``entries[i]``)."""


@dataclass(frozen=True, slots=True)
class Chunk:
    """The streams of one request, all for one tenant."""

    tenant: str
    streams: tuple[Part, ...]

    @property
    def owners(self) -> frozenset[int]:
        return frozenset().union(*(owners for _, owners, _ in self.streams))

    def push_request(self) -> bytes:
        """The uncompressed PushRequest protobuf."""
        return encode_push_request(
            Stream(dict(labels), entries) for labels, _, entries in self.streams
        )

    def by_owner(self) -> list[Chunk]:
        """This chunk split into one chunk per record, in record order."""
        split: dict[int, dict[Labels, list[Entry]]] = {}
        for labels, owners, entries in self.streams:
            for owner, entry in zip(owners, entries, strict=True):
                split.setdefault(owner, {}).setdefault(labels, []).append(entry)
        return [
            Chunk(
                self.tenant,
                tuple(
                    (labels, (owner,) * len(entries), entries)
                    for labels, entries in split[owner].items()
                ),
            )
            for owner in sorted(split)
        ]


def _label_size(labels: Labels) -> int:
    return _STREAM_OVERHEAD + sum(utf8_length(n) + utf8_length(v) + 6 for n, v in labels)


def _entry_size(entry: Entry) -> int:
    size = utf8_length(entry.line) + _ENTRY_OVERHEAD
    for name, value in entry.metadata:
        size += utf8_length(name) + utf8_length(value) + 6
    return size


def _entry_sizes(entries: Sequence[Entry]) -> list[int]:
    """What :func:`_entry_size` gives for each entry."""
    if not isinstance(entries, Entries):
        return list(map(_entry_size, entries))
    lines = entries.lines
    if all(map(str.isascii, lines)):
        return list(map(_ENTRY_OVERHEAD.__add__, map(len, lines)))
    return [len(line.encode()) + _ENTRY_OVERHEAD for line in lines]


def chunk(items: Iterable[tuple[int, str, Labels, Entry]], max_bytes: int) -> list[Chunk]:
    """Group ``(owner, tenant, labels, entry)`` by tenant and label set, sort each stream's
    entries by time and cut them into chunks of about ``max_bytes`` of protobuf at most
    (a single larger entry gets a chunk of its own). Tenants and streams keep the order
    in which they were first seen."""
    return chunk_streams(
        ((owner, tenant, labels, (entry,)) for owner, tenant, labels, entry in items), max_bytes
    )


def chunk_streams(
    items: Iterable[tuple[int, str, Labels, Sequence[Entry]]], max_bytes: int
) -> list[Chunk]:
    """:func:`chunk` for ``(owner, tenant, labels, entries)``: the same chunks as for the
    entries one by one, with no object per entry when they are :class:`Entries`."""
    grouped: dict[str, dict[Labels, list[tuple[int, Sequence[Entry]]]]] = {}
    for owner, tenant, labels, entries in items:
        if entries:  # a stream is placed where its first entry is seen
            grouped.setdefault(tenant, {}).setdefault(labels, []).append((owner, entries))
    chunks: list[Chunk] = []
    for tenant, streams in grouped.items():
        current: list[Part] = []
        size = 0
        for labels, parts in streams.items():
            owners, entries = _merge(parts)
            head = _label_size(labels)
            sums = list(accumulate(_entry_sizes(entries), initial=0))
            start, count = 0, len(owners)
            while start < count:
                if current and size + head + sums[start + 1] - sums[start] > max_bytes:
                    chunks.append(Chunk(tenant, tuple(current)))
                    current, size = [], 0
                size += head
                # The run takes entries while they fit, and its first one whatever its size.
                end = max(bisect_right(sums, max_bytes - size + sums[start], start) - 1, start + 1)
                size += sums[end] - sums[start]
                current.append((labels, owners[start:end], entries[start:end]))
                if end < count:
                    chunks.append(Chunk(tenant, tuple(current)))
                    current, size = [], 0
                start = end
        if current:
            chunks.append(Chunk(tenant, tuple(current)))
    return chunks


def _merge(parts: list[tuple[int, Sequence[Entry]]]) -> tuple[tuple[int, ...], Sequence[Entry]]:
    """One stream's entries from several records, sorted by time (stable), with the
    owner of each; by column when every part is."""
    owners = tuple(chain.from_iterable(repeat(owner, len(entries)) for owner, entries in parts))
    merged: Sequence[Entry]
    if all(isinstance(entries, Entries) for _, entries in parts):
        columns = Entries()
        for _, entries in parts:
            assert isinstance(entries, Entries)
            columns.extend_columns(entries.timestamps, entries.lines)
        stamps = columns.timestamps
        if all(map(le, stamps, islice(stamps, 1, None))):
            return owners, columns
        order = sorted(range(len(stamps)), key=stamps.__getitem__)
        merged = Entries([stamps[i] for i in order], [columns.lines[i] for i in order])
    else:
        listed = [entry for _, entries in parts for entry in entries]
        order = sorted(range(len(listed)), key=lambda i: listed[i].timestamp_ns)
        merged = [listed[i] for i in order]
    return tuple(owners[i] for i in order), merged


def request_body(chunk: Chunk) -> bytes:
    return snappy_compress(chunk.push_request())


def request_headers(config: LokiConfig, tenant: str) -> dict[str, str]:
    out = {**HEADERS, **config.headers}
    if tenant:
        out["X-Scope-OrgID"] = tenant
    return out
