"""The ``elasticsearch_metrics`` handler: templates at start, then encode → bulk → judge."""

from __future__ import annotations

from functions._elasticsearch import BulkWriter
from workers.function import Context
from workers.records import Batch, Delivered

from .config import ElasticsearchMetricsConfig
from .encode import BulkEncoder
from .send import install_templates, make_client, post_bulk

__all__ = ["ElasticsearchMetricsSink"]


class ElasticsearchMetricsSink:
    def __init__(self, config: ElasticsearchMetricsConfig, context: Context) -> None:
        self.config = config
        self.log = context.log
        self.client = make_client(config, context)
        self.encoder = BulkEncoder(config)
        self.m_skipped = context.registry.counter(
            "ferryman_samples_skipped_total",
            "Samples not written because Elasticsearch cannot store them (NaN, stale "
            "marker, Inf, timestamp out of range).",
            ["function", "reason"],
        )
        self.writer = BulkWriter(lambda body: post_bulk(self.client, config, body), context)
        self.m_documents = self.writer.m_documents
        self.function = context.function

    def start(self) -> None:
        """Install the templates (unless the operator manages them); raises DeliveryError
        when Elasticsearch cannot be reached or is busy, Permanent when it refuses them."""
        if not self.config.template.install:
            return
        install_templates(self.client, self.config)
        self.log.info(
            "index template %s for %s is in place",
            self.config.template_name,
            self.config.index_pattern,
        )

    def handle(self, batch: Batch) -> Delivered:
        encoded = self.encoder.encode(batch)
        for reason, count in encoded.skipped.items():
            self.m_skipped.labels(function=self.function, reason=reason).inc(count)
        return self.writer.write(batch, encoded.chunks, encoded.undecodable)

    def close(self) -> None:
        self.client.close()
