"""Pure: one line → its fields, and a stream → streams with fields as structured
metadata (and promoted labels, and the output field as the line)."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from ferryman.logparse import (
    compile_path,
    lookup,
    parse_json,
    parse_logfmt,
    parse_regex,
    scalar_text,
)
from ferryman.wire.loki import Entry, Stream

from .config import ParseConfig

__all__ = ["Parser", "Tally", "sanitize"]

_INVALID = re.compile(r"[^a-zA-Z0-9_]")
Labels = tuple[tuple[str, str], ...]


def sanitize(name: str) -> str:
    """``name`` as a valid label name: other characters become ``_``; a leading
    digit (or an empty name) gets a ``_`` in front."""
    name = _INVALID.sub("_", name)
    return name if name and not name[0].isdigit() else "_" + name


@dataclass(slots=True)
class Tally:
    """What happened to the lines of one batch; counted by the transform."""

    parsed: int = 0
    unparsed: int = 0
    refused: Counter[tuple[str, str]] = field(default_factory=Counter)
    limited: Counter[str] = field(default_factory=Counter)


class Parser:
    """Applies one :class:`ParseConfig`; remembers the values each promoted label has
    taken (the cardinality guard is per worker process)."""

    def __init__(self, config: ParseConfig) -> None:
        self.config = config
        self._read = self._reader(config)
        self._keep = None if config.keep is None else frozenset(config.keep)
        self._promote = config.promote
        self._seen: dict[str, set[str]] = {name: set() for name in config.promote}

    @staticmethod
    def _reader(config: ParseConfig) -> Callable[[str], dict[str, str] | None]:
        if config.format == "logfmt":
            return lambda line: parse_logfmt(line) or None
        if config.format == "regex":
            assert config.regex is not None
            pattern = re.compile(config.regex)
            return lambda line: parse_regex(pattern, line)
        paths = {name: compile_path(path) for name, path in config.json_paths.items()}

        def read_json(line: str) -> dict[str, str] | None:
            document = parse_json(line)
            if document is None:
                return None
            out = {
                name: scalar_text(value) for name, value in document.items() if value is not None
            }
            for name, steps in paths.items():
                value = lookup(document, steps)
                if value is not None:
                    out[name] = scalar_text(value)
            return out

        return read_json

    def fields(self, line: str) -> dict[str, str] | None:
        """The fields of ``line`` (names sanitized if configured), or None when it does
        not parse."""
        found = self._read(line)
        if found is None:
            return None
        if self.config.sanitize_names:
            return {sanitize(name): value for name, value in found.items()}
        return found

    def streams(self, streams: list[Stream], tally: Tally) -> list[Stream]:
        """``streams`` with every parsed line's fields in its metadata; promoted labels
        split a stream into one stream per label set, in order of first sight."""
        out: list[Stream] = []
        for stream in streams:
            split: dict[Labels, list[Entry]] = {}
            base = dict(stream.labels)
            for entry in stream.entries:
                found = self.fields(entry.line)
                if found is None:
                    tally.unparsed += 1
                    split.setdefault((), []).append(entry)
                    continue
                tally.parsed += 1
                extra, entry = self._entry(entry, found, base, tally)
                split.setdefault(extra, []).append(entry)
            for extra, entries in split.items():
                out.append(Stream({**base, **dict(extra)} if extra else stream.labels, entries))
        return out

    def _entry(
        self, entry: Entry, found: dict[str, str], labels: Mapping[str, str], tally: Tally
    ) -> tuple[Labels, Entry]:
        line = entry.line
        if self.config.output is not None and self.config.output in found:
            line = found.pop(self.config.output)
        promoted: list[tuple[str, str]] = []
        for name in self._promote:
            value = found.get(name)
            if not value or name in labels:
                continue
            reason = self._refusal(name, value)
            if reason is not None:
                tally.refused[(name, reason)] += 1
                continue
            promoted.append((name, found.pop(name)))
        keep = self._keep
        parsed = {name: value for name, value in found.items() if keep is None or name in keep}
        if len(parsed) > self.config.max_fields:
            tally.limited["too_many_fields"] += len(parsed) - self.config.max_fields
            parsed = dict(list(parsed.items())[: self.config.max_fields])
        longest = self.config.max_value_length
        for name, value in parsed.items():
            if len(value) > longest:
                tally.limited["value_too_long"] += 1
                parsed[name] = value[:longest]
        metadata = {name: value for name, value in entry.metadata if name not in parsed}
        metadata.update(parsed)
        return tuple(promoted), Entry(entry.timestamp_ns, line, tuple(metadata.items()))

    def _refusal(self, name: str, value: str) -> str | None:
        if len(value) > self.config.max_label_value_length:
            return "value_too_long"
        seen = self._seen[name]
        if value not in seen:
            if len(seen) >= self.config.max_values_per_label:
                return "too_many_values"
            seen.add(value)
        return None
