"""Configuration of the ``parse`` transform."""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ferryman.logparse import PathError, compile_path

__all__ = ["LABEL_NAME", "ParseConfig"]

#: What Loki and Prometheus accept as a label name.
LABEL_NAME = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")


class ParseConfig(BaseModel):
    """Parse every line into fields carried as the entry's structured metadata, and
    optionally promote a few of them to stream labels or make one of them the line."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    format: Literal["json", "logfmt", "regex"] = Field(
        description="How lines are read: a JSON object (top-level keys; nested values "
        "as compact JSON text), logfmt, or `regex` with named groups."
    )
    regex: str | None = Field(
        None,
        description="Pattern with named groups, searched in "
        "the line (required for, and only for, format regex).",
    )
    json_paths: dict[str, str] = Field(
        default_factory=dict,
        description="Format json only: extra fields taken by path "
        "expression, name → path (e.g. `user_id: user.id`, `first: items[0]`). Default none.",
    )
    keep: tuple[str, ...] | None = Field(
        None, description="Names of the fields kept (after `json_paths`); default: all."
    )
    promote: tuple[str, ...] = Field(
        (),
        max_length=8,
        description="Fields made stream labels (at most 8; default none). "
        "A value over `max_label_value_length`, or a new value once a label already has "
        "`max_values_per_label` values, is not promoted (it stays in the metadata) and "
        "is counted in ferryman_parse_promotions_refused_total{function,label,reason}. A "
        "label the stream already has is never overwritten.",
    )
    max_fields: int = Field(
        64,
        ge=1,
        description="Parsed fields kept per line at most, "
        "in line order (default 64; Loki refuses more than 128 "
        "metadata entries); the rest are dropped and counted in "
        'ferryman_parse_fields_limited_total{reason="too_many_fields"}.',
    )
    max_value_length: int = Field(
        2048,
        ge=1,
        description="Longest field value in "
        "characters (default 2048); longer ones are cut and "
        "counted (reason value_too_long).",
    )
    max_label_value_length: int = Field(
        64, ge=1, description="Longest promoted value, in characters (default 64)."
    )
    max_values_per_label: int = Field(
        100,
        ge=1,
        description="Distinct values one promoted "
        "label takes per worker process at most (default 100).",
    )
    output: str | None = Field(
        None,
        description="Replace the line with this field's value "
        "(the field then leaves the metadata); lines without the "
        "field keep their text. Default: keep the line.",
    )
    sanitize_names: bool = Field(
        True,
        description="Make field names valid label names "
        "(other characters become `_`, a leading digit gets `_`), "
        "as Loki wants for structured metadata (default true).",
    )

    @field_validator("regex")
    @classmethod
    def _compiles(cls, pattern: str | None) -> str | None:
        if pattern is None:
            return None
        try:
            compiled = re.compile(pattern)
        except re.error as exc:
            raise ValueError(f"invalid regex: {exc}") from exc
        if not compiled.groupindex:
            raise ValueError("regex has no named groups (?P<name>...)")
        return pattern

    @field_validator("json_paths")
    @classmethod
    def _paths(cls, paths: dict[str, str]) -> dict[str, str]:
        for name, path in paths.items():
            try:
                compile_path(path)
            except PathError as exc:
                raise ValueError(f"{name}: {exc}") from exc
        return paths

    @field_validator("promote")
    @classmethod
    def _label_names(cls, names: tuple[str, ...]) -> tuple[str, ...]:
        for name in names:
            if not LABEL_NAME.fullmatch(name) or name.startswith("__"):
                raise ValueError(f"{name!r} is not a valid label name")
        if len(set(names)) != len(names):
            raise ValueError("promote lists a field twice")
        return names

    @model_validator(mode="after")
    def _consistent(self) -> ParseConfig:
        if (self.format == "regex") != (self.regex is not None):
            raise ValueError("regex is required for format regex and only there")
        if self.json_paths and self.format != "json":
            raise ValueError("json_paths needs format json")
        if self.output is not None and self.output in self.promote:
            raise ValueError("a field cannot be both the output line and a label")
        return self
