"""``count``: logs → metrics. A transform from a logs topic to a metrics topic that
counts lines (and, optionally, bytes) by a configured set of labels.

Each input message gives one remote-write message (snappy ``WriteRequest``, header
``schema`` = remote write, the other headers such as ``cluster`` and ``tenant``
carried over) holding the current totals of the series that message touched, stamped
with the wall clock (kept strictly increasing per series). Undecodable messages are
dead-lettered with the reason.

What is and is not guaranteed:

* totals are cumulative per worker process and start at zero when it starts, like
  any Prometheus counter after a restart; ``rate()`` and ``increase()`` handle that;
* every series carries ``instance`` (hostname:pid by default), so two replicas never
  write the same series; sum over it to get the total;
* the output key is that instance, so one replica's messages keep their order on
  one partition and a series never goes back in time;
* replays over-count: a batch handled again (a crash before the commit, a rebalance,
  a DLQ replay) is counted again. The counts are an operational signal, not billing;
* at most ``max_series`` label sets per process; lines of further ones go to an
  ``overflow="true"`` series of their cluster and are counted in
  ``ferryman_count_overflow_lines_total{function}``.
"""

from __future__ import annotations

import time

from pydantic import BaseModel

from ferryman import headers as h
from ferryman.wire.loki import Stream
from ferryman.wire.remote_write import encode_write_request, snappy_compress
from functions.log_transform import each_push
from workers.function import Context, FunctionSpec
from workers.records import Batch, Delivered, Output, Record

from .config import CountConfig
from .core import LineCounter

__all__ = ["SPEC"]


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
            ["function"])

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
            headers = ((h.SCHEMA, h.SCHEMA_REMOTE_WRITE),
                       *((k, v) for k, v in record.headers if k != h.SCHEMA))
            return Output(snappy_compress(encode_write_request(series)), self.key, headers)

        delivered = each_push(batch, make)
        self.m_overflow.inc(overflowed, self.name)
        return delivered

    def close(self) -> None:
        pass


def _create(config: BaseModel, context: Context) -> CountTransform:
    assert isinstance(config, CountConfig)
    return CountTransform(config, context)


SPEC = FunctionSpec(
    name="count",
    kind="transform",
    summary="Count log lines (and bytes) by labels into counters: logs topic in, "
            "metrics topic out (remote write).",
    config_model=CountConfig,
    create=_create,
    example="""\
metric: ferryman_log_lines_total
bytes_metric: ferryman_log_bytes_total
by: [namespace, app, level]
from_metadata: true
instance_label: instance
instance: null
max_series: 10000
""",
)
