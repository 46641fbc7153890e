"""Parsers for one log line, shared by the edge pipeline stages and the ``parse``
transform: logfmt, JSON with simple path expressions, and named-group regexes.

None of them raises on bad input: a line that does not parse gives ``None`` (JSON,
regex) or the pairs that could be read (logfmt), so callers count and move on.
"""

from __future__ import annotations

import json
import re
from typing import Any

__all__ = [
    "PathError",
    "compile_path",
    "lookup",
    "parse_json",
    "parse_logfmt",
    "parse_regex",
    "scalar_text",
]


def parse_logfmt(line: str) -> dict[str, str]:
    """``key=value key2="quoted \\"value\\"" flag`` → mapping. A bare key gets ``""``;
    a later duplicate wins; stray characters are skipped, never fatal."""
    out: dict[str, str] = {}
    i, n = 0, len(line)
    while i < n:
        while i < n and line[i] in " \t":
            i += 1
        start = i
        while i < n and line[i] not in " \t=":
            i += 1
        key = line[start:i]
        if i < n and line[i] == "=":
            i += 1
            if i < n and line[i] == '"':
                value, i = _quoted(line, i + 1)
            else:
                start = i
                while i < n and line[i] not in " \t":
                    i += 1
                value = line[start:i]
        else:
            value = ""
        if key and '"' not in key:
            out[key] = value
        elif i == start:
            i += 1  # a lone '=' or quote: step over it
    return out


def _quoted(line: str, i: int) -> tuple[str, int]:
    chars: list[str] = []
    n = len(line)
    while i < n:
        c = line[i]
        if c == "\\" and i + 1 < n:
            nxt = line[i + 1]
            chars.append({"n": "\n", "t": "\t", "r": "\r"}.get(nxt, nxt))
            i += 2
            continue
        if c == '"':
            return "".join(chars), i + 1
        chars.append(c)
        i += 1
    return "".join(chars), i  # unterminated: take the rest


def parse_json(line: str) -> dict[str, Any] | None:
    """The line as a JSON object, or None when it is not one."""
    try:
        value = json.loads(line)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


class PathError(ValueError):
    """Raised when a JSON path expression cannot be compiled."""


_STEP = re.compile(
    r"\.?([A-Za-z_@$][\w@$-]*)|\[(\d+)\]"
    r'|\["((?:[^"\\]|\\.)*)"\]|\.?"((?:[^"\\]|\\.)*)"'
)


def compile_path(expression: str) -> tuple[str | int, ...]:
    """A path like ``a.b[0]."x-y"`` or ``a["k.with.dots"]`` → its steps (the subset
    of JMESPath that Promtail configurations use for field extraction)."""
    steps: list[str | int] = []
    pos = 0
    while pos < len(expression):
        match = _STEP.match(expression, pos)
        if match is None or match.end() == pos:
            raise PathError(f"cannot read path {expression!r} at position {pos}")
        name, index, bracketed, quoted = match.groups()
        if index is not None:
            steps.append(int(index))
        else:
            text = name if name is not None else (bracketed if bracketed is not None else quoted)
            steps.append(json.loads(f'"{text}"') if "\\" in text else text)
        pos = match.end()
    if not steps:
        raise PathError("empty path")
    return tuple(steps)


def lookup(document: Any, steps: tuple[str | int, ...]) -> Any:
    """Follow ``steps`` into a parsed JSON document; None when any step is missing."""
    for step in steps:
        if isinstance(step, int):
            if not isinstance(document, list) or step >= len(document):
                return None
        elif not isinstance(document, dict) or step not in document:
            return None
        document = document[step]
    return document


def scalar_text(value: Any) -> str:
    """A JSON value as label/field text: strings as they are, others as JSON."""
    if isinstance(value, str):
        return value
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def parse_regex(pattern: re.Pattern[str], line: str) -> dict[str, str] | None:
    """Named groups of the first match (groups that did not take part are left out),
    or None when the pattern does not match."""
    match = pattern.search(line)
    if match is None:
        return None
    return {k: v for k, v in match.groupdict().items() if v is not None}
