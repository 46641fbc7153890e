"""``prometheus_remote_write``: Kafka → Prometheus / Cortex / Mimir / Thanos / VictoriaMetrics.

One request per record. What the handler guarantees when it returns:

* a record not listed as dead or retry was stored (2xx), or held no series (after
  relabeling, if configured);
* a record that is not a remote-write message, or holds a series Prometheus would
  refuse (an invalid or duplicate label name, labels out of order, no ``__name__``,
  invalid UTF-8: see :class:`.encode.LabelCheck`), is dead-lettered with the reason and
  never sent;
* a 4xx answer dead-letters the record; on 429/5xx or when the receiver is unreachable,
  that record and every later one are handed back for retry (with Retry-After, if any).
"""

from __future__ import annotations

from workers.function import FunctionSpec

from .config import RemoteWriteConfig
from .sink import RemoteWriteSink

__all__ = ["SPEC"]

SPEC = FunctionSpec(
    name="prometheus_remote_write",
    kind="sink",
    summary="Remote-write metrics to Prometheus, Cortex, Mimir, Thanos or VictoriaMetrics.",
    config_model=RemoteWriteConfig,
    create=RemoteWriteSink,
    example="""\
url: http://127.0.0.1:9090/api/v1/write
tenant: null
tenant_from_header: true
timeout_s: 30
""",
)
