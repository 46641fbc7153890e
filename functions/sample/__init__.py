"""``sample``: a transform from one traces topic to another that keeps a fixed share of
traces, decided by trace id, plus every trace with an error span or a slow span.

The decision is OpenTelemetry's consistent probability sampling (see :mod:`.core`): a
pure function of the trace id and ``ratio``, the same on every replica and at every
retry, so a trace cut into several messages, or spread over batches, is kept or dropped
whole. Within a batch, a trace with a span whose status is ERROR (``keep_errors``) or
longer than ``keep_slower_than_s`` is kept whatever its id.

Each message gives at most one message (same key and headers: schema, cluster, tenant,
traceparent): the original bytes when every span stays, the request cut down to the
kept spans when some do, none when none does. Messages of ferryman's own batch lineage
(header ``ferryman.lineage``) pass whole. Undecodable messages are dead-lettered with the
reason. Counters: ``ferryman_spans_kept_total{function,reason}`` (``ratio``, ``error``,
``slow``, ``lineage``) and ``ferryman_spans_dropped_total{function,reason="not_sampled"}``.
"""

from __future__ import annotations

from workers.function import FunctionSpec

from .config import SampleConfig
from .transform import SampleTransform

__all__ = ["SPEC"]

SPEC = FunctionSpec(
    name="sample",
    kind="transform",
    summary="Consistent probabilistic sampling by trace id, keeping error and slow traces: "
    "traces topic in, traces topic out.",
    config_model=SampleConfig,
    create=SampleTransform,
    example="""\
ratio: 0.1
keep_errors: true
keep_slower_than_s: 2.0
""",
)
