"""``elasticsearch_metrics``: Kafka (remote-write) → Elasticsearch, one document per sample.

Guarantees, per batch:

* templates are installed (idempotent PUTs) before the first document is written;
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

from pydantic import BaseModel

from functions.elasticsearch_common import BulkWriter
from workers.function import Context, FunctionSpec
from workers.records import Batch, Delivered

from .config import ElasticsearchMetricsConfig
from .encode import BulkEncoder
from .send import install_templates, make_client, post_bulk

__all__ = ["SPEC"]


class ElasticsearchMetricsSink:
    def __init__(self, config: ElasticsearchMetricsConfig, context: Context) -> None:
        self.config = config
        self.log = context.log
        self.client = make_client(config, context)
        self.encoder = BulkEncoder(config)
        self.templates_ready = not config.template.install
        labels = ["function", "reason"]
        self.m_skipped = context.registry.counter(
            "ferryman_samples_skipped_total",
            "Samples not written because Elasticsearch cannot store them (NaN, stale "
            "marker, Inf, timestamp out of range).", labels)
        self.writer = BulkWriter(lambda body: post_bulk(self.client, config, body), context)
        self.m_documents = self.writer.m_documents
        self.function = context.function

    def handle(self, batch: Batch) -> Delivered:
        if not self.templates_ready:
            install_templates(self.client, self.config)
            self.templates_ready = True
            self.log.info("index template %s for %s is in place", self.config.template_name,
                          self.config.index_pattern)
        encoded = self.encoder.encode(batch)
        for reason, count in encoded.skipped.items():
            self.m_skipped.inc(count, self.function, reason)
        return self.writer.write(batch, encoded.chunks, encoded.undecodable)

    def close(self) -> None:
        self.client.close()


def _create(config: BaseModel, context: Context) -> ElasticsearchMetricsSink:
    assert isinstance(config, ElasticsearchMetricsConfig)
    return ElasticsearchMetricsSink(config, context)


SPEC = FunctionSpec(
    name="elasticsearch_metrics",
    kind="sink",
    summary="Index metric samples into an Elasticsearch data stream (or dated indices), "
            "one deduplicated document per sample.",
    config_model=ElasticsearchMetricsConfig,
    create=_create,
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
