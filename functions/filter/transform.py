"""The ``filter`` handler: the pure core applied to a batch, and its counters."""

from __future__ import annotations

from ferryman.wire.loki import Stream
from functions._log_transform import rewrite_batch
from workers.function import Context
from workers.records import Batch, Delivered

from .config import FilterConfig
from .core import EntryFilter

__all__ = ["FilterTransform"]


class FilterTransform:
    def __init__(self, config: FilterConfig, context: Context) -> None:
        self.filter = EntryFilter(config)
        self.name = context.function
        self.m_dropped = context.registry.counter(
            "ferryman_lines_dropped_total", "Log lines dropped, by reason.", ["function", "reason"]
        )

    def start(self) -> None:
        pass

    def handle(self, batch: Batch) -> Delivered:
        dropped = 0

        def rewrite(streams: list[Stream]) -> list[Stream]:
            nonlocal dropped
            kept, count = self.filter.streams(streams)
            dropped += count
            return kept

        delivered = rewrite_batch(batch, rewrite)
        self.m_dropped.labels(function=self.name, reason="filtered").inc(dropped)
        return delivered

    def close(self) -> None:
        pass
