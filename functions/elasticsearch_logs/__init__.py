"""``elasticsearch_logs``: Kafka (Loki push) → Elasticsearch data stream, one ECS-style
document per log line.

Guarantees, per batch:

* templates are installed (idempotent PUTs) at start, before any document is written
  (:meth:`~.sink.ElasticsearchLogsSink.start`);
* a record is acknowledged only when every one of its lines was stored (201) or
  found already stored (409: the ``_id`` is derived from labels, timestamp, line and
  the line's rank among identical ones, written with ``create``, so replays add
  nothing);
* lines refused for now (429, 5xx, rejected execution) send their records back to
  the runtime in ``retry``; a whole request refused for now (429, 5xx, no
  connection) sends back every record not yet acknowledged;
* lines refused for good (400 mapping errors, …) are dead-lettered one by one as
  JSON documents with the reason — once the rest of their record is stored;
* a record that is not a Loki push message is dead-lettered whole;
* invalid UTF-8 in a line is stored with U+FFFD in its place, as Loki does.

Not guaranteed: dedup across backing indices. A data stream that rolls over keeps
older ``_id``s in older backing indices, so a replay reaching back past a rollover
can store those lines again.
"""

from __future__ import annotations

from workers.function import FunctionSpec

from .config import ElasticsearchLogsConfig
from .sink import ElasticsearchLogsSink

__all__ = ["SPEC"]

SPEC = FunctionSpec(
    name="elasticsearch_logs",
    kind="sink",
    summary="Index log lines into an Elasticsearch data stream as ECS documents, "
    "one deduplicated document per line.",
    config_model=ElasticsearchLogsConfig,
    create=ElasticsearchLogsSink,
    example="""\
url: http://127.0.0.1:9200
data_stream: logs-ferryman-default
cluster_label: cluster
max_bulk_bytes: 5242880
template:
  install: true
  priority: 200
  number_of_shards: 1
  number_of_replicas: 0
  composed_of: []
timeout_s: 30
""",
)
