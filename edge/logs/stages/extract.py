"""Stages that read fields out of a line into the extracted map, and the stages
that use them: ``json``, ``logfmt``, ``regex``, ``timestamp``, ``output``."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

from ferryman.logparse import (
    compile_path,
    lookup,
    parse_json,
    parse_logfmt,
    parse_regex,
    scalar_text,
)

from .config import (
    JsonOptions,
    LogfmtOptions,
    OutputOptions,
    RegexOptions,
    TimestampOptions,
    go_regex,
)
from .record import Record, Stage, StageMetrics
from .timestamps import compile_format

__all__ = ["JsonStage", "LogfmtStage", "OutputStage", "RegexStage", "TimestampStage", "source_text"]


def source_text(record: Record, source: str | None) -> str | None:
    """The text a stage reads: the line, or an extracted value as text (None when the
    value is missing)."""
    if source is None:
        return record.line
    value = record.extracted.get(source)
    if value is None:
        return None
    return scalar_text(value)


class JsonStage(Stage):
    name = "json"

    def __init__(self, options: JsonOptions, metrics: StageMetrics) -> None:
        super().__init__(metrics)
        self.source = options.source
        self.drop_malformed = options.drop_malformed
        self.paths = {
            name: compile_path(path or name) for name, path in options.expressions.items()
        }

    def run(self, records: list[Record], now: float) -> list[Record]:
        out = []
        for record in records:
            document = self._document(record)
            if document is None:
                if self.drop_malformed:
                    self.metrics.dropped.labels(reason="malformed_json").inc()
                    continue
            else:
                extracted = record.extracted
                for name, steps in self.paths.items():
                    value = lookup(document, steps)
                    if value is not None:
                        extracted[name] = value
            out.append(record)
        return out

    def _document(self, record: Record) -> Any:
        if self.source is not None and isinstance(record.extracted.get(self.source), dict):
            return record.extracted[self.source]  # already parsed by an earlier stage
        text = source_text(record, self.source)
        if text is None:
            return None  # nothing to parse is not a failure, as in Promtail
        document = parse_json(text)
        if document is None:
            self.failed("unparsable_json")
        return document


class LogfmtStage(Stage):
    name = "logfmt"

    def __init__(self, options: LogfmtOptions, metrics: StageMetrics) -> None:
        super().__init__(metrics)
        self.source = options.source
        self.mapping = {name: key or name for name, key in options.mapping.items()}

    def run(self, records: list[Record], now: float) -> list[Record]:
        for record in records:
            text = source_text(record, self.source)
            if text is None:
                continue
            pairs = parse_logfmt(text)
            if not pairs and text.strip():
                self.failed("unparsable_logfmt")
                continue
            for name, key in self.mapping.items():
                if key in pairs:
                    record.extracted[name] = pairs[key]
        return records


class RegexStage(Stage):
    name = "regex"

    def __init__(self, options: RegexOptions, metrics: StageMetrics) -> None:
        super().__init__(metrics)
        self.source = options.source
        self.pattern = go_regex(options.expression)

    def run(self, records: list[Record], now: float) -> list[Record]:
        for record in records:
            text = source_text(record, self.source)
            if text is None:
                continue
            groups = parse_regex(self.pattern, text)
            if groups is None:
                self.failed("regex_no_match")
                continue
            record.extracted.update(groups)
        return records


class TimestampStage(Stage):
    name = "timestamp"

    def __init__(self, options: TimestampOptions, metrics: StageMetrics) -> None:
        super().__init__(metrics)
        self.source = options.source
        self.parsers = [compile_format(f) for f in (options.format, *options.fallback_formats)]
        self.zone: dt.tzinfo = zoneinfo.ZoneInfo(options.location) if options.location else dt.UTC
        self.fudge = options.action_on_failure == "fudge"
        self.last_ns: int | None = None

    def run(self, records: list[Record], now: float) -> list[Record]:
        for record in records:
            text = source_text(record, self.source)
            if text is None:
                continue
            for parse in self.parsers:
                stamp = parse(text, self.zone)
                if stamp is not None:
                    record.timestamp_ns = self.last_ns = stamp
                    break
            else:
                self.failed("unparsable_timestamp")
                if self.fudge and self.last_ns is not None:
                    self.last_ns += 1
                    record.timestamp_ns = self.last_ns
        return records


class OutputStage(Stage):
    name = "output"

    def __init__(self, options: OutputOptions, metrics: StageMetrics) -> None:
        super().__init__(metrics)
        self.source = options.source

    def run(self, records: list[Record], now: float) -> list[Record]:
        for record in records:
            text = source_text(record, self.source)
            if text is not None:
                record.line = text
        return records
