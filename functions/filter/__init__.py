"""``filter``: a transform from one logs topic to another that keeps or drops entries by
their stream's labels (a Loki/Prometheus selector) and/or their line (a regex).

Each message gives at most one message (same key and headers): none when every entry
was dropped. Undecodable messages are dead-lettered with the reason. Counter:
``ferryman_lines_dropped_total{function,reason="filtered"}``.
"""

from __future__ import annotations

from pydantic import BaseModel

from ferryman.wire.loki import Stream
from functions.log_transform import rewrite_batch
from workers.function import Context, FunctionSpec
from workers.records import Batch, Delivered

from .config import FilterConfig
from .core import EntryFilter

__all__ = ["SPEC"]


class FilterTransform:
    def __init__(self, config: FilterConfig, context: Context) -> None:
        self.filter = EntryFilter(config)
        self.name = context.function
        self.m_dropped = context.registry.counter(
            "ferryman_lines_dropped_total", "Log lines dropped, by reason.",
            ["function", "reason"])

    def handle(self, batch: Batch) -> Delivered:
        dropped = 0

        def rewrite(streams: list[Stream]) -> list[Stream]:
            nonlocal dropped
            kept, count = self.filter.streams(streams)
            dropped += count
            return kept

        delivered = rewrite_batch(batch, rewrite)
        self.m_dropped.inc(dropped, self.name, "filtered")
        return delivered

    def close(self) -> None:
        pass


def _create(config: BaseModel, context: Context) -> FilterTransform:
    assert isinstance(config, FilterConfig)
    return FilterTransform(config, context)


SPEC = FunctionSpec(
    name="filter",
    kind="transform",
    summary="Keep or drop log entries by label selector and line regex: logs topic in, "
            "logs topic out.",
    config_model=FilterConfig,
    create=_create,
    example="""\
action: drop
selector: '{namespace=~"kube-.*|monitoring", app!="ingress"}'
line_regex: 'GET /(healthz|readyz)'
""",
)
