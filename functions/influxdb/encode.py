"""Pure: remote-write records → InfluxDB line protocol, cut into request-sized chunks.

How one Prometheus series maps (the default is InfluxDB 1.x's own Prometheus layout, so
queries written against its ``/api/v1/prom/write`` keep working):

* measurement = the metric name (``__name__``) and the sample is the float field
  ``value`` (config ``field``); or, with ``measurement`` set, every series goes to that
  one measurement and the metric name is the field key;
* tags = the other labels, sorted by key as InfluxDB recommends; empty values are
  dropped (Prometheus treats them as absent); labels listed in ``string_fields`` become
  string fields instead; a series without a ``cluster`` label is tagged with the
  message's ``cluster`` header (``cluster_from_header``);
* timestamp = the sample's milliseconds in the configured precision.

Samples InfluxDB cannot store are skipped and counted by reason
(``ferryman_samples_skipped_total``): ``nan``, ``inf`` (either sign), ``stale_marker``
(Prometheus' NaN 0x7ff0000000000002) and ``no_name`` (a series without a metric name).

Escaping follows the line protocol: commas and spaces in the measurement; commas, equals
signs and spaces in tag keys, tag values and field keys; double quotes and backslashes in
string field values. What the protocol cannot carry is rewritten; each rewritten name or
value is counted, once per series and message, by what it was
(``ferryman_names_sanitized_total{what=measurement|tag_key|tag_value|field_key|
field_value}``):

* a newline becomes the two characters ``\\n`` (a newline always ends a line);
* unless ``escape_backslashes`` is set, a run of backslashes right before an escaped
  character or at the end of a name or value is dropped: InfluxDB reads backslashes
  literally but would take those for escapes and misparse the line;
* the key ``time``, which InfluxDB refuses for tags and fields, becomes ``time_``.
"""

from __future__ import annotations

import gzip
import math
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import NamedTuple

from ferryman.wire.remote_write import TimeSeries
from functions._records import skip_reason
from functions._series import Tally

from .config import InfluxDBConfig

__all__ = ["Chunk", "LineEncoder", "Tally", "Target", "chunk", "request_body", "write_target"]

_CACHE_SIZE = 1 << 16
Labels = tuple[tuple[str, str], ...]


class _Escaper:
    """Backslash-escapes ``specials``; remembers recent answers (label values repeat)."""

    def __init__(self, specials: str, escape_backslashes: bool) -> None:
        chars = re.escape(specials)
        self._needs = re.compile(rf"[{chars}\\\n]")
        self._unrepresentable = re.compile(rf"\\+(?=[{chars}]|\Z)")
        self._specials = specials
        self._double = escape_backslashes
        self._cache: dict[str, tuple[str, bool]] = {}

    def __call__(self, text: str) -> tuple[str, bool]:
        """``text`` escaped, and whether it had to be rewritten beyond escaping."""
        hit = self._cache.get(text)
        if hit is not None:
            return hit
        result = (text, False) if self._needs.search(text) is None else self._escape(text)
        if len(self._cache) >= _CACHE_SIZE:
            self._cache.clear()
        self._cache[text] = result
        return result

    def _escape(self, text: str) -> tuple[str, bool]:
        out = text.replace("\n", "\\n")
        lossy = out != text
        if self._double:
            out = out.replace("\\", "\\\\")
        else:
            kept = self._unrepresentable.sub("", out)
            lossy = lossy or kept != out
            out = kept
        for char in self._specials:
            out = out.replace(char, "\\" + char)
        return out, lossy


def _string_field(value: str) -> tuple[str, bool]:
    out = value.replace("\n", "\\n")
    return out.replace("\\", "\\\\").replace('"', '\\"'), out != value


