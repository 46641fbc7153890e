"""Relabel a whole remote-write payload: decode, apply rules per series, encode.

Used by the ``relabel`` transform and by ``prometheus_remote_write`` when it is
given its own ``metric_relabel_configs``. The result of relabeling one label set is
remembered (bounded), since the same series arrive again every scrape interval.
"""

from __future__ import annotations

from dataclasses import dataclass

from ferryman.wire.remote_write import TimeSeries, decode_write_request, encode_write_request

from .relabel import Relabeler

__all__ = ["RewriteResult", "Rewriter"]

_DROPPED = ()


@dataclass(frozen=True, slots=True)
class RewriteResult:
    payload: bytes  # uncompressed WriteRequest; empty when every series was dropped
    series_in: int
    series_out: int


class Rewriter:
    def __init__(self, relabeler: Relabeler, cache_size: int = 100_000) -> None:
        self.relabeler = relabeler
        self.cache_size = cache_size
        self._cache: dict[tuple[tuple[str, str], ...], tuple[tuple[str, str], ...]] = {}

    def labels(self, labels: tuple[tuple[str, str], ...]) -> tuple[tuple[str, str], ...]:
        """The relabeled, sorted label set; empty when the series is dropped."""
        cached = self._cache.get(labels)
        if cached is not None:
            return cached
        result = self.relabeler.apply(dict(labels))
        out = _DROPPED if result is None else tuple(sorted(result.items()))
        if len(self._cache) >= self.cache_size:
            self._cache.clear()  # churn beyond the bound: start over rather than grow
        self._cache[labels] = out
        return out

    def rewrite(self, raw: bytes) -> RewriteResult:
        """Relabel an uncompressed WriteRequest; raises DecodeError on bad bytes."""
        series = decode_write_request(raw)
        kept = []
        for item in series:
            labels = self.labels(item.labels)
            if labels:
                kept.append(TimeSeries(labels, item.samples))
        return RewriteResult(encode_write_request(kept) if kept else b"", len(series), len(kept))
