"""The datasources Grafana is provisioned with: the local stack's, and the central cluster's.

Each has a fixed ``uid`` so dashboards and derived fields can name it. The
Prometheus-compatible ones share the ``prometheus`` type, so a dashboard's
``datasource`` variable (query ``prometheus``) offers all three. URLs are the local
stack's (``infra/local/catalogue.py``); Mimir is not part of that stack, its URL is
Mimir's usual one and is there to be edited. Grafana expands ``$NAME`` in
provisioning files, so a literal ``$`` is written ``$$``.

:func:`central_provisioning` is the same set for a Grafana in the central cluster of
``infra/k8s/central/overlays/example``: the uids stay (so the same dashboards work),
the URLs are the in-cluster services of the backends that overlay's sinks write to
(:data:`CENTRAL_URLS`), and the stores that example does not run (Prometheus,
VictoriaMetrics, VictoriaLogs) are left out.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import yaml

__all__ = [
    "CENTRAL_URLS",
    "DATASOURCES",
    "Datasource",
    "by_uid",
    "central_provisioning",
    "provisioning",
]

#: How often the edge shippers scrape by default: Grafana's ``timeInterval`` for
#: Prometheus datasources, the floor of ``$__interval`` and the base of
#: ``$__rate_interval``.
SCRAPE_INTERVAL = "15s"

#: The log-line field or label carrying a trace id (the ``parse`` transform's output).
TRACE_ID_FIELD = "trace_id"

JAEGER_UID = "jaeger"


@dataclass(frozen=True)
class Datasource:
    """One provisioned datasource: ``type`` is the Grafana plugin id."""

    name: str
    uid: str
    type: str
    url: str
    json_data: dict[str, Any] = field(default_factory=dict)
    is_default: bool = False

    def provisioned(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "uid": self.uid,
            "type": self.type,
            "access": "proxy",
            "url": self.url,
            "isDefault": self.is_default,
            "editable": False,
        }
        if self.json_data:
            out["jsonData"] = self.json_data
        return out


def _prometheus(prometheus_type: str) -> dict[str, Any]:
    return {
        "httpMethod": "POST",
        "timeInterval": SCRAPE_INTERVAL,
        "prometheusType": prometheus_type,
    }


# A trace id in a line ("trace_id=4bf9…", JSON "trace_id":"4bf9…") opens the trace.
_TRACE_ID_REGEX = TRACE_ID_FIELD + r"""["']?\s*[=:]\s*["']?([0-9a-fA-F]{16,32})"""
_OPEN_TRACE = "$${__value.raw}"

_DERIVED_FIELDS: list[dict[str, Any]] = [
    {
        "name": "TraceID",
        "matcherType": "regex",
        "matcherRegex": _TRACE_ID_REGEX,
        "datasourceUid": JAEGER_UID,
        "url": _OPEN_TRACE,
        "urlDisplayLabel": "Open trace",
    },
    {
        # The same id kept as structured metadata or a label by the parse transform.
        "name": "TraceID (field)",
        "matcherType": "label",
        "matcherRegex": TRACE_ID_FIELD,
        "datasourceUid": JAEGER_UID,
        "url": _OPEN_TRACE,
        "urlDisplayLabel": "Open trace",
    },
]

DATASOURCES: tuple[Datasource, ...] = (
    Datasource(
        "Prometheus",
        "prometheus",
        "prometheus",
        "http://127.0.0.1:9090",
        _prometheus("Prometheus"),
        is_default=True,
    ),
    Datasource(
        "Mimir", "mimir", "prometheus", "http://127.0.0.1:9009/prometheus", _prometheus("Mimir")
    ),
    Datasource(
        "VictoriaMetrics",
        "victoriametrics",
        "prometheus",
        "http://127.0.0.1:8428",
        _prometheus("Prometheus"),
    ),
    Datasource(
        "Elasticsearch logs",
        "elasticsearch-logs",
        "elasticsearch",
        "http://127.0.0.1:9200",
        {
            "index": "logs-ferryman-default",
            "timeField": "@timestamp",
            "logMessageField": "message",
            "logLevelField": "labels.level",
            "maxConcurrentShardRequests": 5,
            "dataLinks": [
                {
                    "field": f"fields.{TRACE_ID_FIELD}",
                    "datasourceUid": JAEGER_UID,
                    "url": _OPEN_TRACE,
                    "urlDisplayLabel": "Open trace",
                }
            ],
        },
    ),
    Datasource(
        "Elasticsearch metrics",
        "elasticsearch-metrics",
        "elasticsearch",
        "http://127.0.0.1:9200",
        {
            "index": "metrics-ferryman-default",
            "timeField": "@timestamp",
            "maxConcurrentShardRequests": 5,
        },
    ),
    Datasource(
        "Loki",
        "loki",
        "loki",
        "http://127.0.0.1:3100",
        {"maxLines": 1000, "derivedFields": _DERIVED_FIELDS},
    ),
    Datasource(
        "VictoriaLogs",
        "victorialogs",
        "victoriametrics-logs-datasource",
        "http://127.0.0.1:9428",
        {"maxLines": 1000, "derivedFields": _DERIVED_FIELDS},
    ),
    Datasource(
        "Jaeger",
        JAEGER_UID,
        "jaeger",
        "http://127.0.0.1:16686",
        {
            "tracesToLogsV2": {
                "datasourceUid": "victorialogs",
                "filterByTraceID": True,
                "spanStartTimeShift": "-5m",
                "spanEndTimeShift": "5m",
            },
            "nodeGraph": {"enabled": True},
        },
    ),
)


def by_uid() -> dict[str, Datasource]:
    return {d.uid: d for d in DATASOURCES}


def provisioning() -> str:
    """The ``provisioning/datasources`` file (Grafana's ``apiVersion: 1`` format)."""
    body = {
        "apiVersion": 1,
        "datasources": [d.provisioned() for d in DATASOURCES],
    }
    return yaml.safe_dump(body, sort_keys=False, width=100)


#: uid -> URL for a Grafana inside the central cluster of the example overlay
#: (infra/k8s/central/overlays/example). Each is the query side of the backend that
#: overlay's sink writes to, in the same namespace: Mimir and Loki split writes
#: (``*-distributor``, where the sinks push) from reads (``*-query-frontend``, what
#: Grafana asks; Mimir's Prometheus API under ``/prometheus``), Jaeger splits its
#: collector (``jaeger-collector``, OTLP on 4317) from its query service
#: (``jaeger-query``, 16686), and Elasticsearch answers both on one URL. An overlay
#: for another cluster changes these along with its sinks' files.
CENTRAL_URLS: dict[str, str] = {
    "mimir": "http://mimir-query-frontend.mimir.svc:8080/prometheus",
    "elasticsearch-logs": "https://elasticsearch-es-http.elastic.svc:9200",
    "elasticsearch-metrics": "https://elasticsearch-es-http.elastic.svc:9200",
    "loki": "http://loki-query-frontend.loki.svc:3100",
    "jaeger": "http://jaeger-query.jaeger.svc:16686",
}

#: The central cluster's logs store for Jaeger's trace-to-logs link (the local
#: stack's is VictoriaLogs, which the example central cluster does not run).
_CENTRAL_LOGS_UID = "loki"


def _central(d: Datasource) -> Datasource:
    json_data = dict(d.json_data)
    if "tracesToLogsV2" in json_data:
        json_data["tracesToLogsV2"] = {
            **json_data["tracesToLogsV2"],
            "datasourceUid": _CENTRAL_LOGS_UID,
        }
    # Mimir is the central cluster's metrics store, hence the default datasource.
    return replace(d, url=CENTRAL_URLS[d.uid], json_data=json_data, is_default=d.uid == "mimir")


def central_provisioning() -> str:
    """The ``provisioning/datasources`` file for a Grafana in the central cluster:
    the datasources of :data:`CENTRAL_URLS` only, with those URLs, Mimir the default."""
    body = {
        "apiVersion": 1,
        "datasources": [_central(d).provisioned() for d in DATASOURCES if d.uid in CENTRAL_URLS],
    }
    return yaml.safe_dump(body, sort_keys=False, width=100)
