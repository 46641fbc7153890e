"""``elasticsearch_logs``: Kafka (Loki push) → Elasticsearch data stream, one ECS-style
document per log line.

Guarantees, per batch:

* templates are installed (idempotent PUTs) at start, before any document is written
  (:meth:`~.sink.ElasticsearchLogsSink.start`);
* a record is acknowledged only when every one of its lines was stored (201) or
  found already stored (409: the ``_id`` is written with ``create`` and names the
  line, by its source file's identity and its end offset there when the record's
  ``ferryman.lines`` header gives them, else by labels, timestamp, line and the line's
  rank among identical ones; so replays add nothing, and neither does a file read
  again with new timestamps or under a new name);
* a ``ferryman.lines`` header that does not match its message is ignored (its lines
  are named by content) and counted in ``ferryman_lines_header_invalid_total``;
* lines refused for now (429, 5xx, rejected execution) send their records back to
  the runtime in ``retry``; a whole request refused for now (429, 5xx, no
  connection) sends back every record not yet acknowledged;
* lines refused for good (400 mapping errors, …) are dead-lettered one by one as
  JSON documents with the reason — once the rest of their record is stored;
* a record that is not a Loki push message is dead-lettered whole;
* invalid UTF-8 in a line is stored with U+FFFD in its place, as Loki does.

Not guaranteed: dedup across backing indices. A data stream that rolls over keeps
older ``_id``s in older backing indices, so a replay or re-read reaching back past a
rollover can store those lines again. Lines named by content (no header, or no
source) are stored again when read again with new timestamps.
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
