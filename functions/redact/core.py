"""Pure: masking text with the configured rules, counting matches per rule."""

from __future__ import annotations

import re
from collections import Counter

from ferryman.wire.loki import Entry, Stream

from .config import RedactConfig

__all__ = ["Redactor"]


class Redactor:
    def __init__(self, config: RedactConfig) -> None:
        self.rules = [
            (rule.name, re.compile(rule.regex), rule.replacement) for rule in config.active_rules()
        ]
        self.metadata = config.metadata

    def text(self, text: str, counts: Counter[str]) -> str:
        """``text`` with every rule applied in order; matches are added to ``counts``."""
        for name, pattern, replacement in self.rules:
            text, found = pattern.subn(replacement, text)
            if found:
                counts[name] += found
        return text

    def streams(self, streams: list[Stream], counts: Counter[str]) -> list[Stream]:
        out = []
        for stream in streams:
            entries = []
            for entry in stream.entries:
                line = self.text(entry.line, counts)
                metadata = entry.metadata
                if self.metadata and metadata:
                    metadata = tuple((name, self.text(value, counts)) for name, value in metadata)
                if line is not entry.line or metadata is not entry.metadata:
                    entry = Entry(entry.timestamp_ns, line, metadata)
                entries.append(entry)
            out.append(Stream(stream.labels, entries))
        return out
