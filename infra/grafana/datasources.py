"""The datasources Grafana is provisioned with, pointing at the local stack.

Each has a fixed ``uid`` so dashboards and derived fields can name it. The
Prometheus-compatible ones share the ``prometheus`` type, so a dashboard's
``datasource`` variable (query ``prometheus``) offers all three. URLs are the local
stack's (``infra/local/catalogue.py``); Mimir is not part of that stack, its URL is
Mimir's usual one and is there to be edited. Grafana expands ``$NAME`` in
provisioning files, so a literal ``$`` is written ``$$``.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml

__all__ = ["DATASOURCES", "Datasource", "by_uid", "provisioning"]

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
