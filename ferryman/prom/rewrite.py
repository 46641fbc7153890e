"""Relabel a whole remote-write payload: apply rules per series, re-encode.

Used by the ``relabel`` transform and by ``prometheus_remote_write`` when it is
given its own ``metric_relabel_configs``. Series repeat every scrape interval, so
the work is keyed on the raw bytes of a series' labels: a series seen before costs
a scan of its field headers and a dictionary lookup; only a new label set is
decoded, relabeled and encoded. Samples, exemplars and histograms are copied
through as bytes, untouched.
"""

from __future__ import annotations

from dataclasses import dataclass

from ferryman.wire.protobuf import DecodeError, bytes_field, varint, varint_at
from ferryman.wire.remote_write import decode_labels

from .relabel import Relabeler

__all__ = ["RewriteResult", "Rewriter"]


@dataclass(frozen=True, slots=True)
class RewriteResult:
    payload: bytes  # uncompressed WriteRequest; empty when every series was dropped
    series_in: int
    series_out: int


class Rewriter:
    def __init__(self, relabeler: Relabeler, cache_size: int = 100_000) -> None:
        self.relabeler = relabeler
        self.cache_size = cache_size
        self._cache: dict[bytes, bytes | None] = {}

    def _relabel(self, label_fields: bytes) -> bytes | None:
        """Encoded Label fields of the relabeled series, or None when it is dropped."""
        labels = decode_labels(label_fields)
        result = self.relabeler.apply(labels)
        if result is None:
            return None
        return b"".join(
            bytes_field(1, bytes_field(1, k.encode()) + bytes_field(2, v.encode()))
            for k, v in sorted(result.items())
        )

    def rewrite(self, raw: bytes) -> RewriteResult:
        """Relabel an uncompressed WriteRequest; raises DecodeError on bad bytes."""
        try:
            return self._rewrite(raw)
        except IndexError:
            raise DecodeError("truncated WriteRequest") from None

    def _rewrite(self, raw: bytes) -> RewriteResult:
        cache = self._cache
        out: list[bytes] = []
        series_in = series_out = 0
        pos, end = 0, len(raw)
        while pos < end:
            field_start = pos
            key, pos = varint_at(raw, pos)
            if key & 7 != 2:
                raise DecodeError(f"unexpected wire type {key & 7} in WriteRequest")
            length, pos = varint_at(raw, pos)
            stop = pos + length
            if stop > end:
                raise DecodeError("TimeSeries runs past the end")
            if key >> 3 != 1:  # metadata and unknown fields are passed on as they are
                out.append(raw[field_start:stop])
                pos = stop
                continue
            series_in += 1
            labels_end = pos
            while labels_end < stop and raw[labels_end] == 0x0A:  # Label fields come first
                n, after = varint_at(raw, labels_end + 1)
                labels_end = after + n
            if labels_end > stop:
                raise DecodeError("Label runs past its TimeSeries")
            label_fields = raw[pos:labels_end]
            new_labels = cache.get(label_fields, b"")
            if new_labels == b"":
                new_labels = self._relabel(label_fields)
                if len(cache) >= self.cache_size:
                    cache.clear()  # churn beyond the bound: start over rather than grow
                cache[label_fields] = new_labels
            if new_labels is not None:
                body = new_labels + raw[labels_end:stop]
                out.append(b"\x0a" + varint(len(body)) + body)
                series_out += 1
            pos = stop
        return RewriteResult(b"".join(out) if series_out else b"", series_in, series_out)
