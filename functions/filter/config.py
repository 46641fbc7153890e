"""Configuration of the ``filter`` transform, and its label selector syntax."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

__all__ = ["FilterConfig", "Matcher", "parse_selector"]

Op = Literal["=", "!=", "=~", "!~"]
_OPS: dict[str, Op] = {"=": "=", "!=": "!=", "=~": "=~", "!~": "!~"}

_MATCHER = re.compile(
    r"\s*([a-zA-Z_][a-zA-Z0-9_]*)\s*(=~|!~|!=|=)\s*"
    r'"((?:[^"\\]|\\.)*)"\s*(?:,|$)'
)


@dataclass(frozen=True, slots=True)
class Matcher:
    """One label matcher with Prometheus semantics: a missing label is the empty
    string, and regexes are anchored at both ends. Raises re.error for a bad regex."""

    name: str
    op: Op
    value: str
    pattern: re.Pattern[str] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if self.op in ("=~", "!~"):
            object.__setattr__(self, "pattern", re.compile(self.value))

    def matches(self, value: str) -> bool:
        if self.pattern is None:
            return (value == self.value) == (self.op == "=")
        return (self.pattern.fullmatch(value) is not None) == (self.op == "=~")


def parse_selector(text: str) -> tuple[Matcher, ...]:
    """``{app="web", level=~"debug|trace"}`` → matchers; raises ValueError."""
    body = text.strip()
    if not (body.startswith("{") and body.endswith("}")):
        raise ValueError(f'a selector is written {{name="value", ...}}, not {text!r}')
    body = body[1:-1].strip()
    matchers: list[Matcher] = []
    pos = 0
    while pos < len(body):
        match = _MATCHER.match(body, pos)
        if match is None:
            raise ValueError(f"cannot read selector near {body[pos : pos + 30]!r}")
        name, op, quoted = match.groups()
        value = json.loads(f'"{quoted}"') if "\\" in quoted else quoted
        try:
            matchers.append(Matcher(name, _OPS[op], value))
        except re.error as exc:
            raise ValueError(f"invalid regex for {name}: {exc}") from exc
        pos = match.end()
    return tuple(matchers)


class FilterConfig(BaseModel):
    """Keep or drop log entries. An entry *matches* when its stream's labels match every
    matcher of ``selector`` and its line matches ``line_regex`` (each only if set)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    action: Literal["drop", "keep"] = Field(
        "drop",
        description="`drop` (default): matching entries are removed; `keep`: only "
        "matching entries stay.",
    )
    selector: str | None = Field(
        None,
        description='Stream selector, Loki/Prometheus syntax: {app="web", '
        'level!="info", pod=~"web-.*", ns!~"kube-.*"}; regexes are anchored; a missing '
        "label is the empty string. Default: every stream matches.",
    )
    line_regex: str | None = Field(
        None, description="Regex searched (unanchored) in the line. Default: every line matches."
    )

    @field_validator("selector")
    @classmethod
    def _selector(cls, text: str | None) -> str | None:
        if text is not None:
            parse_selector(text)
        return text

    @field_validator("line_regex")
    @classmethod
    def _regex(cls, pattern: str | None) -> str | None:
        if pattern is not None:
            try:
                re.compile(pattern)
            except re.error as exc:
                raise ValueError(f"invalid regex: {exc}") from exc
        return pattern

    @model_validator(mode="after")
    def _something(self) -> FilterConfig:
        if self.selector is None and self.line_regex is None:
            raise ValueError("set a selector, a line_regex or both")
        return self

    @property
    def matchers(self) -> tuple[Matcher, ...]:
        return () if self.selector is None else parse_selector(self.selector)
