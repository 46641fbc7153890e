"""From scraped samples to encoded remote-write series, with a per-target cache.

Label handling happens once per distinct series, not once per sample: the first
time a target exposes ``name{labels}``, its final label set is computed (target
labels merged per ``honor_labels``, ``metric_relabel_configs``, limits, external
labels) and encoded as the protobuf bytes of its ``Label`` fields, together with
the hash bucket that decides its Kafka partition. Later scrapes only encode the
value and timestamp. The cache keeps just the series of the latest scrape, so
series churn cannot grow it without bound.
"""

from __future__ import annotations

import struct
import zlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from ferryman.prom.relabel import Relabeler
from ferryman.wire.protobuf import bytes_field, varint

__all__ = ["STALE_NAN", "EncodedSeries", "LimitExceeded", "SeriesBuilder", "encode_sample"]

#: The NaN Prometheus writes as a staleness marker (bit pattern 0x7ff0000000000002).
STALE_NAN: float = struct.unpack("<d", (0x7FF0000000000002).to_bytes(8, "little"))[0]
_DOUBLE = struct.Struct("<d")


class LimitExceeded(ValueError):
    """Raised when a series breaks label_limit or a label length limit: the scrape fails."""


#: Length of ``0x10 + varint(ms)`` for any timestamp from 2004 to 2527: the common case.
COMMON_TS_LEN = 7


@dataclass(frozen=True, slots=True)
class EncodedSeries:
    """A series ready to ship: its labels' protobuf bytes, its bucket, and ``prefix``,
    every byte of its one-sample ``TimeSeries`` field up to the value, for the
    common timestamp length (so a sample costs one concatenation)."""

    labels_pb: bytes
    bucket: int
    prefix: bytes


def timestamp_field(timestamp_ms: int) -> bytes:
    return b"\x10" + varint(timestamp_ms)


def encode_sample(
    series: EncodedSeries, value: float, timestamp_ms: int, ts_field: bytes | None = None
) -> bytes:
    """One ``TimeSeries`` field of a WriteRequest holding one sample."""
    ts_field = ts_field if ts_field is not None else timestamp_field(timestamp_ms)
    if len(ts_field) == COMMON_TS_LEN:
        return series.prefix + _DOUBLE.pack(value) + ts_field
    sample = b"\x09" + _DOUBLE.pack(value) + ts_field
    body = series.labels_pb + b"\x12" + varint(len(sample)) + sample
    return b"\x0a" + varint(len(body)) + body


class SeriesBuilder:
    """Turns (name, scraped labels) into an EncodedSeries, or None if relabeled away."""

    def __init__(
        self,
        target_labels: Sequence[tuple[str, str]],
        *,
        honor_labels: bool,
        metric_relabel: Relabeler | None,
        external_labels: Mapping[str, str],
        buckets: int,
        label_limit: int = 0,
        name_length_limit: int = 0,
        value_length_limit: int = 0,
    ) -> None:
        self.target_labels = tuple(target_labels)
        self.honor_labels = honor_labels
        self.metric_relabel = metric_relabel
        self.external_labels = dict(external_labels)
        self.buckets = buckets
        self.label_limit = label_limit
        self.name_length_limit = name_length_limit
        self.value_length_limit = value_length_limit

    def build(self, name: str, scraped: Sequence[tuple[str, str]]) -> EncodedSeries | None:
        labels = self.final_labels(name, scraped)
        if labels is None:
            return None
        return self.encode(labels)

    def final_labels(self, name: str, scraped: Sequence[tuple[str, str]]) -> dict[str, str] | None:
        labels = dict(scraped)
        labels["__name__"] = name
        for key, value in self.target_labels:
            if key not in labels or not labels[key]:
                labels[key] = value
            elif not self.honor_labels:
                # The target's label wins; the scraped one is kept as exported_<name>.
                exported = "exported_" + key
                while exported in labels:
                    exported = "exported_" + exported
                labels[exported] = labels[key]
                labels[key] = value
        if self.metric_relabel is not None:
            relabeled = self.metric_relabel.apply(labels)
            if relabeled is None:
                return None
            labels = relabeled
        labels = {k: v for k, v in labels.items() if v}
        self._check_limits(labels)
        for key, value in self.external_labels.items():
            labels.setdefault(key, value)
        return labels

    def encode(self, labels: Mapping[str, str]) -> EncodedSeries:
        ordered = tuple(sorted(labels.items()))
        pb = b"".join(
            bytes_field(1, bytes_field(1, k.encode()) + bytes_field(2, v.encode()))
            for k, v in ordered
        )
        bucket = zlib.crc32(pb) % self.buckets
        sample_len = 9 + COMMON_TS_LEN
        body_len = len(pb) + 2 + sample_len
        prefix = b"\x0a" + varint(body_len) + pb + b"\x12" + bytes((sample_len,)) + b"\x09"
        return EncodedSeries(pb, bucket, prefix)

    def _check_limits(self, labels: Mapping[str, str]) -> None:
        if self.label_limit and len(labels) > self.label_limit:
            raise LimitExceeded(f"{len(labels)} labels exceed label_limit {self.label_limit}")
        if self.name_length_limit or self.value_length_limit:
            for key, value in labels.items():
                if self.name_length_limit and len(key) > self.name_length_limit:
                    raise LimitExceeded(
                        f"label name {key[:40]!r} longer than "
                        f"label_name_length_limit {self.name_length_limit}"
                    )
                if self.value_length_limit and len(value) > self.value_length_limit:
                    raise LimitExceeded(
                        f"value of label {key!r} longer than "
                        f"label_value_length_limit {self.value_length_limit}"
                    )
