"""The dashboards' Prometheus queries and variable queries, ready to expand and send."""

from __future__ import annotations

import re
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
