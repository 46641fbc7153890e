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

The ``_id`` names the line, so that sent with ``op_type`` create, a replay stores
nothing twice (Elasticsearch answers 409, "already stored"). It is derived from where
the line was read when the record says so, from its content otherwise:

* By source, for an entry that a valid ``ferryman.lines`` header
  (:mod:`ferryman.wire.lines`) gives a source file and an end offset there:
  ``P.O`` where ``P`` is 16 characters of base64url(BLAKE2b-96, personalisation
  ``ferryman.es.line``) over the cluster the document is written with (``0x00`` when
  none, else ``0x01`` and its UTF-8) followed by the 16-byte source, and ``O`` the end
  offset in lowercase hex; when several entries of one record have the same cluster,
  source and offset, the second and later get ``.R``, their rank in hex. Labels,
  timestamp and line are not part of it: a file renamed by rotation, or read again
  after its shipper lost its positions (new read-time timestamps), gives the same ids.
* By content, for every other entry (no header, a header that does not match its
  message, an entry without a source): the timestamp in hex followed by 20 characters
  of base64url(BLAKE2b-120) over the stream's label set (cluster included), the
  timestamp, the line, and the line's rank among identical (labels, timestamp, line)
  entries of the same record: two identical lines in the same nanosecond are two
  lines.

Content ids hold no ``.``, so the two kinds never meet. A header that does not match
its message is reported in :attr:`Encoded.invalid_lines_headers` (the sink counts
it).

Bodies are cut at ``max_bulk_bytes``; a document is never split. Documents are
written ASCII-only, so sizes are exact.
"""

from __future__ import annotations

import hashlib
import json
import json.encoder
from binascii import b2a_base64
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import islice, repeat
from operator import lt
from typing import Any

from ferryman import headers as h
from ferryman.wire.lines import NO_SOURCE, Runs, decode_runs
from ferryman.wire.loki import Entries, Stream
from ferryman.wire.protobuf import DecodeError
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
    """A batch as bulk chunks, plus the records that could not be read, with why, and
    those whose ``ferryman.lines`` header did not match their message, with why (their
    lines were named by content)."""

    chunks: list[Chunk]
    undecodable: list[tuple[int, str]]
    lines: int = 0
    invalid_lines_headers: list[tuple[int, str]] = field(default_factory=list)


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
        invalid_headers: list[tuple[int, str]] = []
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
            runs = None
            lines_header = record.header(h.LINES)
            if lines_header is not None:
                try:
                    runs = decode_runs(lines_header, [len(s.entries) for s in streams])
                except DecodeError as exc:
                    invalid_headers.append((position, str(exc)))
            for pairs in self._documents(streams, cluster, runs):
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
        return Encoded([c for c in chunks if c.owners], undecodable, lines, invalid_headers)

    def _documents(
        self, streams: list[Stream], header_cluster: str | None, runs: Runs | None
    ) -> Iterator[list[tuple[str, str]]]:
        """Each stream's (action, document) pairs, a list per stream; ``runs`` are the
        record's ``ferryman.lines``, when it has a valid one."""
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
        by_source = None if runs is None else self._source_ids(identities, runs)
        for index, (stream, identity, series_key) in enumerate(
            zip(streams, identities, keys, strict=True)
        ):
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
            given: list[str | None] = [None] * len(lines) if by_source is None else by_source[index]
            yield self._stream_documents(
                identity, series_key, stamps, lines, metadata, ranks, given
            )

    def _source_ids(self, identities: list[dict[str, str]], runs: Runs) -> list[list[str | None]]:
        """Per stream, per entry, its ``_id`` by source, or None when it has no source."""
        cluster_label = self.cluster_label
        prefixes: dict[tuple[str | None, bytes], str] = {}
        repeated = False  # whether two entries of the record may share an id
        out: list[list[str | None]] = []
        for identity, stream_runs in zip(identities, runs, strict=True):
            cluster = identity.get(cluster_label)
            ids: list[str | None] = []
            for source, offsets in stream_runs:
                if source == NO_SOURCE:
                    ids += repeat(None, len(offsets))
                    continue
                prefix = prefixes.get((cluster, source))
                if prefix is None:
                    prefix = prefixes[cluster, source] = _source_prefix(cluster, source)
                else:
                    repeated = True
                if not repeated and not all(map(lt, offsets, islice(offsets, 1, None))):
                    repeated = True
                ids += map(prefix.__add__, map(_HEX, offsets))
            out.append(ids)
        if repeated:
            _rank(out)
        return out

    def _stream_documents(
        self,
        identity: dict[str, str],
        series_key: str,
        stamps: list[int],
        lines: list[str],
        metadata: Iterable[tuple[tuple[str, str], ...]],
        ranks: Iterable[int],
        given_ids: list[str | None],
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
        for ts, line, pairs, rank, entry_id in zip(
            stamps, lines, metadata, ranks, given_ids, strict=True
        ):
            if entry_id is None:
                digest = copy()
                digest.update(f"{ts}{_SEP}{line}{_SEP}{rank}".encode("utf-8", "surrogatepass"))
                content = b2a_base64(digest.digest(), newline=False).translate(_URLSAFE)
                entry_id = f"{ts:x}{content.decode()}"
            second, nanos = divmod(ts, _NS)
            if second != last_second:
                last_second, prefix = second, stamp_prefix(second)
            stamp = f'{prefix}{nanos:09d}Z"' if prefix else str(ts // 1_000_000)
            document = f'{{"@timestamp":{stamp},"message":{_quote(line)}'
            if pairs:
                document += with_metadata + _object(pairs) + "}\n"
            else:
                document += tail
            add((f'{{"create":{{"_id":"{entry_id}"}}}}\n', document))
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
_HEX: Callable[[int], str] = "{:x}".format


def _base64url(digest: bytes) -> str:
    """``digest`` in base64url, without padding when its length is a multiple of 3."""
    return b2a_base64(digest, newline=False).translate(_URLSAFE).decode()


def _source_prefix(cluster: str | None, source: bytes) -> str:
    """The ``_id`` of a line by source up to its offset: base64url(BLAKE2b-96) of the
    cluster and the source, and a dot."""
    named = b"\x00" if cluster is None else b"\x01" + cluster.encode("utf-8", "surrogatepass")
    digest = hashlib.blake2b(named + source, digest_size=12, person=b"ferryman.es.line")
    return _base64url(digest.digest()) + "."


def _rank(ids: list[list[str | None]]) -> None:
    """Give the second and later entries of an id ``.R``, their rank in hex, in place."""
    seen: dict[str, int] = {}
    for stream_ids in ids:
        for index, entry_id in enumerate(stream_ids):
            if entry_id is None:
                continue
            rank = seen.get(entry_id, 0)
            seen[entry_id] = rank + 1
            if rank:
                stream_ids[index] = f"{entry_id}.{rank:x}"


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
