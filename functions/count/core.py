"""Pure: log streams → cumulative counter series, per worker process."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ferryman.wire.loki import Entry, Stream
from ferryman.wire.remote_write import Sample, TimeSeries

from .config import CountConfig

__all__ = ["LineCounter"]

Key = tuple[str, ...]
"""cluster, then the values of ``by`` in order; () + cluster for the overflow series."""


@dataclass(slots=True)
class _Totals:
    lines: int = 0
    bytes: int = 0
    last_ms: int = 0


class LineCounter:
    """Totals since this process started, one per label set (bounded by
    ``max_series``). ``now_ms`` is the clock (injected in tests)."""

    def __init__(self, config: CountConfig, now_ms: Callable[[], int]) -> None:
        self.config = config
        self.by = config.by
        self.instance = (config.instance_label, config.instance_value())
        self.now_ms = now_ms
        self.totals: dict[Key, _Totals] = {}
        self.overflow: dict[str, _Totals] = {}

    def add(self, streams: list[Stream], header_cluster: str) -> tuple[list[TimeSeries], int]:
        """Count the lines of one message; returns the series it touched, with their
        new totals, and how many lines went to an overflow series."""
        touched: dict[Key, _Totals] = {}
        touched_overflow: dict[str, _Totals] = {}
        overflowed = 0
        lookup_metadata = self.config.from_metadata
        for stream in streams:
            labels = stream.labels
            cluster = labels.get("cluster") or header_cluster
            per_entry = lookup_metadata and any(name not in labels for name in self.by)
            fixed: Key = (cluster, *(labels.get(name, "") for name in self.by))
            for entry in stream.entries:
                key = self._key(cluster, labels, entry) if per_entry else fixed
                totals = self.totals.get(key)
                if totals is None:
                    if len(self.totals) < self.config.max_series:
                        totals = self.totals[key] = _Totals()
                    else:
                        overflowed += 1
                        totals = self.overflow.setdefault(cluster, _Totals())
                        touched_overflow[cluster] = totals
                        self._count(totals, entry)
                        continue
                touched[key] = totals
                self._count(totals, entry)
        series = [
            s for key, totals in touched.items() for s in self._series(self._labels(key), totals)
        ]
        series += [
            s
            for cluster, totals in touched_overflow.items()
            for s in self._series({"cluster": cluster, "overflow": "true"}, totals)
        ]
        return series, overflowed

    def _key(self, cluster: str, labels: Mapping[str, str], entry: Entry) -> Key:
        metadata = dict(entry.metadata)
        return (cluster, *(labels.get(name) or metadata.get(name, "") for name in self.by))

    @staticmethod
    def _count(totals: _Totals, entry: Entry) -> None:
        totals.lines += 1
        totals.bytes += len(entry.line) if entry.line.isascii() else len(entry.line.encode())

    def _labels(self, key: Key) -> dict[str, str]:
        return {"cluster": key[0], **dict(zip(self.by, key[1:], strict=True))}

    def _series(self, labels: dict[str, str], totals: _Totals) -> list[TimeSeries]:
        # A series' samples must move forward in time, even within one millisecond.
        stamp = max(self.now_ms(), totals.last_ms + 1)
        totals.last_ms = stamp
        base = {name: value for name, value in labels.items() if value}
        base[self.instance[0]] = self.instance[1]
        out = [_one(self.config.metric, base, totals.lines, stamp)]
        if self.config.bytes_metric is not None:
            out.append(_one(self.config.bytes_metric, base, totals.bytes, stamp))
        return out


def _one(metric: str, labels: dict[str, str], value: int, stamp: int) -> TimeSeries:
    return TimeSeries(
        tuple(sorted({**labels, "__name__": metric}.items())), (Sample(float(value), stamp),)
    )
