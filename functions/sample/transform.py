"""The ``sample`` handler: the pure core applied to a batch, and its counters."""

from __future__ import annotations

from collections import Counter

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from ferryman import headers as h
from ferryman.wire.otlp import span_count
from functions._records import UnsupportedRecord
from functions._traces import decode_traces
from workers.function import Context
from workers.records import Batch, Delivered, Output, Record

from .config import SampleConfig
from .core import Sampler, keep_spans

__all__ = ["SampleTransform"]


class SampleTransform:
    def __init__(self, config: SampleConfig, context: Context) -> None:
        self.sampler = Sampler(config)
        self.name = context.function
        self.m_kept = context.registry.counter(
            "ferryman_spans_kept_total",
            "Spans a sampler kept, by reason (ratio, error, slow, lineage).",
            ["function", "reason"],
        )
        self.m_dropped = context.registry.counter(
            "ferryman_spans_dropped_total",
            "Spans a sampler dropped, by reason.",
            ["function", "reason"],
        )

    def start(self) -> None:
        pass

    def handle(self, batch: Batch) -> Delivered:
        dead: list[tuple[Record, str]] = []
        decoded: list[tuple[Record, ExportTraceServiceRequest]] = []
        for record in batch:
            try:
                decoded.append((record, decode_traces(record)))
            except UnsupportedRecord as exc:
                dead.append((record, str(exc)))
        flagged = self.sampler.flagged(request for _, request in decoded)
        outputs: list[Output] = []
        kept: Counter[str] = Counter()
        dropped = 0
        for record, request in decoded:
            if record.header(h.LINEAGE) is not None:
                # ferryman's own batch lineage, sampled where it was made: kept whole, so
                # that a batch's path stays complete.
                kept["lineage"] += span_count(request)
                outputs.append(Output(record.value, record.key, record.headers))
                continue
            decision = self.sampler.decide(request, flagged)
            kept.update(decision.kept)
            dropped += decision.dropped
            if decision.nothing:
                continue
            value = (
                record.value
                if decision.everything
                else keep_spans(request, decision.keep).SerializeToString()
            )
            outputs.append(Output(value, record.key, record.headers))
        for reason, count in kept.items():
            self.m_kept.labels(function=self.name, reason=reason).inc(count)
        if dropped:
            self.m_dropped.labels(function=self.name, reason="not_sampled").inc(dropped)
        return Delivered(dead=dead, outputs=outputs)

    def close(self) -> None:
        pass
