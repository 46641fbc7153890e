"""``pipeline_stages``: Promtail's syntax, a list of one-key mappings::

    pipeline_stages:
      - cri: {}
      - json: {expressions: {level: "", msg: payload.message}}
      - labels: {level: ""}

Every stage's options are a frozen model that rejects unknown keys, so a typo is
reported with its dotted path (``scrape_configs.0.pipeline_stages.1.json.expresions``)
at start-up, alongside every other problem in the file.
"""

from __future__ import annotations

import re
import zoneinfo
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from ferryman.logparse import PathError, compile_path
from ferryman.prom.relabel import is_valid_label_name
from ferryman.units import Duration, Size

from .timestamps import compile_format

__all__ = ["STAGE_NAMES", "StageConfig", "go_regex", "stage_options"]


class _Options(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


_NAMED_GROUP = re.compile(r"\(\?<(?![=!])")


def go_regex(expression: str) -> re.Pattern[str]:
    """Compile a Promtail (RE2) regex with Python's ``re``; RE2's ``(?<name>...)`` is
    accepted as well as ``(?P<name>...)``."""
    return re.compile(_NAMED_GROUP.sub("(?P<", expression))


def _check_regex(value: str) -> str:
    try:
        go_regex(value)
    except re.error as exc:
        raise ValueError(f"invalid regex {value!r}: {exc}") from None
    return value


def _same_name(mapping: dict[str, str | None]) -> dict[str, str]:
    """Promtail's shorthand: an empty value means "the same name as the key"."""
    return {key: value or key for key, value in mapping.items()}


def _check_label_names(names: list[str] | dict[str, Any]) -> None:
    bad = [name for name in names if not is_valid_label_name(name)]
    if bad:
        raise ValueError(f"invalid label names: {', '.join(bad)}")


class CriOptions(_Options):
    max_partial_lines: int = Field(
        100,
        ge=1,
        description="Join at most this many partial "
        "(P) lines; then the joined part is shipped and the rest "
        "continues as a new line. Default 100.",
    )
    max_partial_line_size: Size | None = Field(
        None,
        ge=1,
        description="Join up to this many "
        "characters, the same way. Default: the shipper's "
        "max_line_bytes.",
    )
    max_partial_wait_time: Duration = Field(
        5.0,
        gt=0,
        description="Ship a partial line as "
        "it is when its next piece has not come this "
        "long after the last one. Default 5s.",
    )


class DockerOptions(CriOptions):
    """Docker has no options in Promtail; the partial-line bounds are ferryman's."""


class JsonOptions(_Options):
    expressions: dict[str, str | None] = Field(
        description="Extracted name → path into the JSON (empty: the same name)."
    )
    source: str | None = Field(None, description="Extracted value to parse; default the line.")
    drop_malformed: bool = Field(False, description="Drop lines that are not a JSON object.")

    @field_validator("expressions")
    @classmethod
    def _paths(cls, value: dict[str, str | None]) -> dict[str, str | None]:
        problems = []
        for name, path in _same_name(value).items():
            try:
                compile_path(path)
            except PathError as exc:
                problems.append(f"{name}: {exc}")
        if problems:
            raise ValueError("; ".join(problems))
        return value


class LogfmtOptions(_Options):
    mapping: dict[str, str | None] = Field(
        description="Extracted name → logfmt key (empty: the same name)."
    )
    source: str | None = Field(None, description="Extracted value to parse; default the line.")


class RegexOptions(_Options):
    expression: str = Field(description="Regex whose named groups are extracted.")
    source: str | None = Field(None, description="Extracted value to match; default the line.")

    @field_validator("expression")
    @classmethod
    def _compiles(cls, value: str) -> str:
        _check_regex(value)
        if not go_regex(value).groupindex:
            raise ValueError("the expression has no named capture group")
        return value


class LabelsOptions(_Options):
    model_config = ConfigDict(frozen=True, extra="allow")
    # The options *are* the mapping: label name → extracted name (empty: the same).

    @model_validator(mode="after")
    def _names(self) -> LabelsOptions:
        extra = self.model_extra or {}
        _check_label_names(extra)
        if any(isinstance(v, dict | list) for v in extra.values()):
            raise ValueError("values must be plain strings")
        return self

    def mapping(self) -> dict[str, str]:
        """Label name → extracted name."""
        return {
            k: str(v) if v not in (None, "") else k for k, v in (self.model_extra or {}).items()
        }


class StaticLabelsOptions(LabelsOptions):
    def mapping(self) -> dict[str, str]:
        """Label name → value (an empty value removes the label)."""
        return {k: "" if v is None else str(v) for k, v in (self.model_extra or {}).items()}


class TimestampOptions(_Options):
    source: str = Field(description="Extracted name holding the time.")
    format: str = Field(
        description="RFC3339, RFC3339Nano, Unix, UnixMs, UnixUs, UnixNs, a "
        "Go layout name (RFC1123, Kitchen, ...) or a Go reference layout "
        "such as 2006-01-02 15:04:05.000."
    )
    fallback_formats: tuple[str, ...] = Field(
        (), description="Tried in order when format does not parse."
    )
    location: str | None = Field(
        None, description="IANA zone for times without an offset; default UTC."
    )
    action_on_failure: Literal["fudge", "skip"] = Field(
        "fudge",
        description="fudge (default): the stream's last timestamp + 1 ns; skip: "
        "keep the time the line was read.",
    )

    @field_validator("format", "fallback_formats")
    @classmethod
    def _layouts(cls, value: Any) -> Any:
        for layout in (value,) if isinstance(value, str) else value:
            compile_format(layout)
        return value

    @field_validator("location")
    @classmethod
    def _zone(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                zoneinfo.ZoneInfo(value)
            except (zoneinfo.ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {value!r}") from None
        return value


class DropOptions(_Options):
    source: str | tuple[str, ...] | None = Field(
        None, description="Extracted name(s) to test; several are joined with separator."
    )
    separator: str = Field(";", description="Joins the values of several sources.")
    value: str | None = Field(None, description="Drop when the source equals this.")
    expression: str | None = Field(
        None, description="Drop when this regex matches the source (or the line, without source)."
    )
    older_than: Duration | None = Field(None, description="Drop entries older than this.")
    longer_than: Size | None = Field(None, description="Drop lines longer than this many bytes.")
    drop_counter_reason: str = Field(
        "drop_stage", description="reason label of ferryman_lines_dropped_total."
    )

    @field_validator("expression")
    @classmethod
    def _expression(cls, value: str | None) -> str | None:
        return value if value is None else _check_regex(value)

    @model_validator(mode="after")
    def _conditions(self) -> DropOptions:
        if self.value is not None and self.expression is not None:
            raise ValueError("value and expression cannot both be set")
        if self.value is not None and self.source is None:
            raise ValueError("value needs a source")
        if (
            self.source is None
            and self.expression is None
            and self.older_than is None
            and self.longer_than is None
        ):
            raise ValueError("set at least one of source, expression, older_than, longer_than")
        return self


class MultilineOptions(_Options):
    firstline: str = Field(description="Regex matching the first line of a record.")
    max_wait_time: Duration = Field(
        3.0,
        gt=0,
        description="Ship a record this long after its "
        "last line arrived, even if no new first line came. "
        "Default 3s.",
    )
    max_lines: int = Field(128, ge=1, description="Ship a record at this many lines. Default 128.")

    @field_validator("firstline")
    @classmethod
    def _firstline(cls, value: str) -> str:
        return _check_regex(value)


class OutputOptions(_Options):
    source: str = Field(description="Extracted name whose value becomes the line.")


STAGE_OPTIONS: dict[str, type[BaseModel]] = {
    "cri": CriOptions,
    "docker": DockerOptions,
    "json": JsonOptions,
    "logfmt": LogfmtOptions,
    "regex": RegexOptions,
    "labels": LabelsOptions,
    "static_labels": StaticLabelsOptions,
    "timestamp": TimestampOptions,
    "drop": DropOptions,
    "multiline": MultilineOptions,
    "output": OutputOptions,
}
#: Stages whose options are a list of label names rather than a mapping.
LIST_STAGES = ("labeldrop", "labelallow")
STAGE_NAMES = (*STAGE_OPTIONS, *LIST_STAGES)
_UNSUPPORTED = (
    "match",
    "template",
    "metrics",
    "pack",
    "tenant",
    "replace",
    "limit",
    "sampling",
    "geoip",
    "structured_metadata",
    "decolorize",
    "luhn",
    "eventlogmessage",
    "windowsevent",
)


class StageConfig(_Options):
    """One entry of ``pipeline_stages``: exactly one of the stage fields is set."""

    cri: CriOptions | None = None
    docker: DockerOptions | None = None
    json_: JsonOptions | None = Field(None, alias="json")
    logfmt: LogfmtOptions | None = None
    regex: RegexOptions | None = None
    labels: LabelsOptions | None = None
    static_labels: StaticLabelsOptions | None = None
    timestamp: TimestampOptions | None = None
    drop: DropOptions | None = None
    multiline: MultilineOptions | None = None
    output: OutputOptions | None = None
    labeldrop: tuple[str, ...] | None = None
    labelallow: tuple[str, ...] | None = None

    @model_validator(mode="before")
    @classmethod
    def _one_stage(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise ValueError("a stage is a one-key mapping such as `- json: {...}`")
        if len(data) != 1:
            raise ValueError(
                f"a stage is a mapping with exactly one key, got "
                f"{len(data)}: {', '.join(map(str, data)) or 'none'}"
            )
        ((name, options),) = data.items()
        if name in _UNSUPPORTED:
            raise ValueError(
                f"stage {name!r} is not supported by ferryman (see docs/promtail-migration.md)"
            )
        if name not in STAGE_NAMES:
            raise ValueError(f"unknown stage {name!r}; known stages: {', '.join(STAGE_NAMES)}")
        if options is None:
            options = [] if name in LIST_STAGES else {}
        return {name: options}

    @field_validator("labeldrop", "labelallow")
    @classmethod
    def _label_list(cls, value: tuple[str, ...] | None) -> tuple[str, ...] | None:
        if value is not None:
            _check_label_names(list(value))
        return value

    @field_validator("labels", "static_labels")
    @classmethod
    def _not_empty(cls, value: LabelsOptions | None) -> LabelsOptions | None:
        if value is not None and not value.model_extra:
            raise ValueError("name at least one label")
        return value

    @property
    def name(self) -> str:
        """The stage's Promtail name."""
        (field,) = self.model_fields_set
        return "json" if field == "json_" else field


def stage_options(stage: StageConfig) -> Any:
    """The options of the one stage that is set."""
    (field,) = stage.model_fields_set
    return getattr(stage, field)
