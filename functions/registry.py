"""The explicit list of functions. Importing a function module registers nothing;
this table is the only place a name becomes runnable, and modules load lazily so a
worker imports just its own function."""

from __future__ import annotations

import importlib
from typing import Any

from workers.function import FunctionSpec

__all__ = ["load", "names"]

_FUNCTIONS: dict[str, str] = {
    "count": "functions.count",
    "elasticsearch_logs": "functions.elasticsearch_logs",
    "elasticsearch_metrics": "functions.elasticsearch_metrics",
    "filter": "functions.filter",
    "influxdb": "functions.influxdb",
    "loki": "functions.loki",
    "opentsdb": "functions.opentsdb",
    "otlp_traces": "functions.otlp_traces",
    "parse": "functions.parse",
    "prometheus_remote_write": "functions.prometheus_remote_write",
    "redact": "functions.redact",
    "relabel": "functions.relabel",
    "sample": "functions.sample",
}


def names() -> list[str]:
    return sorted(_FUNCTIONS)


def load(name: str) -> FunctionSpec[Any]:
    """The spec of function ``name``; raises KeyError listing the known names."""
    try:
        module = importlib.import_module(_FUNCTIONS[name])
    except KeyError:
        raise KeyError(f"unknown function {name!r}; known: {', '.join(names())}") from None
    spec: FunctionSpec[Any] = module.SPEC
    return spec
