"""Every PromQL query of every dashboard, expanded as Grafana expands it, parses and
runs on the stack's Prometheus and VictoriaMetrics: HTTP 200, status success, for
"All", for two clusters (``(a|b)``) and for one cluster whose name needs escaping.
Every ``label_values`` variable runs too. This proves syntax and execution, not data:
``test_two_clusters`` proves data."""

from __future__ import annotations

import time

import pytest

from tests.integration.grafana.expand import ALL, Range
from tests.integration.grafana.harness import (
    BACKENDS,
    Query,
    label_values,
    prometheus_queries,
    query_range,
    variable_queries,
)

QUERIES = list(prometheus_queries())
SELECTIONS = {
    "all": {},
    "two-clusters": {"cluster": ["alpha", "beta"]},
    "escaped": {"cluster": ["eu-west.1+x"], "job": ["node"], "instance": ["127.0.0.1:9100"]},
}


def _selected(query: Query, chosen: dict[str, list[str]]) -> dict[str, list[str]]:
    return {
        name: chosen.get(name, [ALL]) for name, v in query.variables.items() if v["type"] == "query"
    }


@pytest.mark.integration
@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("query", QUERIES, ids=lambda q: q.name)
def test_query_parses_and_runs(stack, backend: str, query: Query) -> None:
    now = time.time()
    time_range = Range(now - 3600, now)
    for label, chosen in SELECTIONS.items():
        status, body, expr = query_range(
            stack(backend, "http"), query, time_range, _selected(query, chosen)
        )
        assert status == 200 and body.get("status") == "success", (label, expr, body)
        assert body["data"]["resultType"] == "matrix"


@pytest.mark.integration
@pytest.mark.parametrize("backend", BACKENDS)
def test_every_label_values_variable_runs(stack, backend: str) -> None:
    now = time.time()
    time_range = Range(now - 3600, now)
    seen = 0
    for dashboard, variable, variables in variable_queries():
        selected = {n: [ALL] for n, v in variables.items() if v["type"] == "query"}
        base = stack(backend, "http")
        status, body = label_values(base, variable, variables, time_range, selected)
        assert status == 200 and body.get("status") == "success", (dashboard, variable, body)
        seen += 1
    assert seen >= 10
