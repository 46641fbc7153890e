"""Which panels the tests prove with data, and why the others are not yet.

:data:`PROVEN` names the panels ``test_two_clusters`` requires to show both clusters on
both Prometheus and VictoriaMetrics; :data:`PROVEN_BY_KUBELET` those
``test_kubelet_panels`` requires to do so from a real kubelet's cAdvisor;
:data:`UNPROVEN` gives the reason for every other panel. :data:`NOT_PROVEN` is every
panel the two-cluster test does not prove, with why (:data:`UNPROVEN`'s and the
kubelet test's). Tests check that these cover every panel of every dashboard, so a new
panel has to be put in one of them.
"""

from __future__ import annotations

from infra.grafana.dashboards import DASHBOARDS

__all__ = [
    "NOT_PROVEN",
    "PROVEN",
    "PROVEN_BY_KUBELET",
    "RUNS_ONLY",
    "UNPROVEN",
    "all_panels",
]

PROVEN: dict[str, frozenset[str]] = {
    "overview": frozenset(
        {
            "Targets up",
            "Targets down",
            "Log volume",
            "Error lines",
            "Spans received",
            "Spans refused",
            "Nodes",
            "Pods running",
        }
    ),
    "kubernetes": frozenset(
        {
            "CPU requests commitment",
            "Memory requests commitment",
            "Deployment replicas available / desired",
            "Pods by phase",
            "Container restarts",
            "Containers waiting",
        }
    ),
    "logs-elasticsearch": frozenset({"Log volume by level", "Logs"}),
    "logs-victorialogs": frozenset({"Log volume by level", "Logs"}),
    "traces": frozenset({"Spans received per cluster", "Traces in $cluster"}),
    "nodes": frozenset(
        {
            "CPU busy",
            "Sys load (1m avg)",
            "RAM used",
            "Root FS used",
            "CPU cores",
            "Uptime",
            "CPU basic",
            "Memory used",
            "Network traffic",
            "Disk space used",
        }
    ),
    "ferryman": frozenset(
        {
            "Records in",
            "Records out",
            "Errors",
            "Batches by outcome",
            "Consumer lag per group and partition",
            "Delivery latency (batch start to commit)",
            "Dead-lettered records",
            "Retry-lane depth",
            "Records handed to the retry lane",
            "Lane records retried",
            "Disk buffer",
            "Shipped to Kafka",
            "Scrapes by result",
            "Drops",
            "Log files: bytes not yet shipped",
            "Targets per cluster",
        }
    ),
}

#: Panels whose queries the two-cluster test runs (and requires to answer) without
#: requiring data; each also has its reason in UNPROVEN.
RUNS_ONLY: dict[str, set[str]] = {
    "overview": {"Error traces in $cluster"},
    "traces": {"Error traces in $cluster"},
}

#: Panels ``test_kubelet_panels`` requires to show both clusters on both stores, from
#: the cAdvisor series of a real kubelet scraped by the target overlay's jobs.
PROVEN_BY_KUBELET: dict[str, frozenset[str]] = {
    "kubernetes": frozenset({"CPU usage by namespace", "Memory usage (working set) by namespace"}),
}

_JAEGER_ERROR = (
    "the search runs (HTTP 200, test_two_clusters) but Jaeger v2.12.0's memory store "
    "(module v1.75.0, the approved release) "
    "cannot filter on errors: the query API hands every tag over as a string "
    "(cmd/query/app/query_parser.go:384 map[string]string; "
    "internal/jptrace/attributes.go:33 PutStr) and the store reads the error tag with "
    "pcommon Value.Bool(), false for a string (internal/storage/v2/memory/tenant.go:"
    "241-247), so error=true selects spans whose status is Ok, not Error; the API v3 "
    "HTTP search drops attributes (cmd/query/app/apiv3/http_gateway.go:216) and span "
    "status is no attribute (otel.status_code matches nothing). Fixed upstream in "
    "v2.17.0 (jaegertracing/jaeger#8217), a release not served here"
)

#: Panels no test proves yet, with the reason.
UNPROVEN: dict[str, dict[str, str]] = {
    "overview": {
        "Error traces in $cluster": _JAEGER_ERROR,
    },
    "traces": {"Error traces in $cluster": _JAEGER_ERROR},
    "logs-loki": {
        "Log volume by level": "Loki is not in the local stack",
        "Logs": "Loki is not in the local stack",
    },
}

_BY_KUBELET = (
    "proven by test_kubelet_panels instead: the cAdvisor series of a real kubelet, "
    "which the two-cluster run does not start"
)

#: Every panel ``test_two_clusters`` does not prove, with why.
NOT_PROVEN: dict[str, dict[str, str]] = {
    dashboard: {
        **UNPROVEN.get(dashboard, {}),
        **dict.fromkeys(sorted(PROVEN_BY_KUBELET.get(dashboard, ())), _BY_KUBELET),
    }
    for dashboard in sorted(UNPROVEN.keys() | PROVEN_BY_KUBELET.keys())
}


def all_panels() -> dict[str, set[str]]:
    """Dashboard (file name without .json) -> titles of its panels that hold queries."""
    return {
        file.removesuffix(".json"): {p["title"] for p in build()["panels"] if p["type"] != "row"}
        for file, build in DASHBOARDS.items()
    }
