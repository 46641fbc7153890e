"""``filter``: a transform from one logs topic to another that keeps or drops entries by
their stream's labels (a Loki/Prometheus selector) and/or their line (a regex).

Each message gives at most one message (same key and headers): none when every entry
was dropped. Undecodable messages are dead-lettered with the reason. Counter:
``ferryman_lines_dropped_total{function,reason="filtered"}``.
"""

from __future__ import annotations

from workers.function import FunctionSpec

from .config import FilterConfig
from .transform import FilterTransform

__all__ = ["SPEC"]

SPEC = FunctionSpec(
    name="filter",
    kind="transform",
    summary="Keep or drop log entries by label selector and line regex: logs topic in, "
    "logs topic out.",
    config_model=FilterConfig,
    create=FilterTransform,
    example="""\
action: drop
selector: '{namespace=~"kube-.*|monitoring", app!="ingress"}'
line_regex: 'GET /(healthz|readyz)'
""",
)
