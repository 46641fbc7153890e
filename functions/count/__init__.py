"""``count``: logs → metrics. A transform from a logs topic to a metrics topic that
counts lines (and, optionally, bytes) by a configured set of labels.

Each input message gives one remote-write message (snappy ``WriteRequest``, header
``schema`` = remote write, the other headers such as ``cluster`` and ``tenant``
carried over, ``ferryman.lines`` left behind) holding the current totals of the
series that message touched, stamped with the wall clock (kept strictly increasing
per series). Undecodable messages are dead-lettered with the reason.

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

from workers.function import FunctionSpec

from .config import CountConfig
from .transform import CountTransform

__all__ = ["SPEC"]

SPEC = FunctionSpec(
    name="count",
    kind="transform",
    summary="Count log lines (and bytes) by labels into counters: logs topic in, "
    "metrics topic out (remote write).",
    config_model=CountConfig,
    create=CountTransform,
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
