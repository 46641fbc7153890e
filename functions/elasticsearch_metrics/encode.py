"""Pure: Kafka records → ``_bulk`` bodies (one ``create`` per sample), and the templates.

One document per sample::

    {"@timestamp": 1700000000000, "metric": {"name": "up", "value": 1.0},
     "cluster": "alpha", "labels": {"instance": "…", "job": "…"}}

``labels`` holds every label but ``__name__`` (that is ``metric.name``) and the
cluster label (that is ``cluster``; taken from the message's ``cluster`` header when
the series lacks it). ``@timestamp`` is epoch milliseconds.

The ``_id`` is the timestamp in hex followed by 20 characters of base64url(BLAKE2b-120)
over the series' full label set (``__name__`` and cluster included, sorted); the time
prefix groups ids written together, which keeps the ``_id`` lookup every ``create``
makes cheap in large indices. Sent with ``op_type`` create, a replay can never store
a sample twice: Elasticsearch answers 409 for a document it already holds, and that
means "already stored".

Samples Elasticsearch cannot store are skipped and counted by reason: Prometheus
stale markers (the NaN with bits 0x7ff0000000000002), other NaNs and ±Inf (JSON has
no such numbers and ``double`` fields refuse them). In ``index`` mode, a timestamp
no calendar can name (past year 9999) is skipped as ``timestamp_out_of_range``.

Bodies are cut at ``max_bulk_bytes``; a document is never split. The size is exact
for ASCII index names, as documents are written ASCII-only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import json.encoder
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from itertools import chain
from typing import Any

from ferryman import headers as h
from ferryman.wire.remote_write import TimeSeries
from functions._elasticsearch import DOC_SCHEMA, Chunk, document_record
from functions._records import STALE_MARKER, UnsupportedRecord, decode_series
from functions._records import skip_reason as _skip_reason
from workers.records import Batch

from .config import ElasticsearchMetricsConfig

__all__ = [
    "DOC_SCHEMA",
    "STALE_MARKER_BITS",
    "TEMPLATE_VERSION",
    "BulkEncoder",
    "Chunk",
    "Encoded",
    "component_template",
    "component_template_name",
    "document_record",
    "index_template",
    "skip_reason",
]

STALE_MARKER_BITS = STALE_MARKER
_HOUR_MS = 3_600_000


# The string escaper json.dumps uses (in C), without json.dumps' per-call overhead;
# ASCII-only output keeps character counts equal to byte counts.
_quote: Callable[[str], str] = json.encoder.encode_basestring_ascii


def skip_reason(value: float) -> str:
    """Why a non-finite sample value is skipped."""
    return _skip_reason(value) or "nan"


@dataclass(slots=True)
class Encoded:
    """A batch as bulk chunks, plus what could not be encoded and what was skipped."""

    chunks: list[Chunk]
    undecodable: list[tuple[int, str]]
    skipped: Counter[str]


class BulkEncoder:
    """Turns batches into bulk chunks for one configuration."""

    def __init__(self, config: ElasticsearchMetricsConfig) -> None:
        self.max_bytes = config.max_bulk_bytes
        self.cluster_label = config.cluster_label
        self.index = config.index
        self._index_names: dict[int, str] = {}

    def encode(self, batch: Batch) -> Encoded:
        chunks = [Chunk()]
        undecodable: list[tuple[int, str]] = []
        skipped: Counter[str] = Counter()
        max_bytes = self.max_bytes
        for position, record in enumerate(batch):
            try:
                series = decode_series(record)
            except UnsupportedRecord as exc:
                undecodable.append((position, str(exc)))
                continue
            raw_cluster = record.header(h.CLUSTER)
            cluster = raw_cluster.decode("utf-8", "replace") if raw_cluster else None
            for action, document in self._documents(series, cluster, skipped):
                chunk = chunks[-1]
                size = len(action) + len(document)
                if chunk.size + size > max_bytes and chunk.owners:
                    chunk = Chunk()
                    chunks.append(chunk)
                chunk.lines.append(action)
                chunk.lines.append(document)
                chunk.owners.append(position)
                chunk.size += size
        self._index_names.clear()
        return Encoded([c for c in chunks if c.owners], undecodable, skipped)

    def _documents(
        self, series: list[TimeSeries], header_cluster: str | None, skipped: Counter[str]
    ) -> Iterator[tuple[str, str]]:
        for one in series:
            name = ""
            cluster = header_cluster
            identity = list(one.labels)
            labels: dict[str, str] = {}
            has_cluster = False
            for key, text in one.labels:
                if key == "__name__":
                    name = text
                elif key == self.cluster_label:
                    cluster, has_cluster = text, True
                else:
                    labels[key] = text
            if not has_cluster and cluster is not None:
                identity.append((self.cluster_label, cluster))
            series_id = _series_id(identity)
            middle = ',"metric":{"name":' + _quote(name) + ',"value":'
            tail = (
                "}"
                + ("" if cluster is None else ',"cluster":' + _quote(cluster))
                + ',"labels":{'
                + ",".join([_quote(k) + ":" + _quote(v) for k, v in labels.items()])
                + "}}\n"
            )
            for sample in one.samples:
                value = sample.value
                if value - value != 0.0:  # NaN or ±Inf
                    skipped[skip_reason(value)] += 1
                    continue
                ts = sample.timestamp_ms
                document = f'{{"@timestamp":{ts}{middle}{value!r}{tail}'
                if self.index is None:
                    yield f'{{"create":{{"_id":"{ts:x}{series_id}"}}}}\n', document
                    continue
                index = self._index_name(ts)
                if index is None:
                    skipped["timestamp_out_of_range"] += 1
                    continue
                yield f'{{"create":{{"_index":"{index}","_id":"{ts:x}{series_id}"}}}}\n', document

    def _index_name(self, ts_ms: int) -> str | None:
        hour = ts_ms // _HOUR_MS
        name = self._index_names.get(hour)
        if name is None:
            assert self.index is not None
            try:
                when = datetime.fromtimestamp(hour * 3600, UTC)
            except (OverflowError, OSError, ValueError):
                return None
            name = self._index_names[hour] = when.strftime(self.index)
        return name


def _series_id(labels: list[tuple[str, str]]) -> str:
    labels.sort()
    # Names and values joined by byte 0xff, as Prometheus hashes series: it never occurs
    # in UTF-8, so no two label sets share a key. U+DCFF becomes exactly that byte.
    key = "\udcff".join(chain.from_iterable(labels)).encode("utf-8", "surrogateescape")
    return base64.urlsafe_b64encode(hashlib.blake2b(key, digest_size=15).digest()).decode()


# ---- templates --------------------------------------------------------------------------

_META = {"managed_by": "ferryman", "function": "elasticsearch_metrics"}
#: Bumped whenever the templates below change, so operators can tell what is installed.
TEMPLATE_VERSION = 1


def component_template(config: ElasticsearchMetricsConfig) -> dict[str, Any]:
    """ferryman's own settings and mappings, the first component of the index template."""
    t = config.template
    labels: dict[str, Any] = {"type": "flattened"}
    dynamic_templates: list[dict[str, Any]] = []
    if t.labels == "keyword":
        # subobjects: false keeps a label named "a.b" a leaf, never an object "a".
        labels = {"type": "object", "subobjects": False, "dynamic": True}
        dynamic_templates = [
            {
                "ferryman_labels": {
                    "path_match": "labels.*",
                    "match_mapping_type": "string",
                    "mapping": {"type": "keyword", "ignore_above": 1024},
                }
            }
        ]
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
                "dynamic_templates": dynamic_templates,
                "properties": {
                    "@timestamp": {"type": "date"},
                    "metric": {
                        "properties": {"name": {"type": "keyword"}, "value": {"type": "double"}}
                    },
                    "cluster": {"type": "keyword"},
                    "labels": labels,
                },
            },
        },
    }


def component_template_name(config: ElasticsearchMetricsConfig) -> str:
    return f"{config.template_name}@ferryman"


def index_template(config: ElasticsearchMetricsConfig) -> dict[str, Any]:
    body: dict[str, Any] = {
        "version": TEMPLATE_VERSION,
        "_meta": _META,
        "index_patterns": [config.index_pattern],
        "priority": config.template.priority,
        "composed_of": [component_template_name(config), *config.template.composed_of],
    }
    if config.data_stream is not None:
        body["data_stream"] = {}
    return body