class LineEncoder:
    """Turns series into lines as configured (see the module docstring for the rules)."""

    def __init__(self, config: InfluxDBConfig) -> None:
        self._measurement_text = _Escaper(", ", config.escape_backslashes)
        self._key_text = _Escaper(", =", config.escape_backslashes)
        self._fixed_measurement: str | None = None
        if config.measurement is not None:
            self._fixed_measurement = self._measurement_text(config.measurement)[0]
        self._field_key = self._key_text(config.field)[0]
        self._string_fields = frozenset(config.string_fields)
        self._cluster_from_header = config.cluster_from_header
        # The same series comes back in every scrape: its line head is worked out once.
        self._heads: dict[
            tuple[Labels, str | None], tuple[tuple[str, str] | None, tuple[str, ...]]
        ] = {}
        self._scale = {"ns": (1_000_000, 1), "us": (1000, 1), "ms": (1, 1), "s": (1, 1000)}[
            config.precision
        ]

    def lines(self, series: TimeSeries, cluster: str | None, tally: Tally) -> list[bytes]:
        """One line per writable sample of ``series``; ``cluster`` is the record's header."""
        key = (series.labels, cluster)
        cached = self._heads.get(key)
        if cached is None:
            labels = dict(series.labels)
            name = labels.pop("__name__", "")
            if cluster and self._cluster_from_header and not labels.get("cluster"):
                labels["cluster"] = cluster
            rewrites = Tally()
            cached = (self._head(name, labels, rewrites), tuple(rewrites.sanitized.elements()))
            if len(self._heads) >= _CACHE_SIZE:
                self._heads.clear()
            self._heads[key] = cached
        head, rewritten = cached
        tally.sanitized.update(rewritten)
        if head is None:
            tally.skipped["no_name"] += len(series.samples)
            return []
        prefix, suffix = head
        multiply, divide = self._scale
        out = []
        for sample in series.samples:
            value = sample.value
            if not math.isfinite(value):
                tally.skipped[skip_reason(value) or "nan"] += 1
                continue
            out.append(
                f"{prefix}{value!r}{suffix} {sample.timestamp_ms * multiply // divide}".encode()
            )
        return out

    def _head(self, name: str, labels: dict[str, str], tally: Tally) -> tuple[str, str] | None:
        """The line up to the sample value, and the string fields after it."""
        if not name:
            return None
        if self._fixed_measurement is None:
            measurement, lossy = self._measurement_text(name)
            if lossy:
                tally.sanitized["measurement"] += 1
            field_key = self._field_key
        else:
            measurement = self._fixed_measurement
            field_key = self._key(name, "field_key", tally)
        if not measurement or not field_key:
            return None
        tags: list[tuple[str, str]] = []
        strings: list[tuple[str, str]] = []
        for key, value in labels.items():
            if not key or not value:
                continue
            if key in self._string_fields:
                text, lossy = _string_field(value)
                if lossy:
                    tally.sanitized["field_value"] += 1
                strings.append((self._key(key, "field_key", tally), text))
                continue
            tag_key = self._key(key, "tag_key", tally)
            tag_value, lossy = self._key_text(value)
            if lossy:
                tally.sanitized["tag_value"] += 1
            if tag_key and tag_value:
                tags.append((tag_key, tag_value))
        tags.sort()
        strings.sort()
        prefix = measurement + "".join(f",{k}={v}" for k, v in tags) + f" {field_key}="
        return prefix, "".join(f',{k}="{v}"' for k, v in strings)

    def _key(self, key: str, what: str, tally: Tally) -> str:
        escaped, lossy = self._key_text(key)
        if escaped == "time":
            escaped, lossy = "time_", True
        if lossy:
            tally.sanitized[what] += 1
        return escaped


@dataclass(frozen=True, slots=True)
class Chunk:
    """The lines of one request, each with the batch index of the record it came from."""

    lines: tuple[tuple[int, bytes], ...]

    @property
    def owners(self) -> frozenset[int]:
        return frozenset(owner for owner, _ in self.lines)

    def body(self) -> bytes:
        return b"\n".join(line for _, line in self.lines) + b"\n"

    def by_owner(self) -> list[Chunk]:
        """This chunk split into one chunk per record, in record order."""
        split: dict[int, list[tuple[int, bytes]]] = {}
        for unit in self.lines:
            split.setdefault(unit[0], []).append(unit)
        return [Chunk(tuple(split[owner])) for owner in sorted(split)]


def chunk(lines: Iterable[tuple[int, bytes]], max_lines: int, max_bytes: int) -> list[Chunk]:
    """Cut ``lines`` in order into chunks of at most ``max_lines`` lines and ``max_bytes``
    bytes (newlines included); a single longer line gets a chunk of its own."""
    chunks: list[Chunk] = []
    current: list[tuple[int, bytes]] = []
    size = 0
    for unit in lines:
        length = len(unit[1]) + 1
        if current and (len(current) >= max_lines or size + length > max_bytes):
            chunks.append(Chunk(tuple(current)))
            current, size = [], 0
        current.append(unit)
        size += length
    if current:
        chunks.append(Chunk(tuple(current)))
    return chunks


def request_body(chunk: Chunk, compress: bool) -> bytes:
    body = chunk.body()
    # Level 1: line protocol shrinks about tenfold already and the worker's CPU is the
    # scarcer resource.
    return gzip.compress(body, compresslevel=1, mtime=0) if compress else body


class Target(NamedTuple):
    """Where a chunk is POSTed: URL, query parameters and headers."""

    url: str
    params: dict[str, str]
    headers: dict[str, str]


_V1_PRECISION = {"ns": "n", "us": "u", "ms": "ms", "s": "s"}


def write_target(config: InfluxDBConfig) -> Target:
    headers = {"Content-Type": "text/plain; charset=utf-8", **config.headers}
    if config.gzip:
        headers["Content-Encoding"] = "gzip"
    if config.api == "v1":
        assert config.database is not None
        params = {"db": config.database, "precision": _V1_PRECISION[config.precision]}
        if config.retention_policy:
            params["rp"] = config.retention_policy
        return Target(f"{config.url}/write", params, headers)
    assert config.org is not None and config.bucket is not None
    return Target(
        f"{config.url}/api/v2/write",
        {"org": config.org, "bucket": config.bucket, "precision": config.precision},
        headers,
    )
