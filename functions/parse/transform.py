"""The ``parse`` handler: the pure core applied to a batch, and its counters."""

from __future__ import annotations

from functions._log_transform import rewrite_batch
from workers.function import Context
from workers.records import Batch, Delivered

from .config import ParseConfig
from .core import Parser, Tally

__all__ = ["ParseTransform"]


class ParseTransform:
    def __init__(self, config: ParseConfig, context: Context) -> None:
        self.parser = Parser(config)
        self.name = context.function
        self.m_parsed = context.registry.counter(
            "ferryman_lines_parsed_total", "Log lines parsed into fields.", ["function"]
        )
        self.m_unparsed = context.registry.counter(
            "ferryman_lines_unparsed_total",
            "Log lines that did not parse and passed unchanged.",
            ["function"],
        )
        self.m_limited = context.registry.counter(
            "ferryman_parse_fields_limited_total",
            "Parsed fields dropped or cut by the field limits, by reason.",
            ["function", "reason"],
        )
        self.m_refused = context.registry.counter(
            "ferryman_parse_promotions_refused_total",
            "Field values not made stream labels by the cardinality guard, by reason.",
            ["function", "label", "reason"],
        )

    def start(self) -> None:
        pass

    def handle(self, batch: Batch) -> Delivered:
        tally = Tally()
        delivered = rewrite_batch(batch, lambda streams: self.parser.streams(streams, tally))
        self.m_parsed.labels(function=self.name).inc(tally.parsed)
        self.m_unparsed.labels(function=self.name).inc(tally.unparsed)
        for reason, count in tally.limited.items():
            self.m_limited.labels(function=self.name, reason=reason).inc(count)
        for (label, reason), count in tally.refused.items():
            self.m_refused.labels(function=self.name, label=label, reason=reason).inc(count)
        return delivered

    def close(self) -> None:
        pass
