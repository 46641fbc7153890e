"""Stages that change a record's label set: ``labels``, ``static_labels``,
``labeldrop``, ``labelallow``; and ``drop``, which removes whole records."""

from __future__ import annotations

import time

from ferryman.logparse import scalar_text

from .config import DropOptions, LabelsOptions, StaticLabelsOptions, go_regex
from .record import Record, Stage, StageMetrics

__all__ = ["DropStage", "LabelAllowStage", "LabelDropStage", "LabelsStage", "StaticLabelsStage"]


class LabelsStage(Stage):
    """Promote extracted values to labels; a missing or empty value leaves the label
    alone (Loki takes an empty label for no label)."""

    name = "labels"

    def __init__(self, options: LabelsOptions, metrics: StageMetrics) -> None:
        super().__init__(metrics)
        self.mapping = options.mapping()

    def run(self, records: list[Record], now: float) -> list[Record]:
        for record in records:
            added = {}
            for label, key in self.mapping.items():
                value = record.extracted.get(key)
                if value is not None and (text := scalar_text(value)):
                    added[label] = text
            if added:
                record.labels = {**record.labels, **added}
        return records


class StaticLabelsStage(Stage):
    name = "static_labels"

    def __init__(self, options: StaticLabelsOptions, metrics: StageMetrics) -> None:
        super().__init__(metrics)
        mapping = options.mapping()
        self.set = {k: v for k, v in mapping.items() if v}
        self.remove = {k for k, v in mapping.items() if not v}

    def run(self, records: list[Record], now: float) -> list[Record]:
        for record in records:
            labels = {**record.labels, **self.set}
            for name in self.remove:
                labels.pop(name, None)
            record.labels = labels
        return records


class LabelDropStage(Stage):
    name = "labeldrop"

    def __init__(self, names: tuple[str, ...], metrics: StageMetrics) -> None:
        super().__init__(metrics)
        self.names = frozenset(names)

    def run(self, records: list[Record], now: float) -> list[Record]:
        for record in records:
            if not self.names.isdisjoint(record.labels):
                record.labels = {k: v for k, v in record.labels.items() if k not in self.names}
        return records


class LabelAllowStage(LabelDropStage):
    name = "labelallow"

    def run(self, records: list[Record], now: float) -> list[Record]:
        for record in records:
            if not self.names.issuperset(record.labels):
                record.labels = {k: v for k, v in record.labels.items() if k in self.names}
        return records


class DropStage(Stage):
    """Drop a record when every condition that is set holds (Promtail's rule)."""

    name = "drop"

    def __init__(self, options: DropOptions, metrics: StageMetrics) -> None:
        super().__init__(metrics)
        source = options.source
        self.sources = (source,) if isinstance(source, str) else source
        self.separator = options.separator
        self.value = options.value
        self.pattern = go_regex(options.expression) if options.expression else None
        self.older_than_ns = (
            int(options.older_than * 1e9) if options.older_than is not None else None
        )
        self.longer_than = options.longer_than
        self.reason = options.drop_counter_reason

    def run(self, records: list[Record], now: float) -> list[Record]:
        if not records:
            return records
        cutoff = time.time_ns() - self.older_than_ns if self.older_than_ns is not None else None
        kept = [record for record in records if not self._drops(record, cutoff)]
        if len(kept) != len(records):
            self.metrics.dropped.labels(reason=self.reason).inc(len(records) - len(kept))
        return kept

    def _drops(self, record: Record, cutoff: int | None) -> bool:
        if self.longer_than is not None and len(record.line.encode()) <= self.longer_than:
            return False
        if cutoff is not None and record.timestamp_ns >= cutoff:
            return False
        if self.sources is None:
            return self.pattern is None or self.pattern.search(record.line) is not None
        values = [record.extracted.get(source) for source in self.sources]
        if any(value is None for value in values):
            return False
        text = self.separator.join(scalar_text(value) for value in values)
        if self.value is not None:
            return text == self.value
        return self.pattern is None or self.pattern.search(text) is not None
