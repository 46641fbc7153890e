"""The ``count`` handler: the pure core applied to a batch, and its counters."""

from __future__ import annotations

import time

from ferryman import headers as h
from ferryman.wire.loki import Stream
from ferryman.wire.remote_write import encode_write_request, snappy_compress
from functions._log_transform import each_push
from workers.function import Context
from workers.records import Batch, Delivered, Output, Record

from .config import CountConfig
from .core import LineCounter

__all__ = ["CountTransform"]

#: Replaced (``schema``) or meaningless on a metrics message (``ferryman.lines``).
_NOT_CARRIED = frozenset({h.SCHEMA, h.LINES})


def _now_ms() -> int:
    return time.time_ns() // 1_000_000


class CountTransform:
    def __init__(self, config: CountConfig, context: Context) -> None:
        self.counter = LineCounter(config, _now_ms)
        self.key = self.counter.instance[1].encode()
        self.name = context.function
        self.m_overflow = context.registry.counter(
            "ferryman_count_overflow_lines_total",
            "Lines counted in an overflow series because max_series was reached.",
            ["function"],
        )

    def start(self) -> None:
        pass

    def handle(self, batch: Batch) -> Delivered:
        overflowed = 0

        def make(record: Record, streams: list[Stream]) -> Output | None:
            nonlocal overflowed
            raw_cluster = record.header(h.CLUSTER)
            cluster = raw_cluster.decode("utf-8", "replace") if raw_cluster else ""
            series, folded = self.counter.add(streams, cluster)
            overflowed += folded
            if not series:
                return None
            headers = (
                (h.SCHEMA, h.SCHEMA_REMOTE_WRITE),
                *((k, v) for k, v in record.headers if k not in _NOT_CARRIED),
            )
            return Output(snappy_compress(encode_write_request(series)), self.key, headers)

        delivered = each_push(batch, make)
        self.m_overflow.labels(function=self.name).inc(overflowed)
        return delivered

    def close(self) -> None:
        pass
