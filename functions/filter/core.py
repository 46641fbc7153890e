"""Pure: which entries of a stream stay."""

from __future__ import annotations

import re

from ferryman.wire.loki import Stream

from .config import FilterConfig

__all__ = ["EntryFilter"]


class EntryFilter:
    def __init__(self, config: FilterConfig) -> None:
        self.matchers = config.matchers
        self.line = None if config.line_regex is None else re.compile(config.line_regex)
        self.keep = config.action == "keep"

    def streams(self, streams: list[Stream]) -> tuple[list[Stream], int]:
        """The streams with only the entries that stay, and how many were dropped."""
        out: list[Stream] = []
        dropped = 0
        for stream in streams:
            labels = stream.labels
            selected = all(m.matches(labels.get(m.name, "")) for m in self.matchers)
            if self.line is None or not selected:
                if selected == self.keep:
                    out.append(stream)
                else:
                    dropped += len(stream.entries)
                continue
            search = self.line.search
            entries = [e for e in stream.entries if (search(e.line) is not None) == self.keep]
            dropped += len(stream.entries) - len(entries)
            if entries:
                out.append(Stream(labels, entries))
        return out, dropped
