"""``relabel``: a transform from one metrics topic to another.

Each input message (snappy WriteRequest) becomes one output message with the same
key and headers, unless every series in it was dropped. Undecodable input is
dead-lettered with the reason.
"""

from __future__ import annotations

from workers.function import FunctionSpec

from .config import RelabelTransformConfig
from .transform import RelabelTransform

__all__ = ["SPEC"]

SPEC = FunctionSpec(
    name="relabel",
    kind="transform",
    summary="Apply metric_relabel_configs centrally: metrics topic in, metrics topic out.",
    config_model=RelabelTransformConfig,
    create=RelabelTransform,
    example="""\
metric_relabel_configs:
  - action: labeldrop
    regex: pod_template_hash
  - target_label: tenant
    replacement: team-a
  - source_labels: [__name__]
    regex: go_gc_.*
    action: drop
""",
)
