"""The ``relabel`` handler: the pure core applied to a batch, and its counter."""

from __future__ import annotations

from ferryman.prom.relabel import compile_rules
from ferryman.prom.rewrite import Rewriter
from functions._records import UnsupportedRecord
from workers.function import Context
from workers.records import Batch, Delivered, Output, Record

from .config import RelabelTransformConfig
from .core import relabel

__all__ = ["RelabelTransform"]


class RelabelTransform:
    def __init__(self, config: RelabelTransformConfig, context: Context) -> None:
        self.rewriter = Rewriter(compile_rules(config.metric_relabel_configs), config.cache_size)
        self.dropped = context.registry.counter(
            "ferryman_series_dropped_total", "Series dropped by relabeling.", ["function"]
        )
        self.name = context.function

    def start(self) -> None:
        pass

    def handle(self, batch: Batch) -> Delivered:
        outputs: list[Output] = []
        dead: list[tuple[Record, str]] = []
        dropped = 0
        for record in batch:
            try:
                output, count = relabel(self.rewriter, record)
            except UnsupportedRecord as exc:
                dead.append((record, str(exc)))
                continue
            dropped += count
            if output is not None:
                outputs.append(output)
        self.dropped.labels(function=self.name).inc(dropped)
        return Delivered(dead=dead, outputs=outputs)

    def close(self) -> None:
        pass
