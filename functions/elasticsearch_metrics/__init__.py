"""``elasticsearch_metrics``: Kafka (remote-write) → Elasticsearch, one document per sample.

Guarantees, per batch:

* templates are installed (idempotent PUTs) at start, before any document is written
  (:meth:`~.sink.ElasticsearchMetricsSink.start`);
* a record is acknowledged only when every one of its documents was stored (201) or
  found already stored (409: the ``_id`` is derived from series and timestamp and
  written with ``create``, so replays add nothing);
* documents refused for now (429, 5xx, rejected execution) send their records back
  to the runtime in ``retry``; re-sending a record's other documents just yields 409s;
* documents refused for good (400 mapping errors, …) are dead-lettered one by one
  as JSON documents with the reason — once the rest of their record is stored;
* a record that is not a remote-write message is dead-lettered whole;
* NaN (including stale markers) and ±Inf samples are skipped and counted in
  ``ferryman_samples_skipped_total{function,reason}``.

Not guaranteed: dedup across backing indices. A data stream that rolls over keeps
older ``_id``s in older backing indices, so a replay reaching back past a rollover
can store those samples again. ``index`` mode names indices after the sample's own
time and has no such gap.
"""

from __future__ import annotations

from workers.function import FunctionSpec

from .config import ElasticsearchMetricsConfig
from .sink import ElasticsearchMetricsSink

__all__ = ["SPEC"]

SPEC = FunctionSpec(
    name="elasticsearch_metrics",
    kind="sink",
    summary="Index metric samples into an Elasticsearch data stream (or dated indices), "
    "one deduplicated document per sample.",
    config_model=ElasticsearchMetricsConfig,
    create=ElasticsearchMetricsSink,
    example="""\
url: http://127.0.0.1:9200
data_stream: metrics-ferryman-default
index: null
cluster_label: cluster
max_bulk_bytes: 5242880
template:
  install: true
  priority: 200
  number_of_shards: 1
  number_of_replicas: 0
  labels: keyword
  composed_of: []
timeout_s: 30
""",
)
