"""Small builders for Grafana dashboard JSON (schema of Grafana 10/11).

Everything returns plain dicts, so what is written is exactly what is built; the
rules they must follow are in :mod:`infra.grafana.lint`.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "Json",
    "Layout",
    "dashboard",
    "datasource_variable",
    "ds",
    "logs",
    "prom",
    "query_variable",
    "selector",
    "stat",
    "table",
    "textbox_variable",
    "timeseries",
]

Json = dict[str, Any]

#: The matchers every scraped series is narrowed by: the dashboard's variables.
SCOPE = ("cluster", "job", "instance")


def ds(type_: str, variable: str = "datasource") -> Json:
    """A panel's or target's datasource: always a variable, never a fixed uid."""
    return {"type": type_, "uid": f"${{{variable}}}"}


def selector(metric: str, *matchers: str, scope: tuple[str, ...] = SCOPE) -> str:
    """``metric{cluster=~"$cluster",job=~"$job",instance=~"$instance",…}``."""
    parts = [f'{name}=~"${name}"' for name in scope] + list(matchers)
    return f"{metric}{{{', '.join(parts)}}}"


def prom(expr: str, legend: str = "", ref: str = "A", variable: str = "datasource") -> Json:
    return {
        "refId": ref,
        "datasource": ds("prometheus", variable),
        "expr": expr,
        "legendFormat": legend or "__auto",
        "range": True,
        "editorMode": "code",
    }


def _panel(type_: str, title: str, targets: list[Json], datasource: Json, **extra: Any) -> Json:
    for i, target in enumerate(targets):
        target.setdefault("refId", chr(ord("A") + i))
    return {"type": type_, "title": title, "datasource": datasource, "targets": targets, **extra}


def timeseries(
    title: str, targets: list[Json], unit: str, *, description: str = "", stack: bool = False
) -> Json:
    custom: Json = {"fillOpacity": 10, "lineWidth": 1, "showPoints": "never"}
    if stack:
        custom["stacking"] = {"mode": "normal", "group": "A"}
    return _panel(
        "timeseries",
        title,
        targets,
        targets[0]["datasource"],
        description=description,
        fieldConfig={"defaults": {"unit": unit, "custom": custom}, "overrides": []},
        options={
            "legend": {"displayMode": "table", "placement": "bottom", "calcs": ["lastNotNull"]},
            "tooltip": {"mode": "multi", "sort": "desc"},
        },
    )


def stat(title: str, targets: list[Json], unit: str, *, description: str = "") -> Json:
    return _panel(
        "stat",
        title,
        targets,
        targets[0]["datasource"],
        description=description,
        fieldConfig={"defaults": {"unit": unit}, "overrides": []},
        options={
            "reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
            "colorMode": "value",
            "graphMode": "area",
            "textMode": "auto",
        },
    )


def logs(title: str, targets: list[Json], *, description: str = "") -> Json:
    return _panel(
        "logs",
        title,
        targets,
        targets[0]["datasource"],
        description=description,
        options={
            "showTime": True,
            "wrapLogMessage": True,
            "sortOrder": "Descending",
            "enableLogDetails": True,
            "dedupStrategy": "none",
        },
    )


def table(
    title: str, targets: list[Json], *, description: str = "", repeat: str | None = None
) -> Json:
    extra: Json = {}
    if repeat:
        extra = {"repeat": repeat, "repeatDirection": "v"}
    return _panel(
        "table",
        title,
        targets,
        targets[0]["datasource"],
        description=description,
        fieldConfig={"defaults": {"unit": "none"}, "overrides": []},
        options={"showHeader": True},
        **extra,
    )


class Layout:
    """Places panels left to right in rows of 24 columns and gives them ids."""

    def __init__(self) -> None:
        self.panels: list[Json] = []
        self._x = 0
        self._y = 0
        self._row_height = 0

    def add(self, panel: Json, w: int = 12, h: int = 8) -> None:
        if self._x + w > 24:
            self._x, self._y, self._row_height = 0, self._y + self._row_height, 0
        panel["id"] = len(self.panels) + 1
        panel["gridPos"] = {"x": self._x, "y": self._y, "w": w, "h": h}
        self.panels.append(panel)
        self._x += w
        self._row_height = max(self._row_height, h)

    def row(self, title: str) -> None:
        """A full-width row header (collapsed: false) starting a new line."""
        if self._x:
            self._x, self._y, self._row_height = 0, self._y + self._row_height, 0
        self.add({"type": "row", "title": title, "collapsed": False, "panels": []}, 24, 1)


def datasource_variable(
    type_: str, default_uid: str, name: str = "datasource", label: str = "Data source"
) -> Json:
    return {
        "type": "datasource",
        "name": name,
        "label": label,
        "query": type_,
        "current": {"text": default_uid, "value": default_uid},
        "regex": "",
        "hide": 0,
        "refresh": 1,
    }


def query_variable(
    name: str,
    query: Any,
    datasource: Json,
    *,
    label: str = "",
    all_value: str | None = ".+",
    multi: bool = True,
) -> Json:
    """A multi-select variable with "All"; ``all_value`` ``None`` makes All stand for
    every value listed (Grafana's default)."""
    out: Json = {
        "type": "query",
        "name": name,
        "label": label or name.capitalize(),
        "datasource": datasource,
        "query": query,
        "definition": query if isinstance(query, str) else "",
        "multi": multi,
        "includeAll": True,
        "current": {"text": ["All"], "value": ["$__all"]},
        "refresh": 2,
        "sort": 1,
        "hide": 0,
        "regex": "",
    }
    if all_value is not None:
        out["allValue"] = all_value
    return out


def textbox_variable(name: str, default: str, label: str = "") -> Json:
    return {
        "type": "textbox",
        "name": name,
        "label": label or name.capitalize(),
        "query": default,
        "current": {"text": default, "value": default},
        "hide": 0,
    }


def dashboard(
    uid: str,
    title: str,
    description: str,
    variables: list[Json],
    layout: Layout,
    *,
    tags: tuple[str, ...] = ("ferryman",),
    time_from: str = "now-1h",
) -> Json:
    return {
        "uid": uid,
        "title": title,
        "description": description,
        "tags": list(tags),
        "editable": True,
        "graphTooltip": 1,
        "schemaVersion": 39,
        "version": 1,
        "refresh": "30s",
        "time": {"from": time_from, "to": "now"},
        "timepicker": {},
        "timezone": "utc",
        "templating": {"list": variables},
        "annotations": {"list": []},
        "links": [],
        "panels": layout.panels,
    }
