"""``parse``: a transform from one logs topic to another that reads every line as JSON,
logfmt or a named-group regex and attaches the fields to the entry as Loki
structured metadata (sinks then store them: Loki and VictoriaLogs as fields of the
entry, Elasticsearch under ``fields.*``, see :mod:`functions.elasticsearch_logs.encode`).

Per line, in this order: the ``output`` field, if set and present, becomes the line;
the ``promote`` fields become stream labels (within the cardinality guard); of the
remaining fields those in ``keep`` (all by default) join the entry's metadata,
replacing metadata of the same name. A line that does not parse passes unchanged.

Each message gives at most one message (same key and headers); undecodable ones are
dead-lettered with the reason. Counters: ``ferryman_lines_parsed_total{function}``,
``ferryman_lines_unparsed_total{function}``,
``ferryman_parse_promotions_refused_total{function,label,reason}`` (reason
``value_too_long`` or ``too_many_values``),
``ferryman_parse_fields_limited_total{function,reason}`` (``too_many_fields``,
``value_too_long``: the field limits that keep an entry within Loki's metadata limits).
"""

from __future__ import annotations

from workers.function import FunctionSpec

from .config import ParseConfig
from .transform import ParseTransform

__all__ = ["SPEC"]

SPEC = FunctionSpec(
    name="parse",
    kind="transform",
    summary="Parse log lines (JSON, logfmt, regex) into structured metadata fields: "
    "logs topic in, logs topic out.",
    config_model=ParseConfig,
    create=ParseTransform,
    example="""\
format: json
json_paths:
  user_id: user.id
keep: null
max_fields: 64
max_value_length: 2048
promote: [level]
max_label_value_length: 64
max_values_per_label: 100
output: null
sanitize_names: true
""",
)
