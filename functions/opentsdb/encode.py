"""Pure: remote-write records → OpenTSDB ``/api/put`` datapoints, cut into requests.

How one Prometheus series maps:

* metric = the metric name (``__name__``); tags = the other labels, empty values dropped
  (Prometheus treats them as absent); a series without a ``cluster`` label is tagged with
  the message's ``cluster`` header (``cluster_from_header``);
* each sample is ``{"metric", "timestamp" (milliseconds), "value" (a JSON number),
  "tags"}``.

OpenTSDB's rules, and what is done to meet them:

* metric names, tag keys and tag values may use only ``A-Z a-z 0-9 - _ . /``: every other
  character is replaced by ``replacement`` (default ``_``). Each rewritten name or value
  is counted, once per series and message, by what it was
  (``ferryman_names_sanitized_total{what=metric|tag_key|tag_value}``). OpenTSDB would
  also take Unicode letters; they are replaced too, since which ones a deployment
  accepts depends on its Java version and settings.
* two labels that end up with the same tag key: the first in label name order wins, the
  other is dropped.
* at most ``max_tags`` tags (OpenTSDB's ``tsd.storage.max_tags``, default 8): the
  ``keep_tags`` (default ``cluster``) are kept first, then the other tags in name order
  until the limit; the rest are dropped. The metric name never counts as a tag. Every
  dropped tag is counted once per series and message (``ferryman_tags_dropped_total``).
  Series that differ only in dropped tags land on one OpenTSDB series.
* at least one tag: a series without any gets ``placeholder_tag`` (``cluster=unknown``).

Samples OpenTSDB cannot store are skipped and counted by reason
(``ferryman_samples_skipped_total``): ``nan``, ``inf``, ``stale_marker`` (Prometheus'
NaN 0x7ff0000000000002), ``no_name``, and ``timestamp`` for times at or before
1970-02-19 (OpenTSDB reads millisecond values below 2^32 as seconds).
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass

from ferryman.wire.remote_write import TimeSeries
from functions._records import skip_reason
from functions._series import Tally

from .config import OpenTSDBConfig

__all__ = ["Chunk", "DatapointEncoder", "Tally", "chunk"]

_CACHE_SIZE = 1 << 16
_SECONDS_LIMIT = 0xFFFFFFFF
_NOT_ALLOWED = re.compile(r"[^A-Za-z0-9\-_./]")
Labels = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class _Head:
    """What every datapoint of one series shares."""

    prefix: str  # '{"metric":...,"tags":{...},"timestamp":'
    sanitized: tuple[str, ...]
    tags_dropped: int


class DatapointEncoder:
    """Turns series into JSON datapoints as configured (rules in the module docstring)."""

    def __init__(self, config: OpenTSDBConfig) -> None:
        self._config = config
        self._replacement = config.replacement
        self._keep = {key: rank for rank, key in enumerate(config.keep_tags)}
        # The same series comes back in every scrape: its head is worked out once.
        self._heads: dict[tuple[Labels, str | None], _Head | None] = {}

    def datapoints(self, series: TimeSeries, cluster: str | None, tally: Tally) -> list[bytes]:
        """One JSON object per writable sample of ``series``; ``cluster`` is the header."""
        key = (series.labels, cluster)
        if key in self._heads:
            head = self._heads[key]
        else:
            head = self._head(series.labels, cluster)
            if len(self._heads) >= _CACHE_SIZE:
                self._heads.clear()
            self._heads[key] = head
        if head is None:
            tally.skipped["no_name"] += len(series.samples)
            return []
        tally.sanitized.update(head.sanitized)
        tally.tags_dropped += head.tags_dropped
        out = []
        for sample in series.samples:
            value = sample.value
            if not math.isfinite(value):
                tally.skipped[skip_reason(value) or "nan"] += 1
            elif sample.timestamp_ms <= _SECONDS_LIMIT:
                tally.skipped["timestamp"] += 1
            else:
                out.append(f'{head.prefix}{sample.timestamp_ms},"value":{value!r}}}'.encode())
        return out

    def sanitize(self, text: str) -> str:
        return _NOT_ALLOWED.sub(self._replacement, text)

    def _head(self, labels: Labels, cluster: str | None) -> _Head | None:
        named = dict(labels)
        name = named.pop("__name__", "")
        if not name:
            return None
        if cluster and self._config.cluster_from_header and not named.get("cluster"):
            named["cluster"] = cluster
        sanitized: list[str] = []
        metric = self.sanitize(name)
        if metric != name:
            sanitized.append("metric")
        tags: dict[str, str] = {}
        dropped = 0
        for key in sorted(named):
            value = named[key]
            if not key or not value:
                continue
            tag_key, tag_value = self.sanitize(key), self.sanitize(value)
            if tag_key != key:
                sanitized.append("tag_key")
            if tag_value != value:
                sanitized.append("tag_value")
            if tag_key in tags:
                dropped += 1
                continue
            tags[tag_key] = tag_value
        if not tags:
            placeholder = self._config.placeholder_tag
            tags[placeholder.key] = placeholder.value
        if len(tags) > self._config.max_tags:
            order = sorted(tags, key=lambda k: (self._keep.get(k, len(self._keep)), k))
            dropped += len(order) - self._config.max_tags
            tags = {k: tags[k] for k in order[: self._config.max_tags]}
        prefix = (
            f'{{"metric":{json.dumps(metric)},"tags":'
            f'{json.dumps(tags, separators=(",", ":"), sort_keys=True)},"timestamp":'
        )
        return _Head(prefix, tuple(sanitized), dropped)


@dataclass(frozen=True, slots=True)
class Chunk:
    """The datapoints of one request, each with the batch index of its record."""

    units: tuple[tuple[int, bytes], ...]

    @property
    def owners(self) -> frozenset[int]:
        return frozenset(owner for owner, _ in self.units)

    def body(self) -> bytes:
        return b"[" + b",".join(unit for _, unit in self.units) + b"]"

    def by_owner(self) -> list[Chunk]:
        """This chunk split into one chunk per record, in record order."""
        split: dict[int, list[tuple[int, bytes]]] = {}
        for unit in self.units:
            split.setdefault(unit[0], []).append(unit)
        return [Chunk(tuple(split[owner])) for owner in sorted(split)]


def chunk(datapoints: Iterable[tuple[int, bytes]], max_datapoints: int) -> list[Chunk]:
    """Cut ``datapoints`` in order into chunks of at most ``max_datapoints``."""
    units = list(datapoints)
    return [
        Chunk(tuple(units[i : i + max_datapoints])) for i in range(0, len(units), max_datapoints)
    ]
