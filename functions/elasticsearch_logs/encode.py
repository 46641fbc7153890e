"""Pure: Kafka records (snappy Loki ``PushRequest``) → ``_bulk`` bodies, one ``create``
per log line, and the templates.

One ECS-style document per line::

    {"@timestamp": "2023-11-14T22:13:20.000000001Z", "message": "GET /",
     "log": {"file": {"path": "/var/log/app.log"}}, "host": {"name": "node-1"},
     "kubernetes": {"namespace": "web", "pod": {"name": "web-0"},
                    "container": {"name": "nginx"}},
     "cluster": "alpha", "labels": {"job": "…"},
     "fields": {"trace_id": "4bf9…", "status": "200"}}

Labels ``filename``, ``host``, ``namespace``, ``pod`` and ``container`` become the ECS
fields above, the cluster label becomes ``cluster`` (the message's ``cluster`` header
when the stream lacks it), every other label goes under ``labels``; absent fields are
left out.

An entry's structured metadata (the fields the ``parse`` transform adds) go under one
object, ``fields`` by default (``metadata_field``), each value a ``keyword``; the
object is left out when an entry has none. Why there: top-level keys would collide
with ECS field sets (a parsed ``host`` or ``message`` is a string where ECS has an
object or our line; ``@timestamp`` would be overwritten) and bring mapping conflicts;
``labels`` already holds the stream labels, which name a stream and stay few, while
metadata are per line and may be many (trace ids, user ids), so they are kept apart
and a field never shadows a label of the same name. ``fields`` is where Filebeat puts
custom fields, so dashboards and habits carry over. Metadata are not part of the
``_id``: a line is the same line whatever was parsed out of it.

``@timestamp`` keeps Loki's nanoseconds (ISO-8601 with nine fractional
digits, mapped ``date_nanos``). A timestamp no calendar can name is sent as epoch
milliseconds, which Elasticsearch refuses for that document alone (dead-lettered).

The ``_id`` is the timestamp in hex followed by 20 characters of base64url(BLAKE2b-120)
over the stream's label set (cluster included), the timestamp, the line, and the
line's rank among identical (labels, timestamp, line) entries of the same record: two
identical lines in the same nanosecond are two lines. Sent with ``op_type`` create, a
replay stores nothing twice (Elasticsearch answers 409, "already stored").

Bodies are cut at ``max_bulk_bytes``; a document is never split. Documents are
written ASCII-only, so sizes are exact.
"""

from __future__ import annotations

import hashlib
import json
import json.encoder
from binascii import b2a_base64
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import islice
from operator import lt
from typing import Any

from ferryman import headers as h
from ferryman.wire.loki import Entries, Stream
from functions._elasticsearch import Chunk
from functions._records import UnsupportedRecord, decode_stream_columns
from workers.records import Batch

from .config import ElasticsearchLogsConfig

__all__ = [
    "TEMPLATE_VERSION",
    "BulkEncoder",
    "Encoded",
    "component_template",
    "component_template_name",
    "index_template",
    "iso_timestamp",
]

_quote: Callable[[str], str] = json.encoder.encode_basestring_ascii
_SEP = "\udcff"  # becomes byte 0xff, which never occurs in UTF-8: keys stay unambiguous
_NS = 1_000_000_000

#: Labels that become ECS fields, and the path each one takes.
ECS_LABELS: dict[str, tuple[str, ...]] = {
    "filename": ("log", "file", "path"),
    "host": ("host", "name"),
    "namespace": ("kubernetes", "namespace"),
    "pod": ("kubernetes", "pod", "name"),
    "container": ("kubernetes", "container", "name"),
}


def iso_timestamp(ts_ns: int) -> str | None:
    """``ts_ns`` as ISO-8601 UTC with nanoseconds, or None when no calendar names it."""
    seconds, nanos = divmod(ts_ns, _NS)
    try:
        when = datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return f"{when:%Y-%m-%dT%H:%M:%S}.{nanos:09d}Z"


@dataclass(slots=True)
class Encoded:
    """A batch as bulk chunks, plus the records that could not be read, with why."""

    chunks: list[Chunk]
    undecodable: list[tuple[int, str]]
    lines: int = 0


