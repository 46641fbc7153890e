"""The ``redact`` handler: the pure core applied to a batch, and its counters."""

from __future__ import annotations

from collections import Counter

from functions._log_transform import rewrite_batch
from workers.function import Context
from workers.records import Batch, Delivered

from .config import RedactConfig
from .core import Redactor

__all__ = ["RedactTransform"]


class RedactTransform:
    def __init__(self, config: RedactConfig, context: Context) -> None:
        self.redactor = Redactor(config)
        self.name = context.function
        self.m_redactions = context.registry.counter(
            "ferryman_redactions_total", "Matches masked, by rule.", ["function", "rule"]
        )

    def start(self) -> None:
        pass

    def handle(self, batch: Batch) -> Delivered:
        counts: Counter[str] = Counter()
        delivered = rewrite_batch(batch, lambda streams: self.redactor.streams(streams, counts))
        for rule, count in counts.items():
            self.m_redactions.labels(function=self.name, rule=rule).inc(count)
        return delivered

    def close(self) -> None:
        pass
