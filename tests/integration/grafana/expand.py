"""Grafana's macros and variable formatting for Prometheus queries, done the way
Grafana does them, so a dashboard's query can be sent to a backend as Grafana would.

What is reproduced (Grafana 10/11, Prometheus datasource):

* ``$__interval``: the time range over the panel's max data points, rounded to
  Grafana's "nice" intervals, never below the datasource's ``timeInterval`` (the
  scrape interval, 15 s here); written as Grafana writes it (``15s``, ``1m``).
* ``$__rate_interval``: ``max($__interval + scrape interval, 4 * scrape interval)``.
* ``$__range`` (``3600s``), ``$__range_s``, ``$__range_ms``, ``$__interval_ms``.
* Variables: a multi-value or "include All" variable is regex-escaped value by value
  and, for more than one value, written ``(a|b)``; a single-valued one is escaped as
  a plain string; "All" becomes the variable's ``allValue`` when it has one (as is,
  unescaped), else every value. ``${v:regex}``, ``${v:pipe}``, ``${v:csv}``,
  ``${v:raw}`` are the explicit formats.
* ``query_range``'s ``step`` is ``$__interval`` and start/end are aligned to it.
* For other datasources the default format is Grafana's "glob" (Jaeger: one value as
  is, several as ``{a,b}``) or, for Elasticsearch, "lucene": each value
  Lucene-escaped, several as ``("a" OR "b")``; for the VictoriaLogs plugin,
  "logsql": after a regex operator (``=~``, ``:~``) several values become ``(a|b)``
  (the plugin's multi-value markers, expanded by operator), one value stays as is.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

__all__ = ["ALL", "Range", "expand", "format_value", "query_range_params"]

ALL = "$__all"
_VAR = re.compile(r"\$\{(\w+)(?::(\w+))?\}|\[\[(\w+)(?::(\w+))?\]\]|\$(\w+)")

# Grafana's roundInterval: (upper bound of the raw interval in ms, the interval used).
# fmt: off
_NICE_MS = (
    (10, 1), (15, 10), (35, 20), (75, 50), (150, 100), (350, 200), (750, 500),
    (1_500, 1_000), (3_500, 2_000), (7_500, 5_000), (12_500, 10_000), (17_500, 15_000),
    (25_000, 20_000), (45_000, 30_000), (90_000, 60_000), (210_000, 120_000),
    (450_000, 300_000), (1_050_000, 600_000), (2_100_000, 1_200_000),
    (4_500_000, 1_800_000), (9_000_000, 3_600_000),
)
# fmt: on


@dataclass(frozen=True)
class Range:
    """A dashboard time range in epoch seconds, and what Grafana derives from it."""

    start: float
    end: float
    max_data_points: int = 1000
    scrape_interval_s: int = 15

    @property
    def interval_ms(self) -> int:
        raw = (self.end - self.start) * 1000 / self.max_data_points
        nice = next((ms for bound, ms in _NICE_MS if raw < bound), 3_600_000)
        return max(nice, self.scrape_interval_s * 1000)

    @property
    def rate_interval_ms(self) -> int:
        scrape = self.scrape_interval_s * 1000
        return max(self.interval_ms + scrape, 4 * scrape)

    def macros(self) -> dict[str, str]:
        range_ms = round((self.end - self.start) * 1000)
        return {
            "__interval": _hms(self.interval_ms),
            "__interval_ms": str(self.interval_ms),
            "__rate_interval": _hms(self.rate_interval_ms),
            "__rate_interval_ms": str(self.rate_interval_ms),
            "__range": f"{round(range_ms / 1000)}s",
            "__range_s": str(round(range_ms / 1000)),
            "__range_ms": str(range_ms),
        }


def _hms(ms: int) -> str:
    """Grafana's secondsToHms: the largest whole unit only."""
    seconds = ms / 1000
    for unit, size in (("y", 31_536_000), ("d", 86_400), ("h", 3_600), ("m", 60), ("s", 1)):
        if seconds >= size:
            return f"{math.floor(seconds / size)}{unit}"
    return f"{ms}ms"


def _regex_special(value: str) -> str:
    # Grafana's prometheusSpecialRegexEscape: doubled, since it sits in a PromQL string.
    value = value.replace("\\", "\\\\\\\\")
    return re.sub(r"[$^*{}\[\]'+?.()|]", lambda m: "\\\\" + m.group(0), value)


def _regular(value: str) -> str:
    return value.replace("\\", "\\\\").replace("'", "\\\\'")


def _regex(value: str) -> str:
    return re.sub(r"[\\^$*+?.()|\[\]{}/]", lambda m: "\\" + m.group(0), value)


def _lucene(value: str) -> str:
    return re.sub(r'[+\-=&|><!(){}\[\]^"~*?:\\/]', lambda m: "\\" + m.group(0), value)


def format_value(
    variable: Mapping[str, Any],
    selected: Sequence[str],
    every: Sequence[str],
    fmt: str | None,
    style: str = "prometheus",
) -> str:
    """The text Grafana puts in a Prometheus query for ``variable`` with ``selected``
    (``[ALL]`` for All; ``every`` is what All stands for without an ``allValue``)."""
    if list(selected) == [ALL]:
        if variable.get("allValue") and fmt in (None, "regex"):
            return str(variable["allValue"])
        selected = list(every)
    if fmt == "raw":
        return ",".join(selected)
    if fmt == "csv":
        return ",".join(selected)
    if fmt == "pipe":
        return "|".join(selected)
    if fmt == "regex":
        escaped = [_regex(v) for v in selected]
        return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"
    if style == "logsql":
        return selected[0] if len(selected) == 1 else "(" + "|".join(selected) + ")"
    if style == "lucene":
        if len(selected) == 1:
            return _lucene(selected[0])
        return "(" + " OR ".join(f'"{_lucene(v)}"' for v in selected) + ")"
    if style == "glob":
        return selected[0] if len(selected) == 1 else "{" + ",".join(selected) + "}"
    if not (variable.get("multi") or variable.get("includeAll")):
        return _regular(selected[0])
    escaped = [_regex_special(v) for v in selected]
    return escaped[0] if len(escaped) == 1 else "(" + "|".join(escaped) + ")"


def expand(
    text: str,
    time_range: Range,
    variables: Mapping[str, Mapping[str, Any]],
    selected: Mapping[str, Sequence[str]],
    every: Mapping[str, Sequence[str]] | None = None,
    style: str = "prometheus",
) -> str:
    """``text`` with the macros and the dashboard variables replaced, formatted for a
    Prometheus datasource or (``style="glob"``) another one; a variable the dashboard
    does not define, or one without a selection, is an error."""
    macros = time_range.macros()

    def one(m: re.Match[str]) -> str:
        name = m.group(1) or m.group(3) or m.group(5)
        fmt = m.group(2) or m.group(4)
        if name in macros:
            return macros[name]
        if name not in variables:
            raise KeyError(f"${name} is not defined")
        variable = variables[name]
        if variable["type"] in ("textbox", "constant", "custom") and name not in selected:
            return str(variable["query"])
        return format_value(variable, selected[name], (every or {}).get(name, ()), fmt, style)

    return _VAR.sub(one, text)


def query_range_params(expr: str, time_range: Range) -> dict[str, str]:
    """``query_range``'s form as Grafana sends it: step = $__interval, aligned range."""
    step = time_range.interval_ms / 1000
    start = math.floor(time_range.start / step) * step
    end = math.ceil(time_range.end / step) * step
    return {"query": expr, "start": f"{start:.3f}", "end": f"{end:.3f}", "step": f"{step:.3f}"}