class BulkEncoder:
    """Turns batches into bulk chunks for one configuration."""

    def __init__(self, config: ElasticsearchLogsConfig) -> None:
        self.max_bytes = config.max_bulk_bytes
        self.cluster_label = config.cluster_label
        self.metadata_prefix = f",{_quote(config.metadata_field)}:"
        self._stamps: dict[int, str] = {}

    def encode(self, batch: Batch) -> Encoded:
        chunks = [Chunk()]
        undecodable: list[tuple[int, str]] = []
        max_bytes = self.max_bytes
        lines = 0
        for position, record in enumerate(batch):
            try:
                streams = decode_stream_columns(record)
            except UnsupportedRecord as exc:
                undecodable.append((position, str(exc)))
                continue
            raw_cluster = record.header(h.CLUSTER)
            cluster = raw_cluster.decode("utf-8", "replace") if raw_cluster else None
            for pairs in self._documents(streams, cluster):
                chunk = chunks[-1]
                chunk_lines, owners = chunk.lines, chunk.owners
                size = chunk.size
                for action, document in pairs:
                    length = len(action) + len(document)
                    if size + length > max_bytes and owners:
                        chunk.size = size
                        chunk = Chunk()
                        chunks.append(chunk)
                        chunk_lines, owners, size = chunk.lines, chunk.owners, 0
                    chunk_lines += action, document
                    owners.append(position)
                    size += length
                chunk.size = size
                lines += len(pairs)
        self._stamps.clear()
        return Encoded([c for c in chunks if c.owners], undecodable, lines)

    def _documents(
        self, streams: list[Stream], header_cluster: str | None
    ) -> Iterator[list[tuple[str, str]]]:
        """Each stream's (action, document) pairs, a list per stream."""
        # Ranks of identical (labels, ts, line) entries are counted per record.
        seen: dict[tuple[str, int, str], int] = {}
        identities: list[dict[str, str]] = []
        for stream in streams:
            identity = dict(stream.labels)
            if self.cluster_label not in identity and header_cluster is not None:
                identity[self.cluster_label] = header_cluster
            identities.append(identity)
        keys = [
            _SEP.join(f"{k}{_SEP}{v}" for k, v in sorted(identity.items()))
            for identity in identities
        ]
        for stream, identity, series_key in zip(streams, identities, keys, strict=True):
            entries = stream.entries
            if isinstance(entries, Entries):
                stamps, lines = entries.timestamps, entries.lines
                metadata: Iterable[tuple[tuple[str, str], ...]] = [()] * len(lines)
            else:
                stamps = [entry.timestamp_ns for entry in entries]
                lines = [entry.line for entry in entries]
                metadata = [entry.metadata for entry in entries]
            if keys.count(series_key) == 1 and all(map(lt, stamps, islice(stamps, 1, None))):
                # Every (labels, ts, line) of the record is unique here: every rank is 0.
                ranks: Iterable[int] = [0] * len(lines)
            else:
                ranks = list(map(_Ranker(seen, series_key), stamps, lines))
            yield self._stream_documents(identity, series_key, stamps, lines, metadata, ranks)

    def _stream_documents(
        self,
        identity: dict[str, str],
        series_key: str,
        stamps: list[int],
        lines: list[str],
        metadata: Iterable[tuple[tuple[str, str], ...]],
        ranks: Iterable[int],
    ) -> list[tuple[str, str]]:
        series_hash = hashlib.blake2b(
            series_key.encode("utf-8", "surrogateescape") + b"\xfe", digest_size=15
        )
        copy = series_hash.copy
        tail = _tail(identity, self.cluster_label)
        with_metadata = tail[:-2] + self.metadata_prefix
        stamp_prefix = self._stamp_prefix
        last_second, prefix = None, ""
        out: list[tuple[str, str]] = []
        add = out.append
        for ts, line, pairs, rank in zip(stamps, lines, metadata, ranks, strict=True):
            digest = copy()
            digest.update(f"{ts}{_SEP}{line}{_SEP}{rank}".encode("utf-8", "surrogatepass"))
            entry_id = b2a_base64(digest.digest(), newline=False).translate(_URLSAFE).decode()
            second, nanos = divmod(ts, _NS)
            if second != last_second:
                last_second, prefix = second, stamp_prefix(second)
            stamp = f'{prefix}{nanos:09d}Z"' if prefix else str(ts // 1_000_000)
            document = f'{{"@timestamp":{stamp},"message":{_quote(line)}'
            if pairs:
                document += with_metadata + _object(pairs) + "}\n"
            else:
                document += tail
            add((f'{{"create":{{"_id":"{ts:x}{entry_id}"}}}}\n', document))
        return out

    def _stamp_prefix(self, seconds: int) -> str:
        """``"YYYY-MM-DDTHH:MM:SS.`` of a second, or "" when no calendar names it."""
        prefix = self._stamps.get(seconds)
        if prefix is None:
            text = iso_timestamp(seconds * _NS)
            prefix = self._stamps[seconds] = "" if text is None else '"' + text[:20]
        return prefix


class _Ranker:
    """The rank of each (ts, line) of one series among identical ones of the record."""

    __slots__ = ("seen", "series_key")

    def __init__(self, seen: dict[tuple[str, int, str], int], series_key: str) -> None:
        self.seen = seen
        self.series_key = series_key

    def __call__(self, ts: int, line: str) -> int:
        key = (self.series_key, ts, line)
        rank = self.seen.get(key, 0)
        self.seen[key] = rank + 1
        return rank


_URLSAFE = bytes.maketrans(b"+/", b"-_")


def _tail(labels: dict[str, str], cluster_label: str) -> str:
    """Everything after ``message``, through the closing brace and newline."""
    fields: dict[str, Any] = {}
    rest: dict[str, str] = {}
    cluster = labels.get(cluster_label)
    for name, value in sorted(labels.items()):
        path = ECS_LABELS.get(name)
        if name == cluster_label:
            continue
        if path is None:
            rest[name] = value
            continue
        node = fields
        for step in path[:-1]:
            node = node.setdefault(step, {})
        node[path[-1]] = value
    if cluster is not None:
        fields["cluster"] = cluster
    fields["labels"] = rest
    text = json.dumps(fields, separators=(",", ":"), ensure_ascii=True)
    return "," + text[1:] + "\n"


def _object(pairs: tuple[tuple[str, str], ...]) -> str:
    """Name/value pairs as a JSON object (ASCII); a later duplicate name wins."""
    return json.dumps(dict(pairs), separators=(",", ":"), ensure_ascii=True)


# ---- templates --------------------------------------------------------------------------

_META = {"managed_by": "ferryman", "function": "elasticsearch_logs"}
#: Bumped whenever the templates below change, so operators can tell what is installed.
TEMPLATE_VERSION = 2
_KEYWORD = {"type": "keyword", "ignore_above": 1024}


def component_template(config: ElasticsearchLogsConfig) -> dict[str, Any]:
    """ferryman's own settings and mappings, the first component of the index template."""
    t = config.template
    return {
        "version": TEMPLATE_VERSION,
        "_meta": _META,
        "template": {
            "settings": {
                "index": {
                    "number_of_shards": t.number_of_shards,
                    "number_of_replicas": t.number_of_replicas,
                }
            },
            "mappings": {
                "dynamic_templates": [
                    {
                        "ferryman_labels": {
                            "path_match": "labels.*",
                            "match_mapping_type": "string",
                            "mapping": _KEYWORD,
                        }
                    },
                    {
                        "ferryman_metadata": {
                            "path_match": f"{config.metadata_field}.*",
                            "match_mapping_type": "string",
                            "mapping": _KEYWORD,
                        }
                    },
                ],
                "properties": {
                    "@timestamp": {"type": "date_nanos"},
                    # match_only_text needs the mapper-extras module, not everywhere.
                    "message": {"type": "text"},
                    "log": {"properties": {"file": {"properties": {"path": _KEYWORD}}}},
                    "host": {"properties": {"name": _KEYWORD}},
                    "kubernetes": {
                        "properties": {
                            "namespace": _KEYWORD,
                            "pod": {"properties": {"name": _KEYWORD}},
                            "container": {"properties": {"name": _KEYWORD}},
                        }
                    },
                    "cluster": _KEYWORD,
                    # subobjects: false keeps a label named "a.b" a leaf, never an object "a".
                    "labels": {"type": "object", "subobjects": False, "dynamic": True},
                    config.metadata_field: {"type": "object", "subobjects": False, "dynamic": True},
                },
            },
        },
    }


def component_template_name(config: ElasticsearchLogsConfig) -> str:
    return f"{config.template_name}@ferryman"


def index_template(config: ElasticsearchLogsConfig) -> dict[str, Any]:
    return {
        "version": TEMPLATE_VERSION,
        "_meta": _META,
        "index_patterns": [config.data_stream],
        "priority": config.template.priority,
        "composed_of": [component_template_name(config), *config.template.composed_of],
        "data_stream": {},
    }
