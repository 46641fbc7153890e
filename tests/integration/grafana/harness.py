"""The dashboards' Prometheus queries and variable queries, ready to expand and send."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import httpx

from infra.grafana.dashboards import DASHBOARDS
from tests.integration.grafana.expand import Range, expand, query_range_params

#: The Prometheus-compatible services of the stack every query runs on.
BACKENDS = ("prometheus", "victoriametrics")
_LABEL_VALUES = re.compile(r"label_values\((?:(.*),\s*)?(\w+)\)")


@dataclass(frozen=True)
class Query:
    dashboard: str
    panel: str
    ref: str
    expr: str
    variables: Mapping[str, Mapping[str, Any]]

    @property
    def name(self) -> str:
        return f"{self.dashboard}:{self.panel}:{self.ref}"


def prometheus_queries(only: str | None = None) -> Iterator[Query]:
    for file, build in DASHBOARDS.items():
        if only and file != only:
            continue
        dash = build()
        variables = {v["name"]: v for v in dash["templating"]["list"]}
        for panel in dash["panels"]:
            for target in panel.get("targets", []):
                if target["datasource"]["type"] == "prometheus":
                    yield Query(
                        file.removesuffix(".json"),
                        panel["title"],
                        target["refId"],
                        target["expr"],
                        variables,
                    )


def variable_queries() -> Iterator[tuple[str, Mapping[str, Any], Mapping[str, Mapping[str, Any]]]]:
    """(dashboard, variable, all variables) for every Prometheus label_values variable."""
    for file, build in DASHBOARDS.items():
        dash = build()
        variables = {v["name"]: v for v in dash["templating"]["list"]}
        for v in variables.values():
            if v["type"] == "query" and v["datasource"]["type"] == "prometheus":
                yield file.removesuffix(".json"), v, variables


def query_range(
    base: str, query: Query, time_range: Range, selected: Mapping[str, Sequence[str]]
) -> tuple[int, dict[str, Any], str]:
    """Expand ``query`` and POST it to ``base``'s query_range as Grafana does: the status,
    the JSON answer and the expanded expression."""
    expr = expand(query.expr, time_range, query.variables, selected)
    response = httpx.post(
        f"{base}/api/v1/query_range", data=query_range_params(expr, time_range), timeout=30
    )
    return response.status_code, response.json(), expr


def label_values(
    base: str,
    variable: Mapping[str, Any],
    variables: Mapping[str, Mapping[str, Any]],
    time_range: Range,
    selected: Mapping[str, Sequence[str]],
) -> tuple[int, dict[str, Any]]:
    """Run a ``label_values([selector,] label)`` variable as Grafana's Prometheus
    datasource does: the label-values API, narrowed by ``match[]`` and the range."""
    m = _LABEL_VALUES.fullmatch(str(variable["query"]))
    assert m, f"not a label_values query: {variable['query']}"
    params: dict[str, str] = {"start": f"{time_range.start:.3f}", "end": f"{time_range.end:.3f}"}
    if m.group(1):
        params["match[]"] = expand(m.group(1), time_range, variables, selected)
    response = httpx.get(f"{base}/api/v1/label/{m.group(2)}/values", params=params, timeout=30)
    return response.status_code, response.json()


@dataclass(frozen=True)
class Search:
    """A Jaeger search target of a panel (repeated per cluster when ``repeat`` is set)."""

    dashboard: str
    panel: str
    target: Mapping[str, Any]
    variables: Mapping[str, Mapping[str, Any]]

    @property
    def name(self) -> str:
        return f"{self.dashboard}:{self.panel}"


def jaeger_searches(only: str | None = None) -> Iterator[Search]:
    for file, build in DASHBOARDS.items():
        if only and file != only:
            continue
        dash = build()
        variables = {v["name"]: v for v in dash["templating"]["list"]}
        for panel in dash["panels"]:
            for target in panel.get("targets", []):
                if target["datasource"]["type"] == "jaeger":
                    yield Search(file.removesuffix(".json"), panel["title"], target, variables)


def jaeger_search(
    base: str,
    search: Search,
    time_range: Range,
    selected: Mapping[str, Sequence[str]],
    text: Mapping[str, str],
) -> tuple[int, dict[str, Any], dict[str, str]]:
    """Run ``search`` as Grafana's Jaeger datasource does: variables replaced (glob
    format; a repeated panel has one value), the logfmt tags turned into Jaeger's JSON
    ``tags``, the range in microseconds, GET /api/traces. ``text`` fills the textbox
    variables. Returns the status, the JSON answer and the parameters sent."""
    chosen = {**selected, **{k: [v] for k, v in text.items()}}

    def fill(value: str) -> str:
        return expand(value, time_range, search.variables, chosen, style="glob")

    tags = dict(pair.split("=", 1) for pair in shlex.split(fill(search.target["tags"])))
    params = {
        "service": fill(search.target["service"]),
        "tags": json.dumps(tags),
        "limit": str(search.target.get("limit", 20)),
        "start": str(int(time_range.start * 1_000_000)),
        "end": str(int(time_range.end * 1_000_000)),
    }
    response = httpx.get(f"{base}/api/traces", params=params, timeout=30)
    return response.status_code, response.json(), params
