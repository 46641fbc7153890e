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


def elasticsearch_targets(only: str | None = None) -> Iterator[Search]:
    for file, build in DASHBOARDS.items():
        if only and file != only:
            continue
        dash = build()
        variables = {v["name"]: v for v in dash["templating"]["list"]}
        for panel in dash["panels"]:
            for target in panel.get("targets", []):
                if target["datasource"]["type"] == "elasticsearch":
                    yield Search(file.removesuffix(".json"), panel["title"], target, variables)


def _date_histogram(target: Mapping[str, Any], time_range: Range, ms: tuple[int, int]) -> Any:
    return {
        "date_histogram": {
            "field": target["timeField"],
            "fixed_interval": time_range.macros()["__interval"],
            "min_doc_count": 0,
            "extended_bounds": {"min": ms[0], "max": ms[1]},
            "format": "epoch_millis",
        }
    }


def msearch(
    base: str,
    index: str,
    search: Search,
    time_range: Range,
    selected: Mapping[str, Sequence[str]],
) -> tuple[int, dict[str, Any], str]:
    """Send an Elasticsearch target as Grafana's datasource does: one ``_msearch``
    header + body, the Lucene query with variables in Lucene format inside a
    ``bool.filter`` beside the time range (epoch ms); a count over ``terms`` and
    ``date_histogram`` aggregations nested in order, or a ``logs`` query (size,
    newest first, with a histogram). Returns the status, the answer, the query."""
    target = search.target
    chosen = {**selected}
    for name, v in search.variables.items():
        if v["type"] == "textbox" and name not in chosen:
            chosen[name] = [str(v["query"])]
    query = expand(target["query"], time_range, search.variables, chosen, style="lucene")
    ms = (int(time_range.start * 1000), int(time_range.end * 1000))
    body: dict[str, Any] = {
        "query": {
            "bool": {
                "filter": [
                    {
                        "range": {
                            target["timeField"]: {
                                "gte": ms[0],
                                "lte": ms[1],
                                "format": "epoch_millis",
                            }
                        }
                    },
                    {"query_string": {"analyze_wildcard": True, "query": query}},
                ]
            }
        }
    }
    metric = target["metrics"][0]
    if metric["type"] == "logs":
        body["size"] = int(metric.get("settings", {}).get("limit", 500))
        body["sort"] = [
            {target["timeField"]: {"order": "desc", "unmapped_type": "boolean"}},
            {"_doc": {"order": "desc"}},
        ]
        body["aggs"] = {"1": _date_histogram(target, time_range, ms)}
    else:
        body["size"] = 0
        aggs: dict[str, Any] = {}
        for agg in reversed(target["bucketAggs"]):
            if agg["type"] == "terms":
                settings = agg["settings"]
                node: dict[str, Any] = {
                    "terms": {
                        "field": agg["field"],
                        "size": int(settings["size"]),
                        "order": {settings["orderBy"]: settings["order"]},
                        "min_doc_count": int(settings["min_doc_count"]),
                    }
                }
            else:
                node = _date_histogram(target, time_range, ms)
            if aggs:
                node["aggs"] = aggs
            aggs = {agg["id"]: node}
        body["aggs"] = aggs
    header = {"search_type": "query_then_fetch", "ignore_unavailable": True, "index": index}
    payload = json.dumps(header) + "\n" + json.dumps(body) + "\n"
    response = httpx.post(
        f"{base}/_msearch",
        content=payload,
        headers={"Content-Type": "application/x-ndjson"},
        timeout=30,
    )
    return response.status_code, response.json(), query


def victorialogs_targets(only: str | None = None) -> Iterator[Search]:
    for file, build in DASHBOARDS.items():
        if only and file != only:
            continue
        dash = build()
        variables = {v["name"]: v for v in dash["templating"]["list"]}
        for panel in dash["panels"]:
            for target in panel.get("targets", []):
                if target["datasource"]["type"] == "victoriametrics-logs-datasource":
                    yield Search(file.removesuffix(".json"), panel["title"], target, variables)


def logsql(
    base: str, search: Search, time_range: Range, selected: Mapping[str, Sequence[str]]
) -> tuple[int, str, str]:
    """Send a VictoriaLogs plugin target as its backend does: ``statsRange`` to
    ``/select/logsql/stats_query_range`` with the range and ``$__interval`` as step,
    ``instant`` (raw lines) to ``/select/logsql/query`` with the range and a limit.
    Returns the status, the body text (JSON or JSON lines) and the query."""
    chosen = {**selected}
    for name, v in search.variables.items():
        if v["type"] == "textbox" and name not in chosen:
            chosen[name] = [str(v["query"])]
    query = expand(search.target["expr"], time_range, search.variables, chosen, style="logsql")
    params = {"query": query, "start": f"{time_range.start:.3f}", "end": f"{time_range.end:.3f}"}
    if search.target["queryType"] == "statsRange":
        params["step"] = time_range.macros()["__interval"]
        path = "/select/logsql/stats_query_range"
    else:
        params["limit"] = "1000"
        path = "/select/logsql/query"
    response = httpx.post(f"{base}{path}", data=params, timeout=30)
    return response.status_code, response.text, query
